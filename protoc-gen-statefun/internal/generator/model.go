package generator

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

type entityKind int

const (
	eventSourced entityKind = iota + 1
	keyValue
)

// entity is a service annotated with (statefun.v1.entity), checked and
// resolved.
type entity struct {
	service       *protogen.Service
	file          *protogen.File
	typ           string
	kind          entityKind
	state         *protogen.Message
	events        []*event
	snapshotEvery uint32
	passivation   time.Duration
	methods       []*method
	// listed holds every message the events option names, including those
	// rejected with an error, so that a consumer of the entity does not
	// report a second, misleading error about them.
	listed map[*protogen.Message]bool
}

type event struct {
	message *protogen.Message
	typ     string // stored type name
}

type method struct {
	method   *protogen.Method
	readOnly bool
	start    bool // a workflow's start method
	key      []keyField
	// subscribe is the method's subscription to a broker topic, or nil.
	subscribe *subscription
	// keyFromSubject is true for a subscribed method whose request has no
	// key fields: the entity is the CloudEvents subject of the message
	// (statefun.SubjectKey), so no key function is generated for it.
	keyFromSubject bool
	// access says who may call the method (access.Policy.Describe), for
	// its doc comments; empty when its file declares no access.
	access string
}

// keyField is one part of an entity key: a scalar field reached from the
// request through zero or more message fields.
type keyField struct {
	path []*protogen.Field
}

// name returns the key field's path from the request, in proto names
// ("device.serial").
func (k keyField) name() string {
	parts := make([]string, len(k.path))
	for i, f := range k.path {
		parts[i] = string(f.Desc.Name())
	}
	return strings.Join(parts, ".")
}

func (k keyField) leaf() *protogen.Field { return k.path[len(k.path)-1] }

var (
	entityTypePattern = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,127}$`)
	eventTypePattern  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,127}$`)
)

// model reads and checks the statefun options of every file of a request.
type model struct {
	messages   map[protoreflect.FullName]*protogen.Message
	services   map[protoreflect.FullName]*protogen.Service
	entityOf   map[*protogen.Service]*entity
	entities   map[*protogen.File][]*entity
	workflowOf map[*protogen.Service]*workflow
	workflows  map[*protogen.File][]*workflow
	consumers  map[*protogen.File][]*consumer
	views      map[*protogen.File][]*view
	publishers map[*protogen.File][]*publisher
	diags      diagnostics
	warnings   warnings
}

func buildModel(plugin *protogen.Plugin) (*model, error) {
	m := &model{
		messages:   map[protoreflect.FullName]*protogen.Message{},
		services:   map[protoreflect.FullName]*protogen.Service{},
		entityOf:   map[*protogen.Service]*entity{},
		entities:   map[*protogen.File][]*entity{},
		workflowOf: map[*protogen.Service]*workflow{},
		workflows:  map[*protogen.File][]*workflow{},
		consumers:  map[*protogen.File][]*consumer{},
		views:      map[*protogen.File][]*view{},
		publishers: map[*protogen.File][]*publisher{},
	}
	for _, f := range plugin.Files {
		m.indexMessages(f.Messages)
		for _, svc := range f.Services {
			m.services[svc.Desc.FullName()] = svc
		}
	}
	// Entities and workflows of imported files are read too, so that a
	// consumer can name an entity as its source and the names generated for
	// them count in the clash check; their mistakes are reported when their
	// own file is generated, not here.
	for _, f := range plugin.Files {
		if f.Generate {
			continue
		}
		for _, svc := range f.Services {
			n := len(m.diags)
			if e := m.readEntity(f, svc); e != nil {
				m.entityOf[svc] = e
			}
			if w := m.readWorkflow(f, svc); w != nil {
				m.workflowOf[svc] = w
			}
			m.diags = m.diags[:n]
		}
	}
	// Type names must be unique among the entities and workflows one
	// server may host; the files of one generation run are the best view
	// of that the plugin has. The runtime checks again when they register.
	typeOwners := map[string]*protogen.Service{}
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		for _, svc := range f.Services {
			e := m.readEntity(f, svc)
			if e == nil {
				continue
			}
			m.entityOf[svc] = e
			if prev, dup := typeOwners[e.typ]; dup && e.typ != "" {
				m.diags.add(positionOf(svc.Desc, serviceOptionsField, statefunExtension, entityTypeField),
					"entity type %q of service %s is already used by service %s (%s); give each entity its own type name",
					e.typ, svc.Desc.Name(), prev.Desc.Name(), positionOf(prev.Desc))
			} else {
				typeOwners[e.typ] = svc
			}
			m.entities[f] = append(m.entities[f], e)
		}
	}
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		for _, svc := range f.Services {
			w := m.readWorkflow(f, svc)
			if w == nil {
				continue
			}
			m.workflowOf[svc] = w
			if prev, dup := typeOwners[w.typ]; dup && w.typ != "" {
				m.diags.add(positionOf(svc.Desc, serviceOptionsField, workflowExtension, workflowTypeField),
					"workflow type %q of service %s is already used by service %s (%s); entities and workflows share one namespace of type names, so give each its own",
					w.typ, svc.Desc.Name(), prev.Desc.Name(), positionOf(prev.Desc))
			} else {
				typeOwners[w.typ] = svc
			}
			m.workflows[f] = append(m.workflows[f], w)
		}
	}
	consumerNames := map[string]*consumer{}
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		for _, svc := range f.Services {
			c := m.readConsumer(f, svc)
			if c == nil {
				continue
			}
			if prev, dup := consumerNames[c.name]; dup && c.name != "" {
				m.diags.add(positionOf(svc.Desc, serviceOptionsField, consumerExtension, consumerNameField),
					"consumer name %q of service %s is already used by service %s (%s); give each consumer its own name",
					c.name, svc.Desc.Name(), prev.service.Desc.Name(), positionOf(prev.service.Desc))
			} else {
				consumerNames[c.name] = c
			}
			m.consumers[f] = append(m.consumers[f], c)
		}
	}
	viewNames := map[string]*view{}
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		for _, svc := range f.Services {
			v := m.readView(f, svc)
			if v == nil {
				continue
			}
			if prev, dup := viewNames[v.name]; dup && v.name != "" {
				m.diags.add(positionOf(svc.Desc, serviceOptionsField, viewExtension, viewNameField),
					"view name %q of service %s is already used by service %s (%s); give each view its own name",
					v.name, svc.Desc.Name(), prev.service.Desc.Name(), positionOf(prev.service.Desc))
			} else {
				viewNames[v.name] = v
			}
			m.views[f] = append(m.views[f], v)
		}
	}
	// Publishers and consumers keep their positions in the source's events
	// under their names, so a publisher shares no name with either.
	positionNames := map[string]*protogen.Service{}
	for _, cs := range m.consumers {
		for _, c := range cs {
			if c.name != "" {
				positionNames[c.name] = c.service
			}
		}
	}
	var generated []*entity
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		generated = append(generated, m.entities[f]...)
		for _, svc := range f.Services {
			p := m.readPublisher(f, svc)
			if p == nil {
				continue
			}
			if prev, dup := positionNames[p.name]; dup && p.name != "" {
				kind := "publisher"
				if consumerOptions(prev) != nil {
					kind = "consumer"
				}
				m.diags.add(positionOf(svc.Desc, serviceOptionsField, publisherExtension, publisherNameField),
					"publisher name %q of service %s is already used by %s %s (%s); publishers and consumers store their positions under their names, so give each its own",
					p.name, svc.Desc.Name(), kind, prev.Desc.Name(), positionOf(prev.Desc))
			} else {
				positionNames[p.name] = svc
			}
			m.publishers[f] = append(m.publishers[f], p)
		}
	}
	m.checkSubscriptionGroups(generated)
	m.resolveSubscriptionTypes(generated)
	m.checkUnlistedEvents(plugin)
	m.readAccess(plugin)
	m.checkClashes(plugin)
	return m, m.diags.err()
}

// checkUnlistedEvents reports messages marked (statefun.v1.event) that no
// entity lists: a forgotten entry in events, which would otherwise leave
// the event unemittable with no word why. Only entities in the event's Go
// package can list it; when the request has none (a file of events
// generated on its own), the entity may be generated in another run, so
// nothing is said.
func (m *model) checkUnlistedEvents(plugin *protogen.Plugin) {
	listed := map[*protogen.Message]bool{}
	entityPackages := map[protogen.GoImportPath]bool{}
	for _, e := range m.entityOf {
		for msg := range e.listed {
			listed[msg] = true
		}
		entityPackages[e.file.GoImportPath] = true
	}
	var check func(msgs []*protogen.Message)
	check = func(msgs []*protogen.Message) {
		for _, msg := range msgs {
			if msg.Desc.Options() != nil && proto.HasExtension(msg.Desc.Options(), statefunv1.E_Event) &&
				!listed[msg] && entityPackages[msg.GoIdent.GoImportPath] {
				m.diags.add(positionOf(msg.Desc, messageOptionsField, statefunExtension),
					"message %s is marked as an event but no entity lists it in events; add it to an entity's event_sourced.events, or remove the (statefun.v1.event) option", msg.Desc.Name())
			}
			check(msg.Messages)
		}
	}
	for _, f := range plugin.Files {
		if f.Generate {
			check(f.Messages)
		}
	}
}

func (m *model) indexMessages(msgs []*protogen.Message) {
	for _, msg := range msgs {
		m.messages[msg.Desc.FullName()] = msg
		m.indexMessages(msg.Messages)
	}
}

// resolve finds a message named in an option: relative to the service's
// package first, then as a fully qualified name.
func (m *model) resolve(svc *protogen.Service, name string) *protogen.Message {
	name = strings.TrimPrefix(name, ".")
	pkg := svc.Desc.ParentFile().Package()
	if pkg != "" {
		if msg, ok := m.messages[protoreflect.FullName(string(pkg)+"."+name)]; ok {
			return msg
		}
	}
	return m.messages[protoreflect.FullName(name)]
}

func entityOptions(svc *protogen.Service) *statefunv1.EntityOptions {
	opts := svc.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Entity) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Entity).(*statefunv1.EntityOptions)
}

func methodOptions(m *protogen.Method) *statefunv1.MethodOptions {
	opts := m.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Method) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Method).(*statefunv1.MethodOptions)
}

func fieldOptions(f *protogen.Field) *statefunv1.FieldOptions {
	opts := f.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Field) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Field).(*statefunv1.FieldOptions)
}

func eventOptions(msg *protogen.Message) *statefunv1.EventOptions {
	opts := msg.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Event) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Event).(*statefunv1.EventOptions)
}

// readEntity returns the entity a service declares, or nil for a plain
// service. Mistakes are recorded in m.diags.
func (m *model) readEntity(f *protogen.File, svc *protogen.Service) *entity {
	opts := entityOptions(svc)
	if consumerOptions(svc) != nil || workflowOptions(svc) != nil || viewOptions(svc) != nil || publisherOptions(svc) != nil {
		return nil // readConsumer, readWorkflow, readView or readPublisher checks it, including its method options
	}
	if opts == nil {
		for _, meth := range svc.Methods {
			switch mo := methodOptions(meth); {
			case mo.GetSubscribe() != nil:
				m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodSubscribeField),
					"method %s.%s subscribes to a topic, but service %s is not an entity; add option (statefun.v1.entity) to the service, or remove the subscription",
					svc.Desc.Name(), meth.Desc.Name(), svc.Desc.Name())
			case mo.GetAccess() != nil:
				m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodAccessField),
					"method %s.%s declares (statefun.v1.method).access, but service %s is not an entity, a workflow or a view, the services statefun serves; remove the access, or make the service one of them with (statefun.v1.entity), (statefun.v1.workflow) or (statefun.v1.view)",
					svc.Desc.Name(), meth.Desc.Name(), svc.Desc.Name())
			case mo.GetQuery() != "":
				m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodQueryField),
					"method %s.%s has a query, but service %s is not a view; add option (statefun.v1.view) to the service, or remove the query",
					svc.Desc.Name(), meth.Desc.Name(), svc.Desc.Name())
			case mo != nil:
				m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension),
					"method %s.%s has (statefun.v1.method) options, but service %s is neither an entity nor a workflow; add option (statefun.v1.entity) or (statefun.v1.workflow) to the service, or remove the method options",
					svc.Desc.Name(), meth.Desc.Name(), svc.Desc.Name())
			}
		}
		return nil
	}
	e := &entity{service: svc, file: f, typ: opts.GetType(), snapshotEvery: opts.GetEventSourced().GetSnapshotEvery()}
	optsPos := func(path ...int32) position {
		return positionOf(svc.Desc, append([]int32{serviceOptionsField, statefunExtension}, path...)...)
	}
	name := svc.Desc.Name()

	m.checkTypeName("entity", string(name), e.typ, optsPos(entityTypeField))
	e.state = m.readState(svc, "entity", opts.GetState(), optsPos(entityStateField))
	if opts.PassivationTimeout != nil {
		d, ok := positiveDuration(opts.GetPassivationTimeout())
		if !ok {
			m.diags.add(optsPos(entityPassivationField),
				"passivation_timeout of entity %s must be a positive duration; remove it to use the server's default", name)
		}
		e.passivation = d
	}

	switch opts.GetKind().(type) {
	case *statefunv1.EntityOptions_EventSourced:
		e.kind = eventSourced
		m.readEvents(e, opts.GetEventSourced(), optsPos)
	case *statefunv1.EntityOptions_KeyValue:
		e.kind = keyValue
	default:
		m.diags.add(optsPos(),
			"entity %s has no kind; set event_sourced: { events: [...] } or key_value: {} in (statefun.v1.entity)", name)
	}

	for _, meth := range svc.Methods {
		if methodOptions(meth).GetStart() {
			m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodStartField),
				"method %s.%s sets (statefun.v1.method).start, which applies to workflow methods only; remove it, or make %s a workflow with (statefun.v1.workflow)",
				name, meth.Desc.Name(), name)
		}
	}
	e.methods = m.readMethods(svc, "entity")
	return e
}

// readMethods reads the RPCs of an entity or a workflow (kind), checking
// that every request carries the same key.
func (m *model) readMethods(svc *protogen.Service, kind string) []*method {
	var methods []*method
	var first *method
	for _, meth := range svc.Methods {
		mm := m.readMethod(svc, kind, meth)
		if mm == nil {
			continue
		}
		methods = append(methods, mm)
		if first == nil {
			first = mm
		} else if len(mm.key) != len(first.key) && len(mm.key) > 0 && len(first.key) > 0 {
			m.diags.add(positionOf(meth.Desc),
				"request %s of %s.%s has %d key fields, but %s of %s has %d; every request of a%s %s must carry the same key",
				meth.Input.Desc.Name(), svc.Desc.Name(), meth.Desc.Name(), len(mm.key), first.method.Input.Desc.Name(), first.method.Desc.Name(), len(first.key), article(kind), kind)
		}
	}
	return methods
}

// article is the "n" of "an" before kind.
func article(kind string) string {
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "n"
	}
	return ""
}

// checkTypeName checks the stored type name of an entity or a workflow
// (kind) of service name.
func (m *model) checkTypeName(kind, name, typ string, pos position) {
	switch {
	case typ == "":
		m.diags.add(pos,
			"%s %s has no type; set (statefun.v1.%s).type to a stable name stored with its data, for example type: %q", kind, name, kind, kebab(name))
	case !entityTypePattern.MatchString(typ):
		m.diags.add(pos,
			"%s type %q of %s is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example %q)", kind, typ, name, kebab(name))
	}
}

// readState resolves the state message of an entity or a workflow (kind),
// named ref in its options, or returns nil after reporting why it cannot.
func (m *model) readState(svc *protogen.Service, kind, ref string, pos position) *protogen.Message {
	name := svc.Desc.Name()
	if ref == "" {
		m.diags.add(pos, "%s %s has no state; set (statefun.v1.%s).state to the name of its state message", kind, name, kind)
		return nil
	}
	state := m.resolve(svc, ref)
	switch {
	case state == nil:
		m.diags.add(pos,
			"state message %q of %s %s not found; define it in package %s, import the file that defines it, or give its fully qualified name", ref, kind, name, svc.Desc.ParentFile().Package())
	case state.Desc.IsMapEntry():
		m.diags.add(pos, "state %q of %s %s is a map entry; use a message", ref, kind, name)
		return nil
	}
	return state
}

func (m *model) readEvents(e *entity, es *statefunv1.EventSourced, optsPos func(...int32) position) {
	name := e.service.Desc.Name()
	if len(es.GetEvents()) == 0 {
		m.diags.add(optsPos(entityEventSourcedField),
			"event-sourced entity %s lists no events; name its event messages in event_sourced: { events: [\"ItemAdded\", ...] }", name)
		return
	}
	seen := map[*protogen.Message]bool{}
	stored := map[string]*protogen.Message{}
	for i, ref := range es.GetEvents() {
		pos := positionOfElement(e.service.Desc, int32(i), serviceOptionsField, statefunExtension, entityEventSourcedField, eventSourcedEventsField)
		msg := m.resolve(e.service, ref)
		if msg != nil {
			if e.listed == nil {
				e.listed = map[*protogen.Message]bool{}
			}
			e.listed[msg] = true
		}
		switch {
		case msg == nil:
			m.diags.add(pos, "event message %q of entity %s not found; define it in package %s or give its fully qualified name",
				ref, name, e.service.Desc.ParentFile().Package())
			continue
		case msg == e.state:
			m.diags.add(pos, "event %s of entity %s is its state message; the state is stored in snapshots, not as an event: define a separate event message that says what changed (such as ItemAdded), list it, and apply it to the state in its On method",
				msg.Desc.FullName(), name)
			continue
		case seen[msg]:
			m.diags.add(pos, "event %s is listed twice in entity %s; list each event once", msg.Desc.FullName(), name)
			continue
		case msg.GoIdent.GoImportPath != e.file.GoImportPath:
			m.diags.add(pos, "event %s of entity %s is in Go package %s, but the entity is in %s; events must be in the entity's Go package, so that only they can be emitted (move the message or give its file the same go_package)",
				msg.Desc.FullName(), name, msg.GoIdent.GoImportPath, e.file.GoImportPath)
			continue
		}
		seen[msg] = true
		ev := &event{message: msg, typ: string(msg.Desc.Name())}
		if eo := eventOptions(msg); eo != nil && eo.GetType() != "" {
			ev.typ = eo.GetType()
			if strings.HasPrefix(ev.typ, "statefun.") {
				m.diags.add(positionOf(msg.Desc, messageOptionsField, statefunExtension, eventTypeField),
					"event type %q of %s starts with \"statefun.\", which is reserved for the runtime's own records; choose another name", ev.typ, msg.Desc.Name())
				continue
			}
			if !eventTypePattern.MatchString(ev.typ) {
				m.diags.add(positionOf(msg.Desc, messageOptionsField, statefunExtension, eventTypeField),
					"event type %q of %s is not valid; use letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters", ev.typ, msg.Desc.Name())
				continue
			}
		}
		if prev, dup := stored[ev.typ]; dup {
			m.diags.add(pos, "events %s and %s of entity %s are both stored as %q; set a distinct (statefun.v1.event).type on one of them",
				prev.Desc.FullName(), msg.Desc.FullName(), name, ev.typ)
			continue
		}
		stored[ev.typ] = msg
		e.events = append(e.events, ev)
	}
}

// readMethod reads one RPC of an entity or a workflow (kind).
func (m *model) readMethod(svc *protogen.Service, kind string, meth *protogen.Method) *method {
	name := fmt.Sprintf("%s.%s", svc.Desc.Name(), meth.Desc.Name())
	opts := methodOptions(meth)
	sub := opts.GetSubscribe()
	subPos := positionOf(meth.Desc, methodOptionsField, statefunExtension, methodSubscribeField)
	if sub != nil && kind != "entity" {
		m.diags.add(subPos,
			"method %s sets (statefun.v1.method).subscribe, which applies to entity methods only; remove it, or subscribe a method of an entity (a service with (statefun.v1.entity)) that calls the %s",
			name, kind)
		sub = nil
	}
	if meth.Desc.IsStreamingClient() || meth.Desc.IsStreamingServer() {
		if sub != nil {
			m.diags.add(positionOf(meth.Desc),
				"method %s is streaming, but it subscribes to a topic: a subscribed method is called with one message and returns one reply; make it unary", name)
			return nil
		}
		m.diags.add(positionOf(meth.Desc),
			"method %s is streaming; %s methods must be unary (one request, one reply), so move it to a service without (statefun.v1.%s)", name, kind, kind)
		return nil
	}
	if opts.GetQuery() != "" {
		m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodQueryField),
			"method %s sets (statefun.v1.method).query, which applies to view methods only; remove it, or move the method to a service with (statefun.v1.view)", name)
	}
	mm := &method{method: meth, readOnly: opts.GetReadOnly(), start: opts.GetStart()}
	if sub != nil {
		if mm.readOnly {
			m.diags.add(subPos,
				"method %s is read_only, but it subscribes to a topic: each message it is called for is a change to the entity; remove read_only, or remove the subscription", name)
		}
		mm.subscribe = m.readSubscription(meth, name, sub)
	}
	mm.key = m.readKey(svc, kind, mm, name)
	// With the key known (or its mistakes reported), the REST routes can be
	// checked for carrying it.
	m.checkRoutes(name, kind, mm)
	return mm
}

// readKey returns the key fields of a method's request, or nil after
// reporting why there are none.
func (m *model) readKey(svc *protogen.Service, kind string, mm *method, name string) []keyField {
	req := mm.method.Input
	keys, ok := m.keyFields(req, nil, map[*protogen.Message]bool{})
	if !ok {
		return nil
	}
	if len(keys) == 0 && mm.subscribe != nil {
		// Its messages name the entity in their CloudEvents subject.
		mm.keyFromSubject = true
		return nil
	}
	if len(keys) == 0 {
		m.diags.add(positionOf(mm.method.Desc),
			"request %s of %s has no %s key; mark the field that identifies the %s with [(statefun.v1.field).key = true]",
			req.Desc.Name(), name, kind, svc.Desc.Name())
		return nil
	}
	return keys
}

// keyFields collects the key fields of msg in declaration order, descending
// into message fields marked as keys. It reports misuse and returns false
// when the key is unusable.
func (m *model) keyFields(msg *protogen.Message, prefix []*protogen.Field, visiting map[*protogen.Message]bool) ([]keyField, bool) {
	visiting[msg] = true
	defer delete(visiting, msg)
	var keys []keyField
	ok := true
	for _, f := range msg.Fields {
		if !fieldOptions(f).GetKey() {
			continue
		}
		path := append(append([]*protogen.Field(nil), prefix...), f)
		pos := positionOf(f.Desc, fieldOptionsField, statefunExtension)
		fd := f.Desc
		switch {
		case fd.IsList() || fd.IsMap():
			m.diags.add(pos, "key field %s of %s is repeated; a key field must be a single string or integer", fd.Name(), msg.Desc.Name())
			ok = false
		case fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic():
			m.diags.add(pos, "key field %s of %s is in oneof %s; move it out of the oneof, because every request must carry the key", fd.Name(), msg.Desc.Name(), fd.ContainingOneof().Name())
			ok = false
		case fd.Kind() == protoreflect.MessageKind:
			if visiting[f.Message] {
				m.diags.add(pos, "key field %s of %s refers back to %s; a nested key cannot contain itself", fd.Name(), msg.Desc.Name(), f.Message.Desc.Name())
				ok = false
				continue
			}
			nested, nestedOK := m.keyFields(f.Message, path, visiting)
			if !nestedOK {
				ok = false
				continue
			}
			if len(nested) == 0 {
				m.diags.add(pos, "key field %s of %s is a %s, which has no key fields; mark the fields of %s that form the key with [(statefun.v1.field).key = true]",
					fd.Name(), msg.Desc.Name(), f.Message.Desc.Name(), f.Message.Desc.Name())
				ok = false
				continue
			}
			keys = append(keys, nested...)
		case keyKindSupported(fd.Kind()):
			keys = append(keys, keyField{path: path})
		default:
			m.diags.add(pos, "key field %s of %s has type %s, which cannot be a key; use string or an integer type", fd.Name(), msg.Desc.Name(), fd.Kind())
			ok = false
		}
	}
	return keys, ok
}

func keyKindSupported(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// kebab turns "ShoppingCart" into "shopping-cart", for suggestions.
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
