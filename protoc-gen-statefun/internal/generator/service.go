package generator

import (
	"fmt"
	"time"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// generateService emits the constructor that registers the entity with the
// runtime, the gRPC service implementation and the key extraction.
func generateService(out *jen.File, e *entity, n names) {
	generateConstructor(out, e, n)
	generateServer(out, e, n)
	for _, m := range e.methods {
		if !m.keyFromSubject {
			generateKey(out, n, m, "entity")
		}
	}
}

func generateConstructor(out *jen.File, e *entity, n names) {
	state := ptr(e.state.GoIdent)
	cfg := []jen.Code{
		jen.Id("Type"), jen.Id(n.entityType()),
	}
	cfg = append(cfg, kindField(e)...)
	cfg = append(cfg, jen.Id("Service"), jen.Op("&").Id(n.serviceDesc()))
	if e.snapshotEvery > 0 {
		cfg = append(cfg, jen.Id("SnapshotEvery"), jen.Lit(int(e.snapshotEvery)))
	}
	if e.passivation > 0 {
		cfg = append(cfg, jen.Id("PassivationTimeout"), durationLit(e.passivation))
	}
	cfg = append(cfg, stateFields(e, n)...)
	cfg = append(cfg,
		jen.Id("NewService"), jen.Func().Params(jen.Id("host").Op("*").Qual(runtimePkg, "Host").Types(state.Clone())).Any().Block(
			jen.Return(jen.Op("&").Id(n.server()).Add(fields(
				jen.Id("host"), jen.Id("host"),
				jen.Id("handler"), jen.Id("h"),
			))),
		),
	)
	cfg = append(cfg, subscriptionsField(e, n)...)
	out.Commentf("%s returns the %s entity implemented by h, ready to be", n.constructor(), n.base)
	out.Comment("hosted by the statefun runtime:")
	out.Comment("")
	out.Commentf("\tstatefun.Main(%s(h))", n.constructor())
	out.Func().Id(n.constructor()).Params(jen.Id("h").Id(n.handler())).Op("*").Qual(runtimePkg, "Entity").Block(
		jen.Return(jen.Qual(runtimePkg, "NewEntity").Call(
			jen.Qual(runtimePkg, "EntityConfig").Types(state.Clone()).Add(fields(cfg...)),
		)),
	)
	out.Line()
}

// kindField is the Kind of an EntityConfig literal, as a key and a value.
func kindField(e *entity) []jen.Code {
	switch e.kind {
	case eventSourced:
		return []jen.Code{jen.Id("Kind"), jen.Qual(runtimePkg, "EventSourced")}
	case keyValue:
		return []jen.Code{jen.Id("Kind"), jen.Qual(runtimePkg, "KeyValue")}
	}
	return nil
}

// stateFields are the fields of an EntityConfig literal that make and
// change the state, as keys and values: the server and the testkit use the
// same ones.
func stateFields(e *entity, n names) []jen.Code {
	state := ptr(e.state.GoIdent)
	cfg := []jen.Code{
		jen.Id("NewState"), jen.Func().Params().Add(state.Clone()).Block(
			jen.Return(jen.New(qual(e.state.GoIdent))),
		),
	}
	if e.kind == eventSourced {
		cfg = append(cfg,
			jen.Id("NewEvent"), jen.Id(n.newEvent()),
			jen.Id("ApplyEvent"), jen.Func().Params(
				jen.Id("state").Add(state.Clone()), jen.Id("event").Qual(protoPkg, "Message"),
			).Block(jen.Id(n.applyEvent()).Call(jen.Id("h"), jen.Id("state"), jen.Id("event"))),
		)
	}
	return cfg
}

func durationLit(d time.Duration) jen.Code {
	switch {
	case d%time.Hour == 0:
		return jen.Lit(int(d/time.Hour)).Op("*").Qual("time", "Hour")
	case d%time.Minute == 0:
		return jen.Lit(int(d/time.Minute)).Op("*").Qual("time", "Minute")
	case d%time.Second == 0:
		return jen.Lit(int(d/time.Second)).Op("*").Qual("time", "Second")
	case d%time.Millisecond == 0:
		return jen.Lit(int(d/time.Millisecond)).Op("*").Qual("time", "Millisecond")
	}
	return jen.Qual("time", "Duration").Call(jen.Lit(int64(d)))
}

func generateServer(out *jen.File, e *entity, n names) {
	state := ptr(e.state.GoIdent)
	out.Commentf("%s serves %s's gRPC methods: it extracts the entity key", n.server(), n.base)
	out.Comment("from each request and runs the handler through the runtime.")
	out.Type().Id(n.server()).Struct(
		jen.Id(n.grpcUnimpl()),
		jen.Id("host").Op("*").Qual(runtimePkg, "Host").Types(state.Clone()),
		jen.Id("handler").Id(n.handler()),
	)
	out.Line()
	out.Var().Id("_").Id(n.grpcServer()).Op("=").Parens(jen.Op("*").Id(n.server())).Parens(jen.Nil())
	out.Line()
	for _, m := range e.methods {
		in, res := ptr(m.method.Input.GoIdent), ptr(m.method.Output.GoIdent)
		run, ctxType, runtimeCtx := "Command", n.context(), "CommandContext"
		if m.readOnly {
			run, ctxType, runtimeCtx = "Read", n.readContext(), "ReadContext"
		}
		key := jen.Id(n.key(m)).Call(jen.Id("req"))
		if m.keyFromSubject {
			// The request has no key: the entity comes with the call.
			key = jen.Qual(runtimePkg, "SubjectKey").Call(jen.Id("ctx"), jen.Id(n.fullMethodName(m)))
		}
		out.Func().Params(jen.Id("s").Op("*").Id(n.server())).Id(m.method.GoName).Params(
			jen.Id("ctx").Qual("context", "Context"), jen.Id("req").Add(in),
		).Params(res.Clone(), jen.Error()).Block(
			jen.List(jen.Id("id"), jen.Err()).Op(":=").Add(key),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
			jen.Return(jen.Qual(runtimePkg, run).Call(
				jen.Id("ctx"), jen.Id("s").Dot("host"), jen.Id("id"),
				jen.Func().Params(
					jen.Id("c").Op("*").Qual(runtimePkg, runtimeCtx),
					jen.Id("state").Add(state.Clone()),
				).Params(res.Clone(), jen.Error()).Block(
					jen.Return(jen.Id("s").Dot("handler").Dot(m.method.GoName).Call(
						jen.Op("&").Id(ctxType).Values(jen.Dict{jen.Id("c"): jen.Id("c")}),
						jen.Id("state"), jen.Id("req"),
					)),
				),
			)),
		)
		out.Line()
	}
}

// generateKey emits the function that reads the ID of the entity or
// workflow (kind) from a request. An empty string or a zero integer means
// the caller forgot the key.
func generateKey(out *jen.File, n names, m *method, kind string) {
	in := m.method.Input
	var body []jen.Code
	parts := make([]jen.Code, len(m.key))
	for i, k := range m.key {
		get := jen.Id("req")
		for _, f := range k.path {
			get = get.Dot("Get" + f.GoName).Call()
		}
		v := jen.Id(fmt.Sprintf("k%d", i))
		body = append(body,
			jen.Add(v.Clone()).Op(":=").Add(get),
			jen.If(v.Clone().Op("==").Add(zeroOf(k.leaf().Desc.Kind()))).Block(
				jen.Return(jen.Lit(""), jen.Qual(runtimePkg, "MissingKeyError").Call(jen.Lit(string(in.Desc.FullName())), jen.Lit(k.name()))),
			),
		)
		parts[i] = keyString(v.Clone(), k.leaf().Desc.Kind())
	}
	out.Commentf("%s returns the ID of the %s %s that req addresses.", n.key(m), n.base, kind)
	var result jen.Code
	if len(parts) == 1 {
		result = parts[0]
	} else {
		result = jen.Qual(runtimePkg, "JoinKey").Call(parts...)
	}
	body = append(body, jen.Return(result, jen.Nil()))
	out.Func().Id(n.key(m)).Params(jen.Id("req").Add(ptr(in.GoIdent))).Params(jen.String(), jen.Error()).Block(body...)
	out.Line()
}

func zeroOf(k protoreflect.Kind) jen.Code {
	if k == protoreflect.StringKind {
		return jen.Lit("")
	}
	return jen.Lit(0)
}

func keyString(v *jen.Statement, k protoreflect.Kind) jen.Code {
	switch k {
	case protoreflect.StringKind:
		return v
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return jen.Qual("strconv", "FormatInt").Call(v, jen.Lit(10))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return jen.Qual("strconv", "FormatUint").Call(v, jen.Lit(10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return jen.Qual("strconv", "FormatUint").Call(jen.Uint64().Call(v), jen.Lit(10))
	default: // 32-bit signed
		return jen.Qual("strconv", "FormatInt").Call(jen.Int64().Call(v), jen.Lit(10))
	}
}
