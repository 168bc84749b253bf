package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// valueFeedTests are the tests of the feeds of key-value entity types
// (store.Feed): each entity's latest value, at the place of the commit
// that wrote it, as a FeedEvent of type store.ValueEventType whose Seq
// is the value's version.
var valueFeedTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"ValueFeedHoldsValues", testValueFeedHoldsValues},
	{"ValueFeedMovesRewrittenEntities", testValueFeedMovesRewrittenEntities},
	{"ValueFeedResumesWithSmallLimits", testValueFeedResumesWithSmallLimits},
	{"ValueFeedHead", testValueFeedHead},
	{"ValueFeedOmitsFailedWrites", testValueFeedOmitsFailedWrites},
	{"ValueFeedLeavesEventFeedsAlone", testValueFeedLeavesEventFeedsAlone},
	{"ValueFeedNeverSkipsUnderConcurrentWriters", testValueFeedNeverSkipsUnderConcurrentWriters},
}

func val(ref store.Ref, version int64, payload string) store.Value {
	return store.Value{Entity: ref, Version: version, Payload: []byte(payload)}
}

// describeValues lists a value feed as "id@version:payload", in feed order.
func describeValues(t *testing.T, feed []store.FeedEvent) string {
	t.Helper()
	var b strings.Builder
	for i, e := range feed {
		if e.EventType != store.ValueEventType {
			t.Fatalf("feed entry %d is %+v: event type %q, want store.ValueEventType %q", i, e, e.EventType, store.ValueEventType)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d:%s", e.Entity.ID, e.Seq, e.Payload)
	}
	return b.String()
}

// sameValues checks that got holds the values of want, one entry per
// entity, in any order: the order of one Commit's values is the store's
// to choose.
func sameValues(t *testing.T, got []store.FeedEvent, want ...store.Value) {
	t.Helper()
	wantBy := map[store.Ref]store.Value{}
	for _, v := range want {
		wantBy[v.Entity] = v
	}
	desc := describeValues(t, got)
	if len(got) != len(wantBy) {
		t.Fatalf("value feed = %s; want %d entries, the values %v", desc, len(wantBy), want)
	}
	for _, e := range got {
		w, ok := wantBy[e.Entity]
		if !ok || e.Seq != w.Version || string(e.Payload) != string(w.Payload) {
			t.Fatalf("value feed = %s; want the values %v, each once", desc, want)
		}
		delete(wantBy, e.Entity)
	}
}

func testValueFeedHoldsValues(t *testing.T, s store.Store) {
	a := store.Ref{Type: "customer", ID: "a"}
	b := store.Ref{Type: "customer", ID: "b"}
	c := store.Ref{Type: "customer", ID: "c"}
	commit(t, s, &store.Batch{Values: []store.Value{val(a, 1, "london"), val(b, 1, "paris")}})
	commit(t, s, &store.Batch{Values: []store.Value{val(c, 1, "")}})
	got, _ := followFeed(t, s, "customer", "", 10, 3)
	sameValues(t, got[:2], val(a, 1, "london"), val(b, 1, "paris"))
	if d := describeValues(t, got[2:]); d != "c@1:" {
		t.Errorf("the second commit's value in the feed = %s, want c@1:", d)
	}
	seen := map[store.Position]bool{}
	for _, e := range got {
		if e.Position == "" || seen[e.Position] {
			t.Fatalf("value %v has position %q, empty or given twice", e.Event, e.Position)
		}
		seen[e.Position] = true
	}
}

// testValueFeedMovesRewrittenEntities: the feed is compacted. A rewritten
// entity leaves its place for the place of its new commit: a reader that
// had passed the old place sees it once more, with the new value, and a
// reader that had not sees only the new value.
func testValueFeedMovesRewrittenEntities(t *testing.T, s store.Store) {
	a := store.Ref{Type: "customer", ID: "a"}
	b := store.Ref{Type: "customer", ID: "b"}
	c := store.Ref{Type: "customer", ID: "c"}
	for _, v := range []store.Value{val(a, 1, "a1"), val(b, 1, "b1"), val(c, 1, "c1")} {
		commit(t, s, &store.Batch{Values: []store.Value{v}})
	}
	first, end := followFeed(t, s, "customer", "", 10, 3)
	if d := describeValues(t, first); d != "a@1:a1 b@1:b1 c@1:c1" {
		t.Fatalf("value feed = %s, want a@1:a1 b@1:b1 c@1:c1", d)
	}
	afterA := first[0].Position

	commit(t, s, &store.Batch{Values: []store.Value{val(a, 2, "a2")}})
	if rest, _ := followFeed(t, s, "customer", end, 10, 1); describeValues(t, rest) != "a@2:a2" {
		t.Errorf("feed after the end, once a was written again = %s, want a@2:a2", describeValues(t, rest))
	}
	if rest, _ := followFeed(t, s, "customer", afterA, 10, 3); describeValues(t, rest) != "b@1:b1 c@1:c1 a@2:a2" {
		t.Errorf("feed after a's old place = %s, want b@1:b1 c@1:c1 a@2:a2", describeValues(t, rest))
	}
	all, end := followFeed(t, s, "customer", "", 10, 3)
	if d := describeValues(t, all); d != "b@1:b1 c@1:c1 a@2:a2" {
		t.Errorf("feed from the start = %s, want b@1:b1 c@1:c1 a@2:a2: a only once, with its latest value", d)
	}

	// Two versions of one entity in a batch: one entry, the last.
	commit(t, s, &store.Batch{Values: []store.Value{val(b, 2, "b2"), val(b, 3, "b3")}})
	if rest, _ := followFeed(t, s, "customer", end, 10, 1); describeValues(t, rest) != "b@3:b3" {
		t.Errorf("feed after two versions of b in one batch = %s, want b@3:b3", describeValues(t, rest))
	}
	if all, _ := followFeed(t, s, "customer", "", 10, 3); describeValues(t, all) != "c@1:c1 a@2:a2 b@3:b3" {
		t.Errorf("feed from the start = %s, want c@1:c1 a@2:a2 b@3:b3", describeValues(t, all))
	}
}

// testValueFeedResumesWithSmallLimits: pages of any size read the same
// entries at the same positions as one read, and resuming from any of
// them reads exactly the rest: no repeat, no skip.
func testValueFeedResumesWithSmallLimits(t *testing.T, s store.Store) {
	ids := []string{"x", "y", "z", "w", "v"}
	versions := map[string]int64{}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 12 {
		var b store.Batch
		for _, i := range rng.Perm(len(ids))[:1+rng.IntN(3)] {
			id := ids[i]
			versions[id]++
			b.Values = append(b.Values, val(store.Ref{Type: "customer", ID: id}, versions[id], fmt.Sprint(id, versions[id])))
		}
		commit(t, s, &b)
	}
	all, end := followFeed(t, s, "customer", "", 100, len(versions))
	var want []store.Value
	for id, version := range versions {
		want = append(want, val(store.Ref{Type: "customer", ID: id}, version, fmt.Sprint(id, version)))
	}
	sameValues(t, all, want...)
	for _, limit := range []int{1, 2, 3} {
		paged, pagedEnd := followFeed(t, s, "customer", "", limit, len(all))
		if describeValues(t, paged) != describeValues(t, all) || pagedEnd != end {
			t.Fatalf("pages of %d read %s, ending at %q; one read %s, ending at %q", limit, describeValues(t, paged), pagedEnd, describeValues(t, all), end)
		}
		for i := range all {
			if paged[i].Position != all[i].Position {
				t.Fatalf("entry %d has position %q in pages of %d, %q in one read", i, paged[i].Position, limit, all[i].Position)
			}
		}
	}
	for from := range all {
		rest, _ := followFeed(t, s, "customer", all[from].Position, 2, len(all)-from-1)
		if describeValues(t, rest) != describeValues(t, all[from+1:]) {
			t.Errorf("feed after entry %d = %s, want %s", from, describeValues(t, rest), describeValues(t, all[from+1:]))
		}
	}
}

func testValueFeedHead(t *testing.T, s store.Store) {
	a := store.Ref{Type: "customer", ID: "a"}
	b := store.Ref{Type: "customer", ID: "b"}
	empty, err := s.FeedHead(ctx, "customer")
	if err != nil {
		t.Fatalf("FeedHead of an empty value feed: %v", err)
	}
	commit(t, s, &store.Batch{Values: []store.Value{val(a, 1, "a1"), val(b, 1, "b1")}})
	got, _ := followFeed(t, s, "customer", empty, 10, 2)
	sameValues(t, got, val(a, 1, "a1"), val(b, 1, "b1"))
	// The head is past a rewritten entity's new place too.
	commit(t, s, &store.Batch{Values: []store.Value{val(b, 2, "b2")}})
	got, end := followFeed(t, s, "customer", empty, 10, 2)
	if d := describeValues(t, got); d != "a@1:a1 b@2:b2" {
		t.Fatalf("value feed = %s, want a@1:a1 b@2:b2", d)
	}

	head, err := s.FeedHead(ctx, "customer")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFeedOnce(t, s, "customer", head, 10); len(got) != 0 {
		t.Fatalf("value feed after its head, before any new commit: %s", describeValues(t, got))
	}
	// A value written after the head follows it, whether its entity is
	// new or was in the feed before.
	c := store.Ref{Type: "customer", ID: "c"}
	commit(t, s, &store.Batch{Values: []store.Value{val(a, 2, "a2")}})
	commit(t, s, &store.Batch{Values: []store.Value{val(c, 1, "c1")}})
	if rest, _ := followFeed(t, s, "customer", head, 10, 2); describeValues(t, rest) != "a@2:a2 c@1:c1" {
		t.Errorf("value feed after the head = %s, want a@2:a2 c@1:c1", describeValues(t, rest))
	}
	if rest, _ := followFeed(t, s, "customer", end, 10, 2); describeValues(t, rest) != "a@2:a2 c@1:c1" {
		t.Errorf("value feed after the first commit = %s, want a@2:a2 c@1:c1", describeValues(t, rest))
	}
}

// testValueFeedOmitsFailedWrites: a value write refused as a conflict
// puts nothing in the feed, nor moves the entity, nor adds the batch's
// other values.
func testValueFeedOmitsFailedWrites(t *testing.T, s store.Store) {
	a := store.Ref{Type: "customer", ID: "a"}
	b := store.Ref{Type: "customer", ID: "b"}
	c := store.Ref{Type: "customer", ID: "c"}
	commit(t, s, &store.Batch{Values: []store.Value{val(a, 1, "a1")}})
	commit(t, s, &store.Batch{Values: []store.Value{val(b, 1, "b1")}})
	_, end := followFeed(t, s, "customer", "", 10, 2)
	for _, version := range []int64{1, 3} {
		err := s.Commit(ctx, &store.Batch{Values: []store.Value{val(c, 1, "lost"), val(a, version, "stale")}})
		wantConflict(t, err, a)
	}
	err := s.Commit(ctx, &store.Batch{
		Events: []store.Event{ev(store.Ref{Type: "cart", ID: "x"}, 2, "E", "gap")},
		Values: []store.Value{val(c, 1, "lost")},
	})
	wantConflict(t, err, store.Ref{Type: "cart", ID: "x"})
	commit(t, s, &store.Batch{Values: []store.Value{val(b, 2, "b2")}})
	if rest, _ := followFeed(t, s, "customer", end, 10, 1); describeValues(t, rest) != "b@2:b2" {
		t.Errorf("value feed after refused writes and b's = %s, want b@2:b2 alone", describeValues(t, rest))
	}
	if all, _ := followFeed(t, s, "customer", "", 10, 2); describeValues(t, all) != "a@1:a1 b@2:b2" {
		t.Errorf("value feed after refused writes = %s, want a@1:a1 b@2:b2", describeValues(t, all))
	}
}

// testValueFeedLeavesEventFeedsAlone: values written with events, of
// another type, reach neither that type's feed nor the feeds of types
// whose names share a prefix with theirs, and stay in their own.
func testValueFeedLeavesEventFeedsAlone(t *testing.T, s store.Store) {
	want := map[string][]store.Event{}
	for i := int64(1); i <= 3; i++ {
		b := store.Batch{Values: []store.Value{val(store.Ref{Type: "carts", ID: "same-id"}, i, fmt.Sprint("carts", i))}}
		for _, typ := range []string{"cart", "car", "cartsx"} {
			e := ev(store.Ref{Type: typ, ID: "same-id"}, i, "E", fmt.Sprint(typ, i))
			b.Events = append(b.Events, e)
			want[typ] = append(want[typ], e)
		}
		commit(t, s, &b)
	}
	for typ, events := range want {
		got, _ := followFeed(t, s, typ, "", 10, 3)
		equalFeed(t, got, events)
	}
	if all, _ := followFeed(t, s, "carts", "", 10, 1); describeValues(t, all) != "same-id@3:carts3" {
		t.Errorf("value feed of carts = %s, want same-id@3:carts3", describeValues(t, all))
	}
}

// testValueFeedNeverSkipsUnderConcurrentWriters is invariant 10
// (INVARIANTS.md) for values: writers write new entities and rewrite
// some of theirs at once while a reader follows the feed in small pages,
// resuming from the last position it was given. Each entity's versions
// must reach the reader in increasing order, never one twice, and the
// reader must end up with every entity's final version. A skipped place
// shows only when it held an entity's final version (a later write
// brings the entity back), so most entities are written once.
func testValueFeedNeverSkipsUnderConcurrentWriters(t *testing.T, s store.Store) {
	const writers, batches = 8, 40
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex
	committed := map[store.Ref]int64{} // the version of each entity, once committed
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			var versions []int64 // of this writer's entities, by number
			for range batches {
				// Mostly small batches, some large: a large one keeps its
				// transaction open while small ones that started later
				// commit.
				size := 1 + rng.IntN(3)
				if rng.IntN(4) == 0 {
					size = 10 + rng.IntN(30)
				}
				var b store.Batch
				inBatch := map[int]bool{}
				for range size {
					// A new entity, or another version of an older one
					// (sometimes two in the batch).
					i := len(versions)
					if len(versions) > 0 && rng.IntN(3) == 0 {
						i = rng.IntN(len(versions))
					}
					if inBatch[i] {
						continue
					}
					inBatch[i] = true
					if i == len(versions) {
						versions = append(versions, 0)
					}
					ref := store.Ref{Type: "customer", ID: fmt.Sprintf("w%d-e%d", w, i)}
					for range 1 + rng.IntN(2) {
						versions[i]++
						b.Values = append(b.Values, val(ref, versions[i], fmt.Sprint(ref.ID, "@", versions[i])))
					}
				}
				// Pauses let the reader keep up: only a reader at the
				// head of the feed can skip a place.
				time.Sleep(time.Duration(rng.IntN(10_000)) * time.Microsecond)
				if err := s.Commit(ctx, &b); err != nil {
					t.Errorf("writer %d: Commit: %v", w, err)
					return
				}
				mu.Lock()
				for _, v := range b.Values {
					committed[v.Entity] = v.Version
				}
				mu.Unlock()
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(writersDone)
	}()

	seen := map[store.Ref]int64{}
	entries := 0
	var after store.Position
	rng := rand.New(rand.NewPCG(3, 4))
	read := func() int {
		n := 0
		err := s.ReadFeed(ctx, "customer", after, 1+rng.IntN(8), func(e store.FeedEvent) error {
			if e.EventType != store.ValueEventType {
				return fmt.Errorf("value feed entry %+v has event type %q", e, e.EventType)
			}
			if e.Seq <= seen[e.Entity] {
				return fmt.Errorf("after %d entries the feed gave %v version %d, having given version %d: a version went back or came twice", entries, e.Entity, e.Seq, seen[e.Entity])
			}
			if want := fmt.Sprint(e.Entity.ID, "@", e.Seq); string(e.Payload) != want {
				return fmt.Errorf("%v version %d has payload %q, want %q", e.Entity, e.Seq, e.Payload, want)
			}
			seen[e.Entity] = e.Seq
			after = e.Position
			entries++
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	caughtUp := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for ref, version := range committed {
			if seen[ref] < version {
				return false
			}
		}
		return true
	}
	done := false
	var deadline time.Time
	for {
		if read() > 0 {
			continue
		}
		if !done {
			select {
			case <-writersDone:
				done, deadline = true, time.Now().Add(feedWait)
			default:
			}
		}
		if done && caughtUp() {
			break
		}
		if done && time.Now().After(deadline) {
			var missed []string
			for ref, version := range committed {
				if seen[ref] != version {
					missed = append(missed, fmt.Sprintf("%s@%d (read @%d)", ref.ID, version, seen[ref]))
				}
			}
			t.Fatalf("%v after the writers stopped, the reader lacks the final versions %v: the feed skipped them", feedWait, missed)
		}
		if done {
			// While writers run, read without pause: a skip needs a read
			// between two commits.
			time.Sleep(time.Millisecond)
		}
	}
	if t.Failed() {
		return
	}
	if len(seen) != len(committed) {
		t.Fatalf("read %d entities, %d committed", len(seen), len(committed))
	}
	for ref, version := range committed {
		if seen[ref] != version {
			t.Errorf("read %v up to version %d, want %d", ref, seen[ref], version)
		}
	}
	if read() != 0 {
		t.Errorf("value feed has entries past the last committed one")
	}
}
