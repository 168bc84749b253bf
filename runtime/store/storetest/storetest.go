// Package storetest is the conformance suite that every store.Store passes:
// the memory, embedded and Postgres stores run it in their tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

// Run runs the suite. open returns a new, empty store for one test; the
// suite closes it. Stores that persist data must isolate each call (a
// fresh schema, directory or database).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"CommitAndReadEvents", testCommitAndReadEvents},
		{"ReadEventsAfterSeq", testReadEventsAfterSeq},
		{"EntitiesAreSeparate", testEntitiesAreSeparate},
		{"DuplicateSeqConflicts", testDuplicateSeqConflicts},
		{"GapConflicts", testGapConflicts},
		{"ConflictWritesNothing", testConflictWritesNothing},
		{"Values", testValues},
		{"ValueVersionConflicts", testValueVersionConflicts},
		{"Snapshots", testSnapshots},
		{"DeleteSnapshots", testDeleteSnapshots},
		{"AwkwardKeysAndPayloads", testAwkwardKeysAndPayloads},
		{"ManyEventsInOrder", testManyEventsInOrder},
		{"ConcurrentWritersOneWins", testConcurrentWritersOneWins},
		{"ReadEventsStopsOnError", testReadEventsStopsOnError},
		{"ClosedStore", testClosedStore},
	}
	tests = append(tests, feedTests...)
	tests = append(tests, valueFeedTests...)
	tests = append(tests, eventTypeTests...)
	tests = append(tests, timerTests...)
	tests = append(tests, viewTests...)
	for _, tt := range append(tests, outcomeTests...) {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			if !closesItself[tt.name] {
				t.Cleanup(func() { _ = s.Close() })
			}
			tt.fn(t, s)
		})
	}
}

var ctx = context.Background()

func ev(ref store.Ref, seq int64, typ, payload string) store.Event {
	return store.Event{Entity: ref, Seq: seq, EventType: typ, Payload: []byte(payload)}
}

func readAll(t *testing.T, s store.Store, ref store.Ref, after int64) []store.Event {
	t.Helper()
	var got []store.Event
	if err := s.ReadEvents(ctx, ref, after, func(e store.Event) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatalf("ReadEvents(%v, %d): %v", ref, after, err)
	}
	return got
}

func commit(t *testing.T, s store.Store, b *store.Batch) {
	t.Helper()
	if err := s.Commit(ctx, b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func equalEvents(t *testing.T, got, want []store.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Entity != w.Entity || g.Seq != w.Seq || g.EventType != w.EventType || !bytes.Equal(g.Payload, w.Payload) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
}

func wantConflict(t *testing.T, err error, refs ...store.Ref) {
	t.Helper()
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("error %v, want a *store.ConflictError", err)
	}
	for _, r := range refs {
		found := false
		for _, c := range conflict.Entities {
			found = found || c == r
		}
		if !found {
			t.Errorf("conflict %v does not name %v", conflict.Entities, r)
		}
	}
	if len(conflict.Entities) != len(refs) {
		t.Errorf("conflict names %v, want exactly %v", conflict.Entities, refs)
	}
}

func testCommitAndReadEvents(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	first := []store.Event{ev(ref, 1, "ItemAdded", "a"), ev(ref, 2, "ItemAdded", "b")}
	commit(t, s, &store.Batch{Events: first})
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 3, "CheckedOut", "")}})
	equalEvents(t, readAll(t, s, ref, 0), append(first, ev(ref, 3, "CheckedOut", "")))
	if got := readAll(t, s, store.Ref{Type: "cart", ID: "nobody"}, 0); len(got) != 0 {
		t.Errorf("unknown entity has events %v", got)
	}
}

func testReadEventsAfterSeq(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	var all []store.Event
	for i := int64(1); i <= 5; i++ {
		all = append(all, ev(ref, i, "E", fmt.Sprint(i)))
	}
	commit(t, s, &store.Batch{Events: all})
	equalEvents(t, readAll(t, s, ref, 3), all[3:])
	equalEvents(t, readAll(t, s, ref, 5), nil)
	equalEvents(t, readAll(t, s, ref, 99), nil)
}

func testEntitiesAreSeparate(t *testing.T, s store.Store) {
	a := store.Ref{Type: "cart", ID: "x"}
	b := store.Ref{Type: "order", ID: "x"}
	c := store.Ref{Type: "cart", ID: "y"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(a, 1, "E", "a1"), ev(b, 1, "E", "b1"), ev(c, 1, "E", "c1"), ev(a, 2, "E", "a2")}})
	equalEvents(t, readAll(t, s, a, 0), []store.Event{ev(a, 1, "E", "a1"), ev(a, 2, "E", "a2")})
	equalEvents(t, readAll(t, s, b, 0), []store.Event{ev(b, 1, "E", "b1")})
	equalEvents(t, readAll(t, s, c, 0), []store.Event{ev(c, 1, "E", "c1")})
}

func testDuplicateSeqConflicts(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "mine"), ev(ref, 2, "E", "mine")}})
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 2, "E", "stale writer")}})
	wantConflict(t, err, ref)
	equalEvents(t, readAll(t, s, ref, 0), []store.Event{ev(ref, 1, "E", "mine"), ev(ref, 2, "E", "mine")})
}

func testGapConflicts(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 2, "E", "no first event")}})
	wantConflict(t, err, ref)
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1")}})
	err = s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 3, "E", "skips 2")}})
	wantConflict(t, err, ref)
	equalEvents(t, readAll(t, s, ref, 0), []store.Event{ev(ref, 1, "E", "1")})
}

func testConflictWritesNothing(t *testing.T, s store.Store) {
	ok := store.Ref{Type: "cart", ID: "fine"}
	bad := store.Ref{Type: "cart", ID: "fenced"}
	kv := store.Ref{Type: "customer", ID: "ada"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(bad, 1, "E", "first")}})
	err := s.Commit(ctx, &store.Batch{
		Events: []store.Event{ev(ok, 1, "E", "x"), ev(bad, 1, "E", "again"), ev(ok, 2, "E", "y")},
		Values: []store.Value{{Entity: kv, Version: 1, Payload: []byte("v")}},
	})
	wantConflict(t, err, bad)
	equalEvents(t, readAll(t, s, ok, 0), nil)
	if _, found, err := s.LoadValue(ctx, kv); err != nil || found {
		t.Errorf("value of a failed batch: found=%v err=%v", found, err)
	}
	// The rest of the batch commits once the conflicting entity is left out.
	commit(t, s, &store.Batch{
		Events: []store.Event{ev(ok, 1, "E", "x"), ev(ok, 2, "E", "y")},
		Values: []store.Value{{Entity: kv, Version: 1, Payload: []byte("v")}},
	})
	equalEvents(t, readAll(t, s, ok, 0), []store.Event{ev(ok, 1, "E", "x"), ev(ok, 2, "E", "y")})
}

func testValues(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "customer", ID: "ada"}
	if _, found, err := s.LoadValue(ctx, ref); err != nil || found {
		t.Fatalf("LoadValue of nothing: found=%v err=%v", found, err)
	}
	commit(t, s, &store.Batch{Values: []store.Value{{Entity: ref, Version: 1, Payload: []byte("london")}}})
	commit(t, s, &store.Batch{Values: []store.Value{{Entity: ref, Version: 2, Payload: []byte("paris")}}})
	v, found, err := s.LoadValue(ctx, ref)
	if err != nil || !found {
		t.Fatalf("LoadValue: found=%v err=%v", found, err)
	}
	if v.Entity != ref || v.Version != 2 || string(v.Payload) != "paris" {
		t.Errorf("value = %+v, want version 2 paris", v)
	}
	// Two versions of one value in one batch: the last one wins.
	commit(t, s, &store.Batch{Values: []store.Value{{Entity: ref, Version: 3, Payload: []byte("rome")}, {Entity: ref, Version: 4, Payload: []byte("oslo")}}})
	if v, _, _ := s.LoadValue(ctx, ref); v.Version != 4 || string(v.Payload) != "oslo" {
		t.Errorf("value = %+v, want version 4 oslo", v)
	}
}

func testValueVersionConflicts(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "customer", ID: "ada"}
	commit(t, s, &store.Batch{Values: []store.Value{{Entity: ref, Version: 1, Payload: []byte("a")}}})
	for _, version := range []int64{1, 3} {
		err := s.Commit(ctx, &store.Batch{Values: []store.Value{{Entity: ref, Version: version, Payload: []byte("stale")}}})
		wantConflict(t, err, ref)
	}
	if v, _, _ := s.LoadValue(ctx, ref); v.Version != 1 || string(v.Payload) != "a" {
		t.Errorf("value = %+v after conflicts, want version 1", v)
	}
}

func testSnapshots(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	if _, found, err := s.LatestSnapshot(ctx, ref); err != nil || found {
		t.Fatalf("LatestSnapshot of nothing: found=%v err=%v", found, err)
	}
	for _, snap := range []store.Snapshot{
		{Entity: ref, Seq: 100, Payload: []byte("at 100")},
		{Entity: ref, Seq: 200, Payload: []byte("at 200")},
		{Entity: ref, Seq: 150, Payload: []byte("late writer, older")},
	} {
		if err := s.SaveSnapshot(ctx, snap); err != nil {
			t.Fatalf("SaveSnapshot(%d): %v", snap.Seq, err)
		}
	}
	snap, found, err := s.LatestSnapshot(ctx, ref)
	if err != nil || !found {
		t.Fatalf("LatestSnapshot: found=%v err=%v", found, err)
	}
	if snap.Entity != ref || snap.Seq != 200 || string(snap.Payload) != "at 200" {
		t.Errorf("snapshot = %+v, want the one at 200", snap)
	}
}

func testDeleteSnapshots(t *testing.T, s store.Store) {
	cart := store.Ref{Type: "cart", ID: "c1"}
	order := store.Ref{Type: "order", ID: "c1"}
	for _, ref := range []store.Ref{cart, order} {
		if err := s.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 1, Payload: []byte("s")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteSnapshots(ctx, "cart"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.LatestSnapshot(ctx, cart); found {
		t.Error("cart snapshot survived DeleteSnapshots")
	}
	if _, found, _ := s.LatestSnapshot(ctx, order); !found {
		t.Error("DeleteSnapshots(cart) deleted an order snapshot")
	}
}

func testAwkwardKeysAndPayloads(t *testing.T, s store.Store) {
	ids := []string{
		"'; DROP TABLE events; --",
		"a/b%2Fc",
		"ünïcödé ✓",
		"with\x00nul",
		"\\x00",
		strings.Repeat("k", 4096),
		" ",
	}
	for i, id := range ids {
		ref := store.Ref{Type: "cart", ID: id}
		payload := []byte{0, 1, 2, 255, byte(i)}
		commit(t, s, &store.Batch{
			Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E", Payload: payload}, {Entity: ref, Seq: 2, EventType: "Empty"}},
			Values: []store.Value{{Entity: store.Ref{Type: "kv", ID: id}, Version: 1, Payload: payload}},
		})
		got := readAll(t, s, ref, 0)
		equalEvents(t, got, []store.Event{{Entity: ref, Seq: 1, EventType: "E", Payload: payload}, {Entity: ref, Seq: 2, EventType: "Empty"}})
		if v, found, err := s.LoadValue(ctx, store.Ref{Type: "kv", ID: id}); err != nil || !found || !bytes.Equal(v.Payload, payload) {
			t.Errorf("value of %q: %+v found=%v err=%v", id, v, found, err)
		}
	}
	big := bytes.Repeat([]byte{0xAB}, 4<<20)
	ref := store.Ref{Type: "cart", ID: "big"}
	commit(t, s, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "Big", Payload: big}}})
	if got := readAll(t, s, ref, 0); len(got) != 1 || !bytes.Equal(got[0].Payload, big) {
		t.Error("4 MiB payload did not round-trip")
	}
}

func testManyEventsInOrder(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "long"}
	const n = 5000
	seq := int64(0)
	for seq < n {
		var b store.Batch
		for i := 0; i < 500 && seq < n; i++ {
			seq++
			b.Events = append(b.Events, ev(ref, seq, "E", fmt.Sprint(seq)))
		}
		commit(t, s, &b)
	}
	want := int64(0)
	err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error {
		want++
		if e.Seq != want || string(e.Payload) != fmt.Sprint(want) {
			return fmt.Errorf("event %d has seq %d payload %q", want, e.Seq, e.Payload)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want != n {
		t.Fatalf("read %d events, want %d", want, n)
	}
}

// testConcurrentWritersOneWins races writers that all believe they are at
// the same point of one entity's history: exactly one may win each round.
func testConcurrentWritersOneWins(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "contended"}
	const writers, rounds = 8, 20
	for round := int64(1); round <= rounds; round++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		var other []error
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, round, "E", fmt.Sprintf("w%d", w))}})
				mu.Lock()
				defer mu.Unlock()
				var conflict *store.ConflictError
				switch {
				case err == nil:
					wins++
				case errors.As(err, &conflict):
					conflicts++
				default:
					other = append(other, err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || conflicts != writers-1 || len(other) > 0 {
			t.Fatalf("round %d: %d wins, %d conflicts, errors %v; want 1 win", round, wins, conflicts, other)
		}
	}
	if got := readAll(t, s, ref, 0); len(got) != rounds {
		t.Fatalf("history has %d events, want %d", len(got), rounds)
	}
}

func testReadEventsStopsOnError(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1"), ev(ref, 2, "E", "2"), ev(ref, 3, "E", "3")}})
	stop := errors.New("stop")
	calls := 0
	err := s.ReadEvents(ctx, ref, 0, func(store.Event) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ReadEvents returned %v after %d calls; want the callback's error after 1", err, calls)
	}
}

func testClosedStore(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ref := store.Ref{Type: "cart", ID: "c1"}
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "x")}}); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := s.EventTypes(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("EventTypes after Close: %v, want store.ErrClosed", err)
	}
}
