package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// generateWorkflowService emits the constructor that registers the
// workflow with the runtime, the configuration it shares with the testkit,
// the gRPC service implementation, the key extraction and the typed client.
func generateWorkflowService(out *jen.File, w *workflow) {
	n := workflowNamesOf(w)
	generateWorkflowConstructor(out, n)
	generateWorkflowConfig(out, w, n)
	generateWorkflowServer(out, w, n)
	for _, m := range w.methods {
		generateKey(out, n.names, m, "workflow")
	}
	generateWorkflowClient(out, w, n)
}

func generateWorkflowConstructor(out *jen.File, n workflowNames) {
	out.Commentf("%s returns the %s workflow implemented by h, ready to be", n.constructor(), n.base)
	out.Comment("hosted by the statefun runtime:")
	out.Comment("")
	out.Commentf("\tstatefun.Main(%s(h))", n.constructor())
	out.Func().Id(n.constructor()).Params(jen.Id("h").Id(n.handler())).Op("*").Qual(runtimePkg, "Entity").Block(
		jen.Return(jen.Qual(runtimePkg, "NewWorkflow").Call(jen.Id(n.config()).Call(jen.Id("h")))),
	)
	out.Line()
}

// generateWorkflowConfig emits the function that describes the workflow
// to the runtime: the server and the testkit run the same steps with the
// same policies.
func generateWorkflowConfig(out *jen.File, w *workflow, n workflowNames) {
	state := ptr(w.state.GoIdent)
	cfg := []jen.Code{
		jen.Id("Type"), jen.Id(n.workflowType()),
		jen.Id("Service"), jen.Op("&").Id(n.serviceDesc()),
	}
	if w.passivation > 0 {
		cfg = append(cfg, jen.Id("PassivationTimeout"), durationLit(w.passivation))
	}
	cfg = append(cfg, jen.Id("NewState"), jen.Func().Params().Add(state.Clone()).Block(
		jen.Return(jen.New(qual(w.state.GoIdent))),
	))
	var steps []jen.Code
	for _, s := range w.steps {
		fs := []jen.Code{
			jen.Id("Name"), jen.Lit(s.name),
			jen.Id("Run"), jen.Func().Params(
				jen.Id("c").Op("*").Qual(runtimePkg, "StepContext"), jen.Id("state").Add(state.Clone()),
			).Params(jen.Qual(runtimePkg, "Transition"), jen.Error()).Block(
				jen.Return(jen.Id("h").Dot(s.goName).Call(jen.Op("&").Id(n.stepContext()).Values(jen.Dict{jen.Id("c"): jen.Id("c")}), jen.Id("state"))),
			),
		}
		if s.timeout > 0 {
			fs = append(fs, jen.Id("Timeout"), durationLit(s.timeout))
		}
		if policy := retryPolicyLit(s.retry); policy != nil {
			fs = append(fs, jen.Id("Retry"), policy)
		}
		steps = append(steps, fields(fs...))
	}
	cfg = append(cfg,
		jen.Id("Steps"), jen.Index().Qual(runtimePkg, "WorkflowStep").Types(state.Clone()).Custom(
			jen.Options{Open: "{", Close: "}", Separator: ",", Multi: true}, steps...),
		jen.Id("NewService"), jen.Func().Params(jen.Id("host").Op("*").Qual(runtimePkg, "WorkflowHost").Types(state.Clone())).Any().Block(
			jen.Return(jen.Op("&").Id(n.server()).Add(fields(
				jen.Id("host"), jen.Id("host"),
				jen.Id("handler"), jen.Id("h"),
			))),
		),
	)
	out.Commentf("%s describes the %s workflow implemented by h to the runtime,", n.config(), n.base)
	out.Commentf("for %s and %s.", n.constructor(), n.newTestKit())
	out.Func().Id(n.config()).Params(jen.Id("h").Id(n.handler())).Qual(runtimePkg, "WorkflowConfig").Types(state.Clone()).Block(
		jen.Return(jen.Qual(runtimePkg, "WorkflowConfig").Types(state.Clone()).Add(fields(cfg...))),
	)
	out.Line()
}

// retryPolicyLit is a RetryPolicy literal with the fields the options set,
// or nil when they set none (the runtime's defaults).
func retryPolicyLit(r retryPolicy) jen.Code {
	var fs []jen.Code
	if r.maxAttempts > 0 {
		fs = append(fs, jen.Id("MaxAttempts"), jen.Lit(int(r.maxAttempts)))
	}
	if r.initialBackoff > 0 {
		fs = append(fs, jen.Id("InitialBackoff"), durationLit(r.initialBackoff))
	}
	if r.maxBackoff > 0 {
		fs = append(fs, jen.Id("MaxBackoff"), durationLit(r.maxBackoff))
	}
	if r.failover != "" {
		fs = append(fs, jen.Id("Failover"), jen.Lit(r.failover))
	}
	if len(fs) == 0 {
		return nil
	}
	return jen.Qual(runtimePkg, "RetryPolicy").Add(fields(fs...))
}

func generateWorkflowServer(out *jen.File, w *workflow, n workflowNames) {
	state := ptr(w.state.GoIdent)
	out.Commentf("%s serves %s's gRPC methods: it extracts the workflow key", n.server(), n.base)
	out.Comment("from each request and runs the method through the runtime.")
	out.Type().Id(n.server()).Struct(
		jen.Id(n.grpcUnimpl()),
		jen.Id("host").Op("*").Qual(runtimePkg, "WorkflowHost").Types(state.Clone()),
		jen.Id("handler").Id(n.handler()),
	)
	out.Line()
	out.Var().Id("_").Id(n.grpcServer()).Op("=").Parens(jen.Op("*").Id(n.server())).Parens(jen.Nil())
	out.Line()
	for _, m := range w.methods {
		in, res := ptr(m.method.Input.GoIdent), ptr(m.method.Output.GoIdent)
		ctxType, runtimeCtx := n.context(), "WorkflowContext"
		args := []jen.Code{jen.Id("ctx"), jen.Id("s").Dot("host"), jen.Id("id")}
		var run string
		switch {
		case m.readOnly:
			run, ctxType, runtimeCtx = "ReadWorkflow", n.readContext(), "WorkflowReadContext"
		case m.start:
			run = "StartWorkflow"
			args = append(args, jen.Lit(n.rpcName(m)))
		default:
			run = "SignalWorkflow"
			args = append(args, jen.Lit(n.rpcName(m)))
		}
		args = append(args, jen.Func().Params(
			jen.Id("c").Op("*").Qual(runtimePkg, runtimeCtx),
			jen.Id("state").Add(state.Clone()),
		).Params(res.Clone(), jen.Error()).Block(
			jen.Return(jen.Id("s").Dot("handler").Dot(m.method.GoName).Call(
				jen.Op("&").Id(ctxType).Values(jen.Dict{jen.Id("c"): jen.Id("c")}),
				jen.Id("state"), jen.Id("req"),
			)),
		))
		out.Func().Params(jen.Id("s").Op("*").Id(n.server())).Id(m.method.GoName).Params(
			jen.Id("ctx").Qual("context", "Context"), jen.Id("req").Add(in),
		).Params(res.Clone(), jen.Error()).Block(
			jen.List(jen.Id("id"), jen.Err()).Op(":=").Id(n.key(m)).Call(jen.Id("req")),
			jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
			jen.Return(jen.Qual(runtimePkg, run).Call(args...)),
		)
		out.Line()
	}
}

// generateWorkflowClient emits the typed client, with the workflow key
// checked before a request leaves the process, and the call constructors.
func generateWorkflowClient(out *jen.File, w *workflow, n workflowNames) {
	out.Commentf("%s calls %s workflows from Go: from another service over a", n.client(), n.base)
	out.Comment("gRPC connection, or in process through statefun.Runtime.ClientConn. A request")
	out.Comment("without its workflow key fails with codes.InvalidArgument before it is sent.")
	out.Type().Id(n.client()).Struct(jen.Id("client").Id(n.grpcClient()))
	out.Line()
	out.Commentf("%s returns a client that calls %s workflows through cc.", n.newClient(), n.base)
	out.Func().Id(n.newClient()).Params(jen.Id("cc").Qual(grpcPkg, "ClientConnInterface")).Op("*").Id(n.client()).Block(
		jen.Return(jen.Op("&").Id(n.client()).Values(jen.Dict{jen.Id("client"): jen.Id(n.grpcNewClient()).Call(jen.Id("cc"))})),
	)
	out.Line()
	for _, m := range w.methods {
		if m.readOnly {
			continue // sending a read changes nothing: no call for it
		}
		call := n.call(m)
		out.Commentf("%s returns a call of %s.%s with req, for a command's Send or", call, n.base, m.method.GoName)
		out.Comment("ScheduleCall: the call is made once that command's changes are durable.")
		out.Func().Id(call).Params(jen.Id("req").Add(ptr(m.method.Input.GoIdent))).Op("*").Qual(runtimePkg, "Call").Block(
			jen.Return(jen.Qual(runtimePkg, "NewCall").Call(jen.Id(n.fullMethodName(m)), jen.Id("req"))),
		)
		out.Line()
	}
	for _, m := range w.methods {
		comment(out, accessDoc(docComment(m.method.Comments.Leading, fmt.Sprintf("%s calls the %s method of the addressed workflow.", m.method.GoName, m.method.Desc.Name())), m.access, 77))
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
