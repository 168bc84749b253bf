// Package gcheadroom keeps the garbage collector's heap target at least a
// fixed headroom above the live heap.
//
// At the default GOGC=100 the collector runs each time the heap doubles,
// so its CPU cost is set by the allocation rate over the live heap: a
// server with a small live heap (a few thousand entities, say) collects
// many times a second under load, although a few more MiB of heap would
// let it collect a few times less often. GOGC=400 would do that too, but
// would also let a large heap grow to five times its live size. A
// headroom floor raises GOGC only while the live heap is smaller than the
// headroom: the heap target is max(2·live, live + headroom), so the heap
// never exceeds what GOGC=100 allows by more than the headroom, and a
// heap larger than it is collected exactly as by default.
package gcheadroom

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// Percent is the GOGC that gives a live heap of live bytes at least
// headroom bytes to grow into before the next collection, and never less
// than the default 100.
func Percent(live, headroom uint64) int {
	if live == 0 || headroom <= live {
		return 100
	}
	const most = 10_000 // a nearly empty heap: the headroom is what counts
	p := math.Ceil(100 * float64(headroom) / float64(live))
	return int(min(p, most))
}

// Start keeps the heap target at least headroom bytes above the live heap
// from now on, adjusting GOGC after every collection, until stop is
// called; stop restores GOGC=100. A process calls it once, and only
// when neither GOGC nor GOMEMLIMIT is set: those are the user's choice.
func Start(headroom uint64) (stop func()) {
	t := &tuner{headroom: headroom, percent: 100}
	t.adjust()
	t.arm()
	return func() {
		t.stopped.Store(true)
		debug.SetGCPercent(100)
	}
}

type tuner struct {
	headroom uint64
	stopped  atomic.Bool
	percent  int // last set; only the finalizer goroutine touches it after Start
	sample   [1]metrics.Sample
}

// sentinel is garbage as soon as it is made: its finalizer runs after the
// next collection, adjusts GOGC to the live heap that collection found,
// and makes the next sentinel. It has a pointer, so it is not a tiny
// allocation (whose finalizers may never run).
type sentinel struct{ t *tuner }

func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) {
		if s.t.stopped.Load() {
			return
		}
		s.t.adjust()
		s.t.arm()
	})
}

func (t *tuner) adjust() {
	t.sample[0].Name = "/gc/heap/live:bytes"
	metrics.Read(t.sample[:])
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := Percent(t.sample[0].Value.Uint64(), t.headroom)
	// Small changes are not worth a call: the target moves with the
	// live heap anyway.
	if p != t.percent && (p == 100 || math.Abs(float64(p-t.percent)) > float64(t.percent)/10) {
		debug.SetGCPercent(p)
		t.percent = p
	}
}
