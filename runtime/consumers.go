package statefun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/runtime/internal/cluster"
	"github.com/statefun-go/statefun/runtime/store"
)

// Component is what a statefun server runs: an entity (New<Entity>) or a
// consumer (New<Consumer>), as generated constructors return them.
type Component interface {
	isComponent()
}

func (*Entity) isComponent()   {}
func (*Consumer) isComponent() {}

// WithConsumers adds consumers of entity events to the runtime: values of
// generated constructors such as NewAnomalyDetector. They start with the
// runtime and stop when it closes.
func WithConsumers(consumers ...*Consumer) Option {
	return optionFunc(func(c *config) { c.consumers = append(c.consumers, consumers...) })
}

// callsConsumer is the name of the internal consumer that makes the calls
// commands send; consumer names starting with "statefun" are reserved.
const callsConsumer = "statefun.calls"

// defaultStoreTimeout bounds a consumer's store call when the runtime's
// commit timeout is not set; it matches the journal writer's default.
const defaultStoreTimeout = 10 * time.Second

// consumerSet runs the consumers of a runtime.
//
// Nothing here waits for the database while holding a lock: the journal
// writer calls notify after every commit, and commands call startCalls
// while they hold their entity, so both must return at once. Each runner
// does its store I/O on its own goroutine, bounded by timeout.
type consumerSet struct {
	rt      *Runtime
	feed    consumerStore
	timeout time.Duration // bound on one store call
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// runners is replaced, never modified, so that notify reads it
	// without a lock.
	runners atomic.Pointer[[]*consumerRunner]

	changeMu sync.Mutex
	changed  chan struct{} // closed and replaced when this node's shards change

	mu       sync.Mutex                 // guards the fields below and adding runners
	calls    map[string]*consumerRunner // the calls dispatcher of each entity type
	finalCtx context.Context            // bounds the runners' last saves; set by shutdown
}

func (r *Runtime) startConsumers(consumers []*Consumer) {
	// A consumer's store calls get the bound a commit gets: both are
	// "the store did not answer".
	timeout := r.storeTimeout()
	ctx, cancel := context.WithCancel(context.Background())
	s := &consumerSet{
		rt: r, feed: r.store, timeout: timeout, ctx: ctx, cancel: cancel,
		calls: map[string]*consumerRunner{}, finalCtx: context.Background(),
		changed: make(chan struct{}),
	}
	s.runners.Store(&[]*consumerRunner{})
	r.consumers = s
	var fromNow []*consumerRunner
	for _, c := range consumers {
		runner := s.newRunner(c.cfg)
		s.mu.Lock()
		s.runLocked(runner)
		s.mu.Unlock()
		if c.cfg.StartFromNow {
			fromNow = append(fromNow, runner)
		}
	}
	// Every event-sourced type has a calls dispatcher. One that ran
	// before resumes at once, so that calls committed just before a crash
	// are made even if no command sends another one; one that never ran
	// waits until a command sends a call.
	r.hostsMu.Lock()
	hosts := append([]hostHandle(nil), r.hosts...)
	r.hostsMu.Unlock()
	s.mu.Lock()
	for _, h := range hosts {
		if h.kind() == EventSourced {
			s.callsLocked(h.entityType())
		}
	}
	s.mu.Unlock()
	// "Now", for a consumer that starts from now, is when New returns,
	// not when its goroutine gets to read the feed's head. Each store call
	// is bounded, so a stalled database delays New by a bounded time; the
	// consumer then goes on trying in the background.
	for _, runner := range fromNow {
		<-runner.started
	}
}

func validateConsumers(consumers []*Consumer) []error {
	var errs []error
	seen := map[string]bool{}
	for _, c := range consumers {
		switch {
		case c == nil:
			errs = append(errs, fmt.Errorf("nil consumer; pass the value of a generated constructor"))
		case c.err != nil:
			errs = append(errs, c.err)
		case strings.HasPrefix(c.cfg.Name, "statefun"):
			errs = append(errs, fmt.Errorf("consumer name %q is reserved (names starting with \"statefun\" are the runtime's); rename the consumer", c.cfg.Name))
		case seen[c.cfg.Name]:
			errs = append(errs, fmt.Errorf("consumer %q is registered twice; each consumer runs once", c.cfg.Name))
		default:
			seen[c.cfg.Name] = true
		}
	}
	return errs
}

func (s *consumerSet) newRunner(cfg ConsumerConfig) *consumerRunner {
	runner := newConsumerRunner(cfg, s.feed, s.rt.conn, s.rt.log, s.timeout)
	runner.finalContext = s.finalContext
	runner.panicLog = &s.rt.panicLog
	if cfg.Name != callsConsumer {
		// The calls dispatcher makes its spans itself, in dispatchCall,
		// from the trace context stored with each call.
		runner.tracer, runner.emitted = s.rt.tracer, &s.rt.emitted
	}
	return runner
}

// runLocked starts runner, unless the set is stopping. Called with s.mu
// held, which orders it before shutdown's wait.
func (s *consumerSet) runLocked(runner *consumerRunner) {
	if s.ctx.Err() != nil {
		return
	}
	runners := append(append([]*consumerRunner(nil), *s.runners.Load()...), runner)
	s.runners.Store(&runners)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if s.rt.cluster != nil {
			s.supervise(runner)
			return
		}
		runner.run(s.ctx)
	}()
}

// supervise runs runner, in a cluster, only while this node holds the
// lease of the runner's shard, and under that lease: each consumer (and
// each entity type's calls dispatcher) runs on exactly one node, and a
// node that lost the shard cannot move the consumer's position.
func (s *consumerSet) supervise(runner *consumerRunner) {
	node := s.rt.cluster.node
	shard := cluster.ShardOf("statefun.consumer", runner.cfg.Name+"\x00"+runner.cfg.EntityType, node.Shards())
	for s.ctx.Err() == nil {
		epoch, ok := node.Serving(shard)
		if !ok {
			// Not ours: let a consumer that starts from now be started
			// by its owner, and wait for the shard to come here.
			runner.startedOnce.Do(func() { close(runner.started) })
			s.waitClusterChange(200 * time.Millisecond)
			continue
		}
		runCtx, cancel := context.WithCancel(s.ctx)
		runner.fence = &store.Fence{Node: node.ID(), Shards: []store.ShardEpoch{{Shard: shard, Epoch: epoch}}}
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for runCtx.Err() == nil {
				if e, ok := node.Serving(shard); !ok || e != epoch {
					cancel()
					return
				}
				s.waitClusterChange(100 * time.Millisecond)
			}
		}()
		runner.run(runCtx)
		cancel()
		<-watched
	}
}

// clusterChanged wakes the supervisors: this node's shards changed.
func (s *consumerSet) clusterChanged() {
	s.changeMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changeMu.Unlock()
}

// clusterChange returns a channel closed at the next change of this
// node's shards.
func (s *consumerSet) clusterChange() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.changed
}

// waitClusterChange waits for a change of this node's shards, at most d.
func (s *consumerSet) waitClusterChange(d time.Duration) {
	s.changeMu.Lock()
	ch := s.changed
	s.changeMu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// callsLocked returns the calls dispatcher of entityType, starting it if
// there is none. Called with s.mu held.
func (s *consumerSet) callsLocked(entityType string) *consumerRunner {
	if runner := s.calls[entityType]; runner != nil {
		return runner
	}
	runner := s.newRunner(ConsumerConfig{Name: callsConsumer, EntityType: entityType, Handle: func(ec *EventContext, eventType string, payload []byte) error {
		return s.dispatchCall(entityType, ec, eventType, payload)
	}})
	runner.recordStart = true
	runner.dispatchesCalls = true
	if s.rt.cluster == nil {
		// Outside a cluster the dispatcher waits for the first call a
		// command sends here. In a cluster the command may run on
		// another node than the dispatcher, so it starts at once.
		runner.wanted = make(chan struct{})
	}
	s.calls[entityType] = runner
	s.runLocked(runner)
	return runner
}

// startCalls lets the dispatcher of the calls that commands of entityType
// send run, and returns it. A command that sends a call calls it while it
// holds its entity, so it returns at once: the dispatcher reads and
// records its position on its own goroutine; it finds out itself whether
// it has a stored position.
func (s *consumerSet) startCalls(entityType string) *consumerRunner {
	s.mu.Lock()
	runner := s.callsLocked(entityType)
	s.mu.Unlock()
	runner.want()
	return runner
}

// sentCallKey is the idempotency key of the call stored at seq in the
// history of entityType/id: a digest, since IDs may be longer than a key.
func sentCallKey(entityType, id string, seq int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s%d:%s%d", len(entityType), entityType, len(id), id, seq)
	return "statefun.call:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// dispatchCall makes one stored call. Calls that fail for a reason a retry
// may cure (the target is unavailable, overloaded, fenced or slow) are
// retried with backoff; other failures are the target's answer to this
// call, and are logged and not retried.
func (s *consumerSet) dispatchCall(entityType string, ec *EventContext, eventType string, payload []byte) error {
	if eventType != callEventType {
		return nil
	}
	call, err := decodeCall(payload)
	if err != nil {
		s.rt.log.Error("stored call dropped", "entity", ec.entityID, "seq", ec.seq, "error", err)
		return nil
	}
	// The call carries an idempotency key of its own: the dispatcher
	// delivers at least once (a crash between the call and saving the
	// position makes it again), and the key makes the repeat return the
	// first answer instead of running the command twice.
	ctx := metadata.AppendToOutgoingContext(ec.ctx, IdempotencyKeyHeader, sentCallKey(entityType, ec.entityID, ec.seq))
	var span trace.Span
	if s.rt.tracer != nil {
		// The delivery continues the trace of the command that sent the
		// call, from the trace context stored with it: here, after a
		// restart, or on another node.
		if call.trace != nil {
			ctx = propagator.Extract(ctx, propagation.MapCarrier(call.trace))
		}
		ctx, span = s.rt.tracer.Start(ctx, "statefun.call.deliver", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			rpcAttributes(call.method, attrEntityType.String(entityType), attrEntityID.String(ec.entityID), attrEventSeq.Int64(ec.seq))...))
	}
	err = s.rt.conn.invokeEncoded(ctx, call.method, call.request)
	if span != nil {
		span.SetAttributes(attrGRPCCode.Int64(int64(status.Code(err))))
		endSpan(span, status.Code(err), err)
	}
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		return err
	default:
		s.rt.log.Warn("sent call refused by its target; not retried", "from", ec.entityID, "seq", ec.seq, "method", call.method, "error", err)
		return nil
	}
}

// notify tells every consumer that events were committed. The journal
// writer calls it after every commit: it takes no lock and never blocks.
// The calls dispatchers are skipped: the commits that store calls wake
// them (stageChanges), and most batches store none. Woken by every batch,
// a dispatcher would read its feed once per batch, a database query per
// batch on every server with Postgres (a node of a cluster, where the
// dispatchers run from the start), to find no call.
func (s *consumerSet) notify() {
	for _, r := range *s.runners.Load() {
		if !r.dispatchesCalls {
			r.notify()
		}
	}
}

// finalContext is the context the runners' last saves run under.
func (s *consumerSet) finalContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finalCtx
}

// stop is shutdown without a deadline of the caller's: it is still
// bounded by the store timeout.
// shutdown stops the consumers: deliveries in progress see their context
// end, and each consumer saves how far it got. It returns when they have
// stopped, when ctx ends, or after twice the store timeout, whichever is
// first: neither a database that does not answer nor a handler that
// ignores its context can hold up the runtime's shutdown. Events handled
// since a save that did not finish are delivered again after a restart.
func (s *consumerSet) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.finalCtx = ctx
	s.cancel()
	s.mu.Unlock()
	stopped := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(stopped)
	}()
	bound := time.NewTimer(2 * s.timeout)
	defer bound.Stop()
	var err error
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		err = fmt.Errorf("stopping consumers: %w", ctx.Err())
	case <-bound.C:
		err = fmt.Errorf("stopping consumers: not stopped within %v; a handler may ignore its context, or the store may not answer", 2*s.timeout)
	}
	s.rt.log.Warn("consumers did not stop in time; their unsaved progress is delivered again after a restart", "error", err)
	return err
}
