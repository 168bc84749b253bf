package store

import (
	"context"
	"time"
)

// Timer is a call an entity's command scheduled for later. It is written
// by Commit with the command's events (same transaction), so a command
// that failed, or whose commit failed, schedules nothing; it stays in the
// store, not in memory, until it has been delivered.
type Timer struct {
	// Entity is the entity whose command scheduled the timer, and Name
	// the timer's name: (Entity, Name) names at most one pending timer,
	// and scheduling the name again replaces it.
	Entity Ref
	Name   string
	// ID tells one scheduling of (Entity, Name) from a later one, so that
	// finishing a delivered timer cannot delete the timer that replaced it
	// while it was being delivered.
	ID int64
	// Shard is the partition of the timers that one cluster node fires:
	// the scheduling entity's shard when it was scheduled (0 outside a
	// cluster). Each pending timer is fired by the holder of its shard.
	Shard int
	// Due is when the timer fires: not before.
	Due time.Time
	// Call is the call to make, encoded by the runtime; the store does not
	// read it.
	Call []byte
	// Attempts counts the deliveries that failed and are to be retried.
	Attempts int
}

// Key returns the key of this scheduling of the timer.
func (t Timer) Key() TimerKey { return TimerKey{Entity: t.Entity, Name: t.Name, ID: t.ID} }

// TimerKey names one scheduling of a timer: what a fired timer's owner
// finishes or retries. A key whose ID is no longer the pending timer's (it
// was replaced or cancelled) matches nothing.
type TimerKey struct {
	Entity Ref
	Name   string
	ID     int64
}

// TimerChange is a change a command makes to its entity's timers: it
// schedules Timer, replacing the one of the same name, or, when Cancel is
// set, deletes the pending timer named Timer.Name (if any; only Entity and
// Name are read).
type TimerChange struct {
	Timer
	Cancel bool
}

// TimerRetry moves a timer whose delivery failed to a later Due and counts
// the attempt.
type TimerRetry struct {
	TimerKey
	Due time.Time
}

// Timers are the pending timers: Commit schedules and cancels them
// (Batch.Timers); the owner of their shard fires the due ones, then
// finishes or retries each. Nothing here holds a timer in memory: a due
// timer is found through an index on (shard, due).
type Timers interface {
	// DueTimers returns up to limit timers whose Due is not after
	// `before`, in Due order, of the given shards (all shards when
	// shards is nil).
	DueTimers(ctx context.Context, shards []int, before time.Time, limit int) ([]Timer, error)

	// NextTimerDue returns the earliest Due of the pending timers of the
	// given shards (all when nil); false when there are none.
	NextTimerDue(ctx context.Context, shards []int) (time.Time, bool, error)

	// FinishTimers deletes each timer whose key matches the pending one:
	// it was delivered. With a fence (cluster stores only) it deletes
	// nothing, and returns a *FencedError, unless the fence holds.
	FinishTimers(ctx context.Context, done []TimerKey, fence *Fence) error

	// RetryTimers moves each timer whose key matches the pending one to
	// its new Due and adds one to its Attempts; fenced like FinishTimers.
	RetryTimers(ctx context.Context, retries []TimerRetry, fence *Fence) error

	// EntityTimers returns the pending timers that ref scheduled, by name.
	EntityTimers(ctx context.Context, ref Ref) ([]Timer, error)
}
