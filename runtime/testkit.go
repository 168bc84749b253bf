package statefun

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// This file is the runtime half of the generated testkits
// (ShoppingCartTestKit and the like). They run an entity's handlers the way
// a Host does, minus everything a unit test does not want: no server, no
// store, no goroutine, no output gate. Generated code calls it; tests use the
// generated, typed API instead.

// TB is the part of testing.TB a generated testkit uses; *testing.T and
// *testing.B satisfy it. It keeps package testing out of the generated code,
// which is part of the production package.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// TestKit holds the state of one entity in a unit test and runs its handlers
// against it. Generated testkits wrap it; create one with NewTestKit.
type TestKit[S proto.Message] struct {
	t     TB
	cfg   EntityConfig[S]
	state S
	// id is the entity ID, taken from the key of the first request: a
	// testkit holds one entity, as a host instance does.
	id string
	// timers are the entity's pending timers, by name; now is the clock
	// ScheduleCallAfter counts from (time.Now unless SetNow set it).
	timers map[string]TestTimer
	now    func() time.Time
	// firing, while FireTimer runs a timer's call, is the timer the
	// handler's context says it is the delivery of.
	firing *FiredTimer
}

// TestTimer is a pending timer in a testkit: what a command scheduled.
type TestTimer struct {
	Name    string
	Due     time.Time
	Method  string        // the full gRPC name of the method it calls
	Request proto.Message // a copy of the call's request
}

// NewTestKit returns a testkit for the entity cfg describes, in the state of
// an entity without history. It uses cfg's Type, Kind, NewState and (for
// event-sourced entities) ApplyEvent. Generated code calls it.
func NewTestKit[S proto.Message](t TB, cfg EntityConfig[S]) *TestKit[S] {
	t.Helper()
	k := &TestKit[S]{t: t, cfg: cfg, timers: map[string]TestTimer{}, now: time.Now}
	switch {
	case cfg.NewState == nil:
		t.Fatalf("statefun: testkit for %q has no NewState; regenerate the code with protoc-gen-statefun", cfg.Type)
	case cfg.Kind == EventSourced && cfg.ApplyEvent == nil:
		t.Fatalf("statefun: testkit for event-sourced %q has no ApplyEvent; regenerate the code with protoc-gen-statefun", cfg.Type)
	default:
		k.state = cfg.NewState()
	}
	return k
}

// Given applies events to the state, in order, as loading the entity from
// its history does. Event-sourced entities only.
func (k *TestKit[S]) Given(events ...proto.Message) {
	k.t.Helper()
	if k.cfg.Kind != EventSourced {
		k.t.Fatalf("Given: %s entities have no events; use GivenState", k.cfg.Kind)
		return
	}
	for _, e := range events {
		// A clone, so that the state never shares memory with a message
		// the test still holds.
		if p, stack := k.apply(proto.Clone(e)); p != nil {
			k.t.Fatalf("Given: applying %s panicked: %v\n%s", describe(e), p, stack)
			return
		}
	}
}

// GivenState replaces the state with a copy of state.
func (k *TestKit[S]) GivenState(state S) {
	k.t.Helper()
	if !state.ProtoReflect().IsValid() {
		k.t.Fatalf("GivenState: state is nil; pass a message (an empty one for a new entity)")
		return
	}
	k.state = proto.Clone(state).(S)
}

// State returns a copy of the current state.
func (k *TestKit[S]) State() S { return proto.Clone(k.state).(S) }

// WantState fails the test unless the current state equals want.
func (k *TestKit[S]) WantState(want S) {
	k.t.Helper()
	if !proto.Equal(k.state, want) {
		k.t.Fatalf("state:\n got: %s\nwant: %s", describe(k.state), describe(want))
	}
}

// apply applies one event to the state.
func (k *TestKit[S]) apply(event proto.Message) (panicValue any, stack []byte) {
	return catchPanic(func() { k.cfg.ApplyEvent(k.state, event) })
}

// address records id, the entity a request addresses, as the testkit's
// entity. It reports false, having failed the test, when the request has no
// key (keyErr; the server would not let it reach the handler) or addresses
// another entity than the requests before it.
func (k *TestKit[S]) address(method string, keyErr error, id string) bool {
	k.t.Helper()
	return address(k.t, "entity", &k.id, method, keyErr, id)
}

// address records id in held, the ID of the one entity (or workflow: what)
// a testkit holds, the first time; it fails the test and reports false when
// the request has no key or names another ID.
func address(t TB, what string, held *string, method string, keyErr error, id string) bool {
	t.Helper()
	switch {
	case keyErr != nil:
		t.Fatalf("%s: %v; the server rejects such a request before the handler runs, so set the key in the test's request too", method, keyErr)
		return false
	case *held != "" && id != *held:
		t.Fatalf("%s addresses %s %q, but this testkit holds %s %q; use a testkit per %s", method, what, id, what, *held, what)
		return false
	}
	*held = id
	return true
}

// TestCommand runs fn, a command handler called with req, against the
// testkit's state, as Command runs it against a hosted entity: on success,
// what it emitted (or the state it set) is applied, so the next command sees
// it; on error nothing is. The test fails when req has no entity key or
// addresses another entity, when the handler changes its state argument or
// panics, or when a change it made could not be stored. Generated testkits
// call it.
func TestCommand[S, Q, R proto.Message](k *TestKit[S], method string, req Q, key func(Q) (string, error), fn func(*CommandContext, S) (R, error)) *TestResult[S, R] {
	k.t.Helper()
	res := &TestResult[S, R]{t: k.t, method: method}
	id, err := key(req)
	if !k.address(method, err, id) {
		return res
	}
	cc := &CommandContext{ctx: k.context(), entityID: id, kind: k.cfg.Kind}
	if !callTestHandler(k, res, false, func(state S) (R, error) { return fn(cc, state) }) || res.err != nil {
		return res
	}
	// As the runtime does, before anything of the command is kept: a
	// timer it cannot store fails the command.
	timers, err := k.stageTimers(method, cc.timers)
	if err != nil {
		res.reply, res.err = *new(R), err
		return res
	}
	defer k.applyTimers(timers)
	switch k.cfg.Kind {
	case EventSourced:
		events := make([]proto.Message, len(cc.events))
		for i, e := range cc.events {
			if _, err := (proto.MarshalOptions{Deterministic: true}).Marshal(e.msg); err != nil {
				k.t.Fatalf("%s emitted %s, which cannot be encoded: %v; the server would fail the command with INTERNAL", method, describe(e.msg), err)
				return res
			}
			// Copied before it is applied: an On method may share the
			// event's memory with the state, which later commands change.
			events[i] = proto.Clone(e.msg)
		}
		for _, e := range cc.events {
			if p, stack := k.apply(e.msg); p != nil {
				k.t.Fatalf("%s: applying %s panicked: %v\n%s", method, describe(e.msg), p, stack)
				return res
			}
		}
		res.events = events
	case KeyValue:
		if cc.newState == nil {
			break
		}
		next, ok := cc.newState.(S)
		if !ok {
			k.t.Fatalf("%s set a state of type %T, want %T", method, cc.newState, k.state)
			return res
		}
		if _, err := (proto.MarshalOptions{Deterministic: true}).Marshal(next); err != nil {
			k.t.Fatalf("%s set a state that cannot be encoded: %v; the server would fail the command with INTERNAL", method, err)
			return res
		}
		k.state = proto.Clone(next).(S)
		res.newState = proto.Clone(next).(S)
	}
	return res
}

// context is the context handlers get: a timer's delivery's while
// FireTimer runs one.
func (k *TestKit[S]) context() context.Context {
	if k.firing == nil {
		return context.Background()
	}
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(timerHeader, encodeFiredTimer(*k.firing)))
}

// stageTimers checks a command's timer operations as the runtime does and
// returns them as the testkit keeps them.
func (k *TestKit[S]) stageTimers(method string, ops []timerOp) ([]timerOp, error) {
	for i, op := range ops {
		if err := checkTimerName(op.name); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if op.cancel {
			continue
		}
		if op.call == nil {
			k.t.Fatalf("%s scheduled timer %q with a nil call; pass a generated <Entity><Method>Call", method, op.name)
			return nil, status.Errorf(codes.Internal, "timer %q schedules a nil call", op.name)
		}
		if _, err := (proto.MarshalOptions{Deterministic: true}).Marshal(op.call.request); err != nil {
			k.t.Fatalf("%s scheduled timer %q with a request that cannot be encoded: %v; the server would fail the command with INTERNAL", method, op.name, err)
			return nil, status.Error(codes.Internal, err.Error())
		}
		if op.relative {
			ops[i].due, ops[i].relative = k.now().Add(op.delay), false
		}
	}
	return ops, nil
}

// applyTimers keeps what a successful command did to its timers, in order.
func (k *TestKit[S]) applyTimers(ops []timerOp) {
	for _, op := range ops {
		if op.cancel {
			delete(k.timers, op.name)
			continue
		}
		k.timers[op.name] = TestTimer{Name: op.name, Due: op.due.Truncate(time.Microsecond), Method: op.call.method, Request: proto.Clone(op.call.request)}
	}
}

// Timers returns the entity's pending timers, by name.
func (k *TestKit[S]) Timers() []TestTimer {
	ts := make([]TestTimer, 0, len(k.timers))
	for _, t := range k.timers {
		t.Request = proto.Clone(t.Request)
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b TestTimer) int { return strings.Compare(a.Name, b.Name) })
	return ts
}

// SetNow sets the clock that ScheduleCallAfter counts from.
func (k *TestKit[S]) SetNow(now time.Time) { k.now = func() time.Time { return now } }

// FireTimer delivers the pending timer name as the runtime would: the
// timer is removed and run calls its method, returning whether the method
// is one of the entity's and the call's error (false fails the test: a
// call to another entity is checked with Timers). While it runs,
// TimerOf(ctx) tells the handler it is the timer's delivery. Generated
// testkits call it.
func (k *TestKit[S]) FireTimer(name string, run func(method string, req proto.Message) (handled bool, err error)) error {
	k.t.Helper()
	t, ok := k.timers[name]
	if !ok {
		names := make([]string, 0, len(k.timers))
		for n := range k.timers {
			names = append(names, n)
		}
		slices.Sort(names)
		k.t.Fatalf("FireTimer: no pending timer %q (pending: %q)", name, names)
		return nil
	}
	delete(k.timers, name)
	k.firing = &FiredTimer{EntityType: k.cfg.Type, EntityID: k.id, Name: t.Name, Due: t.Due, Attempt: 1}
	defer func() { k.firing = nil }()
	ok, err := run(t.Method, proto.Clone(t.Request))
	if !ok {
		k.t.Fatalf("FireTimer: timer %q calls %s, which is not a command of %s; check the call with Timers instead", name, t.Method, k.cfg.Type)
	}
	return err
}

// TestRead runs fn, a read-only handler called with req, against the
// testkit's state, as Read runs it against a hosted entity. The test fails
// when req has no entity key or addresses another entity, or when the
// handler changes its state argument or panics. Generated testkits call it.
func TestRead[S, Q, R proto.Message](k *TestKit[S], method string, req Q, key func(Q) (string, error), fn func(*ReadContext, S) (R, error)) *TestResult[S, R] {
	k.t.Helper()
	res := &TestResult[S, R]{t: k.t, method: method}
	id, err := key(req)
	if !k.address(method, err, id) {
		return res
	}
	rc := &ReadContext{ctx: k.context(), entityID: id}
	callTestHandler(k, res, true, func(state S) (R, error) { return fn(rc, state) })
	return res
}

// callTestHandler runs a handler, recording its reply or error in res. It
// reports false, having failed the test, when the handler panicked or changed
// its state argument; the state is then as it was before.
func callTestHandler[S, R proto.Message](k *TestKit[S], res *TestResult[S, R], read bool, fn func(S) (R, error)) bool {
	k.t.Helper()
	before := proto.Clone(k.state).(S)
	var (
		reply R
		err   error
	)
	p, stack := catchPanic(func() { reply, err = fn(k.state) })
	if p != nil {
		k.state = before
		k.t.Fatalf("%s panicked: %v\n%s", res.method, p, stack)
		return false
	}
	if !proto.Equal(before, k.state) {
		changed := k.state
		k.state = before
		rule := "command handlers must only emit events (the On methods change the state)"
		switch {
		case read:
			rule = "read-only handlers must not change the state"
		case k.cfg.Kind == KeyValue:
			rule = "command handlers must not change the state they are given: pass a new one to SetState (start from proto.Clone(state) to keep parts of it)"
		}
		k.t.Fatalf("%s changed its state argument; %s\nbefore: %s\n after: %s", res.method, rule, describe(before), describe(changed))
		return false
	}
	if err != nil {
		// As from the runtime: an error and no reply.
		res.err = err
		return true
	}
	// A reply may share memory with the state, which the next command
	// changes; the runtime, too, hands out a copy.
	res.reply = proto.Clone(reply).(R)
	return true
}

// catchPanic calls fn and returns what it panicked with, and where: the
// test then fails with them instead of the test binary crashing, and
// t.Fatalf is never called from a deferred function.
func catchPanic(fn func()) (panicValue any, stack []byte) {
	defer func() {
		if p := recover(); p != nil {
			panicValue, stack = p, debug.Stack()
		}
	}()
	fn()
	return nil, nil
}

// TestResult is what one command or read did in a testkit: its reply or
// error and, for a command that succeeded, the events it emitted or the
// state it set. Generated testkits wrap it in a typed result.
type TestResult[S, R proto.Message] struct {
	t        TB
	method   string
	reply    R
	err      error
	events   []proto.Message
	newState S
}

// Reply returns the handler's reply, or nil when it returned an error.
func (r *TestResult[S, R]) Reply() R { return r.reply }

// Err returns the handler's error, or nil.
func (r *TestResult[S, R]) Err() error { return r.err }

// Events returns copies of the events the command emitted, in order. It is
// empty when the command failed: a failed command keeps nothing.
func (r *TestResult[S, R]) Events() []proto.Message { return r.events }

// NewState returns a copy of the state a key-value command set, or nil when
// it set none or failed.
func (r *TestResult[S, R]) NewState() S { return r.newState }

// WantReply fails the test unless the handler succeeded with a reply equal
// to want.
func (r *TestResult[S, R]) WantReply(want R) {
	r.t.Helper()
	wantReply(r.t, r.method, r.reply, r.err, want)
}

// WantCode fails the test unless the handler's error has the gRPC status
// code code. codes.OK means that the handler succeeded.
func (r *TestResult[S, R]) WantCode(code codes.Code) {
	r.t.Helper()
	wantCode(r.t, r.method, r.err, code)
}

// wantReply fails the test unless a call of method succeeded (err is nil)
// with a reply equal to want.
func wantReply(t TB, method string, got proto.Message, err error, want proto.Message) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s failed: %v\nwant reply: %s", method, err, describe(want))
		return
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s reply:\n got: %s\nwant: %s", method, describe(got), describe(want))
	}
}

// wantCode fails the test unless err, a call of method's, has the gRPC
// status code code; codes.OK means that the call succeeded.
func wantCode(t TB, method string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		if err == nil {
			t.Fatalf("%s succeeded; want code %v", method, code)
			return
		}
		t.Fatalf("%s failed with code %v, want %v: %v", method, got, code, err)
	}
}

// WantEvents fails the test unless the command succeeded and emitted
// exactly want, in order. With no arguments, it asserts that the command
// succeeded and emitted nothing.
func (r *TestResult[S, R]) WantEvents(want ...proto.Message) {
	r.t.Helper()
	if r.err != nil {
		r.t.Fatalf("%s failed: %v\nwant events:%s", r.method, r.err, describeAll(want))
		return
	}
	same := len(r.events) == len(want)
	for i := 0; same && i < len(want); i++ {
		same = proto.Equal(r.events[i], want[i])
	}
	if !same {
		r.t.Fatalf("%s events:\n got:%s\nwant:%s", r.method, describeAll(r.events), describeAll(want))
	}
}

// describe renders a message for a failure message: its name and its
// fields in the protobuf text format.
func describe(m proto.Message) string {
	if m == nil || !m.ProtoReflect().IsValid() {
		return "<nil>"
	}
	return fmt.Sprintf("%s{%s}", m.ProtoReflect().Descriptor().Name(), prototext.MarshalOptions{}.Format(m))
}

func describeAll[M proto.Message](ms []M) string {
	if len(ms) == 0 {
		return " (none)"
	}
	var b strings.Builder
	for _, m := range ms {
		b.WriteString("\n  ")
		b.WriteString(describe(m))
	}
	return b.String()
}
