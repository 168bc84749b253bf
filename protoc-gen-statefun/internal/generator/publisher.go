package generator

import (
	"fmt"
	"strings"

	"github.com/dave/jennifer/jen"
)

// generatePublisher emits a publisher's name constant and the constructor
// that hands it to the runtime. A publisher has no handler: the runtime
// reads the source's events and sends them.
func generatePublisher(out *jen.File, p *publisher) {
	n := publisherNamesOf(p)
	src := p.source
	srcName := namesOf(src).base
	out.Commentf("%s is the name %s's position in the events of %s is", n.name(), n.base, srcName)
	out.Comment("stored under: renaming it publishes them again.")
	out.Const().Id(n.name()).Op("=").Lit(p.name)
	out.Line()

	what := "the events"
	if p.events != nil {
		names := make([]string, len(p.events))
		for i, ev := range p.events {
			names[i] = ev.message.GoIdent.GoName
		}
		what = "the " + andList(names) + " events"
	}
	encoding := "protobuf binary (application/protobuf)"
	if p.json {
		encoding = "protobuf JSON (application/json)"
	}
	start := "A publisher without a stored position starts at the beginning of the entity's history."
	if p.startFromNow {
		start = "A publisher without a stored position starts with the events committed after it first runs: it skips the history."
	}
	doc := fmt.Sprintf("%s returns the %s publisher, ready to run in a statefun server:", n.constructor(), n.base) +
		"\n\n\tstatefun.Main(..., " + n.constructor() + "())\n\n" +
		wrap(fmt.Sprintf("It publishes %s of the %s entity (type %q) to the %s, encoded as %s: each event once it is durable, at least once, in order per entity. %s "+
			"Each message carries its event's CloudEvents attributes as headers: ce-subject is the entity ID, ce-type the stored event type, ce-id the same for every copy of one event, so that a subscriber can tell a repeat.",
			what, srcName, src.typ, p.to.what(), encoding, start), 77)
	if svcDoc := docComment(p.service.Comments.Leading, ""); svcDoc != "" {
		doc += "\n\n" + svcDoc
	}
	comment(out, doc)

	// Every event of the source, not only those published: the runtime
	// decodes each event it reads through NewEvent.
	var cases []jen.Code
	for _, ev := range src.events {
		cases = append(cases, jen.Case(jen.Lit(ev.typ)).Block(jen.Return(jen.New(qual(ev.message.GoIdent)))))
	}
	cfg := []jen.Code{
		jen.Id("Name"), jen.Id(n.name()),
		jen.Id("EntityType"), jen.Lit(src.typ),
		jen.Id("Broker"), brokerConst(p.to.broker),
		jen.Id("Topic"), jen.Lit(p.to.name),
	}
	if p.events != nil {
		types := make([]jen.Code, len(p.events))
		for i, ev := range p.events {
			types[i] = jen.Lit(ev.typ)
		}
		cfg = append(cfg, jen.Id("Events"), jen.Index().String().Values(types...))
	}
	if p.json {
		cfg = append(cfg, jen.Id("JSON"), jen.True())
	}
	if p.startFromNow {
		cfg = append(cfg, jen.Id("StartFromNow"), jen.True())
	}
	cfg = append(cfg, jen.Id("NewEvent"), jen.Func().Params(jen.Id("eventType").String()).Qual(protoPkg, "Message").Block(
		jen.Switch(jen.Id("eventType")).Block(cases...),
		jen.Return(jen.Nil()),
	))
	out.Func().Id(n.constructor()).Params().Op("*").Qual(runtimePkg, "Publisher").Block(
		jen.Return(jen.Qual(runtimePkg, "NewPublisher").Call(jen.Qual(runtimePkg, "PublisherConfig").Add(fields(cfg...)))),
	)
	out.Line()
}

// brokerConst is the runtime's name of a broker.
func brokerConst(b brokerKind) jen.Code {
	if b == kafkaBroker {
		return jen.Qual(runtimePkg, "BrokerKafka")
	}
	return jen.Qual(runtimePkg, "BrokerNATS")
}

// subscriptionsField is the Subscriptions of an EntityConfig literal, as a
// key and a value, or nothing when no method of e subscribes to a topic.
func subscriptionsField(e *entity, n names) []jen.Code {
	var subs []jen.Code
	for _, m := range e.methods {
		s := m.subscribe
		if s == nil {
			continue
		}
		cfg := []jen.Code{
			jen.Id("Method"), jen.Id(n.fullMethodName(m)),
			jen.Id("Broker"), brokerConst(s.from.broker),
			jen.Id("Topic"), jen.Lit(s.from.name),
		}
		if s.group != "" {
			cfg = append(cfg, jen.Id("Group"), jen.Lit(s.group))
		}
		if s.maxAttempts > 0 {
			cfg = append(cfg, jen.Id("MaxAttempts"), jen.Lit(int(s.maxAttempts)))
		}
		if s.deadLetter != "" {
			cfg = append(cfg, jen.Id("DeadLetter"), jen.Lit(s.deadLetter))
		}
		if s.eventType != "" {
			cfg = append(cfg, jen.Id("Type"), jen.Lit(s.eventType))
		}
		if m.keyFromSubject {
			cfg = append(cfg, jen.Id("KeyFromSubject"), jen.True())
		}
		cfg = append(cfg,
			jen.Id("NewRequest"), jen.Func().Params().Qual(protoPkg, "Message").Block(jen.Return(jen.New(qual(m.method.Input.GoIdent)))),
			jen.Id("NewResponse"), jen.Func().Params().Qual(protoPkg, "Message").Block(jen.Return(jen.New(qual(m.method.Output.GoIdent)))),
		)
		subs = append(subs, fields(cfg...))
	}
	if subs == nil {
		return nil
	}
	return []jen.Code{jen.Id("Subscriptions"), jen.Index().Qual(runtimePkg, "SubscriptionConfig").Custom(
		jen.Options{Open: "{", Close: "}", Separator: ",", Multi: true}, subs...)}
}

// subscriptionDoc is the sentence a subscribed method's doc comments add,
// or "".
func subscriptionDoc(m *method) string {
	if m.subscribe == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "It is also called for every message of the %s, at least once", m.subscribe.from.what())
	if m.keyFromSubject {
		b.WriteString("; the entity is the message's CloudEvents subject (ce-subject)")
	}
	b.WriteString(".")
	return b.String()
}
