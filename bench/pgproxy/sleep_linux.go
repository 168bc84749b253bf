package pgproxy

import (
	"runtime"
	"syscall"
	"time"
)

// prSetTimerSlack is PR_SET_TIMERSLACK of prctl(2).
const prSetTimerSlack = 29

// holdThread gives the calling goroutine an OS thread of its own with a
// timer slack of 1 ns, so that sleepUntil wakes within microseconds of its
// deadline instead of the default 50 µs slack plus the Go timer's
// millisecond granularity. Timer slack is a per-thread setting, hence the
// locked thread.
func holdThread() {
	runtime.LockOSThread()
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
}

// releaseThread ends holdThread. The thread's slack is left fine; the
// runtime may reuse the thread for anything, which only wakes it sooner.
func releaseThread() { runtime.UnlockOSThread() }

// sleepUntil blocks the thread until t with nanosleep(2).
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		if err := syscall.Nanosleep(&ts, nil); err == nil {
			return
		}
		// EINTR: sleep what is left.
	}
}
