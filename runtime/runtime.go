package statefun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/journal"
	"github.com/statefun-go/statefun/runtime/internal/workflowpb"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
)

// Runtime hosts a set of entity types and serves them as gRPC services.
type Runtime struct {
	cfg        config
	log        *slog.Logger
	store      store.Store
	writer     *journal.Writer
	snapshots  *snapshotter
	services   []boundService
	conn       *localConn
	consumers  *consumerSet
	eventing   *eventing
	timers     *timerService
	workflows  workflowSet
	views      viewSet
	cluster    *clusterNode // nil outside a cluster
	writerNode string
	sec        *security

	hostsMu sync.Mutex
	hosts   []hostHandle

	cached    atomic.Int64 // instances in every host's cache
	resetLog  logLimiter
	stop      chan struct{}
	janitor   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	panicLog logLimiter
	// tracer is nil unless tracing is on (WithTracerProvider); emitted
	// remembers which span emitted recent events, for consumers' links.
	tracer  trace.Tracer
	emitted emittedSpans
}

// hostHandle is the type-erased view of a Host the runtime needs.
type hostHandle interface {
	entityType() string
	kind() Kind
	passivationAfter() time.Duration
	passivateIdle(cutoff int64) int
	size() int64
	sample() (id string, lastUsed int64, ok bool)
	evictIfUnused(id string, lastUsed int64) bool
	stats() HostStats
	model() entityModel // for inspection (inspect.go)
}

type boundService struct {
	desc *grpc.ServiceDesc
	impl any
}

type config struct {
	log                  *slog.Logger
	store                store.Store
	ownStore             bool
	snapshotEvery        int
	passivationTimeout   time.Duration
	maxEntities          int
	maxPending           int
	admitTimeout         time.Duration
	idempotencyRetention time.Duration
	commitTimeout        time.Duration
	commitConcurrency    int
	observeBatch         func(records int, took time.Duration, err error)
	consumers            []*Consumer
	views                []*View
	publishers           []*Publisher
	brokers              BrokerConfig
	noSubscriptions      bool
	// openBroker replaces openBroker in tests.
	openBroker         func(ctx context.Context, name string) (broker.Broker, error)
	cluster            *ClusterConfig
	tracerProvider     trace.TracerProvider
	allowUnknownEvents bool
	security           SecurityConfig
}

// Option configures a Runtime.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLogger sets the logger for runtime events (entity resets, handler
// panics, failed commits). The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}

// WithStore sets where entity history is kept. The default is an
// in-memory store, which loses everything when the process ends: use it for
// tests only. The runtime does not close a store passed here.
func WithStore(s store.Store) Option {
	return optionFunc(func(c *config) { c.store = s })
}

// WithSnapshotEvery sets how many events an entity may accumulate between
// snapshots, for entities whose annotation does not set snapshot_every.
// Default 100; 0 disables snapshots for them.
func WithSnapshotEvery(n int) Option {
	return optionFunc(func(c *config) { c.snapshotEvery = n })
}

// WithPassivation sets how long an entity may stay in memory without a
// request, for entities whose annotation does not set passivation_timeout.
// Default 10 minutes.
func WithPassivation(idle time.Duration) Option {
	return optionFunc(func(c *config) { c.passivationTimeout = idle })
}

// WithMaxEntities bounds the entities held in memory across all types;
// beyond it, idle entities are passivated, least recently used first.
// The order is approximate: each eviction takes the least recently used of
// 8 entities sampled at random, so no list is kept per request. An entity
// whose change is not yet durable is never evicted; while every sample has
// one, the cache may exceed the bound until the next second's sweep.
// Default 1,000,000.
func WithMaxEntities(n int) Option {
	return optionFunc(func(c *config) { c.maxEntities = n })
}

// WithMaxPending bounds the commands whose changes wait for the store.
// Beyond it, new commands wait for room, and fail with
// codes.ResourceExhausted if none appears before their deadline.
// Default 65,536.
func WithMaxPending(n int) Option {
	return optionFunc(func(c *config) { c.maxPending = n })
}

// WithAdmitTimeout bounds how long a command waits for room when the
// journal is full (see WithMaxPending), whatever its caller's deadline:
// past it, the command fails with codes.ResourceExhausted. Default 5s.
func WithAdmitTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.admitTimeout = d })
}

// WithCommitTimeout bounds one write to the store; a store that does not
// answer in time fails the waiting calls with codes.Unavailable. It also
// bounds entity loads, idempotency-key lookups and each store call of a
// consumer.
// Default 10s.
func WithCommitTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.commitTimeout = d })
}

// WithCommitConcurrency sets how many batches the journal writer may have
// in flight at once. More than one overlaps the round trips and disk
// flushes of a networked database; an entity's changes are still written
// strictly in order. Default 1: on a machine with few cores the database
// and the runtime share the CPU, and overlapping batches only made them
// smaller (see BENCHMARKS.md).
func WithCommitConcurrency(n int) Option {
	return optionFunc(func(c *config) { c.commitConcurrency = n })
}

// New returns a runtime hosting entities, the values of generated
// constructors such as NewShoppingCart. It reports every invalid or
// duplicate entity type at once. Close it to flush and stop.
func New(entities []*Entity, opts ...Option) (*Runtime, error) {
	cfg := config{
		log:                  slog.Default(),
		snapshotEvery:        100,
		passivationTimeout:   10 * time.Minute,
		maxEntities:          1_000_000,
		maxPending:           65536,
		commitTimeout:        10 * time.Second,
		idempotencyRetention: DefaultIdempotencyRetention,
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.store == nil {
		cfg.store, cfg.ownStore = memory.New(), true
	}
	r := &Runtime{cfg: cfg, log: cfg.log, store: cfg.store, stop: make(chan struct{}), tracer: newTracer(cfg.tracerProvider)}
	var errs []error
	seen := map[string]bool{}
	for _, e := range entities {
		switch {
		case e == nil:
			errs = append(errs, errors.New("nil entity; pass the value of a generated constructor such as NewShoppingCart"))
			continue
		case e.err != nil:
			errs = append(errs, e.err)
			continue
		case seen[e.typ]:
			errs = append(errs, fmt.Errorf("entity type %q is registered twice; each entity type may be hosted once", e.typ))
			continue
		}
		seen[e.typ] = true
		r.services = append(r.services, boundService{desc: e.service, impl: e.bind(r)})
	}
	if len(r.workflows.hosts) > 0 {
		// Workflow timers call the runner; it is served like an entity so
		// that a cluster forwards its calls to the workflow's owner.
		r.services = append(r.services, boundService{desc: &workflowpb.WorkflowRunnerService_ServiceDesc, impl: &runnerService{set: &r.workflows}})
	}
	errs = append(errs, validateConsumers(cfg.consumers)...)
	kinds := map[string]Kind{}
	for _, e := range entities {
		if e != nil {
			kinds[e.typ] = e.kind
		}
	}
	errs = append(errs, validateViews(cfg.views, kinds)...)
	subs := subscriptionsOf(entities, cfg.noSubscriptions)
	errs = append(errs, validateEventing(cfg.publishers, subs, kinds, cfg.brokers, cfg.openBroker != nil)...)
	if err := errors.Join(errs...); err != nil {
		if cfg.ownStore {
			_ = cfg.store.Close()
		}
		return nil, fmt.Errorf("statefun: %w", err)
	}
	if err := r.checkEventTypes(entities); err != nil {
		if cfg.ownStore {
			_ = cfg.store.Close()
		}
		return nil, fmt.Errorf("statefun: %w", err)
	}
	if len(cfg.views) > 0 {
		// Before anything runs: a view whose storage cannot be made
		// fails the start, like an unknown stored event type.
		ctx, cancel := context.WithTimeout(context.Background(), r.storeTimeout())
		err := r.bindViews(ctx, cfg.views)
		cancel()
		if err != nil {
			if cfg.ownStore {
				_ = cfg.store.Close()
			}
			return nil, fmt.Errorf("statefun: %w", err)
		}
	}
	// The services are all bound: their access rules can be compiled.
	ctx, cancel := context.WithTimeout(context.Background(), r.storeTimeout())
	sec, err := newSecurity(ctx, cfg.security, r.services, r.log)
	cancel()
	if err != nil {
		if cfg.ownStore {
			_ = cfg.store.Close()
		}
		return nil, fmt.Errorf("statefun: %w", err)
	}
	r.sec = sec
	observe := func(records int, took time.Duration, err error) {
		if cfg.observeBatch != nil {
			cfg.observeBatch(records, took, err)
		}
		if err == nil && r.consumers != nil {
			r.consumers.notify()
		}
	}
	if cfg.cluster != nil {
		// Join before anything writes: every commit names its lease.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.commitTimeout)
		err := r.startCluster(ctx, *cfg.cluster)
		cancel()
		if err != nil {
			r.sec.close()
			if cfg.ownStore {
				_ = cfg.store.Close()
			}
			return nil, fmt.Errorf("statefun: join the cluster: %w", err)
		}
	}
	r.writer = journal.New(cfg.store, journal.Options{
		MaxPending: cfg.maxPending, AdmitTimeout: cfg.admitTimeout, CommitTimeout: cfg.commitTimeout, Observe: observe,
		Concurrency: cfg.commitConcurrency, Node: r.writerNode, Tracer: r.tracer,
	})
	r.snapshots = newSnapshotter(cfg.store, cfg.log)
	r.conn = newLocalConn(r.services)
	consumers := cfg.consumers
	if len(cfg.publishers) > 0 || len(subs) > 0 {
		// After the connection the subscriptions call through; a broker
		// that does not answer fails the start.
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		publishers, err := r.startEventing(ctx, cfg.publishers, subs)
		cancel()
		if err != nil {
			err = errors.Join(err, r.writer.Close(context.Background()))
			r.snapshots.close(context.Background())
			if r.cluster != nil {
				err = errors.Join(err, r.cluster.close(context.Background()))
			}
			r.sec.close()
			if cfg.ownStore {
				_ = cfg.store.Close()
			}
			return nil, fmt.Errorf("statefun: %w", err)
		}
		consumers = append(slices.Clip(consumers), publishers...)
	}
	r.startConsumers(consumers)
	for _, h := range r.views.hosts {
		h.start(r.consumers)
	}
	r.startTimers()
	r.janitor.Add(1)
	go r.passivateLoop()
	return r, nil
}

func (r *Runtime) addHost(h hostHandle) {
	r.hostsMu.Lock()
	r.hosts = append(r.hosts, h)
	r.hostsMu.Unlock()
}

// RegisterServices registers the entities' gRPC services with s, a
// *grpc.Server or any other registrar.
func (r *Runtime) RegisterServices(s grpc.ServiceRegistrar) {
	for _, svc := range r.services {
		s.RegisterService(svc.desc, svc.impl)
	}
}

// ClientConn returns a connection that calls the hosted entities in
// process, without a network or a server. Generated clients accept it:
//
//	carts := cartv1.NewShoppingCartEntityClient(rt.ClientConn())
//
// Requests and replies are copied, as they would be over the wire.
func (r *Runtime) ClientConn() grpc.ClientConnInterface { return r.conn }

// Close stops taking commands, waits until every change already accepted
// is durable (or ctx ends), releases their replies and stops the runtime.
// It closes the store only if the runtime created it.
func (r *Runtime) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		// Consumers and timers first: they call entities, which need the
		// writer.
		err := errors.Join(r.consumers.shutdown(ctx), r.views.shutdown(ctx), r.timers.shutdown(ctx), r.workflows.shutdown(ctx), r.eventing.shutdown(ctx))
		if r.cluster != nil {
			// Hand the shards off while calls can still be forwarded.
			err = errors.Join(err, r.cluster.close(ctx))
		}
		close(r.stop)
		r.janitor.Wait()
		err = errors.Join(err, r.writer.Close(ctx))
		r.snapshots.close(ctx)
		r.sec.close()
		if r.cfg.ownStore {
			err = errors.Join(err, r.store.Close())
		}
		r.closeErr = err
	})
	return r.closeErr
}

// Leave hands this node's shards to the other nodes of its cluster and
// leaves it: a server calls it on SIGTERM before it stops taking calls, so
// that calls for those shards go on at their new owners. Calls that still
// arrive are forwarded. Close leaves too, if Leave was not called.
func (r *Runtime) Leave(ctx context.Context) error {
	if r.cluster == nil {
		return nil
	}
	// Consumers and timers first: they run under leases of this node,
	// and what they did must be saved while those are still held.
	err := errors.Join(r.consumers.shutdown(ctx), r.views.shutdown(ctx), r.timers.shutdown(ctx), r.workflows.shutdown(ctx), r.eventing.shutdown(ctx))
	return errors.Join(err, r.cluster.leave(ctx))
}

// Stats is a point-in-time view of the runtime, for metrics.
type Stats struct {
	Entities  []HostStats
	Journal   JournalStats
	Timers    TimerStats
	Workflows []WorkflowStats
	Views     []ViewStats
	Eventing  EventingStats
	Cluster   ClusterStats  // zero outside a cluster
	Access    []AccessStats // methods that refused calls, by method
}

// TimerStats count the timer deliveries this runtime made.
type TimerStats struct {
	Fired   uint64 // delivered and accepted
	Retried uint64 // failed, to be retried
	Refused uint64 // refused by their target for good (not retried)
}

// ClusterStats describe this node's part in its cluster.
type ClusterStats struct {
	ShardsHeld      int           // shards this node serves now
	Members         int           // live nodes, as last seen
	Renewals        uint64        // heartbeats that renewed the leases
	RenewalFailures uint64        // heartbeats that failed
	Acquired        uint64        // leases taken
	Lost            uint64        // leases lost to another node
	HandedOff       uint64        // shards handed off
	HandoffTime     time.Duration // total time spent handing off
	Forwards        uint64        // calls forwarded to another node
	ForwardRetries  uint64        // forwards routed again (the owner moved)
}

// HostStats describe the in-memory cache of one entity type.
type HostStats struct {
	EntityType string
	Cached     int    // instances in memory now
	Hits       uint64 // requests served from memory
	Loads      uint64 // instances loaded from the store
	Evictions  uint64 // instances passivated
	Resets     uint64 // instances dropped after a failed commit or a panic
}

// JournalStats describe the journal writer.
type JournalStats struct {
	Batches        uint64        // store transactions
	Records        uint64        // events and values written
	FailedBatches  uint64        // transactions that failed
	Conflicts      uint64        // transactions that hit a fenced entity
	Fenced         uint64        // transactions refused: this node lost a shard's lease
	CommitDuration time.Duration // total time in store commits
	Pending        int           // commands admitted and not yet durable
	Queued         int           // commands waiting for the next batch
}

// Stats returns the runtime's counters.
func (r *Runtime) Stats() Stats {
	r.hostsMu.Lock()
	hosts := append([]hostHandle(nil), r.hosts...)
	r.hostsMu.Unlock()
	var s Stats
	for _, h := range hosts {
		s.Entities = append(s.Entities, h.stats())
	}
	if cn := r.cluster; cn != nil {
		ns := &cn.node.Stats
		s.Cluster = ClusterStats{
			ShardsHeld: cn.node.Held(), Members: len(cn.node.Members()),
			Renewals: ns.Renewals.Load(), RenewalFailures: ns.RenewalFailures.Load(),
			Acquired: ns.Acquired.Load(), Lost: ns.Lost.Load(), HandedOff: ns.HandedOff.Load(),
			HandoffTime: time.Duration(ns.HandoffNanos.Load()),
			Forwards:    cn.forwards.Load(), ForwardRetries: cn.forwardRetries.Load(),
		}
	}
	r.workflows.mu.Lock()
	for _, h := range r.workflows.hosts {
		s.Workflows = append(s.Workflows, h.stats())
	}
	r.workflows.mu.Unlock()
	slices.SortFunc(s.Workflows, func(a, b WorkflowStats) int { return strings.Compare(a.WorkflowType, b.WorkflowType) })
	for _, h := range r.views.hosts {
		s.Views = append(s.Views, h.stats())
	}
	s.Timers = TimerStats{Fired: r.timers.fired.Load(), Retried: r.timers.retried.Load(), Refused: r.timers.refused.Load()}
	s.Eventing = r.eventing.snapshot()
	s.Access = r.sec.stats()
	slices.SortFunc(s.Access, func(a, b AccessStats) int { return strings.Compare(a.Method, b.Method) })
	js := r.writer.Stats()
	s.Journal = JournalStats{
		Batches: js.Batches, Records: js.Records, FailedBatches: js.FailedBatches,
		Conflicts: js.Conflicts, Fenced: js.Fenced, CommitDuration: js.CommitDuration, Pending: js.Pending, Queued: js.Queued,
	}
	return s
}

// now is the clock timers are scheduled and fired by. One place, so that
// a test clock, should one be needed, has one place to go.
func (r *Runtime) now() time.Time { return time.Now() }

func (r *Runtime) hostList() []hostHandle {
	r.hostsMu.Lock()
	defer r.hostsMu.Unlock()
	return r.hosts
}

// outcomeExpiryEvery is how often expired idempotency keys are deleted.
const outcomeExpiryEvery = time.Minute

// passivateLoop evicts idle entities. It scans each type at a quarter of
// its idle timeout, so an entity lives at most 1.25 timeouts unused.
func (r *Runtime) passivateLoop() {
	defer r.janitor.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := map[hostHandle]time.Time{}
	var lastExpiry time.Time
	// Store calls made here end when the runtime closes.
	stopCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-r.stop
		cancel()
	}()
	for {
		select {
		case <-r.stop:
			return
		case now := <-tick.C:
			r.hostsMu.Lock()
			hosts := append([]hostHandle(nil), r.hosts...)
			r.hostsMu.Unlock()
			for _, h := range hosts {
				idle := h.passivationAfter()
				if idle <= 0 || now.Sub(last[h]) < idle/4 {
					continue
				}
				last[h] = now
				h.passivateIdle(now.Add(-idle).UnixNano())
			}
			// Evictions the request path gave up on (every sample had a
			// change in flight) are retried here.
			for r.cached.Load() > int64(r.cfg.maxEntities) && r.evictOne() {
			}
			if now.Sub(lastExpiry) >= outcomeExpiryEvery {
				lastExpiry = now
				r.expireOutcomes(stopCtx)
			}
		}
	}
}
