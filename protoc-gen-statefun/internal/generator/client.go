package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// generateClient emits the typed client: the gRPC client with the entity
// key checked before a request leaves the process.
func generateClient(out *jen.File, e *entity, n names) {
	out.Commentf("%s calls %s entities from Go: from another service over a", n.client(), n.base)
	out.Comment("gRPC connection, or in process through statefun.Runtime.ClientConn. A request")
	out.Comment("without its entity key fails with codes.InvalidArgument before it is sent.")
	out.Type().Id(n.client()).Struct(jen.Id("client").Id(n.grpcClient()))
	out.Line()
	out.Commentf("%s returns a client that calls %s entities through cc.", n.newClient(), n.base)
	out.Func().Id(n.newClient()).Params(jen.Id("cc").Qual(grpcPkg, "ClientConnInterface")).Op("*").Id(n.client()).Block(
		jen.Return(jen.Op("&").Id(n.client()).Values(jen.Dict{jen.Id("client"): jen.Id(n.grpcNewClient()).Call(jen.Id("cc"))})),
	)
	out.Line()
	for _, m := range e.methods {
		if m.readOnly {
			continue // sending a read changes nothing: no call for it
		}
		if m.keyFromSubject {
			continue // a call carries no subject to take the entity from
		}
		call := n.call(m)
		out.Commentf("%s returns a call of %s.%s with req, for a command's Send: the", call, n.base, m.method.GoName)
		out.Comment("call is made once that command's events are durable.")
		out.Func().Id(call).Params(jen.Id("req").Add(ptr(m.method.Input.GoIdent))).Op("*").Qual(runtimePkg, "Call").Block(
			jen.Return(jen.Qual(runtimePkg, "NewCall").Call(jen.Id(n.fullMethodName(m)), jen.Id("req"))),
		)
		out.Line()
	}
	for _, m := range e.methods {
		if m.keyFromSubject {
			generateSubjectClientMethod(out, n, m)
			continue
		}
		comment(out, accessDoc(docComment(m.method.Comments.Leading, fmt.Sprintf("%s calls the %s method of the addressed entity.", m.method.GoName, m.method.Desc.Name())), m.access, 77))
		out.Func().Params(jen.Id("c").Op("*").Id(n.client())).Id(m.method.GoName).Params(
			jen.Id("ctx").Qual("context", "Context"),
			jen.Id("req").Add(ptr(m.method.Input.GoIdent)),
			jen.Id("opts").Op("...").Qual(grpcPkg, "CallOption"),
		).Params(ptr(m.method.Output.GoIdent), jen.Error()).Block(
			jen.If(jen.List(jen.Id("_"), jen.Err()).Op(":=").Id(n.key(m)).Call(jen.Id("req")), jen.Err().Op("!=").Nil()).Block(
				jen.Return(jen.Nil(), jen.Err()),
			),
			jen.Return(jen.Id("c").Dot("client").Dot(m.method.GoName).Call(jen.Id("ctx"), jen.Id("req"), jen.Id("opts").Op("..."))),
		)
		out.Line()
	}
}

// generateSubjectClientMethod emits the client method of a subscribed
// method whose request has no key fields: it takes the entity ID apart and
// sends it as the statefun.SubjectHeader metadata, where the server reads
// it (statefun.SubjectKey), as a broker message carries it in ce-subject.
func generateSubjectClientMethod(out *jen.File, n names, m *method) {
	comment(out, docComment(m.method.Comments.Leading, fmt.Sprintf("%s calls the %s method of the entity id.", m.method.GoName, m.method.Desc.Name())))
	out.Comment("")
	comment(out, wrap(fmt.Sprintf("Its request has no key fields: id travels as the ce-subject metadata (statefun.SubjectHeader), as the CloudEvents subject of a message of the %s the method subscribes to does. An empty id fails with codes.InvalidArgument before the call is sent.",
		m.subscribe.from.what()), 77))
	if m.access != "" {
		out.Comment("")
		comment(out, wrap("Access: "+m.access+".", 77))
	}
	out.Func().Params(jen.Id("c").Op("*").Id(n.client())).Id(m.method.GoName).Params(
		jen.Id("ctx").Qual("context", "Context"),
		jen.Id("id").String(),
		jen.Id("req").Add(ptr(m.method.Input.GoIdent)),
		jen.Id("opts").Op("...").Qual(grpcPkg, "CallOption"),
	).Params(ptr(m.method.Output.GoIdent), jen.Error()).Block(
		jen.If(jen.Id("id").Op("==").Lit("")).Block(
			jen.Return(jen.Nil(), jen.Qual(statusPkg, "Errorf").Call(jen.Qual(codesPkg, "InvalidArgument"),
				jen.Lit("%s takes its entity from the %s metadata; pass the entity ID as id"), jen.Id(n.fullMethodName(m)), jen.Qual(runtimePkg, "SubjectHeader"))),
		),
		jen.Comment("Set, not appended: the server takes exactly one."),
		jen.List(jen.Id("md"), jen.Id("_")).Op(":=").Qual(metadataPkg, "FromOutgoingContext").Call(jen.Id("ctx")),
		jen.If(jen.Id("md").Op("==").Nil()).Block(
			jen.Id("md").Op("=").Qual(metadataPkg, "MD").Values(),
		),
		jen.Id("md").Dot("Set").Call(jen.Qual(runtimePkg, "SubjectHeader"), jen.Id("id")),
		jen.Return(jen.Id("c").Dot("client").Dot(m.method.GoName).Call(
			jen.Qual(metadataPkg, "NewOutgoingContext").Call(jen.Id("ctx"), jen.Id("md")), jen.Id("req"), jen.Id("opts").Op("..."))),
	)
	out.Line()
}
