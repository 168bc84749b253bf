package statefun

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/runtime/internal/journal"
	"github.com/statefun-go/statefun/runtime/store"
)

// Host runs the instances of one entity type: it loads an instance on first
// use, runs its commands one at a time, hands what they change to the
// journal writer and holds each reply until that change is durable.
// Generated service glue holds a Host and calls Command and Read with it.
type Host[S proto.Message] struct {
	cfg           EntityConfig[S]
	rt            *Runtime
	log           *slog.Logger
	snapshotEvery int64
	idleTimeout   time.Duration

	seed    maphash.Seed
	stripes [hostStripes]stripe[S]
	cached  atomic.Int64

	hits, loads, evictions, resets atomic.Uint64
}

func newHost[S proto.Message](r *Runtime, cfg EntityConfig[S]) *Host[S] {
	h := &Host[S]{cfg: cfg, rt: r, log: r.log, seed: maphash.MakeSeed()}
	h.snapshotEvery = int64(r.cfg.snapshotEvery)
	if cfg.SnapshotEvery > 0 {
		h.snapshotEvery = int64(cfg.SnapshotEvery)
	}
	h.idleTimeout = r.cfg.passivationTimeout
	if cfg.PassivationTimeout > 0 {
		h.idleTimeout = cfg.PassivationTimeout
	}
	r.addHost(h)
	return h
}

// maxEntityIDBytes bounds entity IDs so that every store can hold them:
// Postgres indexes (type, id, seq) in a btree whose entries may take at
// most 2704 bytes, the embedded store's keys 32,760.
const maxEntityIDBytes = 2048

var errReset = status.Error(codes.Aborted, "entity was reset by a failure of a concurrent call; retry the call")

// Command runs fn, a command handler, against the entity id: exclusively,
// on the current state. When fn succeeds, what it emitted (or the new state
// it set) is applied in memory at once, so the next command can run, and
// the reply is released once the change is durable. When fn fails, nothing
// it emitted is kept, and its error too waits until the state it was
// decided on is durable.
func Command[S, R proto.Message](ctx context.Context, h *Host[S], id string, fn func(*CommandContext, S) (R, error)) (R, error) {
	if h.rt.tracer != nil || h.log.Enabled(ctx, slog.LevelDebug) {
		return observed(ctx, h.rt, h.cfg.Type, id, func(ctx context.Context) (R, error) { return routeCommand(ctx, h, id, fn) })
	}
	return routeCommand(ctx, h, id, fn)
}

func routeCommand[S, R proto.Message](ctx context.Context, h *Host[S], id string, fn func(*CommandContext, S) (R, error)) (R, error) {
	if h.rt.cluster != nil {
		return routed(ctx, h, id, false, func(shard int, epoch int64) (R, error) { return command(ctx, h, id, shard, epoch, fn) })
	}
	return command(ctx, h, id, 0, 0, fn)
}

// command runs a command here. In a cluster, shard and epoch name the
// lease it runs under.
func command[S, R proto.Message](ctx context.Context, h *Host[S], id string, shard int, epoch int64, fn func(*CommandContext, S) (R, error)) (R, error) {
	var zero R
	key, err := idempotencyKey(ctx)
	if err != nil {
		return zero, err
	}
	if err := h.rt.writer.Admit(ctx); err != nil {
		return zero, writerError(err)
	}
	admitted := true
	defer func() {
		if admitted {
			h.rt.writer.Release()
		}
	}()
	// Whether to ask the store for an earlier answer to the key: not when
	// the caller knows of none (keyUnanswered).
	lookup := key != "" && !keyUnanswered(ctx, key)
	for attempt := 0; ; attempt++ {
		inst, err := h.instance(ctx, id, shard, epoch)
		if err != nil {
			return zero, err
		}
		var forgotten uint64
		if lookup {
			// Answers of earlier instances are durable (a successor loads
			// only after its predecessor's commits finished): the store
			// has them. This instance's own are in memory until durable.
			forgotten = inst.forgotten.Load()
			a, err := h.storedAnswer(ctx, id, key)
			if err != nil {
				return zero, err
			}
			if a != nil {
				return replay[R](ctx, key, a)
			}
		}
		inst.mu.Lock()
		if !inst.usable() {
			// Reset, passivated or failed to load while we waited for it.
			inst.mu.Unlock()
			if err := inst.waitError(); err != nil {
				return zero, err
			}
			if attempt < 3 {
				continue
			}
			return zero, errReset
		}
		if key != "" {
			a := inst.recall(key)
			if a == nil && lookup && inst.forgotten.Load() != forgotten {
				// An answer left memory between the store lookup and
				// now: it may be this one, and durable. Ask again.
				if a, err = h.storedAnswer(ctx, id, key); err != nil {
					inst.mu.Unlock()
					return zero, err
				}
			}
			if a != nil {
				inst.mu.Unlock()
				if a.commit != nil {
					if err := h.rt.waitDurable(ctx, a.commit); err != nil {
						return zero, err
					}
				}
				return replay[R](ctx, key, a)
			}
		}
		cc := &CommandContext{ctx: ctx, entityID: id, kind: h.cfg.Kind}
		var span trace.Span
		if h.rt.tracer != nil {
			cc.ctx, span = h.rt.tracer.Start(ctx, "statefun.handler")
		}
		reply, err := callHandler(ctx, func() (R, error) { return fn(cc, inst.state) })
		if span != nil {
			endSpan(span, status.Code(err), err)
		}
		if err != nil && errors.Is(err, errPanic) {
			// The handler may have changed the state before it panicked.
			h.logPanic(ctx, id, err)
			h.resetAfterPanic(id, inst, err)
			inst.mu.Unlock()
			return zero, errPanicked
		}
		var commit *journal.Commit
		if err == nil {
			// The reply may share memory with the state, which the next
			// command changes in place; the caller gets its own copy.
			reply = proto.Clone(reply).(R)
			commit, err = h.stage(id, inst, cc)
			if err != nil {
				inst.mu.Unlock()
				return zero, err
			}
		}
		if key != "" && !transient(status.Code(err)) {
			// The answer, reply or refusal, is stored with the command's
			// events, or alone if there are none. A transient refusal
			// ("unavailable, try later") is not an answer: the command
			// changed nothing, and a retry with the key runs it again.
			a, aerr := newAnswer(ctx, reply, err)
			if aerr != nil {
				inst.mu.Unlock()
				return zero, aerr
			}
			if commit == nil {
				commit = h.newCommit(id, inst)
			}
			commit.Outcomes = append(commit.Outcomes, h.outcome(id, key, a))
			a.commit = commit
			inst.remember(key, a)
		}
		if commit != nil {
			admitted = false
			if h.rt.tracer != nil {
				commit.Trace = &journal.Trace{Request: trace.SpanContextFromContext(ctx)}
			}
			h.rt.writer.Enqueue(commit)
			inst.last = commit
		}
		// The reply, or the handler's refusal, was decided on the state
		// the handler saw, which may include changes still in flight: it
		// waits for them (a "checked out" refusal must not escape if the
		// checkout never commits).
		wait := inst.last
		inst.mu.Unlock()
		if werr := h.rt.waitDurable(ctx, wait); werr != nil {
			return zero, werr
		}
		if err != nil {
			return zero, err
		}
		return reply, nil
	}
}

// Read runs fn, a read-only handler, against the entity id. Reads of one
// entity run concurrently with each other, never with a command. The
// reply, or the error, waits until the state the read saw is durable.
func Read[S, R proto.Message](ctx context.Context, h *Host[S], id string, fn func(*ReadContext, S) (R, error)) (R, error) {
	if h.rt.tracer != nil || h.log.Enabled(ctx, slog.LevelDebug) {
		return observed(ctx, h.rt, h.cfg.Type, id, func(ctx context.Context) (R, error) { return routeRead(ctx, h, id, fn) })
	}
	return routeRead(ctx, h, id, fn)
}

func routeRead[S, R proto.Message](ctx context.Context, h *Host[S], id string, fn func(*ReadContext, S) (R, error)) (R, error) {
	if h.rt.cluster != nil {
		return routed(ctx, h, id, true, func(shard int, epoch int64) (R, error) { return read(ctx, h, id, shard, epoch, fn) })
	}
	return read(ctx, h, id, 0, 0, fn)
}

func read[S, R proto.Message](ctx context.Context, h *Host[S], id string, shard int, epoch int64, fn func(*ReadContext, S) (R, error)) (R, error) {
	var zero R
	for attempt := 0; ; attempt++ {
		inst, err := h.instance(ctx, id, shard, epoch)
		if err != nil {
			return zero, err
		}
		inst.mu.RLock()
		if !inst.usable() {
			inst.mu.RUnlock()
			if err := inst.waitError(); err != nil {
				return zero, err
			}
			if attempt < 3 {
				continue
			}
			return zero, errReset
		}
		rc := &ReadContext{ctx: ctx, entityID: id}
		var span trace.Span
		if h.rt.tracer != nil {
			rc.ctx, span = h.rt.tracer.Start(ctx, "statefun.handler")
		}
		reply, err := callHandler(ctx, func() (R, error) { return fn(rc, inst.state) })
		if span != nil {
			endSpan(span, status.Code(err), err)
		}
		if err != nil && errors.Is(err, errPanic) {
			h.logPanic(ctx, id, err)
			h.resetAfterPanic(id, inst, err)
			inst.mu.RUnlock()
			return zero, errPanicked
		}
		if err == nil {
			reply = proto.Clone(reply).(R)
		}
		wait := inst.last
		inst.mu.RUnlock()
		if err := h.rt.waitDurable(ctx, wait); err != nil {
			return zero, err
		}
		return reply, err
	}
}

var errPanicked = status.Error(codes.Internal, "handler panicked; see the server log")

// waitDurable is the output gate: it returns once c, and so every change
// before it, is durable.
func waitDurable(ctx context.Context, c *journal.Commit) error {
	if c == nil {
		return nil
	}
	if err := c.Wait(ctx); err != nil {
		return commitError(err)
	}
	return nil
}

var errPanic = errors.New("handler panicked")

// panicError is a recovered panic of a user's handler: the value and the
// stack of the goroutine that panicked, taken in the deferred recover,
// where it still shows the handler's frames. It matches errPanic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("%v: %v", errPanic, e.value) }
func (e *panicError) Unwrap() error { return errPanic }

// logPanic logs a handler's panic with its stack, at most resetLogBurst
// times per resetLogWindow, like resets: a handler that panics on every
// call must not flood the log with stacks.
func (h *Host[S]) logPanic(ctx context.Context, id string, err error) {
	var p *panicError
	if !errors.As(err, &p) {
		return
	}
	method, _ := grpc.Method(ctx)
	logPanic(ctx, h.log, &h.rt.panicLog, "handler panicked; the call fails with INTERNAL and the entity reloads from the store", p,
		"entity", h.cfg.Type, "id", id, "method", method)
}

// logPanic logs a recovered panic at error level with its value and
// stack after args, unless limit has let through resetLogBurst lines in
// this resetLogWindow; the next line logged says how many were not.
// Entity handlers, consumer handlers and the gRPC recover interceptor
// share the runtime's limiter (Runtime.panicLog).
func logPanic(ctx context.Context, log *slog.Logger, limit *logLimiter, msg string, p *panicError, args ...any) {
	ok, suppressed := limit.allow(time.Now())
	if !ok {
		return
	}
	args = append(args, "panic", fmt.Sprint(p.value), "stack", string(p.stack))
	if suppressed > 0 {
		args = append(args, "panics_not_logged", suppressed)
	}
	log.ErrorContext(ctx, msg, args...)
}

// callHandler runs a user handler, turning a panic into a *panicError and
// a nil reply into an error, so that one bad call cannot take the server
// down.
func callHandler[R proto.Message](ctx context.Context, fn func() (R, error)) (reply R, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	reply, err = fn()
	// A nil *Reply is a non-nil interface: ask the message itself.
	if err == nil && (any(reply) == nil || !reply.ProtoReflect().IsValid()) {
		method, _ := grpc.Method(ctx)
		if method == "" {
			method = "the handler"
		}
		return reply, status.Errorf(codes.Internal, "%s returned neither a reply nor an error; return a reply message (an empty one if there is nothing to say) or an error", method)
	}
	return reply, err
}

// stage applies what a successful command produced to the in-memory state
// and returns the commit that makes it durable, or nil if the command
// changed nothing. Called with inst.mu held.
func (h *Host[S]) stage(id string, inst *instance[S], cc *CommandContext) (*journal.Commit, error) {
	commit, err := h.stageChanges(id, inst, cc)
	if commit != nil && h.rt.tracer != nil && len(commit.Events) > 0 {
		h.rt.emitted.remember(commit.Events, trace.SpanContextFromContext(cc.ctx))
	}
	if commit != nil && len(commit.Timers) > 0 {
		// The timer loop may be asleep until a later due time, or idle.
		then := commit.OnDurable
		commit.OnDurable = func() {
			if then != nil {
				then()
			}
			h.rt.timers.scheduled()
		}
	}
	return commit, err
}

func (h *Host[S]) stageChanges(id string, inst *instance[S], cc *CommandContext) (*journal.Commit, error) {
	ref := store.Ref{Type: h.cfg.Type, ID: id}
	var commit *journal.Commit
	var timers []store.TimerChange
	if len(cc.timers) > 0 {
		var tc map[string]string
		if h.rt.tracer != nil {
			tc = traceContext(cc.ctx)
		}
		changes, err := timerChanges(ref, int(inst.shard), cc.timers, h.rt.now(), tc)
		if err != nil {
			return nil, err
		}
		timers = changes
	}
	switch h.cfg.Kind {
	case EventSourced:
		if len(cc.events) == 0 && len(cc.calls) == 0 {
			return h.timersOnly(id, inst, timers), nil
		}
		commit = h.newCommit(id, inst)
		commit.Timers = timers
		commit.Events = commit.EventsBuffer(len(cc.events) + len(cc.calls))
		seq := inst.seq
		for _, e := range cc.events {
			payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.msg)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "encode event %s: %v", e.typ, err)
			}
			seq++
			commit.Events = append(commit.Events, store.Event{Entity: ref, Seq: seq, EventType: e.typ, Payload: payload})
		}
		// Sent calls are journaled after the events, in the same commit:
		// they exist exactly when the events do. Each carries the trace
		// context of the handler that sent it, so that its delivery, here
		// or after a restart, continues the trace.
		var tc map[string]string
		if h.rt.tracer != nil && len(cc.calls) > 0 {
			tc = traceContext(cc.ctx)
		}
		for _, c := range cc.calls {
			payload, err := encodeCall(c, tc)
			if err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
			seq++
			commit.Events = append(commit.Events, store.Event{Entity: ref, Seq: seq, EventType: callEventType, Payload: payload})
		}
		if len(cc.calls) > 0 {
			// The dispatcher reads its feed when woken by a commit that
			// stored calls (or after its poll), so it is woken by this
			// one once durable; commits without calls do not wake it.
			commit.OnDurable = h.rt.consumers.startCalls(h.cfg.Type).notify
		}
		for _, e := range cc.events {
			if err := applyEvent(h.cfg.ApplyEvent, inst.state, e.msg); err != nil {
				// Some events may be applied already: the state is
				// unusable, and nothing of the command was queued.
				h.logPanic(cc.ctx, id, err)
				h.resetAfterPanic(id, inst, fmt.Errorf("event %s: %w", e.typ, err))
				return nil, status.Errorf(codes.Internal, "applying event %s panicked; see the server log", e.typ)
			}
		}
		inst.seq = seq
		if h.snapshotEvery > 0 && inst.seq-inst.snapshotSeq >= h.snapshotEvery {
			h.attachSnapshot(ref, inst, commit)
		}
	case KeyValue:
		if len(cc.calls) > 0 {
			return nil, status.Error(codes.Internal, "key-value entities cannot send calls")
		}
		if cc.newState == nil {
			return h.timersOnly(id, inst, timers), nil
		}
		next, ok := cc.newState.(S)
		if !ok {
			return nil, status.Errorf(codes.Internal, "new state has type %T, want %T", cc.newState, inst.state)
		}
		payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(next)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode state: %v", err)
		}
		commit = h.newCommit(id, inst)
		commit.Timers = timers
		commit.Values = []store.Value{{Entity: ref, Version: inst.seq + 1, Payload: payload}}
		inst.state = next
		inst.seq++
	}
	return commit, nil
}

// timersOnly returns the commit of a command that changed only its
// timers, nil if it changed nothing.
func (h *Host[S]) timersOnly(id string, inst *instance[S], timers []store.TimerChange) *journal.Commit {
	if len(timers) == 0 {
		return nil
	}
	commit := h.newCommit(id, inst)
	commit.Timers = timers
	return commit
}

// newCommit returns an empty commit of inst. Called with inst.mu held.
func (h *Host[S]) newCommit(id string, inst *instance[S]) *journal.Commit {
	if inst.onFail == nil {
		// Made once per instance, not per commit: it is the same for
		// every commit of inst.
		inst.onFail = func(err error) { h.commitFailed(id, inst, err) }
	}
	return &journal.Commit{
		Abandoned: &inst.abandoned, OnFail: inst.onFail,
		Shard: int(inst.shard), Epoch: inst.epoch,
	}
}

// attachSnapshot encodes the state now, while it is exactly the state after
// inst.seq events, and saves it only once those events are durable: a
// snapshot must never contain a change the store could still refuse.
func (h *Host[S]) attachSnapshot(ref store.Ref, inst *instance[S], commit *journal.Commit) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(inst.state)
	if err != nil {
		h.log.Warn("snapshot not taken: encoding the state failed", "entity", ref.Type, "id", ref.ID, "error", err)
		return
	}
	inst.snapshotSeq = inst.seq
	snap := store.Snapshot{Entity: ref, Seq: inst.seq, Payload: payload}
	then := commit.OnDurable // the calls dispatcher's wake-up, if any
	commit.OnDurable = func() {
		h.rt.snapshots.offer(snap)
		if then != nil {
			then()
		}
	}
}

func applyEvent[S proto.Message](apply func(S, proto.Message), state S, event proto.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	apply(state, event)
	return nil
}

// commitError maps a failed commit to what the caller sees.
func commitError(err error) error {
	var conflict *store.ConflictError
	var fenced *store.FencedError
	switch {
	case errors.As(err, &fenced) && len(fenced.Shards) > 0:
		return errMoved(fenced.Shards[0])
	case errors.As(err, &conflict):
		return status.Errorf(codes.Aborted, "%v; the entity was reset, retry the call", err)
	case errors.Is(err, journal.ErrAbandoned):
		return status.Error(codes.Aborted, "an earlier change of this entity failed to commit, so this one was dropped; the entity was reset, retry the call")
	case errors.Is(err, store.ErrOutcomeUnknown):
		return unknownOutcome(err)
	case errors.Is(err, context.DeadlineExceeded):
		// The caller gave up waiting; the change may still commit.
		return status.Error(codes.DeadlineExceeded, "the deadline passed while the change was being stored: it may or may not be applied; retry with the same idempotency key")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was canceled while the change was being stored: it may or may not be applied; retry with the same idempotency key")
	default:
		return status.Errorf(codes.Unavailable, "the change was not stored: %v; the entity was reset, retry the call", err)
	}
}

func writerError(err error) error {
	switch {
	case errors.Is(err, journal.ErrClosed):
		return status.Error(codes.Unavailable, "server is shutting down; retry on another instance")
	case errors.Is(err, journal.ErrBusy):
		return status.Errorf(codes.ResourceExhausted, "%v; retry with backoff", err)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the caller canceled the call while it waited for room in the journal")
	}
	return status.Error(codes.Unavailable, err.Error())
}

// loadBounded loads inst. A load is bounded like a commit: a database
// that stops answering (a partition, not a refused connection) must fail
// the call with UNAVAILABLE, not hold it for as long as the outage lasts.
func (h *Host[S]) loadBounded(ctx context.Context, id string, inst *instance[S]) error {
	var span trace.Span
	if h.rt.tracer != nil {
		ctx, span = h.rt.tracer.Start(ctx, "statefun.load", trace.WithAttributes(attrEntityType.String(h.cfg.Type), attrEntityID.String(id)))
	}
	loadCtx, cancel := context.WithTimeout(ctx, h.rt.cfg.commitTimeout)
	defer cancel()
	info, err := h.load(loadCtx, id, inst)
	if err != nil && loadCtx.Err() != nil && ctx.Err() == nil {
		err = status.Errorf(codes.Unavailable, "load %s/%s: the store did not answer within %v; retry the call", h.cfg.Type, id, h.rt.cfg.commitTimeout)
	}
	if span != nil {
		span.SetAttributes(attrReplayed.Int(info.replayed), attrFromSnapshot.Bool(info.fromSnapshot))
		endSpan(span, status.Code(err), err)
	}
	return err
}

// loadInfo is what a load read, for its span.
type loadInfo struct {
	replayed     int  // events applied
	fromSnapshot bool // whether it started from a snapshot
}

func (h *Host[S]) load(ctx context.Context, id string, inst *instance[S]) (loadInfo, error) {
	var info loadInfo
	ref := store.Ref{Type: h.cfg.Type, ID: id}
	st := h.rt.store
	inst.state = h.cfg.NewState()
	switch h.cfg.Kind {
	case EventSourced:
		snap, found, err := st.LatestSnapshot(ctx, ref)
		if err != nil {
			return info, loadError(ref, "read snapshot", err)
		}
		if found {
			if err := proto.Unmarshal(snap.Payload, inst.state); err != nil {
				// Snapshots are an optimisation: replay everything.
				h.log.Warn("snapshot unreadable; replaying all events", "entity", ref.Type, "id", ref.ID, "seq", snap.Seq, "error", err)
				inst.state = h.cfg.NewState()
			} else {
				inst.seq, inst.snapshotSeq = snap.Seq, snap.Seq
				info.fromSnapshot = true
			}
		}
		err = st.ReadEvents(ctx, ref, inst.seq, func(e store.Event) error {
			if e.Seq != inst.seq+1 {
				return fmt.Errorf("history has event %d after %d", e.Seq, inst.seq)
			}
			if e.EventType == callEventType {
				inst.seq = e.Seq // a sent call: not part of the state
				return nil
			}
			msg := h.cfg.NewEvent(e.EventType)
			if msg == nil {
				return unknownEventError(ref, e)
			}
			if err := proto.Unmarshal(e.Payload, msg); err != nil {
				return status.Errorf(codes.Internal, "load %s: decode event %d (%s): %v", ref, e.Seq, e.EventType, err)
			}
			if err := applyEvent(h.cfg.ApplyEvent, inst.state, msg); err != nil {
				return status.Errorf(codes.Internal, "load %s: apply event %d (%s): %v", ref, e.Seq, e.EventType, err)
			}
			inst.seq = e.Seq
			info.replayed++
			return nil
		})
		if err != nil {
			return info, loadError(ref, "read events", err)
		}
	case KeyValue:
		v, found, err := st.LoadValue(ctx, ref)
		if err != nil {
			return info, loadError(ref, "read value", err)
		}
		if found {
			if err := proto.Unmarshal(v.Payload, inst.state); err != nil {
				return info, status.Errorf(codes.Internal, "load %s: decode state version %d: %v", ref, v.Version, err)
			}
			inst.seq = v.Version
		}
	}
	return info, nil
}

func loadError(ref store.Ref, what string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "load %s: %s: %v", ref, what, err)
}

func (h *Host[S]) stats() HostStats {
	return HostStats{
		EntityType: h.cfg.Type,
		Cached:     int(h.cached.Load()),
		Resets:     h.resets.Load(),
		Hits:       h.hits.Load(),
		Loads:      h.loads.Load(),
		Evictions:  h.evictions.Load(),
	}
}

func (h *Host[S]) kind() Kind  { return h.cfg.Kind }
func (h *Host[S]) size() int64 { return h.cached.Load() }

func (h *Host[S]) entityType() string              { return h.cfg.Type }
func (h *Host[S]) passivationAfter() time.Duration { return h.idleTimeout }
