package statefun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/runtime/store"
)

// ConsumerConfig describes a consumer of an entity type's events to the
// runtime. Generated code fills it in; programs do not build it by hand.
type ConsumerConfig struct {
	// Name is the stable name the consumer's position is stored under.
	Name string
	// EntityType is the stored type name of the entity it consumes.
	EntityType string
	// StartFromNow makes a consumer without a stored position skip the
	// history and start with the next event.
	StartFromNow bool
	// Handle decodes one stored event and passes it to the consumer's
	// handler. It returns nil for event types the consumer does not handle.
	Handle func(ctx *EventContext, eventType string, payload []byte) error
}

// Consumer is a consumer ready to run: the value a generated constructor
// such as NewAnomalyDetector returns. Pass it to Main, or to New with
// WithConsumers.
type Consumer struct {
	cfg ConsumerConfig
	err error
}

// NewConsumer turns a configuration into a Consumer. Generated code calls
// it; a configuration error is reported by New.
func NewConsumer(cfg ConsumerConfig) *Consumer {
	c := &Consumer{cfg: cfg}
	switch {
	case !entityTypePattern.MatchString(cfg.Name):
		c.err = fmt.Errorf("consumer name %q is not valid: use lowercase letters, digits, '.', '_' and '-', starting with a letter", cfg.Name)
	case cfg.EntityType == "" || cfg.Handle == nil:
		c.err = fmt.Errorf("consumer %q: incomplete configuration; regenerate the code with protoc-gen-statefun", cfg.Name)
	}
	return c
}

// Name returns the consumer's stable name.
func (c *Consumer) Name() string { return c.cfg.Name }

// EventContext is the runtime half of a generated consumer context.
type EventContext struct {
	ctx      context.Context
	entityID string
	seq      int64
	conn     grpc.ClientConnInterface
}

// Context returns the context of the delivery; it ends when the runtime
// stops.
func (c *EventContext) Context() context.Context { return c.ctx }

// EntityID returns the ID of the entity that emitted the event.
func (c *EventContext) EntityID() string { return c.entityID }

// Seq returns the event's position in its entity's history, from 1.
func (c *EventContext) Seq() int64 { return c.seq }

// ClientConn returns a connection to the entities of this runtime, for
// generated clients: a consumer reacts to an event by calling entities.
func (c *EventContext) ClientConn() grpc.ClientConnInterface { return c.conn }

// DecodeEventError reports a stored event that does not decode. The
// consumer retries it with backoff, like any handler error, and logs it.
func DecodeEventError(eventType string, err error) error {
	return fmt.Errorf("decode stored event %s: %w", eventType, err)
}

// consumerStore is what consumers use of the store: they read the feed
// and keep their positions. In a cluster they save positions through
// store.Cluster instead, which the store implements too (savePosition).
type consumerStore interface {
	store.Feed
	store.Positions
}

// consumerRunner delivers one consumer's events: at least once, in order
// per entity, different entities in parallel.
//
// It reads the feed into a window of at most window events. Each entity
// with events in the window is worked on by at most one goroutine, which
// handles them in order and retries a failing one with backoff; the other
// entities go on meanwhile, until the window fills behind the failing one.
// The stored position is the end of the longest prefix of the window that
// is fully handled, so after a restart nothing unhandled is skipped; events
// after it may be delivered again.
//
// Every store call it makes is bounded by timeout and runs on the
// runner's own goroutine, never under a lock anyone else waits for: a
// database that stops answering delays this consumer only.
type consumerRunner struct {
	cfg     ConsumerConfig
	store   consumerStore
	conn    grpc.ClientConnInterface
	log     *slog.Logger
	wake    chan struct{}
	window  int
	poll    time.Duration
	timeout time.Duration // bound on one store call

	// recordStart makes a consumer without a stored position record its
	// starting point as soon as it has one, so that a restart resumes
	// from there: "now" does not move forward for a consumer that starts
	// from now, and a calls dispatcher is resumed even before a command
	// sends another call.
	recordStart bool
	// dispatchesCalls marks a calls dispatcher: the commits that store
	// calls of its entity type wake it, not every commit
	// (consumerSet.notify), and of the events it reads only the calls
	// need a delivery.
	dispatchesCalls bool
	// wanted, when not nil, holds back a consumer that has no stored
	// position until it is closed (by want): the calls dispatcher of an
	// entity type runs once a command of that type sends a call.
	wanted   chan struct{}
	wantOnce sync.Once
	// started is closed when the first attempt to find the starting
	// position has ended, successfully or not.
	started     chan struct{}
	startedOnce sync.Once
	// fence, in a cluster, is the lease the consumer runs under: its
	// position is saved only while this node holds it.
	fence *store.Fence
	// finalContext bounds the last save, when the runner stops.
	finalContext func() context.Context
	// tracer, when tracing, traces each delivery; emitted finds the span
	// of the command that emitted an event, for a link.
	tracer  trace.Tracer
	emitted *emittedSpans
	// panicLog limits the logging of handler panics; the runtime's
	// (Runtime.panicLog) once the runner belongs to a consumerSet.
	panicLog *logLimiter
	// onStart, when set, is called each time the runner starts reading,
	// before its first delivery.
	onStart func()
	// caughtUp, when set, is called (on the runner's goroutine, so it
	// must not block) each time the runner has handled every event up to
	// the head of the feed it read: a view's version is complete then.
	caughtUp func()

	mu      sync.Mutex
	pending []*delivery            // in feed order
	queues  map[string][]*delivery // per entity, not yet handled
	active  map[string]bool        // entities a goroutine is working on
	handled store.Position         // end of the fully handled prefix
	saved   store.Position
	// retrying counts the entities whose event a worker is retrying, and
	// lastError is the last handler error: what the console shows.
	retrying  int
	lastError string
}

type delivery struct {
	event store.FeedEvent
	done  bool
}

const (
	consumerWindow      = 4096
	consumerReadBatch   = 512
	consumerSaveEvery   = 200 * time.Millisecond
	consumerParallelism = 16
	consumerRetryFirst  = 100 * time.Millisecond // after a store error
	consumerRetryMax    = 5 * time.Second
)

// consumerPoll is how long an idle consumer waits for a wake-up before it
// reads its feed again anyway. Commits wake consumers at once; the poll
// only covers a wake-up that never comes. A variable so that a test can
// make it long enough to prove the wake-up works.
var consumerPoll = 100 * time.Millisecond

func newConsumerRunner(cfg ConsumerConfig, st consumerStore, conn grpc.ClientConnInterface, log *slog.Logger, timeout time.Duration) *consumerRunner {
	return &consumerRunner{
		cfg: cfg, store: st, conn: conn, log: log.With("consumer", cfg.Name),
		wake: make(chan struct{}, 1), window: consumerWindow, poll: consumerPoll, timeout: timeout,
		recordStart: cfg.StartFromNow, started: make(chan struct{}),
		finalContext: context.Background,
		panicLog:     &logLimiter{},
		queues:       map[string][]*delivery{}, active: map[string]bool{},
	}
}

// notify wakes the reader: new events may have been committed. It never
// blocks: the journal writer calls it after every commit.
func (r *consumerRunner) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// want lets a runner held back by wanted start. It never blocks.
func (r *consumerRunner) want() {
	if r.wanted != nil {
		r.wantOnce.Do(func() { close(r.wanted) })
	}
}

// run finds where to start, delivers events until ctx ends, then saves
// the position reached.
func (r *consumerRunner) run(ctx context.Context) {
	pos, ok := r.bootstrap(ctx)
	if !ok {
		return
	}
	// A runner runs again after its node took its shard back: it starts
	// from the stored position with an empty window.
	r.mu.Lock()
	r.pending, r.queues, r.active = nil, map[string][]*delivery{}, map[string]bool{}
	r.handled, r.saved = pos, pos
	r.mu.Unlock()
	if r.onStart != nil {
		r.onStart()
	}
	r.log.Info("consumer started", "entity", r.cfg.EntityType, "resume_after", string(pos))
	sem := make(chan struct{}, consumerParallelism)
	var workers sync.WaitGroup
	saveTick := time.NewTicker(consumerSaveEvery)
	defer saveTick.Stop()
	defer func() {
		// Let the workers stop (they watch ctx), then save how far the
		// consumer got, within the bound the runtime's shutdown sets.
		workers.Wait()
		r.save(r.finalContext())
	}()
	readPos := pos
	retry := consumerRetryFirst
	for ctx.Err() == nil {
		r.mu.Lock()
		room := r.window - len(r.pending)
		r.mu.Unlock()
		read := 0
		var readErr error
		if room > 0 {
			var fresh []store.FeedEvent
			readCtx, cancel := context.WithTimeout(ctx, r.timeout)
			readErr = r.store.ReadFeed(readCtx, r.cfg.EntityType, readPos, min(room, consumerReadBatch), func(e store.FeedEvent) error {
				fresh = append(fresh, e)
				readPos = e.Position
				return nil
			})
			cancel()
			if readErr != nil && ctx.Err() == nil {
				r.log.Warn("reading the event feed failed; retrying", "retry_in", retry, "error", readErr)
			}
			read = len(fresh)
			r.mu.Lock()
			for _, e := range fresh {
				if r.dispatchesCalls && e.EventType != callEventType {
					// An entity's own event: a calls dispatcher has
					// nothing to make of it, so it is handled at once,
					// without a worker (most of the feed is such).
					if len(r.pending) == 0 {
						r.handled = e.Position
					} else {
						r.pending = append(r.pending, &delivery{event: e, done: true})
					}
					continue
				}
				d := &delivery{event: e}
				r.pending = append(r.pending, d)
				id := d.event.Entity.ID
				r.queues[id] = append(r.queues[id], d)
				if !r.active[id] {
					r.active[id] = true
					workers.Add(1)
					go r.work(ctx, id, sem, &workers)
				}
			}
			r.mu.Unlock()
		}
		// Save on the tick also while busy: a consumer that always has
		// more to read must still record its progress.
		select {
		case <-saveTick.C:
			r.save(ctx)
		default:
		}
		if readErr != nil {
			// The events read before the error are kept; the read
			// resumes after them once the store answers again.
			if !sleep(ctx, jitter(retry)) {
				break
			}
			retry = min(2*retry, consumerRetryMax)
			continue
		}
		retry = consumerRetryFirst
		if read == consumerReadBatch {
			continue // more may be waiting: read on at once
		}
		if r.caughtUp != nil {
			r.mu.Lock()
			idle := len(r.pending) == 0
			r.mu.Unlock()
			if idle {
				r.caughtUp()
			}
		}
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-time.After(r.poll):
		}
	}
}

// bootstrap finds the position to start after, retrying with backoff
// until it does. It returns false if ctx ended first.
func (r *consumerRunner) bootstrap(ctx context.Context) (store.Position, bool) {
	retry := consumerRetryFirst
	for attempt := 1; ; attempt++ {
		pos, err := r.start(ctx)
		if attempt == 1 {
			r.startedOnce.Do(func() { close(r.started) })
		}
		if err == nil {
			return pos, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		r.log.Error("consumer cannot read its position; retrying", "retry_in", retry, "error", err)
		if !sleep(ctx, jitter(retry)) {
			return "", false
		}
		retry = min(2*retry, consumerRetryMax)
	}
}

// start reads the stored position. Without one, it waits until the
// consumer is wanted, picks the start of the feed (or its head, for a
// consumer that starts from now) and records it if it must.
func (r *consumerRunner) start(ctx context.Context) (store.Position, error) {
	loadCtx, cancel := context.WithTimeout(ctx, r.timeout)
	pos, found, err := r.store.LoadConsumerPosition(loadCtx, r.cfg.Name, r.cfg.EntityType)
	cancel()
	if err != nil || found {
		return pos, err
	}
	if r.wanted != nil {
		select {
		case <-r.wanted:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if r.cfg.StartFromNow {
		headCtx, cancel := context.WithTimeout(ctx, r.timeout)
		pos, err = r.store.FeedHead(headCtx, r.cfg.EntityType)
		cancel()
		if err != nil {
			return "", err
		}
	}
	if !r.recordStart {
		return pos, nil
	}
	saveCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return pos, r.savePosition(saveCtx, pos)
}

// savePosition stores pos: fenced by the consumer's lease in a cluster.
func (r *consumerRunner) savePosition(ctx context.Context, pos store.Position) error {
	if r.fence != nil {
		if cs, ok := r.store.(store.Cluster); ok {
			return cs.SaveConsumerPositionFenced(ctx, r.cfg.Name, r.cfg.EntityType, pos, r.fence)
		}
	}
	return r.store.SaveConsumerPosition(ctx, r.cfg.Name, r.cfg.EntityType, pos)
}

// work handles the queued events of one entity, in order.
func (r *consumerRunner) work(ctx context.Context, id string, sem chan struct{}, workers *sync.WaitGroup) {
	defer workers.Done()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-sem }()
	for {
		r.mu.Lock()
		q := r.queues[id]
		if len(q) == 0 || ctx.Err() != nil {
			delete(r.queues, id)
			delete(r.active, id)
			r.mu.Unlock()
			return
		}
		d := q[0]
		r.mu.Unlock()

		if !r.deliver(ctx, d) {
			return // stopping; the event stays unhandled and is redelivered
		}

		r.mu.Lock()
		d.done = true
		r.queues[id] = r.queues[id][1:]
		r.advance()
		r.mu.Unlock()
	}
}

// deliver calls the handler until it succeeds, backing off between tries.
// It returns false if ctx ended first.
func (r *consumerRunner) deliver(ctx context.Context, d *delivery) bool {
	backoff := 50 * time.Millisecond
	failing := false
	defer func() {
		if failing {
			r.mu.Lock()
			r.retrying--
			r.mu.Unlock()
		}
	}()
	for attempt := 1; ; attempt++ {
		ec := &EventContext{ctx: ctx, entityID: d.event.Entity.ID, seq: d.event.Seq, conn: r.conn}
		var span trace.Span
		if r.tracer != nil {
			ec.ctx, span = r.startDelivery(ctx, d.event.Event, attempt)
		}
		err := r.handle(ec, d.event)
		if span != nil {
			endSpan(span, status.Code(err), err)
		}
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.mu.Lock()
		if !failing {
			failing = true
			r.retrying++
		}
		r.lastError = fmt.Sprintf("%s/%s seq %d (%s): %v", d.event.Entity.Type, d.event.Entity.ID, d.event.Seq, d.event.EventType, err)
		r.mu.Unlock()
		wait := jitter(backoff)
		if p := (*panicError)(nil); errors.As(err, &p) {
			logPanic(ctx, r.log, r.panicLog, "consumer handler panicked; retrying", p, "entity", d.event.Entity.ID, "seq", d.event.Seq,
				"event", d.event.EventType, "attempt", attempt, "retry_in", wait)
		} else {
			r.log.Warn("consumer handler failed; retrying", "entity", d.event.Entity.ID, "seq", d.event.Seq,
				"event", d.event.EventType, "attempt", attempt, "retry_in", wait, "error", err)
		}
		if !sleep(ctx, wait) {
			return false
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// startDelivery starts the span of one delivery attempt. It links to the
// span of the command that emitted the event when this process knows it
// (emittedSpans says when); events carry no trace context of their own.
func (r *consumerRunner) startDelivery(ctx context.Context, e store.Event, attempt int) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attrConsumer.String(r.cfg.Name), attrEntityType.String(e.Entity.Type), attrEntityID.String(e.Entity.ID),
		attrEventSeq.Int64(e.Seq), attrEventType.String(e.EventType), attrAttempt.Int(attempt))}
	if sc, ok := r.emitted.lookup(e); ok {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return r.tracer.Start(ctx, "statefun.consumer.deliver", opts...)
}

// handle runs the consumer's handler, turning a panic into a *panicError
// that keeps the stack (taken here, where it still shows the handler's
// frames) for the log.
func (r *consumerRunner) handle(ec *EventContext, e store.FeedEvent) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return r.cfg.Handle(ec, e.EventType, e.Payload)
}

// advance drops the handled prefix of the window and moves the position
// to its end. Called with r.mu held.
func (r *consumerRunner) advance() {
	n := 0
	for n < len(r.pending) && r.pending[n].done {
		n++
	}
	if n == 0 {
		return
	}
	r.handled = r.pending[n-1].event.Position
	clear(r.pending[:n])
	r.pending = r.pending[n:]
}

// save records the position reached, if it moved, within r.timeout.
func (r *consumerRunner) save(ctx context.Context) {
	r.mu.Lock()
	pos := r.handled
	dirty := pos != r.saved
	r.mu.Unlock()
	if !dirty {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.savePosition(ctx, pos); err != nil {
		if !errors.Is(err, context.Canceled) {
			r.log.Warn("saving the consumer position failed; events since the last save may be delivered again", "error", err)
		}
		return
	}
	r.mu.Lock()
	r.saved = pos
	r.mu.Unlock()
}

// jitter returns a wait between d/2 and d: it keeps many failing
// deliveries or consumers from retrying in lockstep.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
