package generator

import (
	"fmt"
	"strings"

	"github.com/dave/jennifer/jen"
)

// generateEntity emits what the user implements and the types their
// handlers receive.
func generateEntity(out *jen.File, e *entity) {
	n := namesOf(e)
	out.Commentf("%s is the stored type name of %s entities. It is part of the", n.entityType(), n.base)
	out.Comment("stored data: it never changes, whatever the Go or proto names become.")
	out.Const().Id(n.entityType()).Op("=").Lit(e.typ)
	out.Line()
	if e.kind == eventSourced {
		generateEventSet(out, e, n)
	}
	generateHandler(out, e, n)
	if e.kind == eventSourced {
		generateEventHandler(out, e, n)
	}
	generateContexts(out, e, n)
}

func eventList(e *entity) string {
	names := make([]string, len(e.events))
	for i, ev := range e.events {
		names[i] = ev.message.GoIdent.GoName
	}
	switch len(names) {
	case 1:
		return names[0]
	case 2:
		return names[0] + " and " + names[1]
	default:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
}

// generateEventSet emits the sealed event interface: only the entity's own
// event messages implement it, because the marker method is unexported and
// defined here.
func generateEventSet(out *jen.File, e *entity, n names) {
	out.Commentf("%s is an event of %s: %s.", n.event(), n.base, eventList(e))
	out.Commentf("It is sealed: %s.Emit accepts these messages and no others.", n.context())
	out.Type().Id(n.event()).Interface(
		jen.Qual(protoPkg, "Message"),
		jen.Id(n.eventMarker()).Params().String(),
	)
	out.Line()
	for _, ev := range e.events {
		out.Func().Params(ptr(ev.message.GoIdent)).Id(n.eventMarker()).Params().String().Block(
			jen.Return(jen.Lit(ev.typ)),
		)
		out.Line()
	}
}

func generateHandler(out *jen.File, e *entity, n names) {
	switch e.kind {
	case eventSourced:
		out.Commentf("%s is what a %s implementation provides: a method per command,", n.handler(), n.base)
		out.Comment("which decides by emitting events and must not change the state it is")
		out.Commentf("given, and the %s methods that apply events to the state.", n.eventHandler())
	case keyValue:
		out.Commentf("%s is what a %s implementation provides: a method per command,", n.handler(), n.base)
		out.Commentf("which must not change the state it is given; to change the state, it passes a")
		out.Commentf("new one to %s.SetState.", n.context())
	}
	out.Commentf("Pass an implementation to %s.", n.constructor())
	if doc := docComment(e.service.Comments.Leading, ""); doc != "" {
		out.Comment("")
		comment(out, doc)
	}
	var methods []jen.Code
	for i, m := range e.methods {
		if i > 0 {
			methods = append(methods, jen.Line())
		}
		ctxType := n.context()
		if m.readOnly {
			ctxType = n.readContext()
		}
		fallback := fmt.Sprintf("%s handles the %s command.", m.method.GoName, m.method.Desc.Name())
		if m.readOnly {
			fallback = fmt.Sprintf("%s handles the %s read. It runs concurrently with other reads.", m.method.GoName, m.method.Desc.Name())
		}
		doc := docComment(m.method.Comments.Leading, fallback)
		if sub := subscriptionDoc(m); sub != "" {
			doc += "\n" + wrap(sub, 73)
		}
		doc = accessDoc(doc, m.access, 73)
		methods = append(methods, commentLines(doc)...)
		methods = append(methods,
			jen.Id(m.method.GoName).Params(
				jen.Id("ctx").Op("*").Id(ctxType),
				jen.Id("state").Add(ptr(e.state.GoIdent)),
				jen.Id("req").Add(ptr(m.method.Input.GoIdent)),
			).Params(ptr(m.method.Output.GoIdent), jen.Error()),
		)
	}
	if e.kind == eventSourced {
		if len(methods) > 0 {
			methods = append(methods, jen.Line())
		}
		methods = append(methods, jen.Id(n.eventHandler()))
	}
	out.Type().Id(n.handler()).Interface(methods...)
	out.Line()
}

func generateEventHandler(out *jen.File, e *entity, n names) {
	out.Commentf("%s applies %s events to the state: the only place where", n.eventHandler(), n.base)
	out.Comment("the state changes. Each method is a pure state transition: it cannot fail and")
	out.Comment("must depend on nothing but the state and the event, because it runs again")
	out.Comment("whenever the entity is loaded from its history.")
	var methods []jen.Code
	for i, ev := range e.events {
		if i > 0 {
			methods = append(methods, jen.Line())
		}
		methods = append(methods,
			jen.Comment(fmt.Sprintf("%s applies %s to the state.", n.onEvent(ev), ev.message.GoIdent.GoName)),
			jen.Id(n.onEvent(ev)).Params(
				jen.Id("state").Add(ptr(e.state.GoIdent)),
				jen.Id("event").Add(ptr(ev.message.GoIdent)),
			),
		)
	}
	out.Type().Id(n.eventHandler()).Interface(methods...)
	out.Line()

	// The dispatch from a stored type name or a message to the typed
	// methods: a switch, no reflection.
	var cases []jen.Code
	for _, ev := range e.events {
		cases = append(cases, jen.Case(jen.Lit(ev.typ)).Block(jen.Return(jen.New(qual(ev.message.GoIdent)))))
	}
	out.Commentf("%s returns an empty event for a stored event type name, or nil.", n.newEvent())
	out.Func().Id(n.newEvent()).Params(jen.Id("eventType").String()).Qual(protoPkg, "Message").Block(
		jen.Switch(jen.Id("eventType")).Block(cases...),
		jen.Return(jen.Nil()),
	)
	out.Line()

	cases = nil
	for _, ev := range e.events {
		cases = append(cases, jen.Case(ptr(ev.message.GoIdent)).Block(
			jen.Id("h").Dot(n.onEvent(ev)).Call(jen.Id("state"), jen.Id("e")),
		))
	}
	cases = append(cases, jen.Default().Block(
		jen.Panic(jen.Qual("fmt", "Sprintf").Call(jen.Lit(fmt.Sprintf("statefun: %%T is not an event of %s", n.base)), jen.Id("event"))),
	))
	out.Commentf("%s applies one of the entity's events to the state.", n.applyEvent())
	out.Func().Id(n.applyEvent()).Params(
		jen.Id("h").Id(n.eventHandler()),
		jen.Id("state").Add(ptr(e.state.GoIdent)),
		jen.Id("event").Qual(protoPkg, "Message"),
	).Block(
		jen.Switch(jen.Id("e").Op(":=").Id("event").Assert(jen.Type())).Block(cases...),
	)
	out.Line()
}

func generateContexts(out *jen.File, e *entity, n names) {
	out.Commentf("%s is given to %s's command handlers.", n.context(), n.base)
	out.Type().Id(n.context()).Struct(jen.Id("c").Op("*").Qual(runtimePkg, "CommandContext"))
	out.Line()
	contextAccessors(out, n.context(), "command")
	switch e.kind {
	case eventSourced:
		out.Commentf("Emit records an event. When the handler returns without error, the events")
		out.Comment("it emitted are applied to the state, in order, and stored together; the")
		out.Comment("caller gets the reply once they are stored. When it returns an error, they")
		out.Comment("are dropped.")
		out.Func().Params(jen.Id("c").Op("*").Id(n.context())).Id("Emit").Params(jen.Id("event").Id(n.event())).Block(
			jen.Id("c").Dot("c").Dot("Emit").Call(jen.Id("event").Dot(n.eventMarker()).Call(), jen.Id("event")),
		)
		out.Line()
		out.Comment("Send makes call once this command's events are durable: never before, and")
		out.Comment("at least once (it is retried while its target is unavailable, so the target")
		out.Comment("must tolerate a repeat). It is stored with the events, so it survives a")
		out.Comment("crash. When the handler returns an error, the call is dropped. Build calls")
		out.Comment("with the generated <Entity><Method>Call functions.")
		out.Func().Params(jen.Id("c").Op("*").Id(n.context())).Id("Send").Params(jen.Id("call").Op("*").Qual(runtimePkg, "Call")).Block(
			jen.Id("c").Dot("c").Dot("Send").Call(jen.Id("call")),
		)
	case keyValue:
		out.Comment("SetState replaces the state with state when the handler returns without")
		out.Comment("error; the caller gets the reply once it is stored. The runtime keeps state:")
		out.Comment("do not change it afterwards.")
		out.Func().Params(jen.Id("c").Op("*").Id(n.context())).Id("SetState").Params(jen.Id("state").Add(ptr(e.state.GoIdent))).Block(
			jen.Id("c").Dot("c").Dot("SetState").Call(jen.Id("state")),
		)
	}
	out.Line()
	timerAccessors(out, n.context())

	if !hasReadMethod(e) {
		return
	}
	out.Commentf("%s is given to %s's read-only handlers: it has no way", n.readContext(), n.base)
	out.Comment("to change the entity.")
	out.Type().Id(n.readContext()).Struct(jen.Id("c").Op("*").Qual(runtimePkg, "ReadContext"))
	out.Line()
	contextAccessors(out, n.readContext(), "read")
}

func contextAccessors(out *jen.File, typ, what string) {
	out.Commentf("Context returns the context of the %s's request: its deadline,", what)
	out.Comment("cancellation and metadata.")
	out.Func().Params(jen.Id("c").Op("*").Id(typ)).Id("Context").Params().Qual("context", "Context").Block(
		jen.Return(jen.Id("c").Dot("c").Dot("Context").Call()),
	)
	out.Line()
	out.Commentf("EntityID returns the ID of the entity the %s addresses.", what)
	out.Func().Params(jen.Id("c").Op("*").Id(typ)).Id("EntityID").Params().String().Block(
		jen.Return(jen.Id("c").Dot("c").Dot("EntityID").Call()),
	)
	out.Line()
}

// timerAccessors emits a command context's timer methods.
func timerAccessors(out *jen.File, context string) {
	recv := func() *jen.Statement { return jen.Func().Params(jen.Id("c").Op("*").Id(context)) }
	call := jen.Id("call").Op("*").Qual(runtimePkg, "Call")
	out.Comment("ScheduleCall makes call at due, or as soon as possible after it: at least")
	out.Comment("once, surviving restarts, by whichever node owns this entity then. It is")
	out.Comment("stored with this command's changes when the handler returns without error,")
	out.Comment("and dropped otherwise. name is unique per entity: scheduling it again")
	out.Comment("replaces the pending timer. The target tells a delivery by")
	out.Comment("statefun.TimerOf(ctx). Build calls with the generated <Entity><Method>Call")
	out.Comment("functions.")
	out.Add(recv()).Id("ScheduleCall").Params(jen.Id("name").String(), jen.Id("due").Qual("time", "Time"), call.Clone()).Block(
		jen.Id("c").Dot("c").Dot("ScheduleCall").Call(jen.Id("name"), jen.Id("due"), jen.Id("call")),
	)
	out.Line()
	out.Comment("ScheduleCallAfter is ScheduleCall at delay after now.")
	out.Add(recv()).Id("ScheduleCallAfter").Params(jen.Id("name").String(), jen.Id("delay").Qual("time", "Duration"), call.Clone()).Block(
		jen.Id("c").Dot("c").Dot("ScheduleCallAfter").Call(jen.Id("name"), jen.Id("delay"), jen.Id("call")),
	)
	out.Line()
	out.Comment("CancelTimer cancels the pending timer name, if there is one, when the handler")
	out.Comment("returns without error.")
	out.Add(recv()).Id("CancelTimer").Params(jen.Id("name").String()).Block(
		jen.Id("c").Dot("c").Dot("CancelTimer").Call(jen.Id("name")),
	)
	out.Line()
}
