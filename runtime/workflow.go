package statefun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/runtime/internal/workflowpb"
)

// A workflow is an event-sourced entity whose state, a WorkflowRecord,
// holds the user's state (encoded) and the workflow's progress, and whose
// events are the outcomes of its steps and signals. Its course is driven
// by one timer per workflow (workflowTimer), scheduled in the same commit
// as each outcome: the timer calls the runner's RunStep when the next step
// is due, so a step runs, after a crash too, on whichever node owns the
// workflow then. Invariant 16 in INVARIANTS.md says what this keeps.

// WorkflowConfig describes a workflow type to the runtime. Generated code
// fills it in from the proto options; programs do not build it by hand.
type WorkflowConfig[S proto.Message] struct {
	// Type is the stable type name stored with the workflow's history.
	Type string
	// Service is the gRPC service whose methods start, signal and read it.
	Service *grpc.ServiceDesc
	// PassivationTimeout is how long an idle workflow stays in memory; 0
	// means the runtime's default.
	PassivationTimeout time.Duration
	// NewState returns the state of a workflow that was never started.
	NewState func() S
	// Steps in declaration order; the first is the default first step.
	Steps []WorkflowStep[S]
	// NewService returns the gRPC service implementation bound to a host.
	NewService func(*WorkflowHost[S]) any
}

// WorkflowStep is one step of a workflow.
type WorkflowStep[S proto.Message] struct {
	Name string
	// Run runs one attempt: it may change the state in place, call
	// entities, and returns what comes next.
	Run func(*StepContext, S) (Transition, error)
	// Timeout bounds one attempt; 0 means DefaultStepTimeout.
	Timeout time.Duration
	Retry   RetryPolicy
}

// RetryPolicy says how a failed step is retried.
type RetryPolicy struct {
	// MaxAttempts counts attempts in all, the first included; 0 means
	// without limit.
	MaxAttempts int
	// InitialBackoff is the wait before the second attempt (0: 100 ms);
	// each later wait doubles, up to MaxBackoff (0: 1 minute).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Failover is the step to run once MaxAttempts are used up; "" fails
	// the workflow.
	Failover string
}

const (
	// DefaultStepTimeout bounds one attempt at a step that sets no
	// timeout of its own.
	DefaultStepTimeout = 30 * time.Second
	defaultStepBackoff = 100 * time.Millisecond
	defaultStepMaxWait = time.Minute
	// stepGrace is how long after a step's timeout its watchdog fires: the
	// attempt's outcome is committed within it. The watchdog only matters
	// when the node running the step died (a watchdog that fires while
	// its attempt still runs on this node finds it running and leaves
	// it).
	stepGrace = time.Second
	// workflowTimer is the name of a workflow's one timer.
	workflowTimer = "statefun.workflow"
	// maxHistory bounds WorkflowStatus.history.
	maxHistory = 100
)

// Stored event types of workflows.
const (
	wfStartedType   = "statefun.WorkflowStarted"
	wfStepEndedType = "statefun.StepEnded"
	wfStepFailType  = "statefun.StepFailed"
	wfSignalledType = "statefun.Signalled"
	wfExpiredType   = "statefun.WaitExpired"
)

var attrStep = attribute.Key("statefun.workflow.step")

var stepNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func newWorkflowEvent(eventType string) proto.Message {
	switch eventType {
	case wfStartedType:
		return new(workflowpb.WorkflowStarted)
	case wfStepEndedType:
		return new(workflowpb.StepEnded)
	case wfStepFailType:
		return new(workflowpb.StepFailed)
	case wfSignalledType:
		return new(workflowpb.Signalled)
	case wfExpiredType:
		return new(workflowpb.WaitExpired)
	}
	return nil
}

// NewWorkflow turns a configuration into an Entity, to be hosted like one:
// pass it to New or Main. Generated code calls it.
func NewWorkflow[S proto.Message](cfg WorkflowConfig[S]) *Entity {
	e := &Entity{typ: cfg.Type, kind: EventSourced, service: cfg.Service}
	e.err = cfg.validate()
	e.bind = func(r *Runtime) any {
		return cfg.NewService(newWorkflowHost(r, cfg))
	}
	e.knowsEvent = func(t string) bool { return t == callEventType || newWorkflowEvent(t) != nil }
	return e
}

func (cfg *WorkflowConfig[S]) validate() error {
	switch {
	case !entityTypePattern.MatchString(cfg.Type):
		return fmt.Errorf("workflow type %q: use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters", cfg.Type)
	case cfg.Service == nil || cfg.NewService == nil:
		return fmt.Errorf("workflow %q: its configuration lacks Service or NewService; regenerate the code with protoc-gen-statefun", cfg.Type)
	}
	return cfg.validateSteps()
}

// validateSteps checks what a testkit needs too.
func (cfg *WorkflowConfig[S]) validateSteps() error {
	switch {
	case cfg.NewState == nil:
		return fmt.Errorf("workflow %q: its configuration lacks NewState; regenerate the code with protoc-gen-statefun", cfg.Type)
	case len(cfg.Steps) == 0:
		return fmt.Errorf("workflow %q has no steps; declare at least one in its (statefun.v1.workflow) option", cfg.Type)
	}
	names := map[string]bool{}
	for _, s := range cfg.Steps {
		switch {
		case !stepNamePattern.MatchString(s.Name):
			return fmt.Errorf("workflow %q: step name %q: use lowercase letters, digits and '_', starting with a letter", cfg.Type, s.Name)
		case names[s.Name]:
			return fmt.Errorf("workflow %q: step %q is declared twice", cfg.Type, s.Name)
		case s.Run == nil:
			return fmt.Errorf("workflow %q: step %q has no Run function; regenerate the code with protoc-gen-statefun", cfg.Type, s.Name)
		case s.Timeout < 0 || s.Retry.MaxAttempts < 0 || s.Retry.InitialBackoff < 0 || s.Retry.MaxBackoff < 0:
			return fmt.Errorf("workflow %q: step %q has a negative timeout, attempt count or backoff", cfg.Type, s.Name)
		}
		names[s.Name] = true
	}
	for _, s := range cfg.Steps {
		if f := s.Retry.Failover; f != "" && (!names[f] || f == s.Name) {
			return fmt.Errorf("workflow %q: step %q fails over to %q, which is not another step of the workflow", cfg.Type, s.Name, f)
		}
	}
	return nil
}

// WorkflowHost runs the instances of one workflow type. Generated service
// glue holds one and calls StartWorkflow, SignalWorkflow and ReadWorkflow
// with it.
type WorkflowHost[S proto.Message] struct {
	cfg     WorkflowConfig[S]
	rt      *Runtime // nil in a testkit
	now     func() time.Time
	records *Host[*workflowpb.WorkflowRecord]
	steps   map[string]*WorkflowStep[S]

	// running holds the attempts this node runs now, so that a watchdog
	// that fires while its attempt still runs here does not start it
	// twice.
	runningMu sync.Mutex
	running   map[runKey]bool

	started, stepsDone, stepsFailed, completed, failed, signals atomic.Uint64
}

type runKey struct {
	id      string
	visit   uint64
	attempt uint32
}

func newWorkflowHost[S proto.Message](r *Runtime, cfg WorkflowConfig[S]) *WorkflowHost[S] {
	h := bareWorkflowHost(cfg)
	h.rt = r
	h.records = newHost(r, EntityConfig[*workflowpb.WorkflowRecord]{
		Type:               cfg.Type,
		Kind:               EventSourced,
		Service:            cfg.Service,
		PassivationTimeout: cfg.PassivationTimeout,
		NewState: func() *workflowpb.WorkflowRecord {
			return &workflowpb.WorkflowRecord{Status: &statefunv1.WorkflowStatus{}}
		},
		NewEvent:   newWorkflowEvent,
		ApplyEvent: applyWorkflowEvent,
	})
	r.workflows.add(cfg.Type, h)
	return h
}

// bareWorkflowHost is a host without a runtime: what a testkit needs.
func bareWorkflowHost[S proto.Message](cfg WorkflowConfig[S]) *WorkflowHost[S] {
	h := &WorkflowHost[S]{cfg: cfg, now: time.Now, steps: map[string]*WorkflowStep[S]{}, running: map[runKey]bool{}}
	for i := range cfg.Steps {
		h.steps[cfg.Steps[i].Name] = &cfg.Steps[i]
	}
	return h
}

// applyWorkflowEvent is the record's event handler: it depends on nothing
// but the record and the event, as loading replays it.
func applyWorkflowEvent(rec *workflowpb.WorkflowRecord, event proto.Message) {
	st := rec.Status
	if st == nil {
		st = &statefunv1.WorkflowStatus{}
		rec.Status = st
	}
	var at int64
	switch e := event.(type) {
	case *workflowpb.WorkflowStarted:
		at = e.GetAtMicros()
		rec.State = e.GetState()
		rec.Generation++
		st.StartedAt = micros(at)
		transition(rec, e.GetNext())
	case *workflowpb.StepEnded:
		at = e.GetAtMicros()
		rec.State = e.GetState()
		rec.Generation++
		addHistory(st, &statefunv1.WorkflowStepRun{
			Step: e.GetStep(), Attempt: e.GetAttempt(), StartedAt: micros(e.GetStartedMicros()), EndedAt: micros(at),
			Outcome: statefunv1.WorkflowStepRun_OUTCOME_DONE, Next: e.GetNext().GetStep(),
			// A step that failed the workflow on purpose says why.
			Error: e.GetNext().GetReason(),
		})
		st.LastError = ""
		transition(rec, e.GetNext())
	case *workflowpb.StepFailed:
		at = e.GetAtMicros()
		st.LastError = e.GetError()
		run := &statefunv1.WorkflowStepRun{
			Step: e.GetStep(), Attempt: e.GetAttempt(), StartedAt: micros(e.GetStartedMicros()), EndedAt: micros(at),
			Outcome: statefunv1.WorkflowStepRun_OUTCOME_FAILED, Error: e.GetError(), Next: e.GetNext().GetStep(),
		}
		addHistory(st, run)
		if e.GetRetry() {
			st.Attempt = e.GetAttempt() + 1
			st.WakeAt = micros(e.GetNext().GetWakeAtMicros())
		} else {
			transition(rec, e.GetNext())
		}
	case *workflowpb.Signalled:
		at = e.GetAtMicros()
		if e.GetState() != nil {
			rec.State = e.GetState()
			rec.Generation++
		}
		addHistory(st, &statefunv1.WorkflowStepRun{
			Step: e.GetMethod(), StartedAt: micros(at), EndedAt: micros(at),
			Outcome: statefunv1.WorkflowStepRun_OUTCOME_SIGNALLED, Next: e.GetNext().GetStep(),
		})
		if e.GetNext() != nil {
			transition(rec, e.GetNext())
		}
	case *workflowpb.WaitExpired:
		at = e.GetAtMicros()
		addHistory(st, &statefunv1.WorkflowStepRun{
			Step: st.GetStep(), StartedAt: micros(at), EndedAt: micros(at),
			Outcome: statefunv1.WorkflowStepRun_OUTCOME_WAIT_EXPIRED, Next: e.GetNext().GetStep(),
		})
		transition(rec, e.GetNext())
	default:
		panic(fmt.Sprintf("statefun: %T is not a workflow event", event))
	}
	st.UpdatedAt = micros(at)
}

// transition moves the record to where t leads.
func transition(rec *workflowpb.WorkflowRecord, t *workflowpb.Transition) {
	st := rec.Status
	st.WakeAt = micros(t.GetWakeAtMicros())
	rec.TimeoutStep = ""
	switch t.GetKind() {
	case workflowpb.Transition_KIND_GO_TO:
		st.Phase, st.Step, st.Attempt = statefunv1.WorkflowStatus_PHASE_RUNNING, t.GetStep(), 1
		rec.Visit++
	case workflowpb.Transition_KIND_WAIT:
		st.Phase, st.Step, st.Attempt = statefunv1.WorkflowStatus_PHASE_WAITING, t.GetStep(), 1
		rec.TimeoutStep = t.GetTimeoutStep()
		rec.Visit++
	case workflowpb.Transition_KIND_END:
		st.Phase, st.WakeAt = statefunv1.WorkflowStatus_PHASE_COMPLETED, nil
	case workflowpb.Transition_KIND_FAIL:
		st.Phase, st.WakeAt, st.LastError = statefunv1.WorkflowStatus_PHASE_FAILED, nil, t.GetReason()
	}
}

func addHistory(st *statefunv1.WorkflowStatus, run *statefunv1.WorkflowStepRun) {
	if len(st.History) >= maxHistory {
		st.History = append(st.History[:0], st.History[len(st.History)-maxHistory+1:]...)
	}
	st.History = append(st.History, run)
}

func micros(us int64) *timestamppb.Timestamp {
	if us == 0 {
		return nil
	}
	return timestamppb.New(time.UnixMicro(us))
}

// Transition is what a step chose to happen next: build it with the step
// context's GoTo, Sleep, Pause, WaitForSignal, End or Fail.
type Transition struct{ t *workflowpb.Transition }

func goTo(step string, wake time.Time) *workflowpb.Transition {
	t := &workflowpb.Transition{Kind: workflowpb.Transition_KIND_GO_TO, Step: step}
	if !wake.IsZero() {
		t.WakeAtMicros = wake.UnixMicro()
	}
	return t
}

func wait(step string, timeout time.Duration, onTimeout string, now time.Time) *workflowpb.Transition {
	t := &workflowpb.Transition{Kind: workflowpb.Transition_KIND_WAIT, Step: step, TimeoutStep: onTimeout}
	if timeout > 0 {
		t.WakeAtMicros = now.Add(timeout).UnixMicro()
	}
	return t
}

var (
	endTransition = &workflowpb.Transition{Kind: workflowpb.Transition_KIND_END}
)

func failTransition(reason string) *workflowpb.Transition {
	return &workflowpb.Transition{Kind: workflowpb.Transition_KIND_FAIL, Reason: reason}
}

// check reports a transition that names a step the workflow does not have:
// generated code makes that impossible, so it is a bug, not bad input.
func (h *WorkflowHost[S]) check(t *workflowpb.Transition) error {
	for _, s := range []string{t.GetStep(), t.GetTimeoutStep()} {
		if s != "" && h.steps[s] == nil {
			return status.Errorf(codes.Internal, "workflow %q has no step %q; use the generated step values", h.cfg.Type, s)
		}
	}
	if (t.GetKind() == workflowpb.Transition_KIND_GO_TO || t.GetKind() == workflowpb.Transition_KIND_WAIT) && t.GetStep() == "" {
		return status.Errorf(codes.Internal, "workflow %q: a transition names no step; use the generated step values", h.cfg.Type)
	}
	return nil
}

// follow schedules, or cancels, the workflow's timer for the record it
// will have once c's events are applied: the next step when it is due, a
// wait's timeout, nothing once the workflow ended.
func (h *WorkflowHost[S]) follow(c *CommandContext, id string, after *workflowpb.WorkflowRecord, now time.Time) {
	st := after.GetStatus()
	due := now
	if w := st.GetWakeAt(); w != nil {
		due = w.AsTime()
	}
	switch {
	case st.GetPhase() == statefunv1.WorkflowStatus_PHASE_RUNNING,
		st.GetPhase() == statefunv1.WorkflowStatus_PHASE_WAITING && st.GetWakeAt() != nil:
		c.ScheduleCall(workflowTimer, due, h.runStepCall(id, after.GetVisit(), st.GetAttempt()))
	default:
		c.CancelTimer(workflowTimer)
	}
}

func (h *WorkflowHost[S]) runStepCall(id string, visit uint64, attempt uint32) *Call {
	return NewCall(workflowpb.WorkflowRunnerService_RunStep_FullMethodName, &workflowpb.RunStepRequest{
		WorkflowType: h.cfg.Type, WorkflowId: id, Visit: visit, Attempt: attempt,
	})
}

// emit emits event on c and schedules what follows it.
func (h *WorkflowHost[S]) emit(c *CommandContext, id string, rec *workflowpb.WorkflowRecord, eventType string, event proto.Message, now time.Time) {
	after := proto.Clone(rec).(*workflowpb.WorkflowRecord)
	applyWorkflowEvent(after, event)
	c.Emit(eventType, event)
	h.follow(c, id, after, now)
}

func (h *WorkflowHost[S]) decode(rec *workflowpb.WorkflowRecord) (S, error) {
	state := h.cfg.NewState()
	if err := proto.Unmarshal(rec.GetState(), state); err != nil {
		return state, status.Errorf(codes.DataLoss, "workflow %q: its stored state does not decode as %s: %v", h.cfg.Type, state.ProtoReflect().Descriptor().FullName(), err)
	}
	return state, nil
}

func encodeState(state proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(state)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode the workflow's state: %v", err)
	}
	if b == nil {
		// An empty state is still a state: Signalled tells "unchanged"
		// by a nil one.
		b = []byte{}
	}
	return b, nil
}

// WorkflowContext is the runtime half of a generated workflow context,
// given to start and signal handlers: they change the state in place and
// may choose what comes next.
type WorkflowContext struct {
	ctx    context.Context
	id     string
	status *statefunv1.WorkflowStatus
	now    time.Time
	next   *workflowpb.Transition
}

// Context returns the request's context.
func (c *WorkflowContext) Context() context.Context { return c.ctx }

// WorkflowID returns the ID of the workflow the call addresses.
func (c *WorkflowContext) WorkflowID() string { return c.id }

// Status returns the workflow's progress before this call.
func (c *WorkflowContext) Status() *statefunv1.WorkflowStatus {
	return proto.Clone(c.status).(*statefunv1.WorkflowStatus)
}

// GoTo runs step next (at once).
func (c *WorkflowContext) GoTo(step string) { c.next = goTo(step, time.Time{}) }

// Sleep runs step after d.
func (c *WorkflowContext) Sleep(d time.Duration, step string) { c.next = goTo(step, c.now.Add(d)) }

// Pause waits for a signal, without timeout, then runs step.
func (c *WorkflowContext) Pause(step string) { c.next = wait(step, 0, "", c.now) }

// WaitForSignal waits for a signal, then runs step; after timeout (when
// positive) without one, it runs onTimeout instead, or fails the workflow
// when onTimeout is "".
func (c *WorkflowContext) WaitForSignal(step string, timeout time.Duration, onTimeout string) {
	c.next = wait(step, timeout, onTimeout, c.now)
}

// End ends the workflow as completed.
func (c *WorkflowContext) End() { c.next = endTransition }

// Fail ends the workflow as failed, for reason.
func (c *WorkflowContext) Fail(reason string) { c.next = failTransition(reason) }

// WorkflowReadContext is the runtime half of a generated workflow read
// context.
type WorkflowReadContext struct {
	ctx    context.Context
	id     string
	status *statefunv1.WorkflowStatus
}

// Context returns the request's context.
func (c *WorkflowReadContext) Context() context.Context { return c.ctx }

// WorkflowID returns the ID of the workflow the read addresses.
func (c *WorkflowReadContext) WorkflowID() string { return c.id }

// Status returns the workflow's progress: phase, step, attempt, last
// error and the latest step runs.
func (c *WorkflowReadContext) Status() *statefunv1.WorkflowStatus {
	return proto.Clone(c.status).(*statefunv1.WorkflowStatus)
}

// StartWorkflow runs fn, a start handler, for the workflow id: once. A
// workflow that was started before refuses with ALREADY_EXISTS (a call
// that repeats a start's idempotency-key gets that start's answer
// instead). When fn succeeds, the state it left and the first step (the
// one it chose, or the first declared) are committed together, and the
// reply is released once they are durable.
func StartWorkflow[S, R proto.Message](ctx context.Context, h *WorkflowHost[S], id, method string, fn func(*WorkflowContext, S) (R, error)) (R, error) {
	return Command(ctx, h.records, id, startHandler(h, id, fn))
}

// startHandler is StartWorkflow's command, shared with the testkit.
func startHandler[S, R proto.Message](h *WorkflowHost[S], id string, fn func(*WorkflowContext, S) (R, error)) func(*CommandContext, *workflowpb.WorkflowRecord) (R, error) {
	return func(c *CommandContext, rec *workflowpb.WorkflowRecord) (R, error) {
		var zero R
		if ph := rec.GetStatus().GetPhase(); ph != statefunv1.WorkflowStatus_PHASE_UNSPECIFIED {
			return zero, status.Errorf(codes.AlreadyExists, "workflow %s/%s was started at %s and is %s; start a new one under another ID (or repeat the first start's %s to get its answer)",
				h.cfg.Type, id, rec.GetStatus().GetStartedAt().AsTime().Format(time.RFC3339), phaseName(ph), IdempotencyKeyHeader)
		}
		state := h.cfg.NewState()
		now := h.now()
		wc := &WorkflowContext{ctx: c.Context(), id: id, status: rec.GetStatus(), now: now}
		reply, err := fn(wc, state)
		if err != nil {
			return zero, err
		}
		next := wc.next
		if next == nil {
			next = goTo(h.cfg.Steps[0].Name, time.Time{})
		}
		if err := h.check(next); err != nil {
			return zero, err
		}
		b, err := encodeState(state)
		if err != nil {
			return zero, err
		}
		h.emit(c, id, rec, wfStartedType, &workflowpb.WorkflowStarted{State: b, Next: next, AtMicros: now.UnixMicro()}, now)
		h.started.Add(1)
		h.countEnd(next)
		return reply, nil
	}
}

// SignalWorkflow runs fn, a signal handler, for the workflow id. A
// workflow that was never started refuses with NOT_FOUND, one that ended
// with FAILED_PRECONDITION. fn may change the state and choose what comes
// next; a workflow waiting for a signal resumes with the step it waits to
// run, unless fn chose otherwise. A signal that changes the state of a
// workflow whose step is running makes that step run again, on the new
// state, once it ends (its calls are repeated with the same idempotency
// keys, so their effects are not). The run again must make the calls the
// first run made: a call it skips because of the signal's change keeps
// the effect the first run's call had (act on a signal in the next step).
func SignalWorkflow[S, R proto.Message](ctx context.Context, h *WorkflowHost[S], id, method string, fn func(*WorkflowContext, S) (R, error)) (R, error) {
	return Command(ctx, h.records, id, signalHandler(h, id, method, fn))
}

// signalHandler is SignalWorkflow's command, shared with the testkit.
func signalHandler[S, R proto.Message](h *WorkflowHost[S], id, method string, fn func(*WorkflowContext, S) (R, error)) func(*CommandContext, *workflowpb.WorkflowRecord) (R, error) {
	return func(c *CommandContext, rec *workflowpb.WorkflowRecord) (R, error) {
		var zero R
		st := rec.GetStatus()
		switch st.GetPhase() {
		case statefunv1.WorkflowStatus_PHASE_UNSPECIFIED:
			return zero, status.Errorf(codes.NotFound, "workflow %s/%s was never started; start it first", h.cfg.Type, id)
		case statefunv1.WorkflowStatus_PHASE_COMPLETED, statefunv1.WorkflowStatus_PHASE_FAILED:
			return zero, status.Errorf(codes.FailedPrecondition, "workflow %s/%s has ended (%s); it takes no more signals", h.cfg.Type, id, phaseName(st.GetPhase()))
		}
		state, err := h.decode(rec)
		if err != nil {
			return zero, err
		}
		now := h.now()
		wc := &WorkflowContext{ctx: c.Context(), id: id, status: st, now: now}
		reply, err := fn(wc, state)
		if err != nil {
			return zero, err
		}
		next := wc.next
		if next == nil && st.GetPhase() == statefunv1.WorkflowStatus_PHASE_WAITING {
			next = goTo(st.GetStep(), time.Time{})
		}
		if next != nil {
			if err := h.check(next); err != nil {
				return zero, err
			}
		}
		b, err := encodeState(state)
		if err != nil {
			return zero, err
		}
		ev := &workflowpb.Signalled{Method: method, Next: next, AtMicros: now.UnixMicro()}
		if !bytes.Equal(b, rec.GetState()) {
			ev.State = b
		}
		h.emit(c, id, rec, wfSignalledType, ev, now)
		h.signals.Add(1)
		h.countEnd(next)
		return reply, nil
	}
}

// ReadWorkflow runs fn, a read handler, against the workflow id. A
// workflow that was never started refuses with NOT_FOUND.
func ReadWorkflow[S, R proto.Message](ctx context.Context, h *WorkflowHost[S], id string, fn func(*WorkflowReadContext, S) (R, error)) (R, error) {
	return Read(ctx, h.records, id, readHandler(h, id, fn))
}

// readHandler is ReadWorkflow's read, shared with the testkit.
func readHandler[S, R proto.Message](h *WorkflowHost[S], id string, fn func(*WorkflowReadContext, S) (R, error)) func(*ReadContext, *workflowpb.WorkflowRecord) (R, error) {
	return func(c *ReadContext, rec *workflowpb.WorkflowRecord) (R, error) {
		var zero R
		if rec.GetStatus().GetPhase() == statefunv1.WorkflowStatus_PHASE_UNSPECIFIED {
			return zero, status.Errorf(codes.NotFound, "workflow %s/%s was never started", h.cfg.Type, id)
		}
		state, err := h.decode(rec)
		if err != nil {
			return zero, err
		}
		return fn(&WorkflowReadContext{ctx: c.Context(), id: id, status: rec.GetStatus()}, state)
	}
}

func phaseName(p statefunv1.WorkflowStatus_Phase) string {
	switch p {
	case statefunv1.WorkflowStatus_PHASE_RUNNING:
		return "running"
	case statefunv1.WorkflowStatus_PHASE_WAITING:
		return "waiting for a signal"
	case statefunv1.WorkflowStatus_PHASE_COMPLETED:
		return "completed"
	case statefunv1.WorkflowStatus_PHASE_FAILED:
		return "failed"
	}
	return "not started"
}

func (h *WorkflowHost[S]) countEnd(t *workflowpb.Transition) {
	switch t.GetKind() {
	case workflowpb.Transition_KIND_END:
		h.completed.Add(1)
	case workflowpb.Transition_KIND_FAIL:
		h.failed.Add(1)
	}
}

// StepContext is the runtime half of a generated step context.
type StepContext struct {
	ctx     context.Context
	base    context.Context // ctx without the step's idempotency key
	conn    grpc.ClientConnInterface
	id      string
	step    string
	attempt int
	key     string
	now     func() time.Time
	status  *statefunv1.WorkflowStatus
}

// Context returns the step's context: cancelled at the step's timeout,
// and carrying the step's idempotency key to every call made with it, so
// that a repeat of the step (after a crash or a failed attempt) gets the
// answers of the first run instead of running the calls again. Use
// ContextFor for a second call to the same entity within one step.
func (c *StepContext) Context() context.Context { return c.ctx }

// ContextFor is Context with an idempotency key of its own for the call
// named call: a step that calls the same entity twice names each call, so
// that the second does not get the first's answer.
func (c *StepContext) ContextFor(call string) context.Context {
	return metadata.AppendToOutgoingContext(c.base, IdempotencyKeyHeader, boundKey(c.key+"/"+call))
}

// Conn returns a connection to the server's entities, for typed clients:
// calls through it are routed like any other (to the entity's owner in a
// cluster).
func (c *StepContext) Conn() grpc.ClientConnInterface { return c.conn }

// WorkflowID returns the ID of the workflow the step belongs to.
func (c *StepContext) WorkflowID() string { return c.id }

// Step returns the step's name.
func (c *StepContext) Step() string { return c.step }

// Attempt counts the attempts at this step, 1 for the first.
func (c *StepContext) Attempt() int { return c.attempt }

// Status returns the workflow's progress as the step began: among it the
// last error (why an earlier attempt failed, or why a failover step runs).
func (c *StepContext) Status() *statefunv1.WorkflowStatus {
	return proto.Clone(c.status).(*statefunv1.WorkflowStatus)
}

// IdempotencyKey returns the key Context carries: the same for every
// attempt at one entry into the step, another for the next entry.
func (c *StepContext) IdempotencyKey() string { return c.key }

// GoTo runs step next.
func (c *StepContext) GoTo(step string) Transition { return Transition{goTo(step, time.Time{})} }

// Sleep runs step after d: durably, a restart does not shorten the sleep.
func (c *StepContext) Sleep(d time.Duration, step string) Transition {
	return Transition{goTo(step, c.now().Add(d))}
}

// Pause waits for a signal, without timeout, then runs step.
func (c *StepContext) Pause(step string) Transition { return Transition{wait(step, 0, "", c.now())} }

// WaitForSignal waits for a signal, then runs step; after timeout (when
// positive) without one, it runs onTimeout, or fails the workflow when
// onTimeout is "".
func (c *StepContext) WaitForSignal(step string, timeout time.Duration, onTimeout string) Transition {
	return Transition{wait(step, timeout, onTimeout, c.now())}
}

// End ends the workflow as completed.
func (c *StepContext) End() Transition { return Transition{endTransition} }

// Fail ends the workflow as failed, for reason: no retry, no failover.
func (c *StepContext) Fail(reason string) Transition { return Transition{failTransition(reason)} }

// boundKey keeps an idempotency key within the limit the runtime accepts.
func boundKey(k string) string {
	if len(k) <= maxIdempotencyKeyBytes {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "wf:" + hex.EncodeToString(sum[:])
}

// workflowSet is the runtime's workflow hosts, by type, and the steps
// running in this process.
type workflowSet struct {
	mu    sync.Mutex
	hosts map[string]workflowRunner
	// ctx is cancelled when the runtime stops: running steps end, and
	// their watchdogs run them again (here after a restart, or on the
	// shard's next owner).
	ctx     context.Context
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// workflowRunner is the type-erased view of a WorkflowHost the runner
// service and the runtime need.
type workflowRunner interface {
	runStep(ctx context.Context, req *workflowpb.RunStepRequest) (*workflowpb.RunStepResponse, error)
	stats() WorkflowStats
	// newUserState returns an empty state of the workflow's own type, into
	// which the console decodes the state its record holds as bytes.
	newUserState() proto.Message
}

func (s *workflowSet) add(typ string, h workflowRunner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts == nil {
		s.hosts = map[string]workflowRunner{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	s.hosts[typ] = h
}

func (s *workflowSet) get(typ string) workflowRunner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[typ]
}

// shutdown cancels the steps running here and waits for them to end.
func (s *workflowSet) shutdown(ctx context.Context) error {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("workflow steps still running at shutdown: %w", ctx.Err())
	}
}

// WorkflowStats count what one workflow type did in this process.
type WorkflowStats struct {
	WorkflowType string
	Started      uint64 // workflows started
	StepsDone    uint64 // step attempts that chose what comes next
	StepsFailed  uint64 // step attempts that failed (error, timeout, panic)
	Signals      uint64 // signals handled
	Completed    uint64 // workflows that ended as completed
	Failed       uint64 // workflows that ended as failed
	Running      int    // step attempts running here now
}

func (h *WorkflowHost[S]) newUserState() proto.Message { return h.cfg.NewState() }

func (h *WorkflowHost[S]) stats() WorkflowStats {
	h.runningMu.Lock()
	running := len(h.running)
	h.runningMu.Unlock()
	return WorkflowStats{
		WorkflowType: h.cfg.Type, Started: h.started.Load(), StepsDone: h.stepsDone.Load(), StepsFailed: h.stepsFailed.Load(),
		Signals: h.signals.Load(), Completed: h.completed.Load(), Failed: h.failed.Load(), Running: running,
	}
}

// runnerService serves WorkflowRunnerService: the calls of workflow
// timers.
type runnerService struct {
	workflowpb.UnimplementedWorkflowRunnerServiceServer
	set *workflowSet
}

func (s *runnerService) RunStep(ctx context.Context, req *workflowpb.RunStepRequest) (*workflowpb.RunStepResponse, error) {
	h := s.set.get(req.GetWorkflowType())
	if h == nil {
		return nil, status.Errorf(codes.Unimplemented, "workflow type %q is not hosted by this server", req.GetWorkflowType())
	}
	return h.runStep(ctx, req)
}

// runStep is a delivery of the workflow's timer: it starts the step that
// is due, or ends a wait that timed out. It runs where the workflow's
// shard is served.
func (h *WorkflowHost[S]) runStep(ctx context.Context, req *workflowpb.RunStepRequest) (*workflowpb.RunStepResponse, error) {
	id := req.GetWorkflowId()
	// The timer's idempotency key is for the delivery, not for the
	// commands the runner makes: drop it.
	ctx = metadata.NewIncomingContext(ctx, metadata.MD{})
	if h.rt.cluster != nil {
		return routed(ctx, h.records, id, false, func(shard int, epoch int64) (*workflowpb.RunStepResponse, error) {
			return h.startStep(ctx, req, shard, epoch)
		})
	}
	return h.startStep(ctx, req, 0, 0)
}

// expire ends the wait rec is in: its timeout passed.
func (h *WorkflowHost[S]) expire(c *CommandContext, id string, rec *workflowpb.WorkflowRecord, now time.Time) {
	next := failTransition(fmt.Sprintf("no signal came while the workflow waited to run step %q", rec.GetStatus().GetStep()))
	if ts := rec.GetTimeoutStep(); ts != "" {
		next = goTo(ts, time.Time{})
	}
	h.emit(c, id, rec, wfExpiredType, &workflowpb.WaitExpired{Visit: rec.GetVisit(), Next: next, AtMicros: now.UnixMicro()}, now)
	h.countEnd(next)
}

// startStep checks that req is for the current step and that it is due,
// commits a watchdog (the workflow's timer, moved to after the step's
// timeout, so that the step runs again if this node dies before its
// outcome is stored) and runs the step in the background: a step may take
// long, and a timer delivery must not.
func (h *WorkflowHost[S]) startStep(ctx context.Context, req *workflowpb.RunStepRequest, shard int, epoch int64) (*workflowpb.RunStepResponse, error) {
	id := req.GetWorkflowId()
	key := runKey{id: id, visit: req.GetVisit(), attempt: req.GetAttempt()}
	h.runningMu.Lock()
	busy := h.running[key]
	h.runningMu.Unlock()
	if busy {
		return &workflowpb.RunStepResponse{}, nil
	}
	var launch *workflowpb.WorkflowRecord
	// Not cut by the delivery's cancellation (a stopping timer service):
	// a watchdog stored without its step started would hold the workflow
	// until it fires.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.storeTimeout())
	defer cancel()
	_, err := command(cctx, h.records, id, shard, epoch, func(c *CommandContext, rec *workflowpb.WorkflowRecord) (*workflowpb.RunStepResponse, error) {
		st := rec.GetStatus()
		now := h.now()
		if rec.GetVisit() != req.GetVisit() || st.GetAttempt() != req.GetAttempt() {
			return &workflowpb.RunStepResponse{}, nil // a stale timer: the workflow moved on
		}
		if w := st.GetWakeAt(); w != nil && w.AsTime().After(now) {
			return &workflowpb.RunStepResponse{}, nil // early: the timer at wake_at comes
		}
		switch st.GetPhase() {
		case statefunv1.WorkflowStatus_PHASE_WAITING:
			h.expire(c, id, rec, now)
		case statefunv1.WorkflowStatus_PHASE_RUNNING:
			step := h.steps[st.GetStep()]
			if step == nil {
				next := failTransition(fmt.Sprintf("step %q is not a step of workflow %q any more (was it renamed?)", st.GetStep(), h.cfg.Type))
				h.emit(c, id, rec, wfStepFailType, &workflowpb.StepFailed{Step: st.GetStep(), Visit: rec.GetVisit(), Attempt: st.GetAttempt(),
					Error: next.GetReason(), Next: next, StartedMicros: now.UnixMicro(), AtMicros: now.UnixMicro()}, now)
				h.countEnd(next)
				return &workflowpb.RunStepResponse{}, nil
			}
			c.ScheduleCall(workflowTimer, now.Add(step.timeout()+stepGrace), h.runStepCall(id, rec.GetVisit(), st.GetAttempt()))
			launch = proto.Clone(rec).(*workflowpb.WorkflowRecord)
		}
		return &workflowpb.RunStepResponse{}, nil
	})
	if err != nil || launch == nil {
		return &workflowpb.RunStepResponse{}, err
	}
	h.runningMu.Lock()
	if h.running[key] {
		h.runningMu.Unlock()
		return &workflowpb.RunStepResponse{}, nil
	}
	h.running[key] = true
	h.runningMu.Unlock()
	set := &h.rt.workflows
	set.running.Add(1)
	go func() {
		defer set.running.Done()
		defer func() {
			h.runningMu.Lock()
			delete(h.running, key)
			h.runningMu.Unlock()
		}()
		// The step outlives the timer delivery that started it: its span
		// is a root linked to the delivery's.
		ctx := trace.ContextWithSpanContext(set.ctx, trace.SpanContextFromContext(ctx))
		for rec := launch; rec != nil; {
			rec = h.attempt(ctx, rec, id, shard, epoch)
		}
	}()
	return &workflowpb.RunStepResponse{}, nil
}

func (h *WorkflowHost[S]) storeTimeout() time.Duration {
	if t := h.rt.cfg.commitTimeout; t > 0 {
		return t
	}
	return defaultStoreTimeout
}

func (s *WorkflowStep[S]) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultStepTimeout
}

// backoff is the wait before attempt+1.
func (s *WorkflowStep[S]) backoff(attempt uint32) time.Duration {
	first, most := s.Retry.InitialBackoff, s.Retry.MaxBackoff
	if first <= 0 {
		first = defaultStepBackoff
	}
	if most <= 0 {
		most = defaultStepMaxWait
	}
	return jitter(min(first<<min(attempt-1, 20), most))
}

// attempt runs one attempt at the step rec is at, and commits its outcome
// if the workflow is still where it was. When a signal changed the state
// meanwhile, it returns the record to run the attempt again on.
func (h *WorkflowHost[S]) attempt(ctx context.Context, rec *workflowpb.WorkflowRecord, id string, shard int, epoch int64) *workflowpb.WorkflowRecord {
	st := rec.GetStatus()
	next, b, started, err := h.perform(ctx, rec, id, h.rt.conn)
	timeout := h.storeTimeout()
	if ctx.Err() != nil {
		// The runtime is stopping, and cut the attempt short: make the
		// step due at once, so that it runs again as soon as the workflow
		// is served (after a restart, or by the shard's next owner)
		// rather than when its watchdog fires. If this does not make it
		// to the store, the watchdog still does the job.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		_, _ = command(cctx, h.records, id, shard, epoch, func(c *CommandContext, cur *workflowpb.WorkflowRecord) (*workflowpb.RunStepResponse, error) {
			if cur.GetVisit() == rec.GetVisit() && cur.GetStatus().GetAttempt() == st.GetAttempt() {
				c.ScheduleCall(workflowTimer, h.now(), h.runStepCall(id, cur.GetVisit(), st.GetAttempt()))
			}
			return &workflowpb.RunStepResponse{}, nil
		})
		return nil
	}
	if timeout <= 0 {
		timeout = defaultStoreTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var again *workflowpb.WorkflowRecord
	_, cerr := command(cctx, h.records, id, shard, epoch, func(c *CommandContext, cur *workflowpb.WorkflowRecord) (*workflowpb.RunStepResponse, error) {
		if h.settle(c, id, rec, cur, next, err, b, started) {
			again = proto.Clone(cur).(*workflowpb.WorkflowRecord)
		}
		return &workflowpb.RunStepResponse{}, nil
	})
	if cerr != nil && !isMoved(cerr) {
		h.rt.log.Warn("workflow step outcome not stored; the step runs again when its watchdog fires",
			"workflow", h.cfg.Type, "id", id, "step", st.GetStep(), "attempt", st.GetAttempt(), "error", cerr)
		return nil
	}
	return again
}

// perform runs the user's step rec is at, once, with calls through conn:
// it returns what the step chose, the state it left (encoded) and when it
// started, or why the attempt failed.
func (h *WorkflowHost[S]) perform(ctx context.Context, rec *workflowpb.WorkflowRecord, id string, conn grpc.ClientConnInterface) (next Transition, b []byte, started time.Time, err error) {
	st := rec.GetStatus()
	step := h.steps[st.GetStep()]
	started = h.now()
	key := boundKey("wf:" + h.cfg.Type + "/" + id + "/" + strconv.FormatUint(rec.GetVisit(), 10) + "-" + st.GetStep())
	state, err := h.decode(rec)
	if err != nil {
		return next, nil, started, err
	}
	if h.rt != nil && h.rt.tracer != nil {
		var span trace.Span
		ctx, span = h.rt.tracer.Start(ctx, "statefun.workflow.step", trace.WithNewRoot(),
			trace.WithLinks(trace.Link{SpanContext: trace.SpanContextFromContext(ctx)}),
			trace.WithAttributes(attrEntityType.String(h.cfg.Type), attrEntityID.String(id),
				attrStep.String(st.GetStep()), attrAttempt.Int(int(st.GetAttempt()))))
		defer func() { endSpan(span, status.Code(err), err) }()
	}
	sctx, cancel := context.WithTimeout(ctx, step.timeout())
	defer cancel()
	sc := &StepContext{
		base: sctx, ctx: metadata.AppendToOutgoingContext(sctx, IdempotencyKeyHeader, key),
		conn: conn, id: id, step: st.GetStep(), attempt: int(st.GetAttempt()), key: key, now: h.now, status: st,
	}
	next, err = h.callStep(sc, step, state)
	if err == nil && sctx.Err() != nil && ctx.Err() == nil {
		// The step ignored its context: its calls may have been cut
		// short, so its outcome is not trusted.
		err = fmt.Errorf("step %q ran over its timeout of %s", st.GetStep(), step.timeout())
	}
	if err == nil {
		if b, err = encodeState(state); err == nil {
			err = h.check(next.t)
		}
	}
	return next, b, started, err
}

// settle stores the outcome of an attempt begun on rec, on cur, the
// record now: unless the workflow moved on meanwhile. It reports whether
// a signal changed the state while the attempt ran, so that it must run
// again on the new state (the watchdog stays as it is).
func (h *WorkflowHost[S]) settle(c *CommandContext, id string, rec, cur *workflowpb.WorkflowRecord, next Transition, err error, b []byte, started time.Time) (again bool) {
	st, cs := rec.GetStatus(), cur.GetStatus()
	now := h.now()
	if cur.GetVisit() != rec.GetVisit() || cs.GetAttempt() != st.GetAttempt() || cs.GetPhase() != statefunv1.WorkflowStatus_PHASE_RUNNING {
		return false // a signal moved the workflow on meanwhile
	}
	if cur.GetGeneration() != rec.GetGeneration() {
		return true
	}
	step := h.steps[st.GetStep()]
	if err == nil {
		h.emit(c, id, cur, wfStepEndedType, &workflowpb.StepEnded{Step: st.GetStep(), Visit: cur.GetVisit(), Attempt: cs.GetAttempt(),
			State: b, Next: next.t, StartedMicros: started.UnixMicro(), AtMicros: now.UnixMicro()}, now)
		h.stepsDone.Add(1)
		h.countEnd(next.t)
		return false
	}
	ev := &workflowpb.StepFailed{Step: st.GetStep(), Visit: cur.GetVisit(), Attempt: cs.GetAttempt(), Error: err.Error(),
		StartedMicros: started.UnixMicro(), AtMicros: now.UnixMicro()}
	switch most := step.Retry.MaxAttempts; {
	case most == 0 || int(cs.GetAttempt()) < most:
		ev.Retry = true
		ev.Next = goTo(st.GetStep(), now.Add(step.backoff(cs.GetAttempt())))
	case step.Retry.Failover != "":
		ev.Next = goTo(step.Retry.Failover, time.Time{})
	default:
		ev.Next = failTransition(fmt.Sprintf("step %q failed %d times; the last error: %v", st.GetStep(), cs.GetAttempt(), err))
	}
	h.emit(c, id, cur, wfStepFailType, ev, now)
	h.stepsFailed.Add(1)
	h.countEnd(ev.Next)
	return false
}

// callStep runs the user's step, turning a panic into an error (logged
// with its stack) and a missing transition into one.
func (h *WorkflowHost[S]) callStep(sc *StepContext, step *WorkflowStep[S], state S) (next Transition, err error) {
	defer func() {
		if p := recover(); p != nil {
			pe := &panicError{value: p, stack: debug.Stack()}
			if h.rt != nil {
				logPanic(sc.ctx, h.rt.log, &h.rt.panicLog, "workflow step panicked; the attempt counts as failed", pe,
					"workflow", h.cfg.Type, "id", sc.id, "step", sc.step, "attempt", sc.attempt)
			}
			err = fmt.Errorf("step %q panicked: %v", sc.step, p)
		}
	}()
	next, err = step.Run(sc, state)
	if err == nil && next.t == nil {
		err = fmt.Errorf("step %q returned no transition; return one of its context's GoTo, Sleep, Pause, WaitForSignal, End or Fail", sc.step)
	}
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		err = fmt.Errorf("step %q timed out after %s: %w", sc.step, step.timeout(), err)
	}
	return next, err
}
