package cluster

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// This file is the simulation's machinery: virtual time, a scheduler that
// runs one node at a time, processes with their own clocks, and the
// network between them and the database. sim_test.go drives it and
// checks what it does.

// simEpoch is the database clock's reading when a simulation starts.
var simEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// simParams shape one simulated cluster.
type simParams struct {
	seed uint64
	// nodes join at the start; churn then keeps the live nodes between
	// minNodes and maxNodes.
	nodes, minNodes, maxNodes int
	shards                    int
	ttl                       time.Duration
	maxMoves                  int
	// Clocks run at rates within 1±maxDrift of the database's, each rate
	// changing now and then; fixedRate, if set, is every clock's rate,
	// always.
	maxDrift, fixedRate float64
	// duration is the virtual time to run, after the cold start.
	duration time.Duration
	// weights says how often each kind of epoch comes.
	weights [numEpochKinds]int
	// late lets a statement its node gave up on execute after the
	// node's next statements, as a query stuck behind a lock or a
	// retransmission whose cancellation does not arrive can; otherwise
	// the node's next statement cancels it.
	late bool
}

// sim is one simulated cluster: a database, nodes (real *Node values,
// each in a goroutine of its own) and a scheduler that runs exactly one
// of them at a time, in the order of virtual time. Everything random
// comes from one seeded source and nothing reads the machine's clock, so
// a seed replays exactly.
type sim struct {
	p      simParams
	renew  time.Duration
	rng    *rand.Rand
	now    time.Duration // virtual time since the start, by the database clock
	db     *simDB
	events eventQueue
	seq    uint64
	// procs is the current process of each node ID; ids lists the IDs
	// in the order they first joined, to visit them in a fixed order.
	procs  map[string]*proc
	ids    []string
	nextID int
	// holders lists, per shard, the live processes whose memory says they
	// hold its lease: the only ones that can serve it.
	holders [][]*proc
	memo    *assignMemo
	// violations are the failed checks; the run stops after the event
	// that failed the first.
	violations []string
	// outages follows shards whose owner crashed, until another serves
	// them.
	outages map[int]*crashRecord
	digest  hash.Hash64
	stats   simStats
}

func newSim(p simParams, memo *assignMemo) *sim {
	s := &sim{
		p: p, renew: p.ttl / 4, rng: rand.New(rand.NewPCG(p.seed, 0x5eed)),
		procs: map[string]*proc{}, memo: memo, outages: map[int]*crashRecord{}, digest: fnv.New64a(),
	}
	s.db = newSimDB(func() time.Duration { return s.now })
	s.holders = make([][]*proc, p.shards)
	return s
}

// The scheduler's events.

type eventKind int

const (
	evTick  eventKind = iota // a process starts its next operation
	evExec                   // a statement reaches the database
	evReply                  // a statement's answer (or its failure) reaches its process
	evDrift                  // a clock changes its rate
)

type event struct {
	at   time.Duration
	seq  uint64
	kind eventKind
	p    *proc
	st   *stmt
	gen  uint64 // evTick: the process's tick generation it belongs to
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

func (s *sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.events, e)
}

func (s *sim) stopped() bool { return len(s.violations) > 0 }

// violate records a failed check and stops the run.
func (s *sim) violate(format string, args ...any) {
	s.violations = append(s.violations, fmt.Sprintf("seed %d at %v: ", s.p.seed, s.now)+fmt.Sprintf(format, args...))
}

// advance runs the events up to virtual time until.
func (s *sim) advance(until time.Duration) {
	for len(s.events) > 0 && s.events[0].at <= until && !s.stopped() {
		e := heap.Pop(&s.events).(*event)
		s.now = e.at
		s.handle(e)
	}
	if !s.stopped() {
		s.now = max(s.now, until)
	}
}

// advanceUntil runs events one at a time until cond holds.
func (s *sim) advanceUntil(cond func() bool) {
	for len(s.events) > 0 && !cond() && !s.stopped() {
		e := heap.Pop(&s.events).(*event)
		s.now = e.at
		s.handle(e)
	}
}

func (s *sim) handle(e *event) {
	p := e.p
	var b [17]byte
	b[0] = byte(e.kind)
	putUint64(b[1:], uint64(e.at))
	putUint64(b[9:], e.seq)
	_, _ = s.digest.Write(b[:])
	_, _ = s.digest.Write([]byte(p.id))
	switch e.kind {
	case evTick:
		if p.state != procRunning || p.busy || e.gen != p.gen {
			return
		}
		if s.now < p.pausedUntil {
			e.at = p.pausedUntil
			s.push(e)
			return
		}
		if p.leaving {
			s.startOp(p, opLeave)
		} else {
			s.startOp(p, opTick)
		}
	case evExec:
		s.exec(e.st)
	case evReply:
		if p.state == procCrashed {
			return // its goroutine ran out when it crashed
		}
		if s.now < p.pausedUntil {
			e.at = p.pausedUntil
			s.push(e)
			return
		}
		err := e.st.failed
		if err == nil {
			err = e.st.err
		}
		s.resume(p, err)
	case evDrift:
		if p.state != procRunning {
			return
		}
		p.clock.setRate(s.clockRate())
		s.push(&event{at: s.now + s.expDuration(20*time.Second), kind: evDrift, p: p})
	}
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// Processes.

type procState int

const (
	procRunning procState = iota
	procCrashed           // killed: never runs again, never calls Leave
	procExited            // left the cluster gracefully, then stopped
)

type opKind int

const (
	opJoin opKind = iota
	opTick
	opLeave
)

// proc is one run of a node: a *Node with its own clock and its own
// connection to the database. A node that restarts is a new proc with
// the same ID.
type proc struct {
	s     *sim
	id    string
	n     *Node
	clock *simClock
	state procState
	// busy says an operation (Join, Tick, Leave) is under way: the
	// process's goroutine is waiting for a statement's answer.
	busy bool
	op   opKind
	// deadline ends the operation under way, as Run's timeout ends a
	// heartbeat: by the database clock, computed from the process's own.
	deadline time.Duration
	// gen numbers the process's scheduled heartbeats: a heartbeat
	// scheduled before the last rescheduling is void.
	gen uint64
	// A paused process runs nothing until pausedUntil (the database
	// still executes what it sent); a lossy one loses or delays
	// statements until lossyUntil.
	pausedUntil, lossyUntil time.Duration
	// renewedAt is when the last heartbeat (or Join) succeeded.
	renewedAt time.Duration
	leaving   bool
	// drains counts the shards the operation under way drained.
	drains int
	// held mirrors the leases the node's memory holds, as last seen.
	held map[int]holding
	// started and stopped bound the process's life (stopped is 0 while
	// it runs).
	started, stopped time.Duration

	// sent is the last statement the process sent.
	sent *stmt

	resume chan error
	yield  chan *stmt
}

// stmt is what a process's goroutine hands the scheduler: a statement
// for the database, a pause within its operation (sleep), or the end of
// its operation (done).
type stmt struct {
	kind stmtKind
	// exec runs the statement at the database; it returns the shards
	// whose leases it changed hands of, and the statement's own error.
	exec  func(*simDB) (changed []int, err error)
	sleep time.Duration
	done  bool
	// err is exec's error, or the operation's when done.
	err error
	// failed is how the statement failed on the way, if it did.
	failed error
	// cancelled says the client moved on before the statement reached the
	// database, which then never executes it.
	cancelled bool
}

var errCrashed = errors.New("the process crashed")

// join starts a new process for node id; an ID that ran before is the
// same node restarted.
func (s *sim) join(id string) {
	if old := s.procs[id]; old == nil {
		s.ids = append(s.ids, id)
	} else if old.state == procRunning {
		panic("join: " + id + " is running")
	}
	p := &proc{s: s, id: id, started: s.now, resume: make(chan error), yield: make(chan *stmt)}
	// Each clock reads its own time: nothing may compare it with the
	// database's or another node's.
	origin := time.Date(2001+s.rng.IntN(40), time.Month(1+s.rng.IntN(12)), 1, 0, 0, 0, 0, time.UTC)
	p.clock = &simClock{s: s, origin: origin, since: s.now, rate: s.clockRate()}
	n, err := New(Config{
		ID: id, Address: id, Shards: s.p.shards, LeaseTTL: s.p.ttl, MaxMoves: s.p.maxMoves,
		Store: simConn{p}, Now: p.clock.now, Drain: p.drain,
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		assign: s.memo.assign,
	})
	if err != nil {
		panic(err)
	}
	p.n = n
	s.procs[id] = p
	s.stats.joins++
	if s.p.fixedRate == 0 {
		s.push(&event{at: s.now + s.expDuration(20*time.Second), kind: evDrift, p: p})
	}
	s.startOp(p, opJoin)
}

// newID names a node that never ran.
func (s *sim) newID() string {
	s.nextID++
	return fmt.Sprintf("node-%03d", s.nextID)
}

// crash kills p: it runs nothing more, its memory is gone, and it never
// calls Leave; what it sent before still reaches the database.
func (s *sim) crash(p *proc) {
	p.state, p.stopped = procCrashed, s.now
	if p.busy {
		// Let its goroutine run out: every statement fails at once.
		s.resume(p, errCrashed)
	}
	s.forget(p)
	s.stats.crashes++
}

// leave stops p gracefully: at its next heartbeat it calls Leave, then
// exits.
func (s *sim) leave(p *proc) {
	p.leaving = true
	if !p.busy {
		s.scheduleTick(p, 0)
	}
	s.stats.leaves++
}

// pause freezes p for d: a stop-the-world pause, a stopped VM, SIGSTOP.
// Its clock runs on meanwhile, as a monotonic clock does.
func (s *sim) pause(p *proc, d time.Duration) {
	p.pausedUntil = max(p.pausedUntil, s.now+d)
	s.stats.pauses++
}

// running returns the processes that run and are not leaving, in ID
// order.
func (s *sim) running() []*proc {
	var out []*proc
	for _, id := range s.ids {
		if p := s.procs[id]; p.state == procRunning && !p.leaving {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *proc) int { return strings.Compare(a.id, b.id) })
	return out
}

func (s *sim) scheduleTick(p *proc, after time.Duration) {
	p.gen++
	s.push(&event{at: s.now + after, kind: evTick, p: p, gen: p.gen})
}

// startOp starts one of p's operations in a goroutine and runs it until
// its first statement.
func (s *sim) startOp(p *proc, op opKind) {
	p.busy, p.op, p.drains = true, op, 0
	// Run gives a heartbeat Renew; Join and Leave get longer.
	limit := s.renew
	if op != opTick {
		limit = 4 * s.renew
	}
	p.deadline = s.now + p.clock.dbDuration(limit)
	run := map[opKind]func(context.Context) error{opJoin: p.n.Join, opTick: p.n.Tick, opLeave: p.n.Leave}[op]
	go func() {
		<-p.resume //nolint:errcheck // the first resume starts the call: it answers nothing
		err := run(context.Background())
		p.yield <- &stmt{done: true, err: err}
	}()
	s.resume(p, nil)
}

// resume hands control to p's goroutine, with err as the answer to the
// statement it waits for, and takes control back when the goroutine
// sends its next statement or ends its operation.
func (s *sim) resume(p *proc, err error) {
	for {
		p.resume <- err
		st := <-p.yield
		s.afterRun(p)
		if st.done {
			s.opDone(p, st.err)
			return
		}
		if err = s.send(p, st); err == nil {
			return // on its way: its answer resumes p
		}
	}
}

// send puts st on its way; if it fails at once, it returns the error for
// the process to see now.
func (s *sim) send(p *proc, st *stmt) error {
	switch {
	case p.state == procCrashed:
		return errCrashed
	case s.now >= p.deadline:
		return context.DeadlineExceeded
	case st.sleep > 0:
		s.push(&event{at: min(s.now+st.sleep, p.deadline), kind: evReply, p: p, st: st})
		return nil
	}
	execAt := s.now + s.latency(p)
	replyAt := execAt + s.latency(p)
	if s.now < p.lossyUntil {
		switch r := s.rng.Float64(); {
		case r < 0.1: // the request is lost: the client waits until its deadline
			execAt, replyAt = -1, p.deadline
		case r < 0.2: // the answer is lost
			replyAt = p.deadline
		}
	}
	if execAt >= 0 {
		s.push(&event{at: execAt, kind: evExec, p: p, st: st})
	}
	if replyAt >= p.deadline {
		// The client gives up: an unknown outcome. The statement may
		// still execute, until the client sends its next one.
		replyAt, st.failed = p.deadline, context.DeadlineExceeded
	}
	if prev := p.sent; prev != nil && !s.p.late {
		prev.cancelled = true
	}
	p.sent = st
	s.push(&event{at: replyAt, kind: evReply, p: p, st: st})
	return nil
}

// latency is one way of a statement's trip: mostly a fraction of a
// millisecond to a few, now and then up to 100ms, and for a lossy
// process often up to one and a half heartbeats.
func (s *sim) latency(p *proc) time.Duration {
	r := s.rng.Float64()
	switch {
	case s.now < p.lossyUntil && r < 0.2:
		return s.uniform(100*time.Millisecond, 3*s.renew/2)
	case r < 0.02:
		return s.uniform(5*time.Millisecond, 100*time.Millisecond)
	}
	return time.Duration(float64(200*time.Microsecond) * math.Pow(25, s.rng.Float64()))
}

// exec executes st at the database, now, and checks the shards whose
// leases it changed.
func (s *sim) exec(st *stmt) {
	if st.cancelled {
		return
	}
	changed, err := st.exec(s.db)
	st.err = err
	for _, sh := range changed {
		s.checkShard(sh)
	}
}

// opDone ends p's operation and schedules its next, as Run does: a
// heartbeat after Renew, or after 100ms while the assignment gives it
// shards it has not taken yet.
func (s *sim) opDone(p *proc, err error) {
	if err == nil && p.op != opLeave {
		p.renewedAt = s.now
	}
	p.busy = false
	if err != nil {
		s.stats.opErrors++
	}
	switch {
	case p.state == procCrashed:
	case p.op == opLeave:
		p.state, p.stopped = procExited, s.now
		s.forget(p)
	case p.leaving:
		s.scheduleTick(p, 0)
	default:
		wait := s.renew
		if p.n.pending() {
			wait = min(wait, 100*time.Millisecond)
		}
		// Timers fire a little late, by up to 2% of Renew.
		s.scheduleTick(p, p.clock.dbDuration(wait)+s.uniform(0, s.renew/50))
	}
}

// drain is the node's Drain: it checks that the node no longer serves
// the shard, and that a heartbeat hands off no more than MaxMoves, and
// takes a moment, as finishing the work in flight does.
func (p *proc) drain(_ context.Context, shard int) {
	s := p.s
	if e, ok := p.n.Serving(shard); ok {
		s.violate("%s drains shard %d while it still serves it (epoch %d)", p.id, shard, e)
	}
	p.drains++
	if p.op != opLeave && p.drains > s.p.maxMoves {
		s.violate("%s hands off more than MaxMoves=%d shards in one heartbeat", p.id, s.p.maxMoves)
	}
	if s.rng.IntN(2) == 0 {
		p.sleep(s.uniform(0, 2*time.Millisecond))
	}
}

func (p *proc) sleep(d time.Duration) {
	p.yield <- &stmt{sleep: d}
	<-p.resume //nolint:errcheck // a sleep has no answer
}

// call hands a statement to the scheduler and waits for its answer.
func (p *proc) call(kind stmtKind, exec func(*simDB) ([]int, error)) error {
	p.yield <- &stmt{kind: kind, exec: exec}
	return <-p.resume
}

// simConn is a process's connection to the simulated database: each call
// is a statement that reaches the database after a latency, executes at
// the database's virtual now, and answers after another.
type simConn struct{ p *proc }

var _ store.Cluster = simConn{}

// Secret: the node never reads it (the runtime does), so the simulated
// database keeps none.
func (c simConn) Secret(_ context.Context, candidate []byte) ([]byte, error) {
	return candidate, nil
}

func (c simConn) InitShards(_ context.Context, n int) (int, error) {
	var got int
	err := c.p.call(stmtInitShards, func(db *simDB) (_ []int, err error) {
		got, err = db.initShards(n)
		return nil, err
	})
	return got, err
}

func (c simConn) Heartbeat(_ context.Context, node store.Node, ttl time.Duration) ([]store.Lease, error) {
	var held []store.Lease
	err := c.p.call(stmtHeartbeat, func(db *simDB) ([]int, error) {
		held = db.heartbeat(node, ttl)
		return nil, nil
	})
	return held, err
}

func (c simConn) Nodes(context.Context) ([]store.Node, error) {
	var nodes []store.Node
	err := c.p.call(stmtNodes, func(db *simDB) ([]int, error) {
		nodes = db.nodeList()
		return nil, nil
	})
	return nodes, err
}

func (c simConn) Acquire(_ context.Context, node string, shards []int, ttl time.Duration) ([]store.Lease, error) {
	shards = slices.Clone(shards)
	var got []store.Lease
	err := c.p.call(stmtAcquire, func(db *simDB) ([]int, error) {
		got = db.acquire(node, shards, ttl)
		changed := make([]int, len(got))
		for i, l := range got {
			changed[i] = l.Shard
		}
		return changed, nil
	})
	return got, err
}

func (c simConn) Release(_ context.Context, node string, shards []int) error {
	shards = slices.Clone(shards)
	return c.p.call(stmtRelease, func(db *simDB) ([]int, error) {
		return db.releaseLeases(node, shards), nil
	})
}

func (c simConn) Leases(context.Context) ([]store.Lease, error) {
	var leases []store.Lease
	err := c.p.call(stmtLeases, func(db *simDB) ([]int, error) {
		leases = db.leaseList()
		return nil, nil
	})
	return leases, err
}

func (c simConn) Leave(_ context.Context, node string) error {
	return c.p.call(stmtLeave, func(db *simDB) ([]int, error) {
		return db.leave(node), nil
	})
}

func (c simConn) SaveConsumerPositionFenced(_ context.Context, _, _ string, _ store.Position, fence *store.Fence) error {
	return c.p.call(stmtFenced, func(db *simDB) ([]int, error) {
		return nil, db.checkFence(fence)
	})
}

// simClock is a process's monotonic clock. It runs at rate times the
// database clock; the rate changes now and then, within the drift bound.
type simClock struct {
	s *sim
	// origin is the clock's reading at database time since.
	origin time.Time
	since  time.Duration
	rate   float64
}

func (c *simClock) now() time.Time {
	return c.origin.Add(time.Duration(float64(c.s.now-c.since) * c.rate))
}

func (c *simClock) setRate(rate float64) {
	c.origin, c.since, c.rate = c.now(), c.s.now, rate
}

// dbDuration is how long the database clock runs while this clock runs
// d, at its present rate.
func (c *simClock) dbDuration(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(float64(d) / c.rate))
}

// clockRate draws a clock's rate within the drift bound.
func (s *sim) clockRate() float64 {
	if s.p.fixedRate != 0 {
		return s.p.fixedRate
	}
	return 1 + s.p.maxDrift*(2*s.rng.Float64()-1)
}

func (s *sim) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func (s *sim) expDuration(mean time.Duration) time.Duration {
	return time.Duration(s.rng.ExpFloat64() * float64(mean))
}

// assignMemo remembers Assign's results: a node computes the assignment
// on every heartbeat, and hundreds of nodes with one membership need it
// computed once. Results are shared: nodes only read them.
type assignMemo struct {
	mu sync.Mutex
	m  map[uint64][]assignment
}

type assignment struct {
	nodes  []string
	shards int
	owners []string
}

func (a *assignMemo) assign(nodes []string, shards int) []string {
	h := uint64(fnvOffset)
	for _, n := range nodes {
		h = (h ^ nodeHash(n)) * fnvPrime
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.m[h] {
		if e.shards == shards && slices.Equal(e.nodes, nodes) {
			return e.owners
		}
	}
	if len(a.m) >= 64 || a.m == nil {
		a.m = map[uint64][]assignment{}
	}
	owners := Assign(nodes, shards)
	a.m[h] = append(a.m[h], assignment{slices.Clone(nodes), shards, owners})
	return owners
}
