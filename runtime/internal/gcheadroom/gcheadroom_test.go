package gcheadroom

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 64 * mib, 100},          // nothing measured yet
		{16 * mib, 64 * mib, 400},   // target 80 MiB = live + headroom
		{10 * mib, 64 * mib, 640},   // target 74 MiB
		{64 * mib, 64 * mib, 100},   // from here on, the default
		{1024 * mib, 64 * mib, 100}, // never below the default
		{1024, 64 * mib, 10_000},    // a nearly empty heap: capped
	} {
		if got := Percent(c.live, c.headroom); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestStartFollowsCollections: with a headroom far above this test's live
// heap, GOGC rises after collections; stop brings back the default.
// Not parallel: GOGC is the process's.
func TestStartFollowsCollections(t *testing.T) {
	stop := Start(1 << 30)
	deadline := time.Now().Add(10 * time.Second)
	for gogc() <= 100 {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("GOGC is %d after collections with a 1 GiB headroom, want more than 100", gogc())
		}
		runtime.GC() // the finalizer runs on its own goroutine after it
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if got := gogc(); got != 100 {
		t.Errorf("GOGC is %d after stop, want 100", got)
	}
	// A stopped tuner changes nothing more.
	for range 3 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	if got := gogc(); got != 100 {
		t.Errorf("GOGC is %d after collections once stopped, want 100", got)
	}
}
