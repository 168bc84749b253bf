package generator

import (
	"fmt"
	"strings"
	"time"

	"github.com/dave/jennifer/jen"
)

const statefunv1Pkg = "github.com/statefun-go/statefun/gen/statefun/v1"

// generateWorkflow emits what the user implements for a workflow and the
// types their methods receive: the type constant, the step values, the
// handler interface and the three contexts.
func generateWorkflow(out *jen.File, w *workflow) {
	n := workflowNamesOf(w)
	out.Commentf("%s is the stored type name of %s workflows. It is part of the", n.workflowType(), n.base)
	out.Comment("stored data: it never changes, whatever the Go or proto names become.")
	out.Const().Id(n.workflowType()).Op("=").Lit(w.typ)
	out.Line()
	generateSteps(out, w, n)
	generateWorkflowHandler(out, w, n)
	generateWorkflowContexts(out, w, n)
}

// generateSteps emits the step type and one value per step. Its only field
// is unexported, so code outside the package cannot make a step that the
// workflow does not declare.
func generateSteps(out *jen.File, w *workflow, n workflowNames) {
	vars := make([]string, len(w.steps))
	for i, s := range w.steps {
		vars[i] = n.stepVar(s)
	}
	comment(out, wrap(fmt.Sprintf("%s is a step of the %s workflow: %s. No other value can be made outside this package, so naming a step the workflow does not declare does not compile. The zero %s{} is no step: WaitForSignal takes it as onTimeout to fail the workflow when the wait times out, and anywhere else it fails the call with codes.Internal.",
		n.step(), n.base, orList(vars), n.step()), 77))
	out.Type().Id(n.step()).Struct(jen.Id("name").String())
	out.Line()
	out.Comment("String returns the step's name, as stored with the workflow's progress.")
	out.Func().Params(jen.Id("s").Id(n.step())).Id("String").Params().String().Block(
		jen.Return(jen.Id("s").Dot("name")),
	)
	out.Line()
	comment(out, wrap(fmt.Sprintf("The steps of %s, in declaration order. A started workflow runs %s first, unless its start method chooses another.", n.base, vars[0]), 77))
	var defs []jen.Code
	for _, s := range w.steps {
		defs = append(defs,
			jen.Commentf("%s is step %s, run by %s.%s.", n.stepVar(s), s.name, n.handler(), s.goName),
			jen.Id(n.stepVar(s)).Op("=").Id(n.step()).Values(jen.Dict{jen.Id("name"): jen.Lit(s.name)}),
		)
	}
	out.Var().Defs(defs...)
	out.Line()
}

func generateWorkflowHandler(out *jen.File, w *workflow, n workflowNames) {
	out.Commentf("%s is what a %s workflow provides: a method per RPC and a", n.handler(), n.base)
	out.Commentf("method per step. Pass an implementation to %s.", n.constructor())
	out.Comment("")
	for _, l := range []string{
		"Start and signal methods change the state in place and may choose, through",
		"their context, what the workflow does next; what they change is stored",
		"before the caller gets the reply, and dropped when they return an error. A",
		"start that chooses nothing runs the first step; a signal that chooses nothing",
		"resumes a workflow waiting for one with the step it waits to run. A workflow",
		"starts once: a second start fails with codes.AlreadyExists. Read methods must",
		"not change the state.",
		"",
		"The runtime runs the steps one at a time, in the background, each attempt",
		"within the step's timeout. A step changes the state in place and returns",
		"what comes next (ctx.GoTo, ctx.Sleep, ctx.End...); the change and that",
		"outcome are stored before the next step starts. A failed attempt (an error,",
		"a panic or its timeout) keeps none of its changes and is retried by the",
		"step's retry policy; an attempt cut short by a crash, or overtaken by a",
		"signal that changed the state, runs again: steps must be safe to repeat.",
		"Calls made with ctx.Context() carry the step's idempotency key, the same for",
		"every attempt, so an entity called from a repeated step applies the call",
		"once. A step run again after a signal must still make the calls the first",
		"run made (their effects stand): act on a signal's change in the next step.",
	} {
		out.Comment(l)
	}
	if doc := docComment(w.service.Comments.Leading, ""); doc != "" {
		out.Comment("")
		comment(out, doc)
	}
	state := ptr(w.state.GoIdent)
	var methods []jen.Code
	for _, m := range w.methods {
		if len(methods) > 0 {
			methods = append(methods, jen.Line())
		}
		ctxType := n.context()
		fallback := fmt.Sprintf("%s handles the %s signal.", m.method.GoName, m.method.Desc.Name())
		switch {
		case m.start:
			fallback = fmt.Sprintf("%s starts the workflow (RPC %s).", m.method.GoName, m.method.Desc.Name())
		case m.readOnly:
			ctxType = n.readContext()
			fallback = fmt.Sprintf("%s handles the %s read; it must not change the state.", m.method.GoName, m.method.Desc.Name())
		}
		methods = append(methods, commentLines(accessDoc(docComment(m.method.Comments.Leading, fallback), m.access, 73))...)
		methods = append(methods,
			jen.Id(m.method.GoName).Params(
				jen.Id("ctx").Op("*").Id(ctxType),
				jen.Id("state").Add(state.Clone()),
				jen.Id("req").Add(ptr(m.method.Input.GoIdent)),
			).Params(ptr(m.method.Output.GoIdent), jen.Error()),
		)
	}
	for _, s := range w.steps {
		if len(methods) > 0 {
			methods = append(methods, jen.Line())
		}
		methods = append(methods, commentLines(stepDoc(s))...)
		methods = append(methods,
			jen.Id(s.goName).Params(
				jen.Id("ctx").Op("*").Id(n.stepContext()),
				jen.Id("state").Add(state.Clone()),
			).Params(jen.Qual(runtimePkg, "Transition"), jen.Error()),
		)
	}
	out.Type().Id(n.handler()).Interface(methods...)
	out.Line()
}

// stepDoc documents a step's method with the policy it runs under.
func stepDoc(s *step) string {
	timeout := "the runtime's default step timeout (30s)"
	if s.timeout > 0 {
		timeout = shortDuration(s.timeout)
	}
	attempts := "it is retried without limit"
	if s.retry.maxAttempts > 0 {
		attempts = fmt.Sprintf("it is tried at most %d times", s.retry.maxAttempts)
	}
	initial, max := 100*time.Millisecond, time.Minute
	if s.retry.initialBackoff > 0 {
		initial = s.retry.initialBackoff
	}
	if s.retry.maxBackoff > 0 {
		max = s.retry.maxBackoff
	}
	doc := fmt.Sprintf("%s runs step %s. Each attempt may run for %s; %s, backing off from %s to %s", s.goName, s.name, timeout, attempts, shortDuration(initial), shortDuration(max))
	switch {
	case s.retry.maxAttempts == 0:
		doc += "."
	case s.retry.failover != "":
		doc += fmt.Sprintf(", then the workflow goes on with step %s.", s.retry.failover)
	default:
		doc += ", then the workflow fails."
	}
	return wrap(doc, 77)
}

// shortDuration formats d as time.Duration does, without zero units:
// "1m" for "1m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// orList joins "a", "b" and "c" as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

func generateWorkflowContexts(out *jen.File, w *workflow, n workflowNames) {
	step := func(name string) jen.Code { return jen.Id(name).Id(n.step()) }
	toString := func(name string) jen.Code { return jen.Id(name).Dot("name") }

	// The start and signal context.
	out.Commentf("%s is given to %s's start and signal methods. Its GoTo, Sleep,", n.context(), n.base)
	out.Comment("Pause, WaitForSignal, End and Fail choose what the workflow does next; they")
	out.Comment("take effect when the method returns without error, and the last call wins.")
	out.Type().Id(n.context()).Struct(jen.Id("c").Op("*").Qual(runtimePkg, "WorkflowContext"))
	out.Line()
	workflowAccessors(out, n.context(), "the start or signal")
	transitions(out, n, n.context(), nil, step, toString)

	if w.hasRead() {
		out.Commentf("%s is given to %s's read methods: it has no way to change", n.readContext(), n.base)
		out.Comment("the workflow.")
		out.Type().Id(n.readContext()).Struct(jen.Id("c").Op("*").Qual(runtimePkg, "WorkflowReadContext"))
		out.Line()
		workflowAccessors(out, n.readContext(), "the read")
	}

	// The step context.
	sc := n.stepContext()
	recv := func() *jen.Statement { return jen.Func().Params(jen.Id("c").Op("*").Id(sc)) }
	out.Commentf("%s is given to %s's steps. Its GoTo, Sleep, Pause, WaitForSignal,", sc, n.base)
	out.Comment("End and Fail make the Transition a step returns.")
	out.Type().Id(sc).Struct(jen.Id("c").Op("*").Qual(runtimePkg, "StepContext"))
	out.Line()
	out.Comment("Context returns the attempt's context. Its deadline is the step's timeout, and")
	out.Comment("calls made with it carry the step's idempotency key, the same for every")
	out.Comment("attempt: an entity applies such a call once, however often the step runs.")
	out.Add(recv()).Id("Context").Params().Qual("context", "Context").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Context").Call()),
	)
	out.Line()
	out.Comment("ContextFor returns a context like Context's with an idempotency key of its")
	out.Comment("own, named by call: for a second call to the same entity in one step, which")
	out.Comment("with Context's key would get the first call's answer.")
	out.Add(recv()).Id("ContextFor").Params(jen.Id("call").String()).Qual("context", "Context").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("ContextFor").Call(jen.Id("call"))),
	)
	out.Line()
	out.Comment("Conn returns a connection to the entities of this server, for their")
	out.Comment("generated clients (New<Entity>EntityClient).")
	out.Add(recv()).Id("Conn").Params().Qual(grpcPkg, "ClientConnInterface").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Conn").Call()),
	)
	out.Line()
	out.Comment("WorkflowID returns the ID of the workflow the step belongs to.")
	out.Add(recv()).Id("WorkflowID").Params().String().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("WorkflowID").Call()),
	)
	out.Line()
	out.Comment("Step returns the step that is running.")
	out.Add(recv()).Id("Step").Params().Id(n.step()).Block(
		jen.Return(jen.Id(n.step()).Values(jen.Dict{jen.Id("name"): jen.Id("c").Dot("c").Dot("Step").Call()})),
	)
	out.Line()
	out.Comment("Attempt returns the attempt at the step that is running, 1 for the first.")
	out.Add(recv()).Id("Attempt").Params().Int().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Attempt").Call()),
	)
	out.Line()
	out.Comment("IdempotencyKey returns the key calls made with Context carry: the same for")
	out.Comment("every attempt at one entry into the step, another for the next entry. Pass it")
	out.Comment("to services outside statefun that take one.")
	out.Add(recv()).Id("IdempotencyKey").Params().String().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("IdempotencyKey").Call()),
	)
	out.Line()
	out.Comment("Status returns the workflow's progress as the step began: among it the")
	out.Comment("last error (why an earlier attempt failed, or why a failover step runs)")
	out.Comment("and the latest step runs.")
	out.Add(recv()).Id("Status").Params().Op("*").Qual(statefunv1Pkg, "WorkflowStatus").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Status").Call()),
	)
	out.Line()
	transitions(out, n, sc, jen.Qual(runtimePkg, "Transition"), step, toString)
}

// workflowAccessors emits the accessors the start, signal and read
// contexts share.
func workflowAccessors(out *jen.File, typ, what string) {
	recv := func() *jen.Statement { return jen.Func().Params(jen.Id("c").Op("*").Id(typ)) }
	out.Commentf("Context returns the context of %s's request: its deadline,", what)
	out.Comment("cancellation and metadata.")
	out.Add(recv()).Id("Context").Params().Qual("context", "Context").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Context").Call()),
	)
	out.Line()
	out.Commentf("WorkflowID returns the ID of the workflow %s addresses.", what)
	out.Add(recv()).Id("WorkflowID").Params().String().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("WorkflowID").Call()),
	)
	out.Line()
	out.Comment("Status returns the workflow's progress before this call: its phase, its")
	out.Comment("current step and its latest step runs.")
	out.Add(recv()).Id("Status").Params().Op("*").Qual(statefunv1Pkg, "WorkflowStatus").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Status").Call()),
	)
	out.Line()
}

// transitions emits the methods that choose what a workflow does next, on
// the start and signal context (result nil: they record the choice) and on
// the step context (result Transition: they make the step's outcome).
func transitions(out *jen.File, n workflowNames, typ string, result jen.Code, step func(string) jen.Code, name func(string) jen.Code) {
	emit := func(doc []string, method string, params []jen.Code, args ...jen.Code) {
		for _, l := range doc {
			out.Comment(l)
		}
		call := jen.Id("c").Dot("c").Dot(method).Call(args...)
		body := jen.Add(call)
		sig := jen.Func().Params(jen.Id("c").Op("*").Id(typ)).Id(method).Params(params...)
		if result != nil {
			sig = sig.Add(result)
			body = jen.Return(call)
		}
		out.Add(sig.Block(body))
		out.Line()
	}
	emit([]string{"GoTo runs step next, at once."},
		"GoTo", []jen.Code{step("step")}, name("step"))
	emit([]string{"Sleep runs step once d has passed. The wait is stored: it survives restarts."},
		"Sleep", []jen.Code{jen.Id("d").Qual("time", "Duration"), step("step")}, jen.Id("d"), name("step"))
	emit([]string{
		"Pause makes the workflow wait for a signal, without a timeout; step runs",
		"after it, unless the signal's method chooses otherwise.",
	}, "Pause", []jen.Code{step("step")}, name("step"))
	emit([]string{
		"WaitForSignal makes the workflow wait for a signal for at most timeout (0: no",
		"limit, as Pause); resume runs after it, unless the signal's method chooses",
		"otherwise. Without a signal in time, onTimeout runs; with onTimeout the zero",
		n.step() + "{}, the workflow fails instead.",
	}, "WaitForSignal",
		[]jen.Code{step("resume"), jen.Id("timeout").Qual("time", "Duration"), step("onTimeout")},
		name("resume"), jen.Id("timeout"), name("onTimeout"))
	emit([]string{"End completes the workflow: no step runs after this."}, "End", nil)
	failDoc := []string{"Fail ends the workflow as failed, for reason."}
	if result != nil {
		failDoc = []string{"Fail ends the workflow as failed, for reason: without a retry or the", "failover step."}
	}
	emit(failDoc, "Fail", []jen.Code{jen.Id("reason").String()}, jen.Id("reason"))
}
