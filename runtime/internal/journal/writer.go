// Package journal is the group-committing journal writer: it takes what
// commands of all entities produced, writes it to the store in one
// transaction per batch, and releases every waiting reply when its batch is
// durable (the output gate).
package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/statefun-go/statefun/runtime/store"
)

// Commit is what one command produced: its events or new value, which
// become durable together or not at all.
type Commit struct {
	Events []store.Event
	Values []store.Value
	// Outcomes are the answers of commands with idempotency keys, stored
	// with their events.
	Outcomes []store.Outcome
	// Timers are the command's changes to its entity's timers, committed
	// with its events.
	Timers []store.TimerChange
	// Shard and Epoch, in a cluster, name the lease the commit was decided
	// under: the batch is fenced on it, so a node that lost the shard
	// writes nothing. Epoch 0 means no cluster.
	Shard int
	Epoch int64
	// Abandoned is set (by the writer or the entity's host) once the
	// entity's in-memory state is discarded; a commit of an abandoned
	// entity is never written, because it was decided on state that the
	// store refused. Every commit of one entity instance shares it.
	Abandoned *atomic.Bool
	// OnDurable, if set, runs in the writer after the commit is durable,
	// before waiters are released. It must not block.
	OnDurable func()
	// OnFail, if set, runs in the writer when the store refused the commit
	// or its outcome is unknown (not when it was abandoned), after
	// Abandoned is set and before waiters are released. It must not block.
	OnFail func(error)
	// Trace, when tracing is on, ties the commit to the request that made
	// it; nil otherwise.
	Trace *Trace

	entity store.Ref
	done   chan struct{}
	err    error
	// oneEvent holds the event of a single-event commit, the usual kind,
	// so that its Events cost no allocation of their own (EventsBuffer).
	oneEvent [1]store.Event
}

// EventsBuffer returns an empty slice with room for n events, to build
// Events in: for one event, room inside the commit itself.
func (c *Commit) EventsBuffer(n int) []store.Event {
	if n <= 1 {
		return c.oneEvent[:0:1]
	}
	return make([]store.Event, 0, n)
}

// ref returns the entity the commit changes; a commit is one command's, so
// it changes one entity.
func (c *Commit) ref() store.Ref {
	switch {
	case len(c.Events) > 0:
		return c.Events[0].Entity
	case len(c.Values) > 0:
		return c.Values[0].Entity
	case len(c.Outcomes) > 0:
		return c.Outcomes[0].Entity
	case len(c.Timers) > 0:
		return c.Timers[0].Entity
	}
	return store.Ref{}
}

// records counts what the commit writes, as Batch.Len does.
func (c *Commit) records() int {
	return len(c.Events) + len(c.Values) + len(c.Outcomes) + len(c.Timers)
}

// Trace ties a commit to spans, for tracing.
type Trace struct {
	// Request is the span of the command the commit is of.
	Request trace.SpanContext
	// Commit is the span of the store transaction that wrote the commit
	// (or failed to). The writer sets it before the commit is done; read
	// it only after Done is closed.
	Commit trace.SpanContext
}

// Done returns a channel closed when the commit is durable or failed.
func (c *Commit) Done() <-chan struct{} { return c.done }

// Err returns the commit's outcome; call it after Done is closed.
func (c *Commit) Err() error { return c.err }

// Wait waits for the commit to be durable. If ctx ends first it returns
// ctx's error; the commit itself goes on.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Commit) finish(err error) {
	c.err = err
	if err != nil && c.Abandoned != nil {
		c.Abandoned.Store(true)
	}
	if err != nil && c.OnFail != nil && !errors.Is(err, ErrAbandoned) {
		c.OnFail(err)
	}
	close(c.done)
}

// Errors a commit fails with, besides the store's own.
var (
	// ErrAbandoned: an earlier commit of the same entity failed, and this
	// one was decided on the state that included it.
	ErrAbandoned = errors.New("an earlier change of this entity failed to commit")
	// ErrClosed: the writer is shut down.
	ErrClosed = errors.New("journal writer is closed")
	// ErrBusy: the writer's queue is full and did not drain in time.
	ErrBusy = errors.New("journal writer is overloaded")
)

// DefaultAdmitTimeout bounds how long Admit waits for room when the
// caller's context allows longer (or has no deadline at all).
const DefaultAdmitTimeout = 5 * time.Second

// Options tune a Writer.
type Options struct {
	// MaxPending bounds the commits admitted but not yet durable; Admit
	// waits beyond it. Default 65536.
	MaxPending int
	// AdmitTimeout bounds Admit's wait for room, whatever the caller's
	// deadline: a caller without one must not queue for as long as an
	// outage lasts. Default DefaultAdmitTimeout.
	AdmitTimeout time.Duration
	// MaxBatch bounds the records written in one transaction. Default 4096.
	MaxBatch int
	// CommitTimeout bounds one store commit, so that a database that hangs
	// fails calls instead of stalling them. Default 10s.
	CommitTimeout time.Duration
	// Concurrency is the number of batches in flight at once. With more
	// than one, a new batch starts while earlier ones are still being
	// committed, which lets a networked database overlap round trips and
	// disk flushes. An entity's commits are still written in order: a
	// commit waits while its entity is part of a batch in flight.
	// Default 1.
	Concurrency int
	// Node, in a cluster, is the node the batches' fences name.
	Node string
	// Observe, if set, is called after every store commit with the
	// number of records, the time it took and its error. It must not block.
	Observe func(records int, took time.Duration, err error)
	// Tracer, if set, traces every store commit (see startCommitSpan).
	Tracer trace.Tracer
}

// Stats are cumulative counters of a Writer.
type Stats struct {
	Batches        uint64
	Records        uint64
	FailedBatches  uint64
	Conflicts      uint64
	Fenced         uint64        // batches refused because a lease was lost
	CommitDuration time.Duration // total time spent in store commits
	Pending        int           // commits admitted and not yet finished
	Queued         int           // commits waiting for the next batch
}

// Writer commits for all entities of one store. The zero value is not
// usable; call New.
type Writer struct {
	store store.Committer
	opts  Options

	mu       sync.Mutex
	queue    []*Commit
	pending  int // admitted commits not yet finished
	closed   bool
	inFlight map[store.Ref]bool // entities in a batch being committed
	ready    *sync.Cond         // signalled when a batch may be taken
	space    chan struct{}      // closed and replaced when pending shrinks and spaceWanted
	// spaceWanted says an Admit is waiting on space: only then does a
	// release replace the channel (an allocation per batch otherwise).
	spaceWanted bool
	workers     sync.WaitGroup
	stopped     chan struct{}

	stats struct {
		batches, records, failed, conflicts, fenced atomic.Uint64
		commitNanos                                 atomic.Int64
	}
}

// New starts a writer for st.
func New(st store.Committer, opts Options) *Writer {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 65536
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4096
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 10 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.AdmitTimeout <= 0 {
		opts.AdmitTimeout = DefaultAdmitTimeout
	}
	w := &Writer{
		store:    st,
		opts:     opts,
		inFlight: map[store.Ref]bool{},
		space:    make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	w.ready = sync.NewCond(&w.mu)
	w.workers.Add(opts.Concurrency)
	for range opts.Concurrency {
		go w.run()
	}
	go func() {
		w.workers.Wait()
		close(w.stopped)
	}()
	return w
}

// Admit reserves room for one commit, waiting while the writer is behind:
// that is the backpressure that keeps memory bounded. It waits at most
// AdmitTimeout, and fails with ErrBusy if no room appears by then or by
// ctx's deadline, with ctx's error if ctx is canceled, and with ErrClosed
// after Close. Each successful Admit must be followed by exactly one
// Enqueue or Release.
func (w *Writer) Admit(ctx context.Context) error {
	var timeout <-chan time.Time
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return ErrClosed
		}
		if w.pending < w.opts.MaxPending {
			w.pending++
			w.mu.Unlock()
			return nil
		}
		space := w.space
		w.spaceWanted = true
		w.mu.Unlock()
		if timeout == nil {
			// Only a caller that has to wait pays for a timer.
			t := time.NewTimer(w.opts.AdmitTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-space:
		case <-timeout:
			return fmt.Errorf("%w: %d commits waiting for the store for %v", ErrBusy, w.opts.MaxPending, w.opts.AdmitTimeout)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %d commits waiting for the store", ErrBusy, w.opts.MaxPending)
		}
	}
}

// Release gives back an admission that produced nothing to commit.
func (w *Writer) Release() {
	w.mu.Lock()
	w.release(1)
	w.mu.Unlock()
	// A closing writer's workers wait for the last admission to end.
	w.ready.Broadcast()
}

func (w *Writer) release(n int) {
	w.pending -= n
	if w.spaceWanted {
		w.spaceWanted = false
		close(w.space)
		w.space = make(chan struct{})
	}
}

// Enqueue queues an admitted commit. It never blocks: commands call it
// while holding their entity, and must not wait for the database there.
func (w *Writer) Enqueue(c *Commit) {
	c.done = make(chan struct{})
	c.entity = c.ref()
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	w.ready.Signal()
}

// NewCommit returns a commit that is already finished with err (nil for a
// no-op), for callers that need one to wait on.
func NewCommit(err error) *Commit {
	c := &Commit{done: make(chan struct{}), err: err}
	close(c.done)
	return c
}

// Close stops intake, writes everything queued, and returns when the last
// batch is finished or ctx ends.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.space)
		w.space = make(chan struct{})
	}
	w.mu.Unlock()
	w.ready.Broadcast()
	select {
	case <-w.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("journal writer did not drain: %w", ctx.Err())
	}
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	pending, queued := w.pending, len(w.queue)
	w.mu.Unlock()
	return Stats{
		Batches:        w.stats.batches.Load(),
		Records:        w.stats.records.Load(),
		FailedBatches:  w.stats.failed.Load(),
		Conflicts:      w.stats.conflicts.Load(),
		Fenced:         w.stats.fenced.Load(),
		CommitDuration: time.Duration(w.stats.commitNanos.Load()),
		Pending:        pending,
		Queued:         queued,
	}
}

// run is a writer loop: take everything queued that may go, commit it,
// repeat. There is no timer: a lone commit goes out at once, and under load
// the queue fills while earlier batches are in flight, so batches grow with
// load.
func (w *Writer) run() {
	defer w.workers.Done()
	var buf batchBuffers
	w.mu.Lock()
	for {
		batch := w.take(buf.taken[:0])
		if len(batch) == 0 {
			if w.closed && w.pending == 0 {
				w.mu.Unlock()
				w.ready.Broadcast()
				return
			}
			w.ready.Wait()
			continue
		}
		w.mu.Unlock()

		w.commit(&buf, batch)

		w.mu.Lock()
		for _, c := range batch {
			delete(w.inFlight, c.entity)
		}
		w.release(len(batch))
		// Commits that waited for these entities may go now.
		w.ready.Broadcast()
		buf.taken = batch
		buf.reset()
	}
}

// batchBuffers are the slices a writer loop builds each batch in, kept
// from one batch to the next: grown by append from nothing, a batch of n
// records costs about 2·log2(n) allocations and copies of its records,
// all on the goroutine every commit waits behind. Each loop has its own,
// and only it touches them; a store must not keep the batch's slices
// after Commit returns (store.Committer).
type batchBuffers struct {
	taken  []*Commit // what take removed from the queue
	live   []*Commit // of those, the ones not abandoned
	batch  store.Batch
	shards map[store.ShardEpoch]bool // the fence's shards, deduplicated
}

// reset empties the buffers for the next batch, keeping their capacity
// and dropping their pointers, so that a finished commit's events are
// not kept from the garbage collector until the next batch overwrites
// them.
func (b *batchBuffers) reset() {
	clear(b.taken)
	b.taken = b.taken[:0]
	clear(b.live)
	b.live = b.live[:0]
	clear(b.batch.Events)
	clear(b.batch.Values)
	clear(b.batch.Outcomes)
	clear(b.batch.Timers)
	b.batch = store.Batch{Events: b.batch.Events[:0], Values: b.batch.Values[:0], Outcomes: b.batch.Outcomes[:0], Timers: b.batch.Timers[:0]}
	clear(b.shards)
}

// take removes from the queue, in order, the commits whose entity is not
// in a batch in flight, up to MaxBatch records, and marks their entities
// in flight. A commit stays queued, with every later commit of its entity,
// while an earlier one of the same entity is being written: an entity's
// history is written strictly in order. It appends them to batch, which
// it returns. Called with w.mu held.
func (w *Writer) take(batch []*Commit) []*Commit {
	records := 0
	kept := w.queue[:0]            // filtering in place: kept never overtakes i
	var blocked map[store.Ref]bool // made only when a commit must wait
	for i, c := range w.queue {
		if len(batch) > 0 && records+c.records() > w.opts.MaxBatch {
			kept = append(kept, w.queue[i:]...)
			break
		}
		if w.inFlight[c.entity] || blocked[c.entity] {
			if blocked == nil {
				blocked = map[store.Ref]bool{}
			}
			blocked[c.entity] = true
			kept = append(kept, c)
			continue
		}
		batch = append(batch, c)
		records += c.records()
	}
	for _, c := range batch {
		w.inFlight[c.entity] = true
	}
	clear(w.queue[len(kept):])
	w.queue = kept
	return batch
}

func (w *Writer) commit(buf *batchBuffers, commits []*Commit) {
	for len(commits) > 0 {
		// After a partial failure commits is a fresh slice (rest), never
		// buf.live, which is rebuilt here.
		clear(buf.live)
		clear(buf.batch.Events)
		clear(buf.batch.Values)
		clear(buf.batch.Outcomes)
		clear(buf.batch.Timers)
		live := buf.live[:0]
		batch := &buf.batch
		*batch = store.Batch{Events: batch.Events[:0], Values: batch.Values[:0], Outcomes: batch.Outcomes[:0], Timers: batch.Timers[:0]}
		for _, c := range commits {
			if c.Abandoned != nil && c.Abandoned.Load() {
				c.finish(ErrAbandoned)
				continue
			}
			live = append(live, c)
			batch.Events = append(batch.Events, c.Events...)
			batch.Values = append(batch.Values, c.Values...)
			batch.Outcomes = append(batch.Outcomes, c.Outcomes...)
			batch.Timers = append(batch.Timers, c.Timers...)
		}
		buf.live = live
		if len(live) == 0 {
			return
		}
		batch.Fence = w.fence(buf, live)
		if batch.Len() == 0 {
			// Commands that changed nothing still wait here, behind the
			// commits queued before them.
			for _, c := range live {
				c.finish(nil)
			}
			return
		}
		spanCtx, span := w.startCommitSpan(live, batch.Len())
		ctx, cancel := context.WithTimeout(spanCtx, w.opts.CommitTimeout)
		start := time.Now()
		err := w.store.Commit(ctx, batch)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			// The store did not answer in time. Its error wraps
			// context.DeadlineExceeded, which callers would take for
			// their own deadline (DEADLINE_EXCEEDED); this is the
			// store being unavailable, so the chain is cut here, but
			// for whether the batch may have been written.
			if errors.Is(err, store.ErrOutcomeUnknown) {
				err = fmt.Errorf("%w: the store did not answer within %v: %s", store.ErrOutcomeUnknown, w.opts.CommitTimeout, err.Error())
			} else {
				err = fmt.Errorf("the store did not answer within %v: %s", w.opts.CommitTimeout, err.Error())
			}
		}
		cancel()
		if span != nil {
			w.endCommitSpan(span, live, err)
		}
		took := time.Since(start)
		w.stats.commitNanos.Add(int64(took))
		if w.opts.Observe != nil {
			w.opts.Observe(batch.Len(), took, err)
		}
		w.stats.batches.Add(1)

		var conflict *store.ConflictError
		var fenced *store.FencedError
		switch {
		case errors.As(err, &fenced) && len(fenced.Shards) > 0:
			// This node lost those shards' leases: their commits fail,
			// the rest of the batch is written.
			w.stats.fenced.Add(1)
			lost := map[int]bool{}
			for _, s := range fenced.Shards {
				lost[s] = true
			}
			var rest []*Commit
			for _, c := range live {
				if c.Epoch > 0 && lost[c.Shard] {
					c.finish(err)
				} else {
					rest = append(rest, c)
				}
			}
			if len(rest) == len(live) {
				for _, c := range rest {
					c.finish(err)
				}
				return
			}
			commits = rest
		case err == nil:
			w.stats.records.Add(uint64(batch.Len()))
			for _, c := range live {
				if c.OnDurable != nil {
					c.OnDurable()
				}
				c.finish(nil)
			}
			return
		case errors.As(err, &conflict) && len(conflict.Entities) > 0:
			// Fail the fenced entities' commits and write the rest: one
			// stale entity must not fail its neighbours in the batch.
			w.stats.conflicts.Add(1)
			fenced := map[store.Ref]bool{}
			for _, r := range conflict.Entities {
				fenced[r] = true
			}
			var rest []*Commit
			for _, c := range live {
				if touches(c, fenced) {
					c.finish(err)
				} else {
					rest = append(rest, c)
				}
			}
			if len(rest) == len(live) {
				// The store named entities outside the batch; do not loop.
				for _, c := range rest {
					c.finish(err)
				}
				return
			}
			commits = rest
		default:
			w.stats.failed.Add(1)
			for _, c := range live {
				c.finish(err)
			}
			return
		}
	}
}

// maxCommitLinks bounds the links of one commit span: a batch may hold
// thousands of commands, and OpenTelemetry's SDK keeps 128 links per span
// by default anyway.
const maxCommitLinks = 128

// startCommitSpan starts the span of one store transaction, or returns a
// nil span when tracing is off or no request in the batch is sampled.
//
// A batch serves many requests, of many traces. The span is a child of
// the first sampled request in it and links to the others; each of those
// requests' durability-wait spans links back to it (Trace.Commit). Why a
// child rather than a root span with links only: under a parent-based
// sampler (the default) a child is recorded exactly when a request it
// serves is, so a sampled request never misses its commit and no commit
// is recorded that no recorded request waited for; and the first
// request's trace shows the commit inline, where a reader looks for it.
func (w *Writer) startCommitSpan(live []*Commit, records int) (context.Context, trace.Span) {
	ctx := context.Background()
	if w.opts.Tracer == nil {
		return ctx, nil
	}
	var parent trace.SpanContext
	var links []trace.Link
	for _, c := range live {
		if c.Trace == nil || !c.Trace.Request.IsSampled() {
			continue
		}
		if !parent.IsValid() {
			parent = c.Trace.Request
		} else if len(links) < maxCommitLinks {
			links = append(links, trace.Link{SpanContext: c.Trace.Request})
		}
	}
	if !parent.IsValid() {
		return ctx, nil
	}
	return w.opts.Tracer.Start(trace.ContextWithSpanContext(ctx, parent), "statefun.commit",
		trace.WithLinks(links...), trace.WithAttributes(
			attribute.Int("statefun.batch.size", records),
			attribute.Int("statefun.batch.commits", len(live))))
}

// endCommitSpan ends a commit span and records it on the commits it
// wrote, before they are done.
func (w *Writer) endCommitSpan(span trace.Span, live []*Commit, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
	sc := span.SpanContext()
	for _, c := range live {
		if c.Trace != nil {
			c.Trace.Commit = sc
		}
	}
}

// fence is the claim a batch of commits makes on its shards' leases, or
// nil outside a cluster.
func (w *Writer) fence(buf *batchBuffers, commits []*Commit) *store.Fence {
	var f *store.Fence
	clear(buf.shards)
	for _, c := range commits {
		if c.Epoch == 0 {
			continue
		}
		se := store.ShardEpoch{Shard: c.Shard, Epoch: c.Epoch}
		if buf.shards[se] {
			continue
		}
		if buf.shards == nil {
			buf.shards = map[store.ShardEpoch]bool{}
		}
		buf.shards[se] = true
		if f == nil {
			f = &store.Fence{Node: w.opts.Node}
		}
		f.Shards = append(f.Shards, se)
	}
	return f
}

func touches(c *Commit, refs map[store.Ref]bool) bool {
	for _, e := range c.Events {
		if refs[e.Entity] {
			return true
		}
	}
	for _, v := range c.Values {
		if refs[v.Entity] {
			return true
		}
	}
	for _, o := range c.Outcomes {
		if refs[o.Entity] {
			return true
		}
	}
	for _, t := range c.Timers {
		if refs[t.Entity] {
			return true
		}
	}
	return false
}
