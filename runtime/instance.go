package statefun

import (
	"context"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/runtime/internal/journal"
)

// An instance's life, with every transition in this file:
//
//	loading ──load ok──> active ──handler or event handler panicked,──> resetting ──last commit──> (replaced by
//	   │                   │        commit failed                                    finished       a new instance)
//	   │                   └──idle or over the bound, every change durable──> passivated
//	   └──load failed──> retired
//
// The one rule the states exist for: a new instance of an entity loads only
// after every commit of the previous one has finished. A reset that
// reloaded while an earlier commit was still in flight would read a store
// without it; that commit would then land, its caller be told OK, and
// reads would not show it (INVARIANTS.md, the entity life cycle).
type phase int32

const (
	phaseLoading phase = iota
	phaseActive
	phaseResetting
	phasePassivated
	phaseRetired
)

// instance is one entity held in memory. It costs a few machine words on
// top of its state: no goroutine, no channel while idle.
type instance[S proto.Message] struct {
	// mu is the single-writer lock: commands hold it exclusively while
	// they decide, reads share it. A loading instance is held
	// exclusively by its loader.
	mu    sync.RWMutex
	phase atomic.Int32
	state S
	// seq is the number of events applied (event-sourced) or the version
	// of the state (key-value), including changes not yet durable.
	seq int64
	// snapshotSeq is the seq of the newest snapshot taken.
	snapshotSeq int64
	// last is the newest commit of this instance: replies that saw the
	// current state wait for it. Written with mu held exclusively.
	last *journal.Commit
	// onFail is what every commit of the instance runs when it fails
	// (Host.commitFailed); made by the first commit (newCommit), under mu.
	onFail func(error)
	// abandoned is set by the journal writer when a commit of this
	// instance failed: every later commit was decided on state that
	// included it, so none of them may be written. Every commit of the
	// instance points at it.
	abandoned atomic.Bool
	// barrier is what a reset instance's successor waits for before it
	// loads: the newest commit that may still be written.
	barrier atomic.Pointer[journal.Commit]
	// loadErr is why a retired instance failed to load; requests that
	// waited for that load get it rather than loading again.
	loadErr error
	// lastUsed is when a request last touched the instance, in Unix
	// nanoseconds: passivation and eviction read it.
	lastUsed atomic.Int64
	// answers are the recent answers to commands with idempotency keys;
	// nil until the first. forgotten counts those dropped from memory.
	answers   *answers
	forgotten atomic.Uint64
	// shard and epoch, in a cluster, name the lease the instance was
	// loaded under; a request under another epoch reloads it (another
	// node may have changed the entity in between).
	shard int32
	epoch int64
}

func (i *instance[S]) is(p phase) bool { return phase(i.phase.Load()) == p }

// usable says whether requests may run on the instance. Check it with mu
// held.
func (i *instance[S]) usable() bool { return i.is(phaseActive) && !i.abandoned.Load() }

// durable says whether every change of the instance is in the store.
// Call with mu held.
func (i *instance[S]) durable() bool {
	if i.last == nil {
		return true
	}
	select {
	case <-i.last.Done():
		return i.last.Err() == nil
	default:
		return false
	}
}

// stale says whether the instance's successor may load: it is being reset
// (or a commit failed) and nothing it committed can still be written.
func (i *instance[S]) stale() (bool, *journal.Commit) {
	if !i.is(phaseResetting) && !i.abandoned.Load() {
		return false, nil
	}
	return true, i.barrier.Load()
}

// hostStripes is how many locks a host's cache is split over, so that a
// scan (passivation) never stops every request of an entity type at once.
const hostStripes = 64

type stripe[S proto.Message] struct {
	mu        sync.Mutex
	instances map[string]*instance[S]
	_         [40]byte // keep neighbouring stripes' locks off one cache line
}

func (h *Host[S]) stripeOf(id string) *stripe[S] {
	return &h.stripes[maphash.String(h.seed, id)%hostStripes]
}

// put and remove are the only places instances enter and leave the cache,
// so the counts the eviction bound reads cannot drift. Called with st.mu
// held.
func (h *Host[S]) put(st *stripe[S], id string, inst *instance[S]) {
	if st.instances == nil {
		st.instances = map[string]*instance[S]{}
	}
	st.instances[id] = inst
	h.cached.Add(1)
	h.rt.cached.Add(1)
}

func (h *Host[S]) remove(st *stripe[S], id string, inst *instance[S]) {
	if st.instances[id] != inst {
		return
	}
	delete(st.instances, id)
	h.cached.Add(-1)
	h.rt.cached.Add(-1)
}

// instance finds the entity in memory or loads it from the store.
func (h *Host[S]) instance(ctx context.Context, id string, shard int, epoch int64) (*instance[S], error) {
	if len(id) > maxEntityIDBytes {
		// Refused here, before anything is staged: a store that cannot
		// hold the key fails the whole group commit it lands in, and
		// with it every other entity's change in that batch.
		return nil, status.Errorf(codes.InvalidArgument, "the entity key of %s is %d bytes, over the limit of %d; use a shorter key", h.cfg.Type, len(id), maxEntityIDBytes)
	}
	now := time.Now().UnixNano()
	st := h.stripeOf(id)
	for {
		st.mu.Lock()
		old, ok := st.instances[id]
		if ok {
			stale, barrier := old.stale()
			if old.epoch != epoch && !old.is(phaseLoading) {
				// Loaded under an older lease: its commits are fenced, and
				// the entity may have changed on another node since.
				stale, barrier = true, nil
			}
			if !stale {
				st.mu.Unlock()
				old.lastUsed.Store(now)
				h.hits.Add(1)
				// A loading instance is returned too: its caller waits
				// on its lock for the load, rather than loading again.
				return old, nil
			}
			if barrier != nil {
				select {
				case <-barrier.Done():
				default:
					// A commit of the reset instance may still be
					// written: loading now could miss it.
					st.mu.Unlock()
					select {
					case <-barrier.Done():
					case <-ctx.Done():
						return nil, status.FromContextError(ctx.Err()).Err()
					}
					continue
				}
			}
			old.phase.Store(int32(phaseRetired))
			h.remove(st, id, old)
		}
		inst := &instance[S]{shard: int32(shard), epoch: epoch}
		inst.lastUsed.Store(now)
		// Hold the write lock while loading, so concurrent first requests
		// wait for one load instead of each loading.
		inst.mu.Lock()
		h.put(st, id, inst)
		st.mu.Unlock()
		h.loads.Add(1)
		h.rt.enforceBound()
		err := h.loadBounded(ctx, id, inst)
		if err != nil {
			inst.loadErr = err
			inst.phase.Store(int32(phaseRetired))
			st.mu.Lock()
			h.remove(st, id, inst)
			st.mu.Unlock()
		} else {
			inst.phase.Store(int32(phaseActive))
		}
		inst.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return inst, nil
	}
}

// waitError is what a request that took inst's lock and found it
// unusable reports: the load error it waited for, or nil to say "look the
// entity up again".
func (i *instance[S]) waitError() error {
	if i.is(phaseRetired) && i.loadErr != nil {
		return i.loadErr
	}
	return nil
}

// resetAfterPanic drops the instance whose state a handler (or an event
// handler) may have left half changed. Its earlier commands were decided
// on sound state, so their commits go on; the successor waits for them.
// Called with inst.mu held (shared or exclusive).
func (h *Host[S]) resetAfterPanic(id string, inst *instance[S], cause error) {
	inst.barrier.Store(inst.last)
	if inst.phase.CompareAndSwap(int32(phaseActive), int32(phaseResetting)) {
		h.resets.Add(1)
		h.rt.logReset(h.cfg.Type, id, "a handler panicked", cause)
	}
}

// commitFailed is the journal writer's report that a commit of inst was
// refused or its outcome is unknown. The writer has already set
// inst.abandoned, so no later commit of inst can be written and the
// successor need not wait for any.
func (h *Host[S]) commitFailed(id string, inst *instance[S], err error) {
	if inst.phase.CompareAndSwap(int32(phaseActive), int32(phaseResetting)) {
		h.resets.Add(1)
		h.rt.logReset(h.cfg.Type, id, "a commit failed", err)
	}
}

// passivateIdle evicts instances idle since before cutoff whose changes
// are durable, and drops reset instances nothing waits for. It holds one
// stripe's lock at a time and never waits for an instance a call holds.
func (h *Host[S]) passivateIdle(cutoff int64) int {
	evicted := 0
	for i := range h.stripes {
		st := &h.stripes[i]
		st.mu.Lock()
		for id, inst := range st.instances {
			if stale, barrier := inst.stale(); stale {
				if barrier == nil || isDone(barrier) {
					inst.phase.Store(int32(phaseRetired))
					h.remove(st, id, inst)
				}
				continue
			}
			if (inst.lastUsed.Load() <= cutoff || !h.servedHere(inst)) && h.passivateLocked(st, id, inst) {
				evicted++
			}
		}
		st.mu.Unlock()
	}
	return evicted
}

// servedHere says whether inst's shard is still served here under the
// lease inst was loaded with; one that is not is dropped once durable.
func (h *Host[S]) servedHere(inst *instance[S]) bool {
	if h.rt.cluster == nil {
		return true
	}
	epoch, ok := h.rt.cluster.node.Serving(int(inst.shard))
	return ok && epoch == inst.epoch
}

// passivateLocked evicts inst if no call holds it and every change of it
// is durable. Called with st.mu held.
func (h *Host[S]) passivateLocked(st *stripe[S], id string, inst *instance[S]) bool {
	if !inst.mu.TryLock() {
		return false
	}
	defer inst.mu.Unlock()
	// Only committed state may be dropped: a successor loaded while a
	// change is in flight would miss it once it lands.
	if !inst.usable() || !inst.durable() {
		return false
	}
	inst.phase.Store(int32(phasePassivated)) // a request holding a stale pointer looks again
	h.remove(st, id, inst)
	h.evictions.Add(1)
	return true
}

// sample returns an instance of the host picked at random, for the
// eviction of the least recently used of several samples.
func (h *Host[S]) sample() (id string, lastUsed int64, ok bool) {
	start := rand.N(hostStripes)
	for n := range hostStripes {
		st := &h.stripes[(start+n)%hostStripes]
		st.mu.Lock()
		// Map iteration starts at a random place: the first instance
		// met is a random one.
		for id, inst := range st.instances {
			if inst.is(phaseActive) {
				st.mu.Unlock()
				return id, inst.lastUsed.Load(), true
			}
		}
		st.mu.Unlock()
	}
	return "", 0, false
}

// evictIfUnused evicts the instance of id if nothing touched it since
// lastUsed and it may be evicted.
func (h *Host[S]) evictIfUnused(id string, lastUsed int64) bool {
	st := h.stripeOf(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	inst, ok := st.instances[id]
	if !ok || inst.lastUsed.Load() != lastUsed {
		return false
	}
	return h.passivateLocked(st, id, inst)
}

func isDone(c *journal.Commit) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// evictionSamples is how many instances an eviction compares: it evicts
// the least recently used of them. Eight make the evicted instance older
// than 89% of the cache on average, with no list to maintain per request
// (the scheme Redis calls approximated LRU).
const evictionSamples = 8

// enforceBound evicts instances while the cache is over its bound, a few
// at a time: the request that pushed the cache over pays for one
// eviction's samples, not for a scan.
func (r *Runtime) enforceBound() {
	for range 4 {
		if r.cached.Load() <= int64(r.cfg.maxEntities) || !r.evictOne() {
			return
		}
	}
}

// evictOne samples instances across the hosts, in proportion to how many
// each holds, and evicts the least recently used evictable one.
func (r *Runtime) evictOne() bool {
	hosts := r.hostList()
	type candidate struct {
		host     hostHandle
		id       string
		lastUsed int64
	}
	var best *candidate
	for range evictionSamples {
		var total int64
		for _, h := range hosts {
			total += h.size()
		}
		if total <= 0 {
			return false
		}
		pick := rand.Int64N(total)
		var h hostHandle
		for _, h = range hosts {
			if pick -= h.size(); pick < 0 {
				break
			}
		}
		id, used, ok := h.sample()
		if ok && (best == nil || used < best.lastUsed) {
			best = &candidate{host: h, id: id, lastUsed: used}
		}
	}
	return best != nil && best.host.evictIfUnused(best.id, best.lastUsed)
}

// logReset logs an entity reset, at most resetLogBurst times per
// resetLogWindow; the next line logged says how many were left out.
func (r *Runtime) logReset(entityType, id, why string, cause error) {
	ok, suppressed := r.resetLog.allow(time.Now())
	if !ok {
		return
	}
	args := []any{"entity", entityType, "id", id, "cause", cause}
	if suppressed > 0 {
		args = append(args, "resets_not_logged", suppressed)
	}
	r.log.Error("entity reset: "+why+"; it reloads from the store on its next call", args...)
}

const (
	resetLogBurst  = 20
	resetLogWindow = 10 * time.Second
)

// logLimiter lets through resetLogBurst lines per resetLogWindow, so that
// a database outage that resets every entity does not flood the log.
type logLimiter struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= resetLogWindow {
		l.start, l.n = now, 0
	}
	if l.n >= resetLogBurst {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
