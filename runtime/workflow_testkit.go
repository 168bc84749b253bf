package statefun

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/runtime/internal/workflowpb"
)

// This file is the runtime half of generated workflow testkits: the
// workflow's handlers and steps run as the runtime runs them (the same
// code decides what a start, a signal or an attempt leads to), against a
// record in memory, with fake replies for the calls steps make. A test
// drives it step by step; time moves only when the test says so.

// WorkflowTestKit holds one workflow in a unit test. Generated testkits
// wrap it; create one with NewWorkflowTestKit.
type WorkflowTestKit[S proto.Message] struct {
	t   TB
	h   *WorkflowHost[S]
	rec *workflowpb.WorkflowRecord
	id  string
	now time.Time

	mu    sync.Mutex
	fakes map[string]func(proto.Message) (proto.Message, error)
	calls []TestCall
	// unfaked names a call a step made that no OnCall answers.
	unfaked string
}

// TestCall is a call a step made in a testkit.
type TestCall struct {
	Method         string
	Request        proto.Message
	IdempotencyKey string
}

// NewWorkflowTestKit returns a testkit for the workflow cfg describes, not
// started yet. Generated code calls it.
func NewWorkflowTestKit[S proto.Message](t TB, cfg WorkflowConfig[S]) *WorkflowTestKit[S] {
	t.Helper()
	if err := cfg.validateSteps(); err != nil {
		t.Fatalf("statefun: %v", err)
	}
	k := &WorkflowTestKit[S]{t: t, h: bareWorkflowHost(cfg), now: time.Now(),
		rec: &workflowpb.WorkflowRecord{Status: &statefunv1.WorkflowStatus{}}, fakes: map[string]func(proto.Message) (proto.Message, error){}}
	k.h.now = func() time.Time { return k.now }
	return k
}

// SetNow sets the clock handlers and steps see (time.Now by default), so
// that a test can tell when sleeps, retries and waits would end.
func (k *WorkflowTestKit[S]) SetNow(now time.Time) { k.now = now }

// OnCall answers calls of method (a full gRPC method name, such as
// bankv1.AccountService_Withdraw_FullMethodName) that steps make through
// their context's Conn, with fn's reply or error. A call no OnCall
// answers fails the test.
func (k *WorkflowTestKit[S]) OnCall(method string, fn func(req proto.Message) (proto.Message, error)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fakes[method] = fn
}

// Calls returns the calls steps made so far, oldest first, with the
// idempotency key each carried.
func (k *WorkflowTestKit[S]) Calls() []TestCall {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]TestCall(nil), k.calls...)
}

// Status returns the workflow's progress.
func (k *WorkflowTestKit[S]) Status() *statefunv1.WorkflowStatus {
	return proto.Clone(k.rec.GetStatus()).(*statefunv1.WorkflowStatus)
}

// State returns a copy of the workflow's state.
func (k *WorkflowTestKit[S]) State() S {
	k.t.Helper()
	s, err := k.h.decode(k.rec)
	if err != nil {
		k.t.Fatalf("State: %v", err)
	}
	return s
}

// address records the workflow a request addresses, as TestKit.address.
func (k *WorkflowTestKit[S]) address(method string, keyErr error, id string) bool {
	k.t.Helper()
	return address(k.t, "workflow", &k.id, method, keyErr, id)
}

// commit applies what a command staged, as the host would once durable.
func (k *WorkflowTestKit[S]) commit(c *CommandContext) {
	for _, e := range c.events {
		applyWorkflowEvent(k.rec, e.msg)
	}
}

// WorkflowTestResult is what one start, signal or read did in a testkit.
type WorkflowTestResult[R proto.Message] struct {
	t      TB
	method string
	reply  R
	err    error
}

// Reply returns the handler's reply, or nil when it failed.
func (r *WorkflowTestResult[R]) Reply() R { return r.reply }

// Err returns the handler's error, or nil.
func (r *WorkflowTestResult[R]) Err() error { return r.err }

// WantReply fails the test unless the call succeeded with a reply equal
// to want.
func (r *WorkflowTestResult[R]) WantReply(want R) {
	r.t.Helper()
	wantReply(r.t, r.method, r.reply, r.err, want)
}

// WantCode fails the test unless the call's error has the gRPC status code
// code; codes.OK means that it succeeded.
func (r *WorkflowTestResult[R]) WantCode(code codes.Code) {
	r.t.Helper()
	wantCode(r.t, r.method, r.err, code)
}

func testWorkflowCommand[S, Q, R proto.Message](k *WorkflowTestKit[S], method string, req Q, key func(Q) (string, error), handler func(id string) func(*CommandContext, *workflowpb.WorkflowRecord) (R, error)) *WorkflowTestResult[R] {
	k.t.Helper()
	res := &WorkflowTestResult[R]{t: k.t, method: method}
	id, err := key(req)
	if !k.address(method, err, id) {
		return res
	}
	c := &CommandContext{ctx: context.Background(), entityID: id, kind: EventSourced}
	p, stack := catchPanic(func() { res.reply, res.err = handler(id)(c, k.rec) })
	if p != nil {
		k.t.Fatalf("%s panicked: %v\n%s", method, p, stack)
		return res
	}
	if res.err == nil {
		res.reply = proto.Clone(res.reply).(R)
		k.commit(c)
	}
	return res
}

// TestStartWorkflow runs fn, a start handler called with req, as
// StartWorkflow runs it. Generated testkits call it.
func TestStartWorkflow[S, Q, R proto.Message](k *WorkflowTestKit[S], method string, req Q, key func(Q) (string, error), fn func(*WorkflowContext, S) (R, error)) *WorkflowTestResult[R] {
	k.t.Helper()
	return testWorkflowCommand(k, method, req, key, func(id string) func(*CommandContext, *workflowpb.WorkflowRecord) (R, error) {
		return startHandler(k.h, id, fn)
	})
}

// TestSignalWorkflow runs fn, a signal handler called with req, as
// SignalWorkflow runs it. Generated testkits call it.
func TestSignalWorkflow[S, Q, R proto.Message](k *WorkflowTestKit[S], method string, req Q, key func(Q) (string, error), fn func(*WorkflowContext, S) (R, error)) *WorkflowTestResult[R] {
	k.t.Helper()
	return testWorkflowCommand(k, method, req, key, func(id string) func(*CommandContext, *workflowpb.WorkflowRecord) (R, error) {
		return signalHandler(k.h, id, method, fn)
	})
}

// TestReadWorkflow runs fn, a read handler called with req, as
// ReadWorkflow runs it. Generated testkits call it.
func TestReadWorkflow[S, Q, R proto.Message](k *WorkflowTestKit[S], method string, req Q, key func(Q) (string, error), fn func(*WorkflowReadContext, S) (R, error)) *WorkflowTestResult[R] {
	k.t.Helper()
	res := &WorkflowTestResult[R]{t: k.t, method: method}
	id, err := key(req)
	if !k.address(method, err, id) {
		return res
	}
	p, stack := catchPanic(func() {
		res.reply, res.err = readHandler(k.h, id, fn)(&ReadContext{ctx: context.Background(), entityID: id}, k.rec)
	})
	if p != nil {
		k.t.Fatalf("%s panicked: %v\n%s", method, p, stack)
	}
	if res.err == nil {
		res.reply = proto.Clone(res.reply).(R)
	}
	return res
}

// StepTestResult is what one attempt at a step did in a testkit.
type StepTestResult struct {
	// Step and Attempt name the attempt.
	Step    string
	Attempt int
	// Err is why the attempt failed, or nil when it chose what comes next.
	Err error
	// Status is the workflow's progress after the attempt.
	Status *statefunv1.WorkflowStatus
}

// RunStep runs the step the workflow is at, once, whatever its wake time
// (a sleep or a retry's backoff passes at once in a test), and applies the
// outcome as the runtime would: the next step, a retry, the failover step
// or the workflow's end. The test fails when the workflow is not at a
// step (not started, waiting for a signal, ended).
func (k *WorkflowTestKit[S]) RunStep() *StepTestResult {
	k.t.Helper()
	st := k.rec.GetStatus()
	if st.GetPhase() != statefunv1.WorkflowStatus_PHASE_RUNNING {
		k.t.Fatalf("RunStep: the workflow is %s, not at a step; %s", phaseName(st.GetPhase()), phaseHint(st.GetPhase()))
		return nil
	}
	res := &StepTestResult{Step: st.GetStep(), Attempt: int(st.GetAttempt())}
	k.unfaked = ""
	rec := proto.Clone(k.rec).(*workflowpb.WorkflowRecord)
	next, b, started, err := k.h.perform(context.Background(), rec, k.id, testConn[S]{k})
	if k.unfaked != "" {
		k.t.Fatalf("RunStep: step %q called %s, which no OnCall answers; add kit.OnCall(%q, ...)", res.Step, k.unfaked, k.unfaked)
		return nil
	}
	c := &CommandContext{ctx: context.Background(), entityID: k.id, kind: EventSourced}
	k.h.settle(c, k.id, rec, k.rec, next, err, b, started)
	k.commit(c)
	res.Err = err
	res.Status = k.Status()
	return res
}

func phaseHint(p statefunv1.WorkflowStatus_Phase) string {
	switch p {
	case statefunv1.WorkflowStatus_PHASE_UNSPECIFIED:
		return "start it first"
	case statefunv1.WorkflowStatus_PHASE_WAITING:
		return "send it a signal, or ExpireWait to time the wait out"
	}
	return "it has ended"
}

// Run runs steps until the workflow waits for a signal or ends, at most
// maxSteps attempts (the test fails beyond them: a loop that never
// ends), and returns its progress.
func (k *WorkflowTestKit[S]) Run(maxSteps int) *statefunv1.WorkflowStatus {
	k.t.Helper()
	for range maxSteps {
		if k.rec.GetStatus().GetPhase() != statefunv1.WorkflowStatus_PHASE_RUNNING {
			return k.Status()
		}
		if k.RunStep() == nil {
			return k.Status()
		}
	}
	if k.rec.GetStatus().GetPhase() == statefunv1.WorkflowStatus_PHASE_RUNNING {
		k.t.Fatalf("Run: the workflow still runs (at step %q) after %d attempts", k.rec.GetStatus().GetStep(), maxSteps)
	}
	return k.Status()
}

// ExpireWait times out the wait for a signal the workflow is in, as the
// runtime does when the wait's timeout passes.
func (k *WorkflowTestKit[S]) ExpireWait() {
	k.t.Helper()
	st := k.rec.GetStatus()
	if st.GetPhase() != statefunv1.WorkflowStatus_PHASE_WAITING {
		k.t.Fatalf("ExpireWait: the workflow is %s, not waiting for a signal", phaseName(st.GetPhase()))
		return
	}
	c := &CommandContext{ctx: context.Background(), entityID: k.id, kind: EventSourced}
	k.h.expire(c, k.id, k.rec, k.now)
	k.commit(c)
}

// testConn answers a step's calls with the testkit's fakes.
type testConn[S proto.Message] struct{ k *WorkflowTestKit[S] }

func (c testConn[S]) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	k := c.k
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return status.Errorf(codes.Internal, "request %T or reply %T is not a protobuf message", args, reply)
	}
	var key string
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		if v := md.Get(IdempotencyKeyHeader); len(v) > 0 {
			key = v[len(v)-1]
		}
	}
	k.mu.Lock()
	fn := k.fakes[method]
	k.calls = append(k.calls, TestCall{Method: method, Request: proto.Clone(in), IdempotencyKey: key})
	if fn == nil {
		k.unfaked = method
	}
	k.mu.Unlock()
	if fn == nil {
		return status.Errorf(codes.Unimplemented, "no fake for %s in this testkit", method)
	}
	res, err := fn(proto.Clone(in))
	if err != nil {
		return err
	}
	if res == nil {
		return fmt.Errorf("the fake for %s returned neither a reply nor an error", method)
	}
	wire, err := proto.Marshal(res)
	if err != nil {
		return err
	}
	return proto.Unmarshal(wire, out)
}

func (testConn[S]) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "workflow testkits fake unary calls only")
}
