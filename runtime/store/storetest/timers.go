package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// timerTests are the tests of pending timers: scheduled and cancelled by
// Commit, found when due, finished or retried by their owner.
var timerTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"TimersRoundTrip", testTimersRoundTrip},
	{"TimerScheduledAgainIsReplaced", testTimerScheduledAgainIsReplaced},
	{"TimerCancel", testTimerCancel},
	{"TimerChangesApplyInOrder", testTimerChangesApplyInOrder},
	{"ConflictSchedulesNoTimer", testConflictSchedulesNoTimer},
	{"DueTimersInDueOrderUpToLimit", testDueTimersInDueOrderUpToLimit},
	{"DueTimersOfShards", testDueTimersOfShards},
	{"FinishTimersSparesAReplacement", testFinishTimersSparesAReplacement},
	{"RetryTimers", testRetryTimers},
	{"TimersOnlyBatch", testTimersOnlyBatch},
}

func timer(ref store.Ref, name string, id int64, shard int, due time.Time, call string) store.Timer {
	return store.Timer{Entity: ref, Name: name, ID: id, Shard: shard, Due: due, Call: []byte(call)}
}

func schedule(ts ...store.Timer) []store.TimerChange {
	cs := make([]store.TimerChange, len(ts))
	for i, t := range ts {
		cs[i] = store.TimerChange{Timer: t}
	}
	return cs
}

func cancelTimer(ref store.Ref, name string) store.TimerChange {
	return store.TimerChange{Timer: store.Timer{Entity: ref, Name: name}, Cancel: true}
}

func entityTimers(t *testing.T, s store.Store, ref store.Ref) []store.Timer {
	t.Helper()
	ts, err := s.EntityTimers(ctx, ref)
	if err != nil {
		t.Fatalf("EntityTimers(%v): %v", ref, err)
	}
	return ts
}

func dueTimers(t *testing.T, s store.Store, shards []int, before time.Time, limit int) []store.Timer {
	t.Helper()
	ts, err := s.DueTimers(ctx, shards, before, limit)
	if err != nil {
		t.Fatalf("DueTimers(%v, %v, %d): %v", shards, before, limit, err)
	}
	return ts
}

func timerString(t store.Timer) string {
	return fmt.Sprintf("%v %s #%d shard %d due %s call %q attempts %d", t.Entity, t.Name, t.ID, t.Shard, t.Due.UTC().Format(time.RFC3339Nano), t.Call, t.Attempts)
}

func equalTimers(t *testing.T, what string, got, want []store.Timer) {
	t.Helper()
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		same = g.Entity == w.Entity && g.Name == w.Name && g.ID == w.ID && g.Shard == w.Shard &&
			g.Due.Equal(w.Due) && bytes.Equal(g.Call, w.Call) && g.Attempts == w.Attempts
	}
	if !same {
		var gs, ws []string
		for _, x := range got {
			gs = append(gs, timerString(x))
		}
		for _, x := range want {
			ws = append(ws, timerString(x))
		}
		t.Errorf("%s:\n got  %q\n want %q", what, gs, ws)
	}
}

func testTimersRoundTrip(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	due := now().Add(hour)
	a := timer(ref, "expire", 7, 3, due, "call-a")
	b := timer(ref, "remind", 8, 3, due.Add(time.Minute), "call-b\x00\xff")
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1")}, Timers: schedule(b, a)})
	equalTimers(t, "EntityTimers", entityTimers(t, s, ref), []store.Timer{a, b})
	equalTimers(t, "EntityTimers of another entity", entityTimers(t, s, store.Ref{Type: "cart", ID: "c2"}), nil)
	equalTimers(t, "DueTimers before the first is due", dueTimers(t, s, nil, due.Add(-time.Microsecond), 10), nil)
	equalTimers(t, "DueTimers when the first is due", dueTimers(t, s, nil, due, 10), []store.Timer{a})
	next, ok, err := s.NextTimerDue(ctx, nil)
	if err != nil || !ok || !next.Equal(due) {
		t.Errorf("NextTimerDue = %v, %v, %v; want %v", next, ok, err, due)
	}
}

func testTimerScheduledAgainIsReplaced(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	due := now().Add(hour)
	commit(t, s, &store.Batch{Timers: schedule(timer(ref, "expire", 1, 0, due, "first"))})
	second := timer(ref, "expire", 2, 0, due.Add(time.Hour), "second")
	commit(t, s, &store.Batch{Timers: schedule(second)})
	equalTimers(t, "EntityTimers after scheduling the name again", entityTimers(t, s, ref), []store.Timer{second})
	equalTimers(t, "DueTimers at the first's due time", dueTimers(t, s, nil, due, 10), nil)
}

func testTimerCancel(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	keep := timer(ref, "keep", 1, 0, now().Add(hour), "k")
	commit(t, s, &store.Batch{Timers: schedule(timer(ref, "expire", 1, 0, now().Add(hour), "x"), keep)})
	commit(t, s, &store.Batch{Timers: []store.TimerChange{cancelTimer(ref, "expire"), cancelTimer(ref, "never-scheduled")}})
	equalTimers(t, "EntityTimers after a cancel", entityTimers(t, s, ref), []store.Timer{keep})
	if _, ok, err := s.NextTimerDue(ctx, nil); err != nil || !ok {
		t.Errorf("NextTimerDue with one pending: ok=%v err=%v", ok, err)
	}
	commit(t, s, &store.Batch{Timers: []store.TimerChange{cancelTimer(ref, "keep")}})
	if next, ok, err := s.NextTimerDue(ctx, nil); err != nil || ok {
		t.Errorf("NextTimerDue with none pending = %v, %v, %v; want none", next, ok, err)
	}
}

// testTimerChangesApplyInOrder: the commands of one batch change the same
// timer in turn; the last change is what stays.
func testTimerChangesApplyInOrder(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	due := now().Add(hour)
	last := timer(ref, "b", 3, 0, due, "b3")
	commit(t, s, &store.Batch{Timers: []store.TimerChange{
		{Timer: timer(ref, "a", 1, 0, due, "a1")},
		cancelTimer(ref, "a"),
		{Timer: timer(ref, "b", 2, 0, due, "b2")},
		cancelTimer(ref, "b"),
		{Timer: last},
	}})
	equalTimers(t, "EntityTimers", entityTimers(t, s, ref), []store.Timer{last})
}

func testConflictSchedulesNoTimer(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	other := store.Ref{Type: "cart", ID: "c2"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1")}})
	err := s.Commit(ctx, &store.Batch{
		Events: []store.Event{ev(ref, 1, "E", "again")},
		Timers: schedule(timer(ref, "t", 1, 0, now(), "x"), timer(other, "t", 1, 0, now(), "y")),
	})
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("Commit of a stale batch with timers = %v; want a *ConflictError", err)
	}
	equalTimers(t, "EntityTimers after a conflict", entityTimers(t, s, ref), nil)
	equalTimers(t, "EntityTimers of the batch's other entity", entityTimers(t, s, other), nil)
}

func testDueTimersInDueOrderUpToLimit(t *testing.T, s store.Store) {
	base := now()
	var all []store.Timer
	for i := range 12 {
		ref := store.Ref{Type: "cart", ID: fmt.Sprintf("c%02d", (i*7)%12)}
		// Due times out of the order they are committed in, in the past
		// and the future.
		all = append(all, timer(ref, "t", int64(i+1), 0, base.Add(time.Duration((i*5)%12-6)*time.Second), fmt.Sprint(i)))
	}
	commit(t, s, &store.Batch{Timers: schedule(all...)})
	byDue := slices.Clone(all)
	slices.SortFunc(byDue, func(a, b store.Timer) int { return a.Due.Compare(b.Due) })
	equalTimers(t, "DueTimers(now, 4)", dueTimers(t, s, nil, base, 4), byDue[:4])
	equalTimers(t, "DueTimers(now, 100)", dueTimers(t, s, nil, base, 100), byDue[:7])
	next, ok, err := s.NextTimerDue(ctx, nil)
	if err != nil || !ok || !next.Equal(byDue[0].Due) {
		t.Errorf("NextTimerDue = %v, %v, %v; want %v", next, ok, err, byDue[0].Due)
	}
}

func testDueTimersOfShards(t *testing.T, s store.Store) {
	due := now()
	var ts []store.Timer
	for shard := range 4 {
		ts = append(ts, timer(store.Ref{Type: "cart", ID: fmt.Sprint(shard)}, "t", 1, shard, due.Add(time.Duration(shard)*time.Second), "x"))
	}
	commit(t, s, &store.Batch{Timers: schedule(ts...)})
	later := due.Add(time.Minute)
	equalTimers(t, "DueTimers of shards 1 and 3", dueTimers(t, s, []int{3, 1}, later, 10), []store.Timer{ts[1], ts[3]})
	equalTimers(t, "DueTimers of no shard", dueTimers(t, s, []int{}, later, 10), nil)
	equalTimers(t, "DueTimers of every shard", dueTimers(t, s, nil, later, 10), ts)
	next, ok, err := s.NextTimerDue(ctx, []int{2, 3})
	if err != nil || !ok || !next.Equal(ts[2].Due) {
		t.Errorf("NextTimerDue of shards 2 and 3 = %v, %v, %v; want %v", next, ok, err, ts[2].Due)
	}
	if next, ok, err := s.NextTimerDue(ctx, []int{}); err != nil || ok {
		t.Errorf("NextTimerDue of no shard = %v, %v, %v; want none", next, ok, err)
	}
}

// testFinishTimersSparesAReplacement: a timer rescheduled while its
// previous schedule was being delivered stays when the delivery finishes.
func testFinishTimersSparesAReplacement(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	due := now()
	fired := timer(ref, "expire", 1, 0, due, "first")
	gone := timer(ref, "other", 5, 0, due, "x")
	commit(t, s, &store.Batch{Timers: schedule(fired, gone)})
	replacement := timer(ref, "expire", 2, 0, due.Add(hour), "second")
	commit(t, s, &store.Batch{Timers: schedule(replacement)})
	if err := s.FinishTimers(ctx, []store.TimerKey{fired.Key(), gone.Key(), {Entity: ref, Name: "unknown", ID: 1}}, nil); err != nil {
		t.Fatalf("FinishTimers: %v", err)
	}
	equalTimers(t, "EntityTimers after finishing", entityTimers(t, s, ref), []store.Timer{replacement})
}

func testRetryTimers(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	due := now()
	a := timer(ref, "a", 1, 0, due, "a")
	b := timer(ref, "b", 1, 0, due, "b")
	commit(t, s, &store.Batch{Timers: schedule(a, b)})
	later := due.Add(time.Minute)
	stale := store.TimerRetry{TimerKey: store.TimerKey{Entity: ref, Name: "b", ID: 9}, Due: later}
	if err := s.RetryTimers(ctx, []store.TimerRetry{{TimerKey: a.Key(), Due: later}, stale}, nil); err != nil {
		t.Fatalf("RetryTimers: %v", err)
	}
	a.Due, a.Attempts = later, 1
	equalTimers(t, "EntityTimers after a retry", entityTimers(t, s, ref), []store.Timer{a, b})
	equalTimers(t, "DueTimers at the first due time", dueTimers(t, s, nil, due, 10), []store.Timer{b})
}

func testTimersOnlyBatch(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	b := &store.Batch{Timers: schedule(timer(ref, "t", 1, 0, now(), "x"))}
	if b.Len() != 1 {
		t.Errorf("Len of a batch of one timer = %d", b.Len())
	}
	commit(t, s, b)
	equalTimers(t, "EntityTimers", entityTimers(t, s, ref), []store.Timer{b.Timers[0].Timer})
	equalEvents(t, readAll(t, s, ref, 0), nil)
}
