package generator

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/compiler/protogen"
)

// This file names everything the generator declares. The emitters take
// their identifiers from here, and the declarations methods list the
// package-level ones for the clash check (clash.go): a name added to an
// emitter but not listed here fails TestDeclarationsMatchOutput and the fuzz
// targets.

// declaration is a package-level Go identifier, what declares it, and the
// proto elements it comes from.
type declaration struct {
	name string
	// what declares the name, as a phrase for error messages: "the event
	// interface of entity Ledger", "message acme.v1.LedgerEvent".
	what string
	// from is the element the name derives from: a service, a method, a
	// message, a oneof field.
	from element
	// owner is the construct the name belongs to: an entity, a consumer, a
	// message, a service. The clashes of one pair of owners are reported in
	// one message.
	owner element
	// plugin declares the name: empty for protoc-gen-statefun, else
	// protoc-gen-go or protoc-gen-go-grpc.
	plugin string
	// reported is true when a clash of this declaration is reported in this
	// run: its construct is in a file to generate.
	reported bool
}

// element is a proto element as error messages name it.
type element struct {
	desc string // "entity Ledger", "method Ledger.Post", "message acme.v1.LedgerEvent"
	pos  position
	// rename is what to rename to free the names it declares: "service
	// Ledger", "method Ledger.Post", "message LedgerEvent".
	rename string
}

// names are the Go identifiers generated for one entity.
type names struct {
	base, lower string
	grpc        string // the service's Go name, as protoc-gen-go-grpc uses it
}

// namesOf derives the generated names from the service name, without a
// "Service" suffix: buf's lint asks for ShoppingCartService, and
// ShoppingCartHandler reads better than ShoppingCartServiceHandler. The gRPC
// names protoc-gen-go-grpc generates keep the full service name.
func namesOf(e *entity) names { return serviceNames(e.service) }

func serviceNames(svc *protogen.Service) names {
	base := baseName(svc.GoName)
	r, size := utf8.DecodeRuneInString(base)
	return names{base: base, lower: string(unicode.ToLower(r)) + base[size:], grpc: svc.GoName}
}

func baseName(goName string) string {
	if trimmed := strings.TrimSuffix(goName, "Service"); trimmed != "" {
		return trimmed
	}
	return goName
}

func (n names) entityType() string       { return n.base + "EntityType" }
func (n names) event() string            { return n.base + "Event" }
func (n names) eventMarker() string      { return n.lower + "EventType" }
func (n names) handler() string          { return n.base + "Handler" }
func (n names) eventHandler() string     { return n.base + "EventHandler" }
func (n names) context() string          { return n.base + "Context" }
func (n names) readContext() string      { return n.base + "ReadContext" }
func (n names) constructor() string      { return "New" + n.base }
func (n names) server() string           { return n.lower + "Server" }
func (n names) client() string           { return n.base + "EntityClient" }
func (n names) newClient() string        { return "New" + n.base + "EntityClient" }
func (n names) call(m *method) string    { return n.base + m.method.GoName + "Call" }
func (n names) applyEvent() string       { return "apply" + n.base + "Event" }
func (n names) newEvent() string         { return "new" + n.base + "Event" }
func (n names) key(m *method) string     { return n.lower + m.method.GoName + "Key" }
func (n names) onEvent(ev *event) string { return "On" + ev.message.GoIdent.GoName }
func (n names) eventMessages() string    { return n.lower + "EventMessages" }
func (n names) testKit() string          { return n.base + "TestKit" }
func (n names) newTestKit() string       { return "New" + n.base + "TestKit" }
func (n names) testResult() string       { return n.base + "TestResult" }

// The names protoc-gen-go-grpc declares for the entity's service, which the
// generated code refers to.
func (n names) grpcServer() string    { return grpcServerName(n.grpc) }
func (n names) grpcUnimpl() string    { return grpcUnimplementedName(n.grpc) }
func (n names) serviceDesc() string   { return grpcServiceDescName(n.grpc) }
func (n names) grpcClient() string    { return grpcClientName(n.grpc) }
func (n names) grpcNewClient() string { return grpcNewClientName(n.grpc) }
func (n names) fullMethodName(m *method) string {
	return grpcFullMethodName(n.grpc, m.method.GoName)
}

// declarations lists every package-level identifier that generateEntity,
// generateService, generateClient and generateTestKit declare for e, under
// the same conditions.
func (n names) declarations(e *entity) []declaration {
	svc := string(e.service.Desc.Name())
	owner := element{desc: "entity " + svc, pos: positionOf(e.service.Desc), rename: "service " + svc}
	var ds []declaration
	add := func(name, what string) {
		ds = append(ds, declaration{name: name, what: what + " of " + owner.desc, from: owner, owner: owner})
	}
	add(n.entityType(), "the entity type constant")
	if e.kind == eventSourced {
		add(n.event(), "the event interface")
		add(n.eventHandler(), "the event handler interface")
		add(n.newEvent(), "the event factory")
		add(n.applyEvent(), "the event dispatcher")
		add(n.eventMessages(), "the testkit's event conversion")
	}
	add(n.handler(), "the handler interface")
	add(n.context(), "the command context")
	if hasReadMethod(e) {
		add(n.readContext(), "the read context")
	}
	add(n.constructor(), "the constructor")
	add(n.server(), "the gRPC server")
	add(n.client(), "the client")
	add(n.newClient(), "the client constructor")
	add(n.testKit(), "the testkit")
	add(n.newTestKit(), "the testkit constructor")
	add(n.testResult(), "the testkit result")
	for _, m := range e.methods {
		if m.keyFromSubject {
			// Neither a key function nor a call: its entity is not in
			// its request.
			continue
		}
		rpc := "method " + svc + "." + string(m.method.Desc.Name())
		from := element{desc: rpc, pos: positionOf(m.method.Desc), rename: rpc}
		ds = append(ds, declaration{name: n.key(m), what: "the key function of " + rpc, from: from, owner: owner})
		if !m.readOnly {
			ds = append(ds, declaration{name: n.call(m), what: "the call constructor of " + rpc, from: from, owner: owner})
		}
	}
	return ds
}

func hasReadMethod(e *entity) bool {
	for _, m := range e.methods {
		if m.readOnly {
			return true
		}
	}
	return false
}

// workflowNames are the Go identifiers generated for one workflow: those
// it shares with entities (handler, contexts, constructor, server, keys,
// call constructors, testkit) and its own.
type workflowNames struct{ names }

func workflowNamesOf(w *workflow) workflowNames { return workflowNames{serviceNames(w.service)} }

func (n workflowNames) workflowType() string     { return n.base + "WorkflowType" }
func (n workflowNames) step() string             { return n.base + "Step" }
func (n workflowNames) stepVar(s *step) string   { return n.base + "Step" + s.goName }
func (n workflowNames) stepContext() string      { return n.base + "StepContext" }
func (n workflowNames) config() string           { return n.lower + "WorkflowConfig" }
func (n workflowNames) client() string           { return n.base + "WorkflowClient" }
func (n workflowNames) newClient() string        { return "New" + n.base + "WorkflowClient" }
func (n workflowNames) rpcName(m *method) string { return string(m.method.Desc.Name()) }

// declarations lists every package-level identifier that generateWorkflow
// and generateWorkflowTestKit declare for w, under the same conditions.
func (n workflowNames) declarations(w *workflow) []declaration {
	svc := string(w.service.Desc.Name())
	owner := element{desc: "workflow " + svc, pos: positionOf(w.service.Desc), rename: "service " + svc}
	var ds []declaration
	add := func(name, what string) {
		ds = append(ds, declaration{name: name, what: what + " of " + owner.desc, from: owner, owner: owner})
	}
	add(n.workflowType(), "the workflow type constant")
	add(n.step(), "the step type")
	add(n.handler(), "the handler interface")
	add(n.context(), "the start and signal context")
	if w.hasRead() {
		add(n.readContext(), "the read context")
	}
	add(n.stepContext(), "the step context")
	add(n.constructor(), "the constructor")
	add(n.config(), "the configuration")
	add(n.server(), "the gRPC server")
	add(n.client(), "the client")
	add(n.newClient(), "the client constructor")
	add(n.testKit(), "the testkit")
	add(n.newTestKit(), "the testkit constructor")
	for _, s := range w.steps {
		desc := "step " + s.name + " of " + owner.desc
		from := element{desc: desc, pos: stepPosition(w.service, s.index), rename: "step " + s.name}
		ds = append(ds, declaration{name: n.stepVar(s), what: "the step value of " + desc, from: from, owner: owner})
	}
	for _, m := range w.methods {
		rpc := "method " + svc + "." + string(m.method.Desc.Name())
		from := element{desc: rpc, pos: positionOf(m.method.Desc), rename: rpc}
		ds = append(ds, declaration{name: n.key(m), what: "the key function of " + rpc, from: from, owner: owner})
		if !m.readOnly {
			ds = append(ds, declaration{name: n.call(m), what: "the call constructor of " + rpc, from: from, owner: owner})
		}
	}
	return ds
}

// consumerNames are the Go identifiers generated for one consumer.
type consumerNames struct{ base string }

func consumerNamesOf(c *consumer) consumerNames {
	return consumerNames{base: baseName(c.service.GoName)}
}

func (n consumerNames) name() string        { return n.base + "ConsumerName" }
func (n consumerNames) handler() string     { return n.base + "Handler" }
func (n consumerNames) context() string     { return n.base + "Context" }
func (n consumerNames) constructor() string { return "New" + n.base }

// declarations lists every package-level identifier generateConsumer
// declares for c.
func (n consumerNames) declarations(c *consumer) []declaration {
	svc := string(c.service.Desc.Name())
	owner := element{desc: "consumer " + svc, pos: positionOf(c.service.Desc), rename: "service " + svc}
	var ds []declaration
	add := func(name, what string) {
		ds = append(ds, declaration{name: name, what: what + " of " + owner.desc, from: owner, owner: owner})
	}
	add(n.name(), "the consumer name constant")
	add(n.handler(), "the handler interface")
	add(n.context(), "the context")
	add(n.constructor(), "the constructor")
	return ds
}

// publisherNames are the Go identifiers generated for one publisher.
type publisherNames struct{ base string }

func publisherNamesOf(p *publisher) publisherNames {
	return publisherNames{base: baseName(p.service.GoName)}
}

func (n publisherNames) name() string        { return n.base + "PublisherName" }
func (n publisherNames) constructor() string { return "New" + n.base }

// declarations lists every package-level identifier generatePublisher
// declares for p.
func (n publisherNames) declarations(p *publisher) []declaration {
	svc := string(p.service.Desc.Name())
	owner := element{desc: "publisher " + svc, pos: positionOf(p.service.Desc), rename: "service " + svc}
	return []declaration{
		{name: n.name(), what: "the publisher name constant of " + owner.desc, from: owner, owner: owner},
		{name: n.constructor(), what: "the constructor of " + owner.desc, from: owner, owner: owner},
	}
}

// The names protoc-gen-go-grpc (v1.5) declares for a service and its
// methods.
func grpcClientName(svc string) string          { return svc + "Client" }
func grpcNewClientName(svc string) string       { return "New" + svc + "Client" }
func grpcServerName(svc string) string          { return svc + "Server" }
func grpcUnimplementedName(svc string) string   { return "Unimplemented" + svc + "Server" }
func grpcServiceDescName(svc string) string     { return svc + "_ServiceDesc" }
func grpcFullMethodName(svc, m string) string   { return fmt.Sprintf("%s_%s_FullMethodName", svc, m) }
func grpcHandlerName(svc, m string) string      { return fmt.Sprintf("_%s_%s_Handler", svc, m) }
func grpcStreamName(svc, m, side string) string { return svc + "_" + m + side }

// unexport lowers the first letter of s, as protoc-gen-go and
// protoc-gen-go-grpc do for their unexported names.
func unexport(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// viewNames are the Go identifiers generated for one view.
type viewNames struct{ names }

func viewNamesOf(v *view) viewNames { return viewNames{serviceNames(v.service)} }

func (n viewNames) viewName() string             { return n.base + "ViewName" }
func (n viewNames) updater() string              { return n.base + "Updater" }
func (n viewNames) client() string               { return n.base + "ViewClient" }
func (n viewNames) newClient() string            { return "New" + n.base + "ViewClient" }
func (n viewNames) allPages(q *viewQuery) string { return q.method.GoName + "All" }
func (n viewNames) onEvent(ev *event) string     { return "On" + ev.message.GoIdent.GoName }
func (n viewNames) onState(v *view) string       { return "On" + v.source.state.GoIdent.GoName }

// declarations lists every package-level identifier generateView declares
// for v.
func (n viewNames) declarations(v *view) []declaration {
	svc := string(v.service.Desc.Name())
	owner := element{desc: "view " + svc, pos: positionOf(v.service.Desc), rename: "service " + svc}
	var ds []declaration
	add := func(name, what string) {
		ds = append(ds, declaration{name: name, what: what + " of " + owner.desc, from: owner, owner: owner})
	}
	add(n.viewName(), "the view name constant")
	if v.source != nil && !v.stateView() {
		add(n.updater(), "the updater interface")
	}
	add(n.constructor(), "the constructor")
	add(n.server(), "the gRPC server")
	add(n.client(), "the client")
	add(n.newClient(), "the client constructor")
	return ds
}
