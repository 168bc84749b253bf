package generator

import (
	"fmt"

	"github.com/dave/jennifer/jen"
)

const codesPkg = "google.golang.org/grpc/codes"

// generateTestKit emits the entity's testkit: the handlers run directly
// against a state held in the test, through the runtime's TestKit, with one
// method per RPC and a typed result.
func generateTestKit(out *jen.File, e *entity, n names) {
	generateTestKitType(out, e, n)
	generateTestKitGiven(out, e, n)
	for _, m := range e.methods {
		generateTestKitMethod(out, e, n, m)
	}
	generateTestKitTimers(out, e, n)
	generateTestResult(out, e, n)
	if e.kind == eventSourced {
		out.Commentf("%s returns events as plain messages, for the runtime's TestKit.", n.eventMessages())
		out.Func().Id(n.eventMessages()).Params(jen.Id("events").Index().Id(n.event())).Index().Qual(protoPkg, "Message").Block(
			jen.Id("msgs").Op(":=").Make(jen.Index().Qual(protoPkg, "Message"), jen.Len(jen.Id("events"))),
			jen.For(jen.List(jen.Id("i"), jen.Id("e")).Op(":=").Range().Id("events")).Block(
				jen.Id("msgs").Index(jen.Id("i")).Op("=").Id("e"),
			),
			jen.Return(jen.Id("msgs")),
		)
		out.Line()
	}
}

func generateTestKitType(out *jen.File, e *entity, n names) {
	state := ptr(e.state.GoIdent)
	out.Commentf("%s runs %s's handlers in a unit test: no server, no store,", n.testKit(), n.base)
	switch e.kind {
	case eventSourced:
		out.Comment("no goroutine. Given a history (Given) or a state (GivenState), when a command")
		out.Comment("(a method per RPC), then check the reply or error, the events it emitted and")
		out.Comment("the state after.")
	case keyValue:
		out.Comment("no goroutine. Given a state (GivenState), when a command (a method per RPC),")
		out.Comment("then check the reply or error, the state it set and the state after.")
	}
	out.Comment("A command that succeeds changes the testkit's state as it would change the")
	out.Comment("entity's, so the next command sees the change; one that fails changes nothing.")
	out.Comment("The test fails when a handler changes the state it is given or panics, or")
	out.Comment("when a request lacks its entity key or addresses another entity than the")
	out.Comment("first request did: a testkit holds one entity.")
	out.Type().Id(n.testKit()).Struct(
		jen.Id("t").Qual(runtimePkg, "TB"),
		jen.Id("kit").Op("*").Qual(runtimePkg, "TestKit").Types(state.Clone()),
		jen.Id("handler").Id(n.handler()),
	)
	out.Line()

	cfg := []jen.Code{jen.Id("Type"), jen.Id(n.entityType())}
	cfg = append(cfg, kindField(e)...)
	cfg = append(cfg, stateFields(e, n)...)
	out.Commentf("%s returns a testkit that runs h, starting from the state of", n.newTestKit())
	out.Comment("an entity without history. Pass the test's *testing.T as t.")
	out.Func().Id(n.newTestKit()).Params(
		jen.Id("t").Qual(runtimePkg, "TB"), jen.Id("h").Id(n.handler()),
	).Op("*").Id(n.testKit()).Block(
		jen.Id("t").Dot("Helper").Call(),
		jen.Return(jen.Op("&").Id(n.testKit()).Add(fields(
			jen.Id("t"), jen.Id("t"),
			jen.Id("kit"), jen.Qual(runtimePkg, "NewTestKit").Call(
				jen.Id("t"), jen.Qual(runtimePkg, "EntityConfig").Types(state.Clone()).Add(fields(cfg...)),
			),
			jen.Id("handler"), jen.Id("h"),
		))),
	)
	out.Line()
}

func generateTestKitGiven(out *jen.File, e *entity, n names) {
	state := ptr(e.state.GoIdent)
	recv := func() *jen.Statement { return jen.Id("k").Op("*").Id(n.testKit()) }
	helper := jen.Id("k").Dot("t").Dot("Helper").Call()
	if e.kind == eventSourced {
		out.Commentf("Given applies events to the state with the %s methods, in", n.eventHandler())
		out.Comment("order, as loading the entity from its history does.")
		out.Func().Params(recv()).Id("Given").Params(jen.Id("events").Op("...").Id(n.event())).Block(
			helper.Clone(),
			jen.Id("k").Dot("kit").Dot("Given").Call(jen.Id(n.eventMessages()).Call(jen.Id("events")).Op("...")),
		)
		out.Line()
	}
	out.Comment("GivenState replaces the state with a copy of state.")
	out.Func().Params(recv()).Id("GivenState").Params(jen.Id("state").Add(state.Clone())).Block(
		helper.Clone(),
		jen.Id("k").Dot("kit").Dot("GivenState").Call(jen.Id("state")),
	)
	out.Line()
	out.Comment("State returns a copy of the current state.")
	out.Func().Params(recv()).Id("State").Params().Add(state.Clone()).Block(
		jen.Return(jen.Id("k").Dot("kit").Dot("State").Call()),
	)
	out.Line()
	out.Comment("WantState fails the test unless the current state equals want.")
	out.Func().Params(recv()).Id("WantState").Params(jen.Id("want").Add(state.Clone())).Block(
		helper.Clone(),
		jen.Id("k").Dot("kit").Dot("WantState").Call(jen.Id("want")),
	)
	out.Line()
}

func generateTestKitMethod(out *jen.File, e *entity, n names, m *method) {
	state := ptr(e.state.GoIdent)
	in, res := ptr(m.method.Input.GoIdent), ptr(m.method.Output.GoIdent)
	result := jen.Op("*").Id(n.testResult()).Types(res.Clone())
	run, ctxType, runtimeCtx := "TestCommand", n.context(), "CommandContext"
	doc := fmt.Sprintf("%s runs the %s command with req against the testkit's entity.", n.testKitMethod(e, m), m.method.GoName)
	if m.readOnly {
		run, ctxType, runtimeCtx = "TestRead", n.readContext(), "ReadContext"
		doc = fmt.Sprintf("%s runs the %s read with req against the testkit's entity.", n.testKitMethod(e, m), m.method.GoName)
	}
	params := []jen.Code{jen.Id("req").Add(in)}
	var key jen.Code = jen.Id(n.key(m))
	if m.keyFromSubject {
		// The server reads the entity from the call's metadata; so does
		// the testkit, from id, with the same function and errors.
		doc = wrap(fmt.Sprintf("%s runs the %s command with req against the testkit's entity, which is id: its request has no key fields, and the server takes the entity from the ce-subject of the message (or the call's metadata).",
			n.testKitMethod(e, m), m.method.GoName), 77)
		params = []jen.Code{jen.Id("id").String(), jen.Id("req").Add(in.Clone())}
		key = jen.Func().Params(in.Clone()).Params(jen.String(), jen.Error()).Block(
			jen.Return(jen.Qual(runtimePkg, "SubjectKey").Call(
				jen.Qual(metadataPkg, "NewIncomingContext").Call(
					jen.Qual("context", "Background").Call(),
					jen.Qual(metadataPkg, "Pairs").Call(jen.Qual(runtimePkg, "SubjectHeader"), jen.Id("id")),
				),
				jen.Id(n.fullMethodName(m)),
			)),
		)
	}
	comment(out, doc)
	out.Func().Params(jen.Id("k").Op("*").Id(n.testKit())).Id(n.testKitMethod(e, m)).Params(params...).Add(result.Clone()).Block(
		jen.Id("k").Dot("t").Dot("Helper").Call(),
		jen.Id("res").Op(":=").Qual(runtimePkg, run).Call(
			jen.Id("k").Dot("kit"), jen.Lit(n.base+"."+m.method.GoName), jen.Id("req"), key,
			jen.Func().Params(
				jen.Id("c").Op("*").Qual(runtimePkg, runtimeCtx),
				jen.Id("state").Add(state.Clone()),
			).Params(res.Clone(), jen.Error()).Block(
				jen.Return(jen.Id("k").Dot("handler").Dot(m.method.GoName).Call(
					jen.Op("&").Id(ctxType).Values(jen.Dict{jen.Id("c"): jen.Id("c")}),
					jen.Id("state"), jen.Id("req"),
				)),
			),
		),
		jen.Return(jen.Op("&").Id(n.testResult()).Types(res.Clone()).Add(fields(
			jen.Id("t"), jen.Id("k").Dot("t"),
			jen.Id("res"), jen.Id("res"),
		))),
	)
	out.Line()
}

func generateTestResult(out *jen.File, e *entity, n names) {
	state := ptr(e.state.GoIdent)
	typ := jen.Id(n.testResult()).Types(jen.Id("R"))
	recv := func() *jen.Statement { return jen.Id("r").Op("*").Add(typ.Clone()) }
	helper := jen.Id("r").Dot("t").Dot("Helper").Call()

	out.Commentf("%s is what one command or read did in a %s.", n.testResult(), n.testKit())
	out.Type().Id(n.testResult()).Types(jen.Id("R").Qual(protoPkg, "Message")).Struct(
		jen.Id("t").Qual(runtimePkg, "TB"),
		jen.Id("res").Op("*").Qual(runtimePkg, "TestResult").Types(state.Clone(), jen.Id("R")),
	)
	out.Line()
	out.Comment("Reply returns the handler's reply, or nil when it returned an error.")
	out.Func().Params(recv()).Id("Reply").Params().Id("R").Block(
		jen.Return(jen.Id("r").Dot("res").Dot("Reply").Call()),
	)
	out.Line()
	out.Comment("Err returns the handler's error, or nil.")
	out.Func().Params(recv()).Id("Err").Params().Error().Block(
		jen.Return(jen.Id("r").Dot("res").Dot("Err").Call()),
	)
	out.Line()
	switch e.kind {
	case eventSourced:
		out.Comment("Events returns copies of the events the command emitted, in order. It is")
		out.Comment("empty when the command failed, or was a read: they keep nothing.")
		out.Func().Params(recv()).Id("Events").Params().Index().Id(n.event()).Block(
			jen.Id("msgs").Op(":=").Id("r").Dot("res").Dot("Events").Call(),
			jen.Id("events").Op(":=").Make(jen.Index().Id(n.event()), jen.Len(jen.Id("msgs"))),
			jen.For(jen.List(jen.Id("i"), jen.Id("m")).Op(":=").Range().Id("msgs")).Block(
				jen.Id("events").Index(jen.Id("i")).Op("=").Id("m").Assert(jen.Id(n.event())),
			),
			jen.Return(jen.Id("events")),
		)
		out.Line()
		out.Comment("WantEvents fails the test unless the command succeeded and emitted exactly")
		out.Comment("want, in order. Without arguments, it checks that the command succeeded and")
		out.Comment("emitted nothing.")
		out.Func().Params(recv()).Id("WantEvents").Params(jen.Id("want").Op("...").Id(n.event())).Block(
			helper.Clone(),
			jen.Id("r").Dot("res").Dot("WantEvents").Call(jen.Id(n.eventMessages()).Call(jen.Id("want")).Op("...")),
		)
		out.Line()
	case keyValue:
		out.Comment("NewState returns a copy of the state the command set, or nil when it set")
		out.Comment("none, failed, or was a read.")
		out.Func().Params(recv()).Id("NewState").Params().Add(state.Clone()).Block(
			jen.Return(jen.Id("r").Dot("res").Dot("NewState").Call()),
		)
		out.Line()
	}
	out.Comment("WantReply fails the test unless the handler succeeded with a reply equal to")
	out.Comment("want.")
	out.Func().Params(recv()).Id("WantReply").Params(jen.Id("want").Id("R")).Block(
		helper.Clone(),
		jen.Id("r").Dot("res").Dot("WantReply").Call(jen.Id("want")),
	)
	out.Line()
	out.Comment("WantCode fails the test unless the handler's error has the gRPC status code")
	out.Comment("code; codes.OK checks that it succeeded.")
	out.Func().Params(recv()).Id("WantCode").Params(jen.Id("code").Qual(codesPkg, "Code")).Block(
		helper.Clone(),
		jen.Id("r").Dot("res").Dot("WantCode").Call(jen.Id("code")),
	)
	out.Line()
}

// testKitReserved are the testkit's own methods, which an RPC of the same
// name must not shadow.
var testKitReserved = map[string]bool{"Given": true, "GivenState": true, "State": true, "WantState": true, "Timers": true, "SetNow": true, "FireTimer": true}

// testKitMethod returns the name of the testkit method that runs m: the
// RPC's name, or, when that is one of the testkit's own methods, the name
// with "Command" or "Read" appended (then "2", "3", ... until unique).
func (n names) testKitMethod(e *entity, m *method) string {
	if !testKitReserved[m.method.GoName] {
		return m.method.GoName
	}
	suffix := "Command"
	if m.readOnly {
		suffix = "Read"
	}
	taken := map[string]bool{}
	for _, other := range e.methods {
		taken[other.method.GoName] = true
	}
	name := m.method.GoName + suffix
	for i := 2; taken[name] || testKitReserved[name]; i++ {
		name = fmt.Sprintf("%s%s%d", m.method.GoName, suffix, i)
	}
	return name
}

// generateTestKitTimers emits the testkit's view of the entity's timers:
// the pending ones, the clock delays count from, and a way to fire one.
func generateTestKitTimers(out *jen.File, e *entity, n names) {
	recv := func() *jen.Statement { return jen.Id("k").Op("*").Id(n.testKit()) }
	out.Comment("Timers returns the entity's pending timers, by name: what its commands")
	out.Comment("scheduled and did not cancel.")
	out.Func().Params(recv()).Id("Timers").Params().Index().Qual(runtimePkg, "TestTimer").Block(
		jen.Return(jen.Id("k").Dot("kit").Dot("Timers").Call()),
	)
	out.Line()
	out.Comment("SetNow fixes the clock that ScheduleCallAfter counts from (time.Now")
	out.Comment("otherwise), so that a test can check due times exactly.")
	out.Func().Params(recv()).Id("SetNow").Params(jen.Id("now").Qual("time", "Time")).Block(
		jen.Id("k").Dot("kit").Dot("SetNow").Call(jen.Id("now")),
	)
	out.Line()
	var cases []jen.Code
	for _, m := range e.methods {
		if m.readOnly || m.keyFromSubject {
			continue // no timer calls them: they have no call constructor
		}
		cases = append(cases, jen.Case(jen.Id(n.fullMethodName(m))).Block(
			jen.Return(jen.True(), jen.Id("k").Dot(n.testKitMethod(e, m)).Call(jen.Id("req").Assert(ptr(m.method.Input.GoIdent))).Dot("Err").Call()),
		))
	}
	body := []jen.Code{}
	if len(cases) > 0 {
		body = append(body, jen.Switch(jen.Id("method")).Block(cases...))
	}
	body = append(body, jen.Return(jen.False(), jen.Nil()))
	out.Comment("FireTimer delivers the pending timer name now, as the runtime does when it is")
	out.Comment("due: the timer is removed and its call runs as a command of this testkit's")
	out.Comment("entity, with statefun.TimerOf telling the handler it is the timer's")
	out.Comment("delivery. It returns the command's error. The test fails when no timer has")
	out.Comment("that name, or when its call is to another entity: check those with Timers.")
	out.Func().Params(recv()).Id("FireTimer").Params(jen.Id("name").String()).Error().Block(
		jen.Id("k").Dot("t").Dot("Helper").Call(),
		jen.Return(jen.Id("k").Dot("kit").Dot("FireTimer").Call(jen.Id("name"),
			jen.Func().Params(jen.Id("method").String(), jen.Id("req").Qual(protoPkg, "Message")).Params(jen.Bool(), jen.Error()).Block(body...),
		)),
	)
	out.Line()
}
