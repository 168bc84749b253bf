package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

// generateWorkflowTestKit emits the workflow's testkit: its methods and
// steps run directly against a state held in the test, through the
// runtime's WorkflowTestKit, with one method per RPC.
func generateWorkflowTestKit(out *jen.File, w *workflow) {
	n := workflowNamesOf(w)
	state := ptr(w.state.GoIdent)
	out.Commentf("%s runs %s's methods and steps in a unit test: no server, no", n.testKit(), n.base)
	out.Comment("store, no goroutine, no clock but the one SetNow sets. Call the workflow's")
	out.Comment("RPCs with the method of the same name (a start first), run its steps with")
	out.Comment("RunStep or Run, and check the replies, State and Status; OnCall answers the")
	out.Comment("calls its steps make.")
	out.Type().Id(n.testKit()).Struct(
		jen.Id("t").Qual(runtimePkg, "TB"),
		jen.Id("kit").Op("*").Qual(runtimePkg, "WorkflowTestKit").Types(state.Clone()),
		jen.Id("handler").Id(n.handler()),
	)
	out.Line()
	out.Commentf("%s returns a testkit that runs h, for a workflow not started", n.newTestKit())
	out.Comment("yet. Pass the test's *testing.T as t.")
	out.Func().Id(n.newTestKit()).Params(
		jen.Id("t").Qual(runtimePkg, "TB"), jen.Id("h").Id(n.handler()),
	).Op("*").Id(n.testKit()).Block(
		jen.Id("t").Dot("Helper").Call(),
		jen.Return(jen.Op("&").Id(n.testKit()).Add(fields(
			jen.Id("t"), jen.Id("t"),
			jen.Id("kit"), jen.Qual(runtimePkg, "NewWorkflowTestKit").Call(jen.Id("t"), jen.Id(n.config()).Call(jen.Id("h"))),
			jen.Id("handler"), jen.Id("h"),
		))),
	)
	out.Line()
	for _, m := range w.methods {
		generateWorkflowTestKitMethod(out, w, n, m)
	}
	generateWorkflowTestKitForwarders(out, w, n)
}

func generateWorkflowTestKitMethod(out *jen.File, w *workflow, n workflowNames, m *method) {
	state := ptr(w.state.GoIdent)
	in, res := ptr(m.method.Input.GoIdent), ptr(m.method.Output.GoIdent)
	name := n.workflowTestKitMethod(w, m)
	run, ctxType, runtimeCtx := "TestSignalWorkflow", n.context(), "WorkflowContext"
	doc := fmt.Sprintf("%s sends the %s signal with req to the testkit's workflow.", name, m.method.Desc.Name())
	switch {
	case m.start:
		run = "TestStartWorkflow"
		doc = fmt.Sprintf("%s runs the %s start method with req: it starts the testkit's workflow.", name, m.method.Desc.Name())
	case m.readOnly:
		run, ctxType, runtimeCtx = "TestReadWorkflow", n.readContext(), "WorkflowReadContext"
		doc = fmt.Sprintf("%s runs the %s read with req against the testkit's workflow.", name, m.method.Desc.Name())
	}
	out.Comment(doc)
	out.Func().Params(jen.Id("k").Op("*").Id(n.testKit())).Id(name).Params(
		jen.Id("req").Add(in),
	).Op("*").Qual(runtimePkg, "WorkflowTestResult").Types(res.Clone()).Block(
		jen.Id("k").Dot("t").Dot("Helper").Call(),
		jen.Return(jen.Qual(runtimePkg, run).Call(
			jen.Id("k").Dot("kit"), jen.Lit(n.rpcName(m)), jen.Id("req"), jen.Id(n.key(m)),
			jen.Func().Params(
				jen.Id("c").Op("*").Qual(runtimePkg, runtimeCtx),
				jen.Id("state").Add(state.Clone()),
			).Params(res.Clone(), jen.Error()).Block(
				jen.Return(jen.Id("k").Dot("handler").Dot(m.method.GoName).Call(
					jen.Op("&").Id(ctxType).Values(jen.Dict{jen.Id("c"): jen.Id("c")}),
					jen.Id("state"), jen.Id("req"),
				)),
			),
		)),
	)
	out.Line()
}

// generateWorkflowTestKitForwarders emits the testkit's own methods, which
// pass through to the runtime's WorkflowTestKit.
func generateWorkflowTestKitForwarders(out *jen.File, w *workflow, n workflowNames) {
	state := ptr(w.state.GoIdent)
	recv := func() *jen.Statement { return jen.Func().Params(jen.Id("k").Op("*").Id(n.testKit())) }
	status := jen.Op("*").Qual(statefunv1Pkg, "WorkflowStatus")
	helper := jen.Id("k").Dot("t").Dot("Helper").Call()

	out.Comment("OnCall answers the calls the workflow's steps make through their context's")
	out.Comment("Conn to method (a full gRPC method name, such as a generated")
	out.Comment("<Service>_<Method>_FullMethodName) with fn.")
	out.Add(recv()).Id("OnCall").Params(
		jen.Id("method").String(),
		jen.Id("fn").Func().Params(jen.Id("req").Qual(protoPkg, "Message")).Params(jen.Qual(protoPkg, "Message"), jen.Error()),
	).Block(
		helper.Clone(),
		jen.Id("k").Dot("kit").Dot("OnCall").Call(jen.Id("method"), jen.Id("fn")),
	)
	out.Line()
	out.Comment("RunStep runs the current step once and applies its outcome.")
	out.Add(recv()).Id("RunStep").Params().Op("*").Qual(runtimePkg, "StepTestResult").Block(
		helper.Clone(),
		jen.Return(jen.Id("k").Dot("kit").Dot("RunStep").Call()),
	)
	out.Line()
	out.Comment("Run runs steps, at most maxSteps, until the workflow waits, ends or fails,")
	out.Comment("and returns its status then.")
	out.Add(recv()).Id("Run").Params(jen.Id("maxSteps").Int()).Add(status.Clone()).Block(
		helper.Clone(),
		jen.Return(jen.Id("k").Dot("kit").Dot("Run").Call(jen.Id("maxSteps"))),
	)
	out.Line()
	out.Comment("Status returns the workflow's progress.")
	out.Add(recv()).Id("Status").Params().Add(status.Clone()).Block(
		jen.Return(jen.Id("k").Dot("kit").Dot("Status").Call()),
	)
	out.Line()
	out.Comment("State returns a copy of the workflow's state.")
	out.Add(recv()).Id("State").Params().Add(state.Clone()).Block(
		jen.Return(jen.Id("k").Dot("kit").Dot("State").Call()),
	)
	out.Line()
	out.Comment("SetNow sets the testkit's clock, which sleeps, waits and backoffs count from.")
	out.Add(recv()).Id("SetNow").Params(jen.Id("now").Qual("time", "Time")).Block(
		jen.Id("k").Dot("kit").Dot("SetNow").Call(jen.Id("now")),
	)
	out.Line()
}

// workflowTestKitReserved are the workflow testkit's own methods, which an
// RPC of the same name must not shadow.
var workflowTestKitReserved = map[string]bool{"OnCall": true, "RunStep": true, "Run": true, "Status": true, "State": true, "SetNow": true}

// workflowTestKitMethod returns the name of the testkit method that runs
// m: the RPC's name, or, when that is one of the testkit's own methods, the
// name with "Start", "Signal" or "Read" appended (then "2", "3", ...
// until unique).
func (n workflowNames) workflowTestKitMethod(w *workflow, m *method) string {
	if !workflowTestKitReserved[m.method.GoName] {
		return m.method.GoName
	}
	suffix := "Signal"
	switch {
	case m.start:
		suffix = "Start"
	case m.readOnly:
		suffix = "Read"
	}
	taken := map[string]bool{}
	for _, other := range w.methods {
		taken[other.method.GoName] = true
	}
	name := m.method.GoName + suffix
	for i := 2; taken[name] || workflowTestKitReserved[name]; i++ {
		name = fmt.Sprintf("%s%s%d", m.method.GoName, suffix, i)
	}
	return name
}
