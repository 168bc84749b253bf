package statefun

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/runtime/internal/console"
	"github.com/statefun-go/statefun/runtime/store"
)

// inspector is what the console and the admin API read: the runtime's
// entity types and consumers, and entities' history and state read from
// the store. It never reads an entity's cached instance, so the state
// it shows at a version is the same on every node of a cluster, whoever
// owns the entity; only the cache figures and a consumer's retries are
// this node's.
type inspector struct {
	rt *Runtime
}

var _ console.Source = (*inspector)(nil)

// consoleSource returns what the console reads: server.go hands it to
// the console's handler.
func (r *Runtime) consoleSource() console.Source { return &inspector{rt: r} }

const (
	// defaultEventsPage and maxEventsPage bound a page of history.
	defaultEventsPage = 50
	maxEventsPage     = 1000
	// lagCountBound bounds the events counted for a consumer's lag: the
	// count reads them from the feed, and past this many the number says
	// "far behind" as well as the exact one would.
	lagCountBound = 10_000
)

// inputError is a request inspection cannot answer as asked. field is the
// request field at fault (the admin API's name for it); the message says
// what to send instead.
type inputError struct {
	field, msg string
}

func (e *inputError) Error() string { return e.field + ": " + e.msg }

func badInput(field, format string, args ...any) error {
	return &inputError{field: field, msg: fmt.Sprintf(format, args...)}
}

// entityModel is what inspection needs of a hosted entity type, free of
// its state's Go type.
type entityModel struct {
	typ      string
	kind     Kind
	service  string
	newState func() proto.Message
	newEvent func(eventType string) proto.Message // nil for key-value
	apply    func(state, event proto.Message) error
}

func (h *Host[S]) model() entityModel {
	m := entityModel{
		typ:      h.cfg.Type,
		kind:     h.cfg.Kind,
		service:  h.cfg.Service.ServiceName,
		newState: func() proto.Message { return h.cfg.NewState() },
	}
	if h.cfg.Kind == EventSourced {
		m.newEvent = h.cfg.NewEvent
		m.apply = func(state, event proto.Message) error {
			s, ok := state.(S)
			if !ok {
				return fmt.Errorf("state is a %T, want the entity's %T", state, *new(S))
			}
			return applyEvent(h.cfg.ApplyEvent, s, event)
		}
	}
	return m
}

// host returns the host of an entity type, or an inputError listing the
// hosted types.
func (in *inspector) host(typ string) (hostHandle, error) {
	hosts := in.rt.hostList()
	names := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if h.entityType() == typ {
			return h, nil
		}
		names = append(names, h.entityType())
	}
	slices.Sort(names)
	if typ == "" {
		return nil, badInput("entity_type", "no entity type given; the hosted types are %s", strings.Join(names, ", "))
	}
	return nil, badInput("entity_type", "no entity type %q is hosted here; the hosted types are %s", typ, strings.Join(names, ", "))
}

// EntityTypes implements console.Source.
func (in *inspector) EntityTypes(context.Context) ([]console.EntityType, error) {
	var types []console.EntityType
	for _, h := range in.rt.hostList() {
		m, stats := h.model(), h.stats()
		types = append(types, console.EntityType{
			Type:      m.typ,
			Kind:      m.kind.String(),
			Service:   m.service,
			KeyFields: keyFields(m.service),
			Cached:    int64(stats.Cached),
			Hits:      stats.Hits,
			Loads:     stats.Loads,
			Evictions: stats.Evictions,
		})
	}
	slices.SortFunc(types, func(a, b console.EntityType) int { return cmp.Compare(a.Type, b.Type) })
	return types, nil
}

// keyFields returns the key fields of an entity's service: those of the
// first method whose request carries the key ((statefun.v1.field).key),
// which the generator requires of every keyed request alike. A method
// without key fields takes its key from elsewhere (a CloudEvents
// subject) and says nothing. Nil when the service is not in the
// registry of proto files linked into the binary.
func keyFields(service string) []string {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	for i := range sd.Methods().Len() {
		if fields := keyFieldPaths(sd.Methods().Get(i).Input(), "", 0); len(fields) > 0 {
			return fields
		}
	}
	return nil
}

// keyFieldPaths lists the key fields of md in declaration order, the
// fields of a nested key as paths ("device.serial"), as the generated
// code joins them.
func keyFieldPaths(md protoreflect.MessageDescriptor, prefix string, depth int) []string {
	if depth > 16 {
		return nil // a cycle of message-typed key fields; the generator refuses one
	}
	var paths []string
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		opts, _ := proto.GetExtension(fd.Options(), statefunv1.E_Field).(*statefunv1.FieldOptions)
		if !opts.GetKey() {
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			paths = append(paths, keyFieldPaths(fd.Message(), prefix+string(fd.Name())+".", depth+1)...)
			continue
		}
		paths = append(paths, prefix+string(fd.Name()))
	}
	return paths
}

// EntityID implements console.Source: the ID the generated code forms
// from the key's values (JoinKey for a composite key).
func (in *inspector) EntityID(typ string, keyValues []string) (string, error) {
	h, err := in.host(typ)
	if err != nil {
		return "", err
	}
	fields := keyFields(h.model().service)
	switch {
	case len(keyValues) == 0:
		return "", badInput("key_values", "no key values given; give one for each key field of %q (%s), in that order", typ, strings.Join(fields, ", "))
	case len(fields) > 0 && len(keyValues) != len(fields):
		return "", badInput("key_values", "%d key values given, but %q has %d key fields (%s); give one for each, in that order", len(keyValues), typ, len(fields), strings.Join(fields, ", "))
	case len(fields) == 0 && len(keyValues) > 1:
		return "", badInput("key_values", "%d key values given, but the key fields of %q are unknown here; give its entity ID instead", len(keyValues), typ)
	}
	for i, v := range keyValues {
		if v == "" {
			name := fmt.Sprintf("value %d", i+1)
			if i < len(fields) {
				name = fields[i]
			}
			return "", badInput("key_values", "key field %s is empty; every key field needs a value", name)
		}
	}
	if len(keyValues) == 1 {
		return keyValues[0], nil
	}
	return JoinKey(keyValues...), nil
}

// Entity implements console.Source. An event-sourced entity's state at
// seq is replayed from the latest snapshot when that is at or before seq,
// else from its first event; a key-value entity keeps only its latest
// value.
func (in *inspector) Entity(ctx context.Context, typ, id string, seq int64) (console.Entity, error) {
	h, err := in.host(typ)
	if err != nil {
		return console.Entity{}, err
	}
	if id == "" {
		return console.Entity{}, badInput("id", "no entity ID given; give the ID or the values of the key fields")
	}
	if seq < 0 {
		return console.Entity{}, badInput("seq", "seq %d is negative; give 0 for the latest version or the seq of an event", seq)
	}
	m := h.model()
	ref := store.Ref{Type: typ, ID: id}
	var state proto.Message
	out := console.Entity{Type: typ, ID: id}
	if m.kind == KeyValue {
		state, out, err = in.keyValueAt(ctx, m, ref, seq)
	} else {
		state, out, err = in.replayTo(ctx, m, ref, seq)
	}
	if err != nil {
		return console.Entity{}, err
	}
	out.StateJSON, err = stateJSON(state)
	if err != nil {
		return console.Entity{}, fmt.Errorf("render the state of %s at %d: %w", ref, out.Seq, err)
	}
	out.StateJSON = in.expandWorkflowState(typ, state, out.StateJSON)
	return out, nil
}

var errPastTarget = errors.New("past the version asked for")

func (in *inspector) replayTo(ctx context.Context, m entityModel, ref store.Ref, seq int64) (proto.Message, console.Entity, error) {
	out := console.Entity{Type: ref.Type, ID: ref.ID}
	st := in.rt.store
	state := m.newState()
	snap, found, err := st.LatestSnapshot(ctx, ref)
	if err != nil {
		return nil, out, fmt.Errorf("read the snapshot of %s: %w", ref, err)
	}
	if found && (seq == 0 || snap.Seq <= seq) {
		if err := proto.Unmarshal(snap.Payload, state); err != nil {
			state = m.newState() // unreadable: replay everything, as a load does
		} else {
			out.SnapshotSeq, out.Seq = snap.Seq, snap.Seq
		}
	}
	latest := out.Seq
	err = st.ReadEvents(ctx, ref, out.Seq, func(e store.Event) error {
		latest = e.Seq
		if seq > 0 && e.Seq > seq {
			return errPastTarget
		}
		if e.Seq != out.Seq+1 {
			return fmt.Errorf("history has event %d after %d", e.Seq, out.Seq)
		}
		if e.EventType != callEventType { // a sent call is not part of the state
			msg := m.newEvent(e.EventType)
			if msg == nil {
				return fmt.Errorf("event %d has type %q, which this binary's %s does not know", e.Seq, e.EventType, ref.Type)
			}
			if err := proto.Unmarshal(e.Payload, msg); err != nil {
				return fmt.Errorf("decode event %d (%s): %w", e.Seq, e.EventType, err)
			}
			if err := m.apply(state, msg); err != nil {
				return fmt.Errorf("apply event %d (%s): %w", e.Seq, e.EventType, err)
			}
		}
		out.Seq = e.Seq
		return nil
	})
	if errors.Is(err, errPastTarget) {
		// The rest of the history only tells the latest seq: read it
		// from the snapshot on when that is further than the target.
		if found {
			latest = max(latest, snap.Seq)
		}
		err = st.ReadEvents(ctx, ref, latest, func(e store.Event) error {
			latest = e.Seq
			return nil
		})
	}
	if err != nil {
		return nil, out, fmt.Errorf("replay %s: %w", ref, err)
	}
	out.Latest = latest
	switch {
	case latest == 0:
		return nil, out, fmt.Errorf("%s: %w", ref, console.ErrNotFound)
	case seq > latest:
		return nil, out, badInput("seq", "seq %d is beyond the latest version of %s, %d", seq, ref, latest)
	}
	return state, out, nil
}

func (in *inspector) keyValueAt(ctx context.Context, m entityModel, ref store.Ref, seq int64) (proto.Message, console.Entity, error) {
	out := console.Entity{Type: ref.Type, ID: ref.ID}
	v, found, err := in.rt.store.LoadValue(ctx, ref)
	switch {
	case err != nil:
		return nil, out, fmt.Errorf("read the value of %s: %w", ref, err)
	case !found:
		return nil, out, fmt.Errorf("%s: %w", ref, console.ErrNotFound)
	case seq > v.Version:
		return nil, out, badInput("seq", "seq %d is beyond the latest version of %s, %d", seq, ref, v.Version)
	case seq != 0 && seq != v.Version:
		return nil, out, badInput("seq", "%s is a key-value entity, which keeps only its latest value (version %d); give 0 or %d", ref, v.Version, v.Version)
	}
	state := m.newState()
	if err := proto.Unmarshal(v.Payload, state); err != nil {
		return nil, out, fmt.Errorf("decode the value of %s, version %d: %w", ref, v.Version, err)
	}
	out.Seq, out.Latest = v.Version, v.Version
	return state, out, nil
}

var jsonOptions = protojson.MarshalOptions{Multiline: true, Indent: "  "}

// expandWorkflowState shows a workflow's own state where its record and
// events hold it as bytes (their "state" field): decoded as the
// workflow's state message, rather than base64. Anything else, or bytes
// that do not decode, is returned as rendered.
func (in *inspector) expandWorkflowState(typ string, msg proto.Message, rendered string) string {
	runner := in.rt.workflows.get(typ)
	if runner == nil {
		return rendered
	}
	m := msg.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("state")
	if fd == nil || fd.Kind() != protoreflect.BytesKind || fd.IsList() || !m.Has(fd) {
		return rendered
	}
	user := runner.newUserState()
	if err := proto.Unmarshal(m.Get(fd).Bytes(), user); err != nil {
		return rendered
	}
	userJSON, err := protojson.Marshal(user)
	if err != nil {
		return rendered
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(rendered), &fields); err != nil {
		return rendered
	}
	fields["state"] = userJSON
	b, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return rendered
	}
	return string(b)
}

func stateJSON(state proto.Message) (string, error) {
	b, err := jsonOptions.Marshal(state)
	return string(b), err
}

// Events implements console.Source. A key-value entity has no events: it
// returns none (ErrNotFound when the entity has no value).
func (in *inspector) Events(ctx context.Context, typ, id string, afterSeq int64, limit int) ([]console.Event, error) {
	h, err := in.host(typ)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, badInput("id", "no entity ID given; give the ID or the values of the key fields")
	}
	if afterSeq < 0 {
		return nil, badInput("after_seq", "after_seq %d is negative; give 0 for the first page", afterSeq)
	}
	if limit <= 0 {
		limit = defaultEventsPage
	}
	limit = min(limit, maxEventsPage)
	m := h.model()
	ref := store.Ref{Type: typ, ID: id}
	if m.kind == KeyValue {
		if _, found, err := in.rt.store.LoadValue(ctx, ref); err != nil || !found {
			return nil, cmp.Or(err, fmt.Errorf("%s: %w", ref, console.ErrNotFound))
		}
		return nil, nil
	}
	page, err := in.readHistory(ctx, ref, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read the history of %s: %w", ref, err)
	}
	if len(page) == 0 && afterSeq == 0 {
		return nil, fmt.Errorf("%s: %w", ref, console.ErrNotFound)
	}
	events := make([]console.Event, len(page))
	for i, e := range page {
		events[i] = console.Event{Seq: e.Seq, Type: e.EventType, StoredAt: e.StoredAt, PayloadJSON: in.eventJSON(typ, m, e.Event)}
	}
	return events, nil
}

// readHistory reads a page of history with stored times when the store
// keeps them, and without (zero times) when it does not.
func (in *inspector) readHistory(ctx context.Context, ref store.Ref, afterSeq int64, limit int) ([]store.HistoryEvent, error) {
	if h, ok := in.rt.store.(store.History); ok {
		return h.ReadHistory(ctx, ref, afterSeq, limit)
	}
	var page []store.HistoryEvent
	err := in.rt.store.ReadEvents(ctx, ref, afterSeq, func(e store.Event) error {
		if len(page) == limit {
			return errPastTarget
		}
		page = append(page, store.HistoryEvent{Event: e})
		return nil
	})
	if errors.Is(err, errPastTarget) {
		err = nil
	}
	return page, err
}

// eventJSON renders an event as protobuf JSON. An event this binary
// cannot decode, and a sent call (the runtime's record, not a proto
// message of the entity), are shown as a JSON object that says so.
func (in *inspector) eventJSON(typ string, m entityModel, e store.Event) string {
	note := func(fields map[string]string) string {
		b, _ := json.MarshalIndent(fields, "", "  ")
		return string(b)
	}
	if e.EventType == callEventType {
		if call, err := decodeCall(e.Payload); err == nil {
			return note(map[string]string{"note": "a call this entity sent; the calls dispatcher makes it", "method": call.method,
				"requestBase64": base64.StdEncoding.EncodeToString(call.request)})
		}
	}
	if msg := m.newEvent(e.EventType); msg != nil {
		if err := proto.Unmarshal(e.Payload, msg); err == nil {
			if s, err := stateJSON(msg); err == nil {
				return in.expandWorkflowState(typ, msg, s)
			}
		}
		return note(map[string]string{"note": "the payload does not decode as " + string(msg.ProtoReflect().Descriptor().FullName()), "payloadBase64": base64.StdEncoding.EncodeToString(e.Payload)})
	}
	return note(map[string]string{"note": fmt.Sprintf("event type %q is unknown to this binary", e.EventType), "payloadBase64": base64.StdEncoding.EncodeToString(e.Payload)})
}

// Consumers implements console.Source. Position and lag come from the
// store, the same on every node; retries and the last error are this
// node's, where the consumer may not run (in a cluster, each runs on the
// node that holds its shard).
func (in *inspector) Consumers(ctx context.Context) ([]console.Consumer, error) {
	if in.rt.consumers == nil {
		return nil, nil
	}
	runners := *in.rt.consumers.runners.Load()
	out := make([]console.Consumer, 0, len(runners))
	for _, r := range runners {
		c := console.Consumer{Name: r.cfg.Name, EntityType: r.cfg.EntityType}
		pos, _, err := in.rt.store.LoadConsumerPosition(ctx, r.cfg.Name, r.cfg.EntityType)
		if err != nil {
			return nil, fmt.Errorf("read the position of consumer %q: %w", r.cfg.Name, err)
		}
		c.Position = string(pos)
		if c.LagEvents, c.LagTime, err = in.lag(ctx, r, pos); err != nil {
			return nil, fmt.Errorf("read the lag of consumer %q: %w", r.cfg.Name, err)
		}
		r.mu.Lock()
		c.Retrying, c.LastError = r.retrying, r.lastError
		r.mu.Unlock()
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b console.Consumer) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.EntityType, b.EntityType))
	})
	return out, nil
}

// lag counts the events that follow pos in r's feed, up to lagCountBound
// (for a calls dispatcher, only the calls: the rest it passes over), and
// returns how long ago the first of them was stored, when the store
// says.
func (in *inspector) lag(ctx context.Context, r *consumerRunner, pos store.Position) (int64, time.Duration, error) {
	var count int64
	var first *store.FeedEvent
	err := in.rt.store.ReadFeed(ctx, r.cfg.EntityType, pos, lagCountBound, func(e store.FeedEvent) error {
		if r.dispatchesCalls && e.EventType != callEventType {
			return nil
		}
		count++
		if first == nil {
			first = &e
		}
		return nil
	})
	if err != nil || first == nil || first.EventType == store.ValueEventType {
		return count, 0, err // a value's feed entry carries no stored time
	}
	h, ok := in.rt.store.(store.History)
	if !ok {
		return count, 0, nil
	}
	page, err := h.ReadHistory(ctx, first.Entity, first.Seq-1, 1)
	if err != nil || len(page) == 0 || page[0].StoredAt.IsZero() {
		return count, 0, err
	}
	return count, max(time.Since(page[0].StoredAt), 0), nil
}

// Cluster implements console.Source from the store's membership and
// leases, as the cluster command prints them: any node reads the same.
func (in *inspector) Cluster(ctx context.Context) (console.Cluster, error) {
	cn := in.rt.cluster
	if cn == nil {
		return console.Cluster{}, nil
	}
	cs, ok := in.rt.store.(store.Cluster)
	if !ok {
		return console.Cluster{}, nil
	}
	nodes, err := cs.Nodes(ctx)
	if err != nil {
		return console.Cluster{}, err
	}
	leases, err := cs.Leases(ctx)
	if err != nil {
		return console.Cluster{}, err
	}
	out := console.Cluster{Clustered: true, Shards: len(leases)}
	held := map[string]int{}
	for _, l := range leases {
		if l.Owner == "" || l.Remaining < 0 {
			out.Free++
			continue
		}
		held[l.Owner]++
	}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, console.Node{
			ID: n.ID, Address: n.Address, StartedAt: n.StartedAt, LastHeartbeat: n.Age,
			Shards: held[n.ID], Self: n.ID == cn.node.ID(),
		})
	}
	return out, nil
}

// Timers implements console.Source from the store's pending timers of
// the entity.
func (in *inspector) Timers(ctx context.Context, typ, id string) ([]console.Timer, error) {
	if _, err := in.host(typ); err != nil {
		return nil, err
	}
	ts, ok := in.rt.store.(store.Timers)
	if !ok {
		return nil, nil
	}
	pending, err := ts.EntityTimers(ctx, store.Ref{Type: typ, ID: id})
	if err != nil {
		return nil, err
	}
	out := make([]console.Timer, 0, len(pending))
	for _, t := range pending {
		method := "(unreadable call)"
		if c, err := decodeCall(t.Call); err == nil {
			method = c.method
		}
		out = append(out, console.Timer{Name: t.Name, Due: t.Due, Method: method, Attempts: t.Attempts})
	}
	slices.SortFunc(out, func(a, b console.Timer) int { return a.Due.Compare(b.Due) })
	return out, nil
}

// Views implements console.Source from the runtime's view hosts.
func (in *inspector) Views(context.Context) ([]console.View, error) {
	var out []console.View
	for _, h := range in.rt.views.hosts {
		s := h.stats()
		out = append(out, console.View{Name: s.Name, Version: s.Version, Serving: s.Serving, Ready: s.Ready, Updated: s.Updated, Skipped: s.Skipped})
	}
	slices.SortFunc(out, func(a, b console.View) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}
