package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// generateConsumer emits the interface a consumer implements, its context
// and the constructor that registers it with the runtime.
func generateConsumer(out *jen.File, c *consumer) {
	n := consumerNamesOf(c)
	src := c.source
	out.Commentf("%s is the name %s's position is stored under.", n.name(), n.base)
	out.Const().Id(n.name()).Op("=").Lit(c.name)
	out.Line()

	out.Commentf("%s consumes the events of the %s entity (type %q): the", n.handler(), src.service.GoName, src.typ)
	out.Comment("runtime calls one method per committed event, in order per entity, at least")
	out.Comment("once. A method that returns an error is called again with the same event,")
	out.Comment("after a backoff; the entity's later events wait, other entities' do not.")
	out.Comment("Because delivery is at least once, handlers must tolerate a repeat.")
	if doc := docComment(c.service.Comments.Leading, ""); doc != "" {
		out.Comment("")
		comment(out, doc)
	}
	var methods []jen.Code
	for i, h := range c.handlers {
		if i > 0 {
			methods = append(methods, jen.Line())
		}
		methods = append(methods, commentLines(docComment(h.method.Comments.Leading,
			fmt.Sprintf("%s handles %s events.", h.method.GoName, h.event.message.GoIdent.GoName)))...)
		methods = append(methods, jen.Id(h.method.GoName).Params(
			jen.Id("ctx").Op("*").Id(n.context()),
			jen.Id("event").Add(ptr(h.event.message.GoIdent)),
		).Error())
	}
	out.Type().Id(n.handler()).Interface(methods...)
	out.Line()

	out.Commentf("%s is given to %s's handlers.", n.context(), n.base)
	out.Type().Id(n.context()).Struct(jen.Id("c").Op("*").Qual(runtimePkg, "EventContext"))
	out.Line()
	accessor := func(doc, name string, result jen.Code) {
		comment(out, doc)
		out.Func().Params(jen.Id("c").Op("*").Id(n.context())).Id(name).Params().Add(result).Block(
			jen.Return(jen.Id("c").Dot("c").Dot(name).Call()),
		)
		out.Line()
	}
	accessor("Context returns the delivery's context; it ends when the server stops.", "Context", jen.Qual("context", "Context"))
	accessor("EntityID returns the ID of the entity that emitted the event.", "EntityID", jen.String())
	accessor("Seq returns the event's position in its entity's history, from 1.", "Seq", jen.Int64())
	accessor("ClientConn returns a connection to the entities of this server, for their\ngenerated clients (New<Entity>EntityClient).", "ClientConn", jen.Qual(grpcPkg, "ClientConnInterface"))

	var cases []jen.Code
	for _, h := range c.handlers {
		cases = append(cases, jen.Case(jen.Lit(h.event.typ)).Block(
			jen.Id("e").Op(":=").New(qual(h.event.message.GoIdent)),
			jen.If(jen.Err().Op(":=").Qual(protoPkg, "Unmarshal").Call(jen.Id("payload"), jen.Id("e")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Qual(runtimePkg, "DecodeEventError").Call(jen.Id("eventType"), jen.Err())),
			),
			jen.Return(jen.Id("h").Dot(h.method.GoName).Call(jen.Op("&").Id(n.context()).Values(jen.Dict{jen.Id("c"): jen.Id("c")}), jen.Id("e"))),
		))
	}
	cfg := []jen.Code{
		jen.Id("Name"), jen.Id(n.name()),
		jen.Id("EntityType"), jen.Lit(src.typ),
	}
	if c.startFromNow {
		cfg = append(cfg, jen.Id("StartFromNow"), jen.True())
	}
	cfg = append(cfg, jen.Id("Handle"), jen.Func().Params(
		jen.Id("c").Op("*").Qual(runtimePkg, "EventContext"), jen.Id("eventType").String(), jen.Id("payload").Index().Byte(),
	).Error().Block(
		jen.Switch(jen.Id("eventType")).Block(cases...),
		jen.Comment("Events this consumer has no method for are skipped."),
		jen.Return(jen.Nil()),
	))
	out.Commentf("%s returns the %s consumer implemented by h, ready to run", n.constructor(), n.base)
	out.Comment("in a statefun server:")
	out.Comment("")
	out.Commentf("\tstatefun.Main(..., %s(h))", n.constructor())
	out.Func().Id(n.constructor()).Params(jen.Id("h").Id(n.handler())).Op("*").Qual(runtimePkg, "Consumer").Block(
		jen.Return(jen.Qual(runtimePkg, "NewConsumer").Call(jen.Qual(runtimePkg, "ConsumerConfig").Add(fields(cfg...)))),
	)
	out.Line()
}
