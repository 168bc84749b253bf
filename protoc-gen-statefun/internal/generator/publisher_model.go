package generator

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// This file reads the broker side of statefun: publishers, which send an
// entity's events to a NATS subject or a Kafka topic, and subscriptions,
// which call an entity method for every message of one.

// publisher is a service annotated with (statefun.v1.publisher), checked
// and resolved.
type publisher struct {
	service *protogen.Service
	file    *protogen.File
	name    string
	source  *entity
	// events are the events to publish, in the order listed; nil for all
	// of the source's events.
	events       []*event
	to           topic
	json         bool
	startFromNow bool
}

type brokerKind int

const (
	natsBroker brokerKind = iota + 1
	kafkaBroker
)

// topic is a NATS subject or a Kafka topic.
type topic struct {
	broker brokerKind
	name   string
}

// what is how error messages name the topic: `NATS subject "orders.placed"`.
func (t topic) what() string { return fmt.Sprintf("%s %q", t.broker.noun(), t.name) }

func (b brokerKind) noun() string {
	if b == kafkaBroker {
		return "Kafka topic"
	}
	return "NATS subject"
}

// option is the Broker field that names a topic of the broker.
func (b brokerKind) option() string {
	if b == kafkaBroker {
		return "kafka_topic"
	}
	return "nats_subject"
}

func (b brokerKind) field() int32 {
	if b == kafkaBroker {
		return brokerKafkaTopicField
	}
	return brokerNatsSubjectField
}

// subscription is the (statefun.v1.method).subscribe option of an entity
// method, checked.
type subscription struct {
	from        topic
	group       string // as given; empty for the runtime's default
	maxAttempts uint32
	deadLetter  string // as given; empty for the runtime's default
	// eventType is the stored type of the request when it is an event:
	// the runtime skips messages of other types (their ce-type).
	eventType string
}

// resolveSubscriptionTypes finds, for each subscribed method whose request
// is an event (of an entity in this run, or marked (statefun.v1.event)),
// the type its messages carry in ce-type: a publisher's messages of other
// events on the same topic are then skipped instead of being decoded as
// the wrong message.
func (m *model) resolveSubscriptionTypes(entities []*entity) {
	types := map[*protogen.Message]string{}
	for _, e := range m.entityOf {
		for _, ev := range e.events {
			types[ev.message] = ev.typ
		}
	}
	for _, e := range entities {
		for _, mm := range e.methods {
			if mm.subscribe == nil {
				continue
			}
			in := mm.method.Input
			if t, ok := types[in]; ok {
				mm.subscribe.eventType = t
			} else if opts := eventOptions(in); opts != nil {
				mm.subscribe.eventType = cmp.Or(opts.GetType(), string(in.Desc.Name()))
			}
		}
	}
}

// maxSubscriptionAttempts bounds max_attempts: a message that failed a
// thousand times is not going to succeed, and a larger number only delays
// its dead letter by days of backoff.
const maxSubscriptionAttempts = 1000

func publisherOptions(svc *protogen.Service) *statefunv1.PublisherOptions {
	opts := svc.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Publisher) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Publisher).(*statefunv1.PublisherOptions)
}

// readPublisher returns the publisher a service declares, or nil when it
// declares none. Mistakes are recorded in m.diags. A service that is a
// publisher and something else is reported here alone: readEntity,
// readWorkflow, readConsumer and readView leave publishers to it.
func (m *model) readPublisher(f *protogen.File, svc *protogen.Service) *publisher {
	opts := publisherOptions(svc)
	if opts == nil {
		return nil
	}
	name := svc.Desc.Name()
	optsPos := func(path ...int32) position {
		return positionOf(svc.Desc, append([]int32{serviceOptionsField, publisherExtension}, path...)...)
	}
	for _, other := range []struct {
		kind string
		set  bool
	}{
		{"entity", entityOptions(svc) != nil},
		{"workflow", workflowOptions(svc) != nil},
		{"consumer", consumerOptions(svc) != nil},
		{"view", viewOptions(svc) != nil},
	} {
		if other.set {
			m.diags.add(optsPos(),
				"service %s has both (statefun.v1.%s) and (statefun.v1.publisher); a service is a%s %s or a publisher, so split it in two",
				name, other.kind, article(other.kind), other.kind)
			return nil
		}
	}
	p := &publisher{
		service:      svc,
		file:         f,
		name:         opts.GetName(),
		json:         opts.GetEncoding() == statefunv1.PublisherOptions_ENCODING_JSON,
		startFromNow: opts.GetStartFrom() == statefunv1.ConsumerOptions_START_FROM_NOW,
	}
	example := kebab(baseName(string(name)))
	switch {
	case p.name == "":
		m.diags.add(optsPos(publisherNameField),
			"publisher %s has no name; set (statefun.v1.publisher).name to a stable name its position is stored under, for example name: %q", name, example)
	case strings.HasPrefix(p.name, "statefun"):
		m.diags.add(optsPos(publisherNameField),
			"publisher name %q of %s starts with \"statefun\", which is reserved for the runtime's own consumers; choose another name", p.name, name)
	case !entityTypePattern.MatchString(p.name):
		m.diags.add(optsPos(publisherNameField),
			"publisher name %q of %s is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example %q)", p.name, name, example)
	}

	switch {
	case opts.GetSource() == "":
		m.diags.add(optsPos(publisherSourceField),
			"publisher %s has no source; set (statefun.v1.publisher).source to the event-sourced entity service whose events it publishes", name)
	default:
		sourceSvc := m.resolveService(svc, opts.GetSource())
		switch {
		case sourceSvc == nil:
			m.diags.add(optsPos(publisherSourceField),
				"source %q of publisher %s not found; name an entity service of package %s, import the file that declares it, or give its fully qualified name", opts.GetSource(), name, svc.Desc.ParentFile().Package())
		case workflowOptions(sourceSvc) != nil:
			m.diags.add(optsPos(publisherSourceField),
				"source %s of publisher %s is a workflow, which has no events to publish; name an event-sourced entity", sourceSvc.Desc.FullName(), name)
		case m.entityOf[sourceSvc] == nil:
			m.diags.add(optsPos(publisherSourceField),
				"source %s of publisher %s is not an entity; name a service with option (statefun.v1.entity) and event_sourced", sourceSvc.Desc.FullName(), name)
		case m.entityOf[sourceSvc].kind != eventSourced:
			m.diags.add(optsPos(publisherSourceField),
				"source %s of publisher %s is a key-value entity, which has no events to publish; name an event-sourced entity, or publish from a consumer of one",
				sourceSvc.Desc.FullName(), name)
		default:
			p.source = m.entityOf[sourceSvc]
		}
	}
	if p.source != nil {
		m.readPublishedEvents(p, opts.GetEvents())
	}

	if opts.GetTo().GetTopic() == nil {
		m.diags.add(optsPos(publisherToField),
			"publisher %s has no destination; set to: { nats_subject: \"...\" } or to: { kafka_topic: \"...\" } in (statefun.v1.publisher)", name)
	} else {
		p.to = readTopic(opts.GetTo())
		pos := optsPos(publisherToField, p.to.broker.field())
		what := "publisher " + string(name)
		if p.to.name == "" {
			m.diags.add(pos, "%s of %s is empty; set to: { %s: \"...\" } to the %s to publish to", p.to.broker.noun(), what, p.to.broker.option(), p.to.broker.noun())
		} else if problem := destinationProblem(p.to); problem != "" {
			m.diags.add(pos, "%s of %s is not valid: %s", p.to.what(), what, problem)
		}
	}

	for _, meth := range svc.Methods {
		m.diags.add(positionOf(meth.Desc),
			"publisher %s declares method %s; remove it: a publisher has no RPCs, the runtime runs it", name, meth.Desc.Name())
	}
	return p
}

// readPublishedEvents resolves the events a publisher lists, each of
// which must be an event of its source; none listed means all of them.
func (m *model) readPublishedEvents(p *publisher, refs []string) {
	name := p.service.Desc.Name()
	seen := map[*protogen.Message]bool{}
	for i, ref := range refs {
		pos := positionOfElement(p.service.Desc, int32(i), serviceOptionsField, publisherExtension, publisherEventsField)
		msg := m.resolve(p.service, ref)
		var ev *event
		for _, e := range p.source.events {
			if msg != nil && e.message == msg {
				ev = e
			}
		}
		switch {
		case msg == nil:
			m.diags.add(pos, "event message %q of publisher %s not found; list events of entity %s: %s",
				ref, name, p.source.service.Desc.Name(), eventNames(p.source))
		case ev == nil && p.source.listed[msg] && p.source.file.Generate:
			// The entity's own error about this event says it all; an
			// imported entity's is not reported in this run, so the
			// next case speaks for it.
		case ev == nil:
			m.diags.add(pos, "%s, listed in publisher %s, is not an event of entity %s; list events of %s: %s",
				msg.Desc.FullName(), name, p.source.service.Desc.Name(), p.source.service.Desc.Name(), eventNames(p.source))
		case seen[msg]:
			m.diags.add(pos, "event %s is listed twice in publisher %s; list each event once", msg.Desc.FullName(), name)
		default:
			seen[msg] = true
			p.events = append(p.events, ev)
		}
	}
}

// readTopic returns the topic a Broker option names; its oneof is set.
func readTopic(b *statefunv1.Broker) topic {
	if _, ok := b.GetTopic().(*statefunv1.Broker_KafkaTopic); ok {
		return topic{broker: kafkaBroker, name: b.GetKafkaTopic()}
	}
	return topic{broker: natsBroker, name: b.GetNatsSubject()}
}

// readSubscription checks the (statefun.v1.method).subscribe option of
// method name of an entity.
func (m *model) readSubscription(meth *protogen.Method, name string, sub *statefunv1.Subscription) *subscription {
	subPos := func(path ...int32) position {
		return positionOf(meth.Desc, append([]int32{methodOptionsField, statefunExtension, methodSubscribeField}, path...)...)
	}
	s := &subscription{group: sub.GetGroup(), maxAttempts: sub.GetMaxAttempts(), deadLetter: sub.GetDeadLetter()}
	what := "the subscription of " + name
	if sub.GetFrom().GetTopic() == nil {
		m.diags.add(subPos(subscriptionFromField),
			"%s has no topic; set from: { nats_subject: \"...\" } or from: { kafka_topic: \"...\" } in (statefun.v1.method).subscribe", what)
		return s
	}
	s.from = readTopic(sub.GetFrom())
	b := s.from.broker
	fromPos := subPos(subscriptionFromField, b.field())
	fromOK := false
	switch {
	case s.from.name == "":
		m.diags.add(fromPos, "%s of %s is empty; set from: { %s: \"...\" } to the %s to read", b.noun(), what, b.option(), b.noun())
	case b == natsBroker && natsSubjectProblem(s.from.name, true) != "":
		m.diags.add(fromPos, "%s of %s is not valid: %s", s.from.what(), what, natsSubjectProblem(s.from.name, true))
	case b == kafkaBroker && kafkaTopicProblem(s.from.name) != "":
		m.diags.add(fromPos, "%s of %s is not valid: %s", s.from.what(), what, kafkaTopicProblem(s.from.name))
	default:
		fromOK = true
	}

	if s.maxAttempts > maxSubscriptionAttempts {
		m.diags.add(subPos(subscriptionMaxAttemptsField),
			"max_attempts %d of %s is over %d; a message that fails that often will not succeed, so use at most %d (0 means 10), and let the rest go to the dead-letter %s",
			s.maxAttempts, what, maxSubscriptionAttempts, maxSubscriptionAttempts, b.noun())
	}
	if b == natsBroker && s.group != "" {
		if problem := natsGroupProblem(s.group); problem != "" {
			m.diags.add(subPos(subscriptionGroupField),
				"group %q of %s is not valid: %s; JetStream stores the subscription's progress under it as a durable consumer name (letters, digits, '-' and '_'), so choose one without", s.group, what, problem)
		}
	}

	if !fromOK {
		return s
	}
	dead := topic{broker: b, name: s.deadLetter}
	deadPos := subPos(subscriptionDeadLetterField)
	if s.deadLetter == "" {
		// The runtime's default; a wildcard subject or a long topic makes
		// one it cannot publish to.
		dead.name = s.from.name + ".dead-letter"
		deadPos = fromPos
	}
	switch problem := destinationProblem(dead); {
	case problem != "" && s.deadLetter == "" && b == natsBroker && strings.ContainsAny(s.from.name, "*>"):
		m.diags.add(fromPos, "%s reads the wildcard %s, so it needs a dead-letter subject of its own: the default, %q, has wildcards too; set dead_letter to a subject without wildcards that %q does not match",
			what, s.from.what(), dead.name, s.from.name)
	case problem != "" && s.deadLetter == "":
		m.diags.add(fromPos, "%s reads %s, so its default dead-letter %s, %q, is not valid (%s); set dead_letter to a shorter one",
			what, s.from.what(), b.noun(), dead.name, problem)
	case problem != "":
		m.diags.add(deadPos, "dead-letter %s of %s is not valid: %s", dead.what(), what, problem)
	case dead.name == s.from.name:
		m.diags.add(deadPos, "dead-letter %s of %s is the %s it reads, so a message it cannot handle would come back to it forever; choose another, or remove dead_letter for %q",
			b.noun(), what, b.noun(), s.from.name+".dead-letter")
	case b == natsBroker && natsMatches(s.from.name, dead.name):
		m.diags.add(deadPos, "dead-letter %s of %s is matched by %q, the subject it reads, so a message it cannot handle would come back to it; choose a subject outside %q",
			dead.what(), what, s.from.name, s.from.name)
	}
	return s
}

// checkSubscriptionGroups reports two subscriptions that would share their
// progress: the same topic of the same broker read under the same group,
// which hands each message to one of them only. The group is the one the
// runtime uses: the option's, else "statefun-<entity type>-<method>".
func (m *model) checkSubscriptionGroups(entities []*entity) {
	type key struct {
		broker       brokerKind
		topic, group string
	}
	type owner struct {
		e  *entity
		mm *method
	}
	seen := map[key]owner{}
	for _, e := range entities {
		for _, mm := range e.methods {
			s := mm.subscribe
			if s == nil || s.from.name == "" {
				continue
			}
			group := s.group
			if group == "" {
				group = "statefun-" + e.typ + "-" + string(mm.method.Desc.Name())
			}
			k := key{s.from.broker, s.from.name, group}
			prev, dup := seen[k]
			if !dup {
				seen[k] = owner{e, mm}
				continue
			}
			pos := positionOf(mm.method.Desc, methodOptionsField, statefunExtension, methodSubscribeField)
			if s.group != "" {
				pos = positionOf(mm.method.Desc, methodOptionsField, statefunExtension, methodSubscribeField, subscriptionGroupField)
			}
			m.diags.add(pos,
				"methods %s.%s and %s.%s (%s) both read %s in group %q, so each message would reach only one of them; give one of them its own group",
				e.service.Desc.Name(), mm.method.Desc.Name(), prev.e.service.Desc.Name(), prev.mm.method.Desc.Name(), positionOf(prev.mm.method.Desc),
				s.from.what(), group)
		}
	}
}

// destinationProblem says why t cannot be published to, or returns "".
func destinationProblem(t topic) string {
	if t.broker == kafkaBroker {
		return kafkaTopicProblem(t.name)
	}
	return natsSubjectProblem(t.name, false)
}

// natsSubjectProblem says what is wrong with a NATS subject, or returns
// "". wildcards allows '*' (one token) and '>' (the last token), which
// select subjects to read; a subject to publish to has none.
func natsSubjectProblem(subject string, wildcards bool) string {
	const fix = `write tokens separated by single dots, such as "orders.placed"`
	for _, r := range subject {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Sprintf("it contains %q; NATS subjects have no spaces or control characters, so %s", r, fix)
		}
	}
	tokens := strings.Split(subject, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return "it has an empty token (a leading, trailing or doubled '.'); " + fix
		case !wildcards && strings.ContainsAny(tok, "*>"):
			w := '*'
			if !strings.ContainsRune(tok, w) {
				w = '>'
			}
			return fmt.Sprintf("it contains the wildcard '%c', but a message is published to one subject; name the subject in full, such as \"orders.placed\"", w)
		case wildcards && strings.ContainsAny(tok, "*>") && tok != "*" && tok != ">":
			return fmt.Sprintf("token %q mixes a wildcard with other characters; '*' stands for one whole token and '>' for the rest of the subject, such as \"orders.*.placed\" or \"orders.>\"", tok)
		case wildcards && tok == ">" && i != len(tokens)-1:
			return "'>' is not its last token; '>' matches the rest of the subject, so it comes last, such as \"orders.>\""
		}
	}
	return ""
}

// natsMatches reports whether pattern, a subject with wildcards, matches
// subject.
func natsMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

// natsGroupProblem says why a JetStream durable consumer cannot be named
// group, or returns "".
func natsGroupProblem(group string) string {
	for _, r := range group {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Sprintf("it contains %q", r)
		case strings.ContainsRune(".*>/\\", r):
			return fmt.Sprintf("it contains '%c'", r)
		}
	}
	return ""
}

var kafkaTopicPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// kafkaMaxTopic is the longest topic name Kafka accepts.
const kafkaMaxTopic = 249

// kafkaTopicProblem says what is wrong with a Kafka topic name, or
// returns "".
func kafkaTopicProblem(name string) string {
	switch {
	case name == "":
		return "it is empty"
	case len(name) > kafkaMaxTopic:
		return fmt.Sprintf("it is %d characters long, and Kafka allows at most %d", len(name), kafkaMaxTopic)
	case name == "." || name == "..":
		return "Kafka does not allow \".\" or \"..\" as a topic name; use letters, digits, '.', '_' and '-', such as \"orders.placed\""
	case !kafkaTopicPattern.MatchString(name):
		for _, r := range name {
			if !kafkaTopicPattern.MatchString(string(r)) {
				return fmt.Sprintf("it contains %q; Kafka topics use only letters, digits, '.', '_' and '-', such as \"orders.placed\"", r)
			}
		}
	}
	return ""
}
