package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// generateView emits a view: its name, the updater a view of its own rows
// implements, the constructor that describes it to the runtime, the gRPC
// service implementation and the typed client.
func generateView(out *jen.File, v *view) {
	n := viewNamesOf(v)
	out.Commentf("%s is the name %s's rows are stored under.", n.viewName(), n.base)
	out.Const().Id(n.viewName()).Op("=").Lit(v.name)
	out.Line()
	if !v.stateView() {
		generateViewUpdater(out, v, n)
	}
	generateViewConstructor(out, v, n)
	generateViewServer(out, v, n)
	generateViewClient(out, v, n)
}

// generateViewUpdater emits the interface that builds the rows of a view
// whose rows are not its source's states: a method per source event, or
// for a key-value source one method that takes each stored value.
func generateViewUpdater(out *jen.File, v *view, n viewNames) {
	src := v.source
	row := ptr(v.row.GoIdent)
	if v.ofValues() {
		state := v.source.state.GoIdent
		out.Commentf("%s builds the rows of %s from the values of the %s", n.updater(), n.base, src.service.GoName)
		out.Commentf("entity (type %q): one row per entity, at most. The runtime calls %s", src.typ, n.onState(v))
		out.Comment("after the entity's value is written, with the entity's current row, or a new")
		out.Comment("empty one when it has none (ctx.Exists tells which), and the value stored:")
		out.Comment("values written in quick succession may reach it as the last one only. It")
		out.Comment("returns the new row: row itself, changed in place, will do; nil deletes the")
		out.Comment("row. An error is retried with the same value after a backoff, so it must give")
		out.Comment("the same result for the same row and value each time.")
		out.Commentf("Pass an implementation to %s.", n.constructor())
		if doc := docComment(v.service.Comments.Leading, ""); doc != "" {
			out.Comment("")
			comment(out, doc)
		}
		out.Type().Id(n.updater()).Interface(
			jen.Comment(fmt.Sprintf("%s turns the entity's stored %s into its row.", n.onState(v), state.GoName)),
			jen.Id(n.onState(v)).Params(
				jen.Id("ctx").Op("*").Qual(runtimePkg, "ViewUpdateContext"),
				jen.Id("row").Add(row.Clone()),
				jen.Id("value").Add(ptr(state)),
			).Params(row.Clone(), jen.Error()),
		)
		out.Line()
		return
	}
	out.Commentf("%s builds the rows of %s from the events of the %s", n.updater(), n.base, src.service.GoName)
	out.Commentf("entity (type %q): one row per entity, at most. The runtime calls one", src.typ)
	out.Comment("method per committed event, in order per entity, with the entity's current row,")
	out.Comment("or a new empty one when it has none (ctx.Exists tells which). A method returns")
	out.Comment("the new row: row itself, changed in place, will do; nil deletes the row. An")
	out.Comment("error is retried with the same event after a backoff, so a method must give")
	out.Comment("the same result for the same row and event each time.")
	out.Commentf("Pass an implementation to %s.", n.constructor())
	if doc := docComment(v.service.Comments.Leading, ""); doc != "" {
		out.Comment("")
		comment(out, doc)
	}
	var methods []jen.Code
	for i, ev := range src.events {
		if i > 0 {
			methods = append(methods, jen.Line())
		}
		methods = append(methods,
			jen.Comment(fmt.Sprintf("%s applies %s to the entity's row.", n.onEvent(ev), ev.message.GoIdent.GoName)),
			jen.Id(n.onEvent(ev)).Params(
				jen.Id("ctx").Op("*").Qual(runtimePkg, "ViewUpdateContext"),
				jen.Id("row").Add(row.Clone()),
				jen.Id("event").Add(ptr(ev.message.GoIdent)),
			).Params(row.Clone(), jen.Error()),
		)
	}
	out.Type().Id(n.updater()).Interface(methods...)
	out.Line()
}

func generateViewConstructor(out *jen.File, v *view, n viewNames) {
	src := v.source
	row := ptr(v.row.GoIdent)
	srcNames := namesOf(src)

	// The dispatch from a stored event type to a typed method: a switch,
	// no reflection.
	var cases []jen.Code
	if v.ofValues() && !v.stateView() {
		// A key-value source's feed holds its values: the updater
		// makes the row of each. (A view of the values themselves
		// needs no dispatch: see below.)
		decode := []jen.Code{
			jen.Id("value").Op(":=").New(qual(src.state.GoIdent)),
			jen.If(jen.Err().Op(":=").Qual(protoPkg, "Unmarshal").Call(jen.Id("payload"), jen.Id("value")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Nil(), jen.Qual(runtimePkg, "DecodeEventError").Call(jen.Id("eventType"), jen.Err())),
			),
		}
		decode = append(decode, jen.List(jen.Id("next"), jen.Err()).Op("=").Id("u").Dot(n.onState(v)).Call(jen.Id("ctx"), jen.Id("r"), jen.Id("value")))
		cases = append(cases, jen.Case(jen.Qual(runtimePkg, "ValueEventType")).Block(decode...))
	}
	for _, ev := range src.events {
		decode := []jen.Code{
			jen.Id("e").Op(":=").New(qual(ev.message.GoIdent)),
			jen.If(jen.Err().Op(":=").Qual(protoPkg, "Unmarshal").Call(jen.Id("payload"), jen.Id("e")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Nil(), jen.Qual(runtimePkg, "DecodeEventError").Call(jen.Id("eventType"), jen.Err())),
			),
		}
		if v.stateView() {
			decode = append(decode, jen.Id("events").Dot(srcNames.onEvent(ev)).Call(jen.Id("r"), jen.Id("e")))
		} else {
			decode = append(decode, jen.List(jen.Id("next"), jen.Err()).Op("=").Id("u").Dot(n.onEvent(ev)).Call(jen.Id("ctx"), jen.Id("r"), jen.Id("e")))
		}
		cases = append(cases, jen.Case(jen.Lit(ev.typ)).Block(decode...))
	}
	cases = append(cases, jen.Default().Block(
		jen.Comment("Records of other types, such as the runtime's own, leave the row as it is."),
		jen.Return(jen.Id("row"), jen.Nil()),
	))
	assertRow := jen.Id("r").Op(":=").Id("row").Assert(row.Clone())
	var update []jen.Code
	switch {
	case v.stateView() && v.ofValues():
		// The row is the value itself: no dispatch.
		update = append(update,
			jen.If(jen.Id("eventType").Op("!=").Qual(runtimePkg, "ValueEventType")).Block(
				jen.Comment("Records of other types, such as the runtime's own, leave the row as it is."),
				jen.Return(jen.Id("row"), jen.Nil()),
			),
			jen.Id("value").Op(":=").New(qual(src.state.GoIdent)),
			jen.If(jen.Err().Op(":=").Qual(protoPkg, "Unmarshal").Call(jen.Id("payload"), jen.Id("value")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Nil(), jen.Qual(runtimePkg, "DecodeEventError").Call(jen.Id("eventType"), jen.Err())),
			),
			jen.Return(jen.Id("value"), jen.Nil()),
		)
	case v.stateView():
		update = append(update,
			assertRow,
			jen.Switch(jen.Id("eventType")).Block(cases...),
			jen.Return(jen.Id("r"), jen.Nil()),
		)
	default:
		update = append(update,
			assertRow,
			jen.Var().Id("next").Add(row.Clone()),
			jen.Var().Err().Error(),
			jen.Switch(jen.Id("eventType")).Block(cases...),
			jen.If(jen.Err().Op("!=").Nil().Op("||").Id("next").Op("==").Nil()).Block(
				jen.Comment("An untyped nil: a nil *Row in the interface would not read as a deletion."),
				jen.Return(jen.Nil(), jen.Err()),
			),
			jen.Return(jen.Id("next"), jen.Nil()),
		)
	}

	var queries []jen.Code
	for _, q := range v.queries {
		fs := []jen.Code{
			jen.Id("Method"), jen.Lit(string(q.method.Desc.Name())),
			jen.Id("Query"), jen.Lit(q.query),
			jen.Id("Request"), jen.New(qual(q.method.Input.GoIdent)),
		}
		if !q.stream {
			fs = append(fs, jen.Id("Response"), jen.New(qual(q.method.Output.GoIdent)))
		}
		queries = append(queries, fields(fs...))
	}

	ctxParam := "ctx"
	if v.stateView() {
		ctxParam = "_" // the entity's event handlers take no context
	}
	cfg := []jen.Code{
		jen.Id("Name"), jen.Id(n.viewName()),
		jen.Id("Version"), jen.Lit(v.version),
		jen.Id("EntityType"), jen.Lit(src.typ),
		jen.Id("Service"), jen.Op("&").Id(n.serviceDesc()),
		jen.Id("NewRow"), jen.Func().Params().Qual(protoPkg, "Message").Block(jen.Return(jen.New(qual(v.row.GoIdent)))),
		jen.Id("Update"), jen.Func().Params(
			jen.Id(ctxParam).Op("*").Qual(runtimePkg, "ViewUpdateContext"),
			jen.Id("row").Qual(protoPkg, "Message"),
			jen.Id("eventType").String(),
			jen.Id("payload").Index().Byte(),
		).Params(jen.Qual(protoPkg, "Message"), jen.Error()).Block(update...),
		jen.Id("Queries"), jen.Index().Qual(runtimePkg, "ViewQueryConfig").Custom(
			jen.Options{Open: "{", Close: "}", Separator: ",", Multi: true}, queries...),
		jen.Id("NewService"), jen.Func().Params(jen.Id("host").Op("*").Qual(runtimePkg, "ViewHost")).Any().Block(
			jen.Return(jen.Op("&").Id(n.server()).Values(jen.Dict{jen.Id("host"): jen.Id("host")})),
		),
	}

	var param jen.Code
	switch {
	case v.stateView() && v.ofValues():
		out.Commentf("%s returns the %s view, ready to be served by the statefun runtime:", n.constructor(), n.base)
		out.Commentf("its rows are the values of %s entities (type %q), each", src.service.GoName, src.typ)
		out.Comment("replaced by the next one written:")
		out.Comment("")
		out.Commentf("\tstatefun.Main(..., %s())", n.constructor())
	case v.stateView():
		out.Commentf("%s returns the %s view, ready to be served by the statefun runtime:", n.constructor(), n.base)
		out.Commentf("its rows are the states of %s entities (type %q), kept up to", src.service.GoName, src.typ)
		out.Comment("date by applying each committed event with events, the entity's own event")
		out.Comment("handlers (its handler will do):")
		out.Comment("")
		out.Commentf("\tstatefun.Main(..., %s(handler))", n.constructor())
		param = jen.Id("events").Qual(string(src.file.GoImportPath), srcNames.eventHandler())
	default:
		out.Commentf("%s returns the %s view, its rows built by u, ready to be served", n.constructor(), n.base)
		out.Comment("by the statefun runtime:")
		out.Comment("")
		out.Commentf("\tstatefun.Main(..., %s(u))", n.constructor())
		param = jen.Id("u").Id(n.updater())
	}
	if doc := docComment(v.service.Comments.Leading, ""); doc != "" && v.stateView() {
		out.Comment("")
		comment(out, doc)
	}
	var params []jen.Code
	if param != nil {
		params = append(params, param)
	}
	out.Func().Id(n.constructor()).Params(params...).Op("*").Qual(runtimePkg, "View").Block(
		jen.Return(jen.Qual(runtimePkg, "NewView").Call(jen.Qual(runtimePkg, "ViewConfig").Add(fields(cfg...)))),
	)
	out.Line()
}

func generateViewServer(out *jen.File, v *view, n viewNames) {
	out.Commentf("%s serves %s's gRPC methods: each runs its query through the runtime.", n.server(), n.base)
	out.Type().Id(n.server()).Struct(
		jen.Id(n.grpcUnimpl()),
		jen.Id("host").Op("*").Qual(runtimePkg, "ViewHost"),
	)
	out.Line()
	out.Var().Id("_").Id(n.grpcServer()).Op("=").Parens(jen.Op("*").Id(n.server())).Parens(jen.Nil())
	out.Line()
	for i, q := range v.queries {
		in := ptr(q.method.Input.GoIdent)
		if q.stream {
			row := ptr(v.row.GoIdent)
			out.Func().Params(jen.Id("s").Op("*").Id(n.server())).Id(q.method.GoName).Params(
				jen.Id("req").Add(in.Clone()),
				jen.Id("stream").Qual(grpcPkg, "ServerStreamingServer").Types(qual(v.row.GoIdent)),
			).Error().Block(
				jen.Return(jen.Qual(runtimePkg, "StreamView").Types(in.Clone(), row).Call(
					jen.Id("stream").Dot("Context").Call(), jen.Id("s").Dot("host"), jen.Lit(i), jen.Id("req"), jen.Id("stream").Dot("Send"),
				)),
			)
		} else {
			res := ptr(q.method.Output.GoIdent)
			out.Func().Params(jen.Id("s").Op("*").Id(n.server())).Id(q.method.GoName).Params(
				jen.Id("ctx").Qual("context", "Context"), jen.Id("req").Add(in.Clone()),
			).Params(res.Clone(), jen.Error()).Block(
				jen.Return(jen.Qual(runtimePkg, "QueryView").Types(in.Clone(), res.Clone()).Call(
					jen.Id("ctx"), jen.Id("s").Dot("host"), jen.Lit(i), jen.Id("req"),
				)),
			)
		}
		out.Line()
	}
}

// generateViewClient emits the typed client: a streaming query's rows as
// an iterator, and for a paged query, besides one page, every page.
func generateViewClient(out *jen.File, v *view, n viewNames) {
	row := ptr(v.row.GoIdent)
	rows := jen.Qual("iter", "Seq2").Types(row.Clone(), jen.Error())
	out.Commentf("%s queries the %s view from Go: from another service over a", n.client(), n.base)
	out.Comment("gRPC connection, or in process through statefun.Runtime.ClientConn.")
	out.Type().Id(n.client()).Struct(jen.Id("client").Id(n.grpcClient()))
	out.Line()
	out.Commentf("%s returns a client that queries the %s view through cc.", n.newClient(), n.base)
	out.Func().Id(n.newClient()).Params(jen.Id("cc").Qual(grpcPkg, "ClientConnInterface")).Op("*").Id(n.client()).Block(
		jen.Return(jen.Op("&").Id(n.client()).Values(jen.Dict{jen.Id("client"): jen.Id(n.grpcNewClient()).Call(jen.Id("cc"))})),
	)
	out.Line()
	recv := func() *jen.Statement { return jen.Func().Params(jen.Id("c").Op("*").Id(n.client())) }
	params := func(q *viewQuery) []jen.Code {
		return []jen.Code{
			jen.Id("ctx").Qual("context", "Context"),
			jen.Id("req").Add(ptr(q.method.Input.GoIdent)),
			jen.Id("opts").Op("...").Qual(grpcPkg, "CallOption"),
		}
	}
	for _, q := range v.queries {
		name := q.method.GoName
		if q.stream {
			comment(out, accessDoc(docComment(q.method.Comments.Leading, fmt.Sprintf("%s runs the %s query.", name, q.method.Desc.Name())), q.access, 77))
			out.Comment("")
			out.Comment("It yields the rows as the server sends them; a failed call ends with its error.")
			out.Add(recv()).Id(name).Params(params(q)...).Add(rows.Clone()).Block(
				jen.Return(jen.Func().Params(jen.Id("yield").Func().Params(row.Clone(), jen.Error()).Bool()).Block(
					jen.Comment("Cancelled when the loop stops early, so that the stream ends."),
					jen.List(jen.Id("ctx"), jen.Id("cancel")).Op(":=").Qual("context", "WithCancel").Call(jen.Id("ctx")),
					jen.Defer().Id("cancel").Call(),
					jen.List(jen.Id("stream"), jen.Err()).Op(":=").Id("c").Dot("client").Dot(name).Call(jen.Id("ctx"), jen.Id("req"), jen.Id("opts").Op("...")),
					jen.If(jen.Err().Op("!=").Nil()).Block(
						jen.Id("yield").Call(jen.Nil(), jen.Err()),
						jen.Return(),
					),
					jen.For().Block(
						jen.List(jen.Id("r"), jen.Err()).Op(":=").Id("stream").Dot("Recv").Call(),
						jen.If(jen.Qual("errors", "Is").Call(jen.Err(), jen.Qual("io", "EOF"))).Block(jen.Return()),
						jen.If(jen.Err().Op("!=").Nil()).Block(
							jen.Id("yield").Call(jen.Nil(), jen.Err()),
							jen.Return(),
						),
						jen.If(jen.Op("!").Id("yield").Call(jen.Id("r"), jen.Nil())).Block(jen.Return()),
					),
				)),
			)
			out.Line()
			continue
		}
		comment(out, accessDoc(docComment(q.method.Comments.Leading, fmt.Sprintf("%s runs the %s query and returns one page of rows.", name, q.method.Desc.Name())), q.access, 77))
		out.Add(recv()).Id(name).Params(params(q)...).Params(ptr(q.method.Output.GoIdent), jen.Error()).Block(
			jen.Return(jen.Id("c").Dot("client").Dot(name).Call(jen.Id("ctx"), jen.Id("req"), jen.Id("opts").Op("..."))),
		)
		out.Line()
		if !q.paged() {
			continue
		}
		out.Commentf("%s runs the %s query and yields the rows of every page, asking", n.allPages(q), q.method.Desc.Name())
		out.Commentf("for the next page with its token until there is none; req.%s is the", q.pageToken.GoName)
		out.Comment("first page's token. A failed call ends with its error. req is not changed.")
		out.Add(recv()).Id(n.allPages(q)).Params(params(q)...).Add(rows.Clone()).Block(
			jen.Return(jen.Func().Params(jen.Id("yield").Func().Params(row.Clone(), jen.Error()).Bool()).Block(
				jen.Id("page").Op(":=").Qual(protoPkg, "CloneOf").Call(jen.Id("req")),
				jen.For().Block(
					jen.List(jen.Id("res"), jen.Err()).Op(":=").Id("c").Dot("client").Dot(name).Call(jen.Id("ctx"), jen.Id("page"), jen.Id("opts").Op("...")),
					jen.If(jen.Err().Op("!=").Nil()).Block(
						jen.Id("yield").Call(jen.Nil(), jen.Err()),
						jen.Return(),
					),
					jen.For(jen.List(jen.Id("_"), jen.Id("r")).Op(":=").Range().Id("res").Dot("Get"+q.rows.GoName).Call()).Block(
						jen.If(jen.Op("!").Id("yield").Call(jen.Id("r"), jen.Nil())).Block(jen.Return()),
					),
					jen.If(jen.Id("res").Dot("Get"+q.nextPageToken.GoName).Call().Op("==").Lit("")).Block(jen.Return()),
					jen.Id("page").Dot(q.pageToken.GoName).Op("=").Id("res").Dot("Get"+q.nextPageToken.GoName).Call(),
				),
			)),
		)
		out.Line()
	}
}
