package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// feedTests are the tests of feeds and consumer positions.
//
// A feed may show a committed event some time after Commit returned (the
// Postgres store holds events back while an older transaction is still
// running), so the tests wait for the events they expect rather than
// read once, and check that nothing else arrived.
var feedTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"FeedEmpty", testFeedEmpty},
	{"FeedReadsEveryEventOnce", testFeedReadsEveryEventOnce},
	{"FeedKeepsEntitySeqOrder", testFeedKeepsEntitySeqOrder},
	{"FeedResumesWithSmallLimits", testFeedResumesWithSmallLimits},
	{"FeedHeadSkipsThePast", testFeedHeadSkipsThePast},
	{"FeedExcludesOtherTypes", testFeedExcludesOtherTypes},
	{"FeedOmitsFailedBatches", testFeedOmitsFailedBatches},
	{"ReadFeedStopsOnError", testReadFeedStopsOnError},
	{"ReadFeedRejectsBadArguments", testReadFeedRejectsBadArguments},
	{"ConsumerPositions", testConsumerPositions},
	{"FeedNeverSkipsUnderConcurrentWriters", testFeedNeverSkipsUnderConcurrentWriters},
}

// feedWait bounds the wait for committed events to reach a feed. Only a
// transaction that runs this long on the test database holds them back
// longer.
const feedWait = 30 * time.Second

// readFeedOnce returns one call's worth of a feed.
func readFeedOnce(t *testing.T, s store.Store, entityType string, after store.Position, limit int) []store.FeedEvent {
	t.Helper()
	var got []store.FeedEvent
	if err := s.ReadFeed(ctx, entityType, after, limit, func(e store.FeedEvent) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatalf("ReadFeed(%q, %q, %d): %v", entityType, after, limit, err)
	}
	if len(got) > limit {
		t.Fatalf("ReadFeed(%q, %q, %d) returned %d events", entityType, after, limit, len(got))
	}
	return got
}

// followFeed reads the feed after the given position, limit events a
// call, resuming from the last position it was given, until it has read
// want events; then it checks that nothing more is there. It returns the
// events and the position to resume from.
func followFeed(t *testing.T, s store.Store, entityType string, after store.Position, limit, want int) ([]store.FeedEvent, store.Position) {
	t.Helper()
	var got []store.FeedEvent
	deadline := time.Now().Add(feedWait)
	for len(got) < want {
		page := readFeedOnce(t, s, entityType, after, limit)
		if len(page) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("feed of %q: %d events after %v, want %d:\n%v", entityType, len(got), feedWait, want, got)
			}
			time.Sleep(2 * time.Millisecond)
			continue
		}
		got = append(got, page...)
		after = page[len(page)-1].Position
	}
	if extra := readFeedOnce(t, s, entityType, after, limit); len(got) > want || len(extra) > 0 {
		t.Fatalf("feed of %q: %d events, want %d:\n%v\nthen %v", entityType, len(got)+len(extra), want, got, extra)
	}
	return got, after
}

func events(feed []store.FeedEvent) []store.Event {
	es := make([]store.Event, len(feed))
	for i, e := range feed {
		es[i] = e.Event
	}
	return es
}

// equalFeed checks that got holds exactly the events of want, with each
// entity's events in seq order. Feed order across entities is the
// store's to choose.
func equalFeed(t *testing.T, got []store.FeedEvent, want []store.Event) {
	t.Helper()
	byEntity := func(es []store.Event) map[store.Ref][]store.Event {
		m := map[store.Ref][]store.Event{}
		for _, e := range es {
			m[e.Entity] = append(m[e.Entity], e)
		}
		return m
	}
	gotBy, wantBy := byEntity(events(got)), byEntity(want)
	if len(got) != len(want) || len(gotBy) != len(wantBy) {
		t.Fatalf("feed has %d events of %d entities, want %d of %d:\n got %v\nwant %v", len(got), len(gotBy), len(want), len(wantBy), events(got), want)
	}
	for ref, w := range wantBy {
		equalEvents(t, gotBy[ref], w)
	}
	seen := map[store.Position]bool{}
	for _, e := range got {
		if e.Position == "" || seen[e.Position] {
			t.Fatalf("feed event %v has position %q, empty or given twice", e.Event, e.Position)
		}
		seen[e.Position] = true
	}
}

func testFeedEmpty(t *testing.T, s store.Store) {
	if got := readFeedOnce(t, s, "cart", "", 10); len(got) != 0 {
		t.Fatalf("empty store has a feed: %v", got)
	}
	head, err := s.FeedHead(ctx, "cart")
	if err != nil {
		t.Fatalf("FeedHead of an empty feed: %v", err)
	}
	if got := readFeedOnce(t, s, "cart", head, 10); len(got) != 0 {
		t.Fatalf("feed after the head of an empty feed: %v", got)
	}
	// Events of another type leave the feed empty.
	order := store.Ref{Type: "order", ID: "o1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(order, 1, "E", "x")}})
	followFeed(t, s, "order", "", 10, 1)
	if got := readFeedOnce(t, s, "cart", "", 10); len(got) != 0 {
		t.Fatalf("cart feed has events of another type: %v", got)
	}
}

func testFeedReadsEveryEventOnce(t *testing.T, s store.Store) {
	a := store.Ref{Type: "cart", ID: "a"}
	b := store.Ref{Type: "cart", ID: "b"}
	c := store.Ref{Type: "cart", ID: "c"}
	batches := [][]store.Event{
		{ev(a, 1, "ItemAdded", "a1"), ev(a, 2, "ItemAdded", "a2"), ev(b, 1, "ItemAdded", "b1")},
		{ev(c, 1, "ItemAdded", "c1"), ev(a, 3, "CheckedOut", "")},
		{ev(b, 2, "ItemRemoved", "b2")},
	}
	var want []store.Event
	for _, events := range batches {
		commit(t, s, &store.Batch{Events: events})
		want = append(want, events...)
	}
	got, _ := followFeed(t, s, "cart", "", 100, len(want))
	equalFeed(t, got, want)
	// A limit of "all of them" is a limit too.
	got, _ = followFeed(t, s, "cart", "", math.MaxInt, len(want))
	equalFeed(t, got, want)
}

func testFeedKeepsEntitySeqOrder(t *testing.T, s store.Store) {
	const entities, batches = 10, 30
	rng := rand.New(rand.NewPCG(1, 2))
	heads := make([]int64, entities)
	var want []store.Event
	for range batches {
		var b store.Batch
		for _, i := range rng.Perm(entities)[:1+rng.IntN(4)] {
			ref := store.Ref{Type: "cart", ID: fmt.Sprint(i)}
			for range 1 + rng.IntN(3) {
				heads[i]++
				b.Events = append(b.Events, ev(ref, heads[i], "E", fmt.Sprint(i, "/", heads[i])))
			}
		}
		commit(t, s, &b)
		want = append(want, b.Events...)
	}
	got, _ := followFeed(t, s, "cart", "", 7, len(want))
	equalFeed(t, got, want)
}

func testFeedResumesWithSmallLimits(t *testing.T, s store.Store) {
	var want []store.Event
	for seq := int64(1); seq <= 5; seq++ {
		var b store.Batch
		for _, id := range []string{"x", "y", "z", "w"} {
			b.Events = append(b.Events, ev(store.Ref{Type: "cart", ID: id}, seq, "E", id+fmt.Sprint(seq)))
		}
		commit(t, s, &b)
		want = append(want, b.Events...)
	}
	all, end := followFeed(t, s, "cart", "", 100, 20)
	equalFeed(t, all, want)

	// Pages of 3 read exactly the same events in the same order.
	paged, pagedEnd := followFeed(t, s, "cart", "", 3, 20)
	equalEvents(t, events(paged), events(all))
	for i := range all {
		if paged[i].Position != all[i].Position {
			t.Fatalf("event %d has position %q in pages of 3, %q in one read", i, paged[i].Position, all[i].Position)
		}
	}
	if pagedEnd != end {
		t.Errorf("paged reads end at %q, one read at %q", pagedEnd, end)
	}

	// Resuming from any event's position reads exactly the rest.
	for _, from := range []int{0, 6, 18, 19} {
		rest, _ := followFeed(t, s, "cart", all[from].Position, 3, 19-from)
		equalEvents(t, events(rest), events(all[from+1:]))
	}
}

func testFeedHeadSkipsThePast(t *testing.T, s store.Store) {
	old := store.Ref{Type: "cart", ID: "old"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(old, 1, "E", "1"), ev(old, 2, "E", "2")}})
	// Once the old events are readable, the head is past them.
	followFeed(t, s, "cart", "", 10, 2)
	head, err := s.FeedHead(ctx, "cart")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFeedOnce(t, s, "cart", head, 10); len(got) != 0 {
		t.Fatalf("feed after its head, before any new commit: %v", got)
	}
	fresh := store.Ref{Type: "cart", ID: "new"}
	newEvents := []store.Event{ev(old, 3, "E", "3"), ev(fresh, 1, "E", "n1")}
	commit(t, s, &store.Batch{Events: newEvents})
	got, _ := followFeed(t, s, "cart", head, 10, 2)
	equalFeed(t, got, newEvents)
}

func testFeedExcludesOtherTypes(t *testing.T, s store.Store) {
	// Types whose names are prefixes of each other, and the empty one.
	types := []string{"cart", "carts", "car", ""}
	want := map[string][]store.Event{}
	for seq := int64(1); seq <= 3; seq++ {
		var b store.Batch
		for _, typ := range types {
			e := ev(store.Ref{Type: typ, ID: "same-id"}, seq, "E", typ+fmt.Sprint(seq))
			b.Events = append(b.Events, e)
			want[typ] = append(want[typ], e)
		}
		// A key-value type's values are in its own feed only.
		b.Values = []store.Value{{Entity: store.Ref{Type: "ca", ID: "kv"}, Version: seq}}
		commit(t, s, &b)
	}
	for _, typ := range types {
		got, _ := followFeed(t, s, typ, "", 10, 3)
		equalFeed(t, got, want[typ])
	}
	if got, _ := followFeed(t, s, "ca", "", 10, 1); got[0].Entity.ID != "kv" || got[0].Seq != 3 {
		t.Errorf("feed of the key-value type = %v, want kv at version 3", got)
	}
}

func testFeedOmitsFailedBatches(t *testing.T, s store.Store) {
	ok := store.Ref{Type: "cart", ID: "ok"}
	fenced := store.Ref{Type: "cart", ID: "fenced"}
	other := store.Ref{Type: "cart", ID: "other"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(fenced, 1, "E", "first")}})
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ok, 1, "E", "lost"), ev(fenced, 1, "E", "again")}})
	wantConflict(t, err, fenced)
	err = s.Commit(ctx, &store.Batch{Events: []store.Event{ev(other, 1, "E", "lost"), ev(fenced, 3, "E", "gap")}})
	wantConflict(t, err, fenced)
	err = s.Commit(ctx, &store.Batch{
		Events: []store.Event{ev(other, 1, "E", "lost")},
		Values: []store.Value{{Entity: store.Ref{Type: "cart", ID: "kv"}, Version: 2}},
	})
	wantConflict(t, err, store.Ref{Type: "cart", ID: "kv"})
	last := []store.Event{ev(ok, 1, "E", "kept"), ev(fenced, 2, "E", "second")}
	commit(t, s, &store.Batch{Events: last})
	got, _ := followFeed(t, s, "cart", "", 10, 3)
	equalFeed(t, got, append([]store.Event{ev(fenced, 1, "E", "first")}, last...))
}

func testReadFeedStopsOnError(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1"), ev(ref, 2, "E", "2"), ev(ref, 3, "E", "3")}})
	followFeed(t, s, "cart", "", 10, 3)
	stop := errors.New("stop")
	calls := 0
	err := s.ReadFeed(ctx, "cart", "", 10, func(store.FeedEvent) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ReadFeed returned %v after %d calls; want the callback's error after 1", err, calls)
	}
}

func testReadFeedRejectsBadArguments(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1")}})
	got, _ := followFeed(t, s, "cart", "", 10, 1)
	fn := func(e store.FeedEvent) error { return fmt.Errorf("called with %v", e) }
	for _, limit := range []int{0, -1} {
		if err := s.ReadFeed(ctx, "cart", "", limit, fn); err == nil {
			t.Errorf("ReadFeed with limit %d succeeded", limit)
		}
	}
	for _, pos := range []store.Position{"not a position", got[0].Position + "0", "-" + got[0].Position[1:]} {
		if err := s.ReadFeed(ctx, "cart", pos, 10, fn); err == nil {
			t.Errorf("ReadFeed after position %q succeeded", pos)
		}
		if err := s.SaveConsumerPosition(ctx, "projector", "cart", pos); err == nil {
			t.Errorf("SaveConsumerPosition(%q) succeeded", pos)
		}
	}
}

func testConsumerPositions(t *testing.T, s store.Store) {
	load := func(consumer, entityType string) (store.Position, bool) {
		t.Helper()
		pos, found, err := s.LoadConsumerPosition(ctx, consumer, entityType)
		if err != nil {
			t.Fatalf("LoadConsumerPosition(%q, %q): %v", consumer, entityType, err)
		}
		return pos, found
	}
	save := func(consumer, entityType string, pos store.Position) {
		t.Helper()
		if err := s.SaveConsumerPosition(ctx, consumer, entityType, pos); err != nil {
			t.Fatalf("SaveConsumerPosition(%q, %q, %q): %v", consumer, entityType, pos, err)
		}
	}
	if pos, found := load("projector", "cart"); found {
		t.Fatalf("position of a consumer never saved: %q", pos)
	}
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1"), ev(ref, 2, "E", "2"), ev(ref, 3, "E", "3")}})
	feed, _ := followFeed(t, s, "cart", "", 10, 3)
	first, second := feed[0].Position, feed[1].Position

	save("projector", "cart", first)
	if pos, found := load("projector", "cart"); !found || pos != first {
		t.Fatalf("position = %q found=%v, want %q", pos, found, first)
	}
	save("projector", "cart", second)
	if pos, found := load("projector", "cart"); !found || pos != second {
		t.Fatalf("overwritten position = %q found=%v, want %q", pos, found, second)
	}
	// A loaded position resumes where the consumer stopped.
	pos, _ := load("projector", "cart")
	rest, _ := followFeed(t, s, "cart", pos, 10, 1)
	equalEvents(t, events(rest), events(feed[2:]))

	// Positions are per consumer and per entity type.
	save("mailer", "cart", first)
	save("projector", "order", "")
	save("a/b ünï ✓", "cart", first)
	for _, c := range []struct {
		consumer, entityType string
		want                 store.Position
		found                bool
	}{
		{"projector", "cart", second, true},
		{"mailer", "cart", first, true},
		{"projector", "order", "", true},
		{"a/b ünï ✓", "cart", first, true},
		{"mailer", "order", "", false},
		{"mail", "ercart", "", false},
		{"", "cart", "", false},
	} {
		if pos, found := load(c.consumer, c.entityType); pos != c.want || found != c.found {
			t.Errorf("position of %q in %q = %q found=%v, want %q found=%v", c.consumer, c.entityType, pos, found, c.want, c.found)
		}
	}
}

// testFeedNeverSkipsUnderConcurrentWriters is invariant 10 (INVARIANTS.md):
// writers commit to their own entities at once while a reader follows
// the feed in small pages, resuming from the last position it was given.
// Every event must reach the reader exactly once, each entity's in seq
// order, although transactions commit in another order than the one they
// started in.
func testFeedNeverSkipsUnderConcurrentWriters(t *testing.T, s store.Store) {
	const writers, batches, entitiesPerWriter = 8, 40, 3
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex
	committed := map[store.Ref]int64{} // the head of each entity, once committed
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			heads := make([]int64, entitiesPerWriter)
			for range batches {
				// Mostly small batches, some large: a large one keeps its
				// transaction open while small ones that started later
				// commit.
				entities, size := 1+rng.IntN(entitiesPerWriter), 1+rng.IntN(3)
				if rng.IntN(4) == 0 {
					entities, size = 1, 10+rng.IntN(30)
				}
				var b store.Batch
				for _, i := range rng.Perm(entitiesPerWriter)[:entities] {
					ref := store.Ref{Type: "cart", ID: fmt.Sprintf("w%d-e%d", w, i)}
					for range size {
						heads[i]++
						b.Events = append(b.Events, ev(ref, heads[i], "E", fmt.Sprint(ref.ID, "/", heads[i])))
					}
				}
				// Pauses let the reader keep up: only a reader at the
				// head of the feed can skip an event.
				time.Sleep(time.Duration(rng.IntN(10_000)) * time.Microsecond)
				if err := s.Commit(ctx, &b); err != nil {
					t.Errorf("writer %d: Commit: %v", w, err)
					return
				}
				mu.Lock()
				for _, e := range b.Events {
					committed[e.Entity] = e.Seq
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

	// The reader checks each event as it arrives: the next seq of its
	// entity, or the feed skipped or repeated one.
	seen := map[store.Ref]int64{}
	total := 0
	var after store.Position
	rng := rand.New(rand.NewPCG(3, 4))
	read := func() int {
		n := 0
		err := s.ReadFeed(ctx, "cart", after, 1+rng.IntN(8), func(e store.FeedEvent) error {
			if e.Seq != seen[e.Entity]+1 {
				return fmt.Errorf("after %d events the feed gave %v seq %d, want seq %d: it skipped or repeated an event", total, e.Entity, e.Seq, seen[e.Entity]+1)
			}
			if want := fmt.Sprint(e.Entity.ID, "/", e.Seq); string(e.Payload) != want {
				return fmt.Errorf("%v seq %d has payload %q, want %q", e.Entity, e.Seq, e.Payload, want)
			}
			seen[e.Entity] = e.Seq
			after = e.Position
			total++
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	wantTotal := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, head := range committed {
			n += int(head)
		}
		return n
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
		if done && total >= wantTotal() {
			break
		}
		if done && time.Now().After(deadline) {
			t.Fatalf("read %d of %d events %v after the writers stopped", total, wantTotal(), feedWait)
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
	if len(committed) != len(seen) || total != wantTotal() {
		t.Fatalf("read %d events of %d entities, want %d of %d", total, len(seen), wantTotal(), len(committed))
	}
	for ref, head := range committed {
		if seen[ref] != head {
			t.Errorf("read %v up to seq %d, want %d", ref, seen[ref], head)
		}
	}
	if read() != 0 {
		t.Errorf("feed has events past the last committed one")
	}
}
