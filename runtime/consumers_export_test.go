package statefun

import "time"

// SetConsumerPoll sets how long an idle consumer waits before reading its
// feed again without a wake-up, for runtimes created from now on, and
// returns a function that restores it. A test that calls it must not run
// in parallel with tests that create runtimes.
func SetConsumerPoll(d time.Duration) (restore func()) {
	old := consumerPoll
	consumerPoll = d
	return func() { consumerPoll = old }
}
