package statefun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/statefun-go/statefun/runtime/store"
)

// timerOp is a command's change to its entity's timers, staged until the
// command returns.
type timerOp struct {
	name     string
	due      time.Time
	delay    time.Duration // when relative: due is now+delay
	relative bool
	call     *Call
	cancel   bool
}

// maxTimerNameBytes bounds timer names: they are keys in the store.
const maxTimerNameBytes = 256

func checkTimerName(name string) error {
	switch {
	case name == "":
		return errors.New("timer name is empty; name each timer (\"expire\", \"reminder-\" + id), so that it can be replaced or cancelled")
	case len(name) > maxTimerNameBytes:
		return fmt.Errorf("timer name %.40q… is %d bytes; the limit is %d", name, len(name), maxTimerNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("timer name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r == 0 {
			return fmt.Errorf("timer name %q holds a NUL byte", name)
		}
	}
	return nil
}

// timerChanges turns a command's staged timer operations into the changes
// its commit stores. Calls are encoded now, with the trace context tc, so
// that a delivery after a restart continues the command's trace.
func timerChanges(ref store.Ref, shard int, ops []timerOp, now time.Time, tc map[string]string) ([]store.TimerChange, error) {
	changes := make([]store.TimerChange, 0, len(ops))
	for _, op := range ops {
		if err := checkTimerName(op.name); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if op.cancel {
			changes = append(changes, store.TimerChange{Timer: store.Timer{Entity: ref, Name: op.name}, Cancel: true})
			continue
		}
		if op.call == nil {
			return nil, status.Errorf(codes.Internal, "timer %q schedules a nil call; pass a generated <Entity><Method>Call", op.name)
		}
		due := op.due
		if op.relative {
			due = now.Add(op.delay)
		}
		payload, err := encodeCall(op.call, tc)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		changes = append(changes, store.TimerChange{Timer: store.Timer{
			Entity: ref, Name: op.name,
			// Random: unique enough per (entity, name) that a delivered
			// scheduling never finishes the one that replaced it.
			ID:    rand.Int64(),
			Shard: max(shard, 0),
			// Stores keep microseconds.
			Due:  due.Truncate(time.Microsecond),
			Call: payload,
		}})
	}
	return changes, nil
}

// FiredTimer describes the timer a call is the delivery of. A timer is
// delivered at least once: a target that must not act twice tells a
// repeat by Name and Due (a timer scheduled again gets a new Due), or
// relies on the idempotency key every delivery carries, which makes a
// repeated command return its first answer.
type FiredTimer struct {
	// EntityType and EntityID name the entity whose command scheduled it.
	EntityType string
	EntityID   string
	Name       string
	Due        time.Time
	// Attempt counts deliveries: 1 for the first.
	Attempt int
}

// timerHeader carries a FiredTimer to the target, in process or across a
// cluster; "-bin" lets it hold any bytes (entity IDs do).
const timerHeader = "statefun-timer-bin"

// Field numbers of the header's value, written by hand like a stored call:
//
//	message FiredTimer {
//	  string entity_type = 1; bytes entity_id = 2; string name = 3;
//	  sfixed64 due_unix_micros = 4; int64 attempt = 5;
//	}
const (
	firedTypeField    = 1
	firedIDField      = 2
	firedNameField    = 3
	firedDueField     = 4
	firedAttemptField = 5
)

func encodeFiredTimer(f FiredTimer) string {
	b := protowire.AppendTag(nil, firedTypeField, protowire.BytesType)
	b = protowire.AppendString(b, f.EntityType)
	b = protowire.AppendTag(b, firedIDField, protowire.BytesType)
	b = protowire.AppendString(b, f.EntityID)
	b = protowire.AppendTag(b, firedNameField, protowire.BytesType)
	b = protowire.AppendString(b, f.Name)
	b = protowire.AppendTag(b, firedDueField, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, uint64(f.Due.UnixMicro()))
	b = protowire.AppendTag(b, firedAttemptField, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(f.Attempt))
	return string(b)
}

func decodeFiredTimer(s string) (FiredTimer, bool) {
	var f FiredTimer
	b := []byte(s)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return f, false
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == firedTypeField || num == firedIDField || num == firedNameField):
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return f, false
			}
			switch num {
			case firedTypeField:
				f.EntityType = v
			case firedIDField:
				f.EntityID = v
			default:
				f.Name = v
			}
			b = b[n:]
		case num == firedDueField && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return f, false
			}
			f.Due, b = time.UnixMicro(int64(v)), b[n:]
		case num == firedAttemptField && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return f, false
			}
			f.Attempt, b = int(v), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return f, false
			}
			b = b[n:]
		}
	}
	return f, f.Name != ""
}

// TimerOf returns the timer whose delivery the call in ctx is, if it is
// one: pass a handler's Context().
func TimerOf(ctx context.Context) (FiredTimer, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(timerHeader)
	if len(v) != 1 {
		return FiredTimer{}, false
	}
	return decodeFiredTimer(v[0])
}

// timerCallKey is the idempotency key of one scheduling of a timer: every
// delivery of it carries the same key, so a repeat returns the first
// answer instead of running the command again.
func timerCallKey(t store.Timer) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s%d:%s%d:%s%d", len(t.Entity.Type), t.Entity.Type, len(t.Entity.ID), t.Entity.ID, len(t.Name), t.Name, t.ID)
	return "statefun.timer:" + hex.EncodeToString(h.Sum(nil)[:16])
}

const (
	// timerRound is how many due timers one round fires at most.
	timerRound = 512
	// timerConcurrency bounds the deliveries in flight: like a closed-loop
	// client's concurrency, enough to fill the journal's group commits.
	timerConcurrency = 64
	// timerIdleCheck is the longest the timer loop sleeps without looking
	// at the store: the safety net under the wake-ups of local commits
	// and of shard changes (another process's writes, a clock step).
	timerIdleCheck = 5 * time.Second
	// timerDeliveryTimeout bounds one delivery.
	timerDeliveryTimeout = 30 * time.Second
	timerRetryFirst      = 100 * time.Millisecond
	timerRetryMax        = time.Minute
)

// timerService fires the due timers of the shards this node serves (all
// of them outside a cluster). It keeps nothing per timer in memory: each
// round reads the earliest due timers from the store's index, delivers
// them, then finishes or retries them in one write each.
type timerService struct {
	rt      *Runtime
	store   store.Timers
	timeout time.Duration // bound on one store call
	wake    chan struct{} // a local commit scheduled a timer
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	fired, retried, refused atomic.Uint64
}

func (r *Runtime) startTimers() {
	timeout := r.storeTimeout()
	ctx, cancel := context.WithCancel(context.Background())
	t := &timerService{rt: r, store: r.store, timeout: timeout,
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	r.timers = t
	go t.run()
}

// scheduled wakes the loop: a commit with timers is durable. It never
// blocks: the journal writer calls it.
func (t *timerService) scheduled() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// shutdown stops the loop; deliveries in flight see their context end.
// Their timers stay in the store and fire again after a restart.
func (t *timerService) shutdown(ctx context.Context) error {
	t.cancel()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping timers: %w", ctx.Err())
	}
}

func (t *timerService) run() {
	defer close(t.done)
	// The write of one round's outcome overlaps the next round's
	// deliveries: a backlog is fired at the rate of deliveries, not of
	// deliveries plus a write.
	var writing *timerWrite
	settle := func() error {
		if writing == nil {
			return nil
		}
		err := <-writing.result
		writing = nil
		return err
	}
	defer func() { _ = settle() }()
	retry := timerRetryFirst
	for t.ctx.Err() == nil {
		shards, fence := t.owned()
		var exclude map[store.TimerKey]bool
		if writing != nil {
			exclude = writing.keys
		}
		w, found, err := t.fireRound(t.ctx, shards, fence, t.rt.now(), exclude)
		if werr := settle(); err == nil {
			err = werr
		}
		if w != nil {
			writing = w
			go t.write(w)
		}
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			t.rt.log.Warn("firing due timers failed; retrying", "retry_in", retry, "error", err)
			if !sleep(t.ctx, jitter(retry)) {
				return
			}
			retry = min(2*retry, timerRetryMax)
			continue
		}
		retry = timerRetryFirst
		if found == timerRound {
			continue // a backlog: the next round at once
		}
		// Idle: the last round's timers must be gone before asking what
		// is due next, or they would be.
		if err := settle(); err != nil {
			t.rt.log.Warn("recording fired timers failed; they fire again", "error", err)
		}
		wait := timerIdleCheck
		ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
		next, ok, err := t.store.NextTimerDue(ctx, shards)
		cancel()
		if err == nil && ok {
			wait = min(wait, next.Sub(t.rt.now()))
		}
		if wait <= 0 {
			continue
		}
		t.sleep(wait)
	}
}

// sleep waits for d, a local commit of a timer, a change of this node's
// shards, or the end.
func (t *timerService) sleep(d time.Duration) {
	var changed <-chan struct{}
	if t.rt.cluster != nil && t.rt.consumers != nil {
		changed = t.rt.consumers.clusterChange()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.wake:
	case <-changed:
	case <-t.ctx.Done():
	}
}

// owned returns the shards whose timers this node fires now and the fence
// that its writes to them carry: nil and nil outside a cluster (every
// timer is this node's).
func (t *timerService) owned() ([]int, *store.Fence) {
	cn := t.rt.cluster
	if cn == nil {
		return nil, nil
	}
	shards := []int{}
	fence := &store.Fence{Node: cn.node.ID()}
	for shard := range cn.node.Shards() {
		if epoch, ok := cn.node.Serving(shard); ok {
			shards = append(shards, shard)
			fence.Shards = append(fence.Shards, store.ShardEpoch{Shard: shard, Epoch: epoch})
		}
	}
	return shards, fence
}

// timerWrite is what became of one round's timers, to be written: the
// delivered ones finished, the failed ones moved to their retry.
type timerWrite struct {
	done    []store.TimerKey
	retries []store.TimerRetry
	fence   *store.Fence
	keys    map[store.TimerKey]bool // every timer of the round
	result  chan error
}

// fireRound delivers up to one round of the timers of shards due at now,
// leaving out those in exclude (delivered, their write in flight). It
// returns what to write (nil if nothing was delivered) and how many it
// found.
func (t *timerService) fireRound(ctx context.Context, shards []int, fence *store.Fence, now time.Time, exclude map[store.TimerKey]bool) (*timerWrite, int, error) {
	if shards != nil && len(shards) == 0 {
		return nil, 0, nil
	}
	readCtx, cancel := context.WithTimeout(ctx, t.timeout)
	due, err := t.store.DueTimers(readCtx, shards, now, timerRound+len(exclude))
	cancel()
	if err != nil {
		return nil, 0, err
	}
	due = slices.DeleteFunc(due, func(tm store.Timer) bool { return exclude[tm.Key()] })
	if len(due) > timerRound {
		due = due[:timerRound]
	}
	if len(due) == 0 {
		return nil, 0, nil
	}
	w := t.deliverAll(ctx, due)
	if w == nil {
		return nil, len(due), ctx.Err()
	}
	w.fence = fence
	return w, len(due), nil
}

// deliverAll delivers timers concurrently and returns what became of
// them, or nil if ctx ended meanwhile: what was delivered fires again
// after a restart, and its idempotency key returns the first answer.
func (t *timerService) deliverAll(ctx context.Context, due []store.Timer) *timerWrite {
	w := &timerWrite{keys: make(map[store.TimerKey]bool, len(due)), result: make(chan error, 1)}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, timerConcurrency)
	for _, tm := range due {
		w.keys[tm.Key()] = true
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			retry, ok := t.deliver(ctx, tm)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				w.done = append(w.done, tm.Key())
			} else {
				w.retries = append(w.retries, store.TimerRetry{TimerKey: tm.Key(), Due: t.rt.now().Add(retry).Truncate(time.Microsecond)})
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return w
}

// write records a round's outcome, under the round's fence, and reports
// on w.result. A fenced write is no error: this node lost a shard
// meanwhile, and its new owner fires those timers again.
func (t *timerService) write(w *timerWrite) {
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	err := t.store.FinishTimers(ctx, w.done, w.fence)
	if err == nil {
		err = t.store.RetryTimers(ctx, w.retries, w.fence)
	}
	if fenced := (*store.FencedError)(nil); errors.As(err, &fenced) {
		t.rt.log.Debug("timers fired on shards this node lost; their new owner fires them again", "shards", fenced.Shards)
		err = nil
	}
	w.result <- err
}

// deliver makes a timer's call. It reports whether the timer is done
// (delivered, or refused by its target for good) and, if not, how long to
// wait before the next attempt.
func (t *timerService) deliver(ctx context.Context, tm store.Timer) (time.Duration, bool) {
	call, err := decodeCall(tm.Call)
	if err != nil {
		t.rt.log.Error("stored timer dropped", "entity", tm.Entity.String(), "timer", tm.Name, "error", err)
		t.refused.Add(1)
		return 0, true
	}
	fired := FiredTimer{EntityType: tm.Entity.Type, EntityID: tm.Entity.ID, Name: tm.Name, Due: tm.Due, Attempt: tm.Attempts + 1}
	key := timerCallKey(tm)
	ctx = metadata.AppendToOutgoingContext(ctx, IdempotencyKeyHeader, key, timerHeader, encodeFiredTimer(fired))
	if tm.Attempts == 0 {
		// No delivery of this timer failed, so none is in flight here. One
		// that committed before a crash left its answer in the store,
		// which refuses a second commit with the key; the retry that
		// follows looks the key up. So the first delivery skips the
		// lookup: a database round trip per timer.
		ctx = withUnansweredKey(ctx, key)
	}
	ctx, cancel := context.WithTimeout(ctx, timerDeliveryTimeout)
	defer cancel()
	var span trace.Span
	if t.rt.tracer != nil {
		if call.trace != nil {
			ctx = propagator.Extract(ctx, propagation.MapCarrier(call.trace))
		}
		ctx, span = t.rt.tracer.Start(ctx, "statefun.timer.deliver", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			rpcAttributes(call.method, attrEntityType.String(tm.Entity.Type), attrEntityID.String(tm.Entity.ID),
				attrTimerName.String(tm.Name), attrAttempt.Int(fired.Attempt))...))
	}
	err = t.rt.conn.invokeEncoded(ctx, call.method, call.request)
	if span != nil {
		span.SetAttributes(attrGRPCCode.Int64(int64(status.Code(err))))
		endSpan(span, status.Code(err), err)
	}
	switch status.Code(err) {
	case codes.OK:
		t.fired.Add(1)
		return 0, true
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		t.retried.Add(1)
		wait := timerRetryFirst << min(tm.Attempts, 10)
		wait = min(wait, timerRetryMax)
		t.rt.log.Warn("timer delivery failed; retrying", "entity", tm.Entity.String(), "timer", tm.Name, "method", call.method,
			"attempt", fired.Attempt, "retry_in", wait, "error", err)
		return jitter(wait), false
	default:
		t.refused.Add(1)
		t.rt.log.Warn("timer refused by its target; not retried", "entity", tm.Entity.String(), "timer", tm.Name, "method", call.method, "error", err)
		return 0, true
	}
}

var attrTimerName = attribute.Key("statefun.timer.name")
