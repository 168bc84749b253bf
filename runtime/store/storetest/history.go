package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// historyTests are the tests of store.History: pages of an entity's
// events, each with the time it was stored.
var historyTests = []struct {
	name string
	fn   func(*testing.T, store.Store, store.History)
}{
	{"HistoryPages", testHistoryPages},
	{"HistoryStoredAt", testHistoryStoredAt},
	{"HistoryOfUnknownEntityIsEmpty", testHistoryOfUnknownEntityIsEmpty},
	{"HistoryRejectsBadLimit", testHistoryRejectsBadLimit},
	{"HistoryOnClosedStore", testHistoryOnClosedStore},
}

// RunHistory runs the history suite against stores that implement
// store.History; for any other store it fails, since every store of this
// module implements it. open returns a new, empty store for one test, as
// for Run; the suite closes it.
func RunHistory(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	for _, tt := range historyTests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			h, ok := s.(store.History)
			if !ok {
				t.Fatalf("%T does not implement store.History", s)
			}
			tt.fn(t, s, h)
		})
	}
}

func readHistory(t *testing.T, h store.History, ref store.Ref, after int64, limit int) []store.HistoryEvent {
	t.Helper()
	page, err := h.ReadHistory(ctx, ref, after, limit)
	if err != nil {
		t.Fatalf("ReadHistory(%v, %d, %d): %v", ref, after, limit, err)
	}
	return page
}

func historyEvents(page []store.HistoryEvent) []store.Event {
	events := make([]store.Event, len(page))
	for i, e := range page {
		events[i] = e.Event
	}
	return events
}

func testHistoryPages(t *testing.T, s store.Store, h store.History) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	other := store.Ref{Type: "cart", ID: "c2"}
	all := []store.Event{ev(ref, 1, "ItemAdded", "a"), ev(ref, 2, "ItemAdded", "b"), ev(ref, 3, "ItemRemoved", "a"), ev(ref, 4, "ItemAdded", ""), ev(ref, 5, "CheckedOut", "x")}
	commit(t, s, &store.Batch{Events: append(all[:2:2], ev(other, 1, "ItemAdded", "other"))})
	commit(t, s, &store.Batch{Events: all[2:]})

	equalEvents(t, historyEvents(readHistory(t, h, ref, 0, 2)), all[:2])
	equalEvents(t, historyEvents(readHistory(t, h, ref, 2, 2)), all[2:4])
	equalEvents(t, historyEvents(readHistory(t, h, ref, 4, 2)), all[4:])
	equalEvents(t, historyEvents(readHistory(t, h, ref, 5, 2)), nil)
	equalEvents(t, historyEvents(readHistory(t, h, ref, 0, 100)), all)
	equalEvents(t, historyEvents(readHistory(t, h, ref, -1, 1)), all[:1])
	equalEvents(t, historyEvents(readHistory(t, h, other, 0, 100)), []store.Event{ev(other, 1, "ItemAdded", "other")})
}

// testHistoryStoredAt: every event has the time of its commit. Times are
// the store's clock (a database server's, for Postgres), so the test
// compares them with this process's clock only within an hour.
func testHistoryStoredAt(t *testing.T, s store.Store, h store.History) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1"), ev(ref, 2, "E", "2")}})
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 3, "E", "3")}})
	page := readHistory(t, h, ref, 0, 10)
	if len(page) != 3 {
		t.Fatalf("got %d events, want 3", len(page))
	}
	now := time.Now()
	for _, e := range page {
		if e.StoredAt.IsZero() {
			t.Fatalf("event %d has no stored time", e.Seq)
		}
		if d := now.Sub(e.StoredAt).Abs(); d > time.Hour {
			t.Errorf("event %d stored at %v, %v from now (%v): not the commit's time", e.Seq, e.StoredAt, d, now)
		}
	}
	if !page[0].StoredAt.Equal(page[1].StoredAt) {
		t.Errorf("events of one commit stored at %v and %v, want one time", page[0].StoredAt, page[1].StoredAt)
	}
	if page[2].StoredAt.Before(page[1].StoredAt) {
		t.Errorf("a later commit stored at %v, before the earlier one's %v", page[2].StoredAt, page[1].StoredAt)
	}
}

func testHistoryOfUnknownEntityIsEmpty(t *testing.T, s store.Store, h store.History) {
	commit(t, s, &store.Batch{Events: []store.Event{ev(store.Ref{Type: "cart", ID: "c1"}, 1, "E", "1")}})
	for _, ref := range []store.Ref{{Type: "cart", ID: "c"}, {Type: "carts", ID: "c1"}, {Type: "cart", ID: "c10"}} {
		if page := readHistory(t, h, ref, 0, 10); len(page) != 0 {
			t.Errorf("history of %v: %v, want none", ref, page)
		}
	}
}

func testHistoryRejectsBadLimit(t *testing.T, s store.Store, h store.History) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1")}})
	for _, limit := range []int{0, -1} {
		if _, err := h.ReadHistory(ctx, ref, 0, limit); err == nil {
			t.Errorf("ReadHistory with limit %d succeeded; want an error", limit)
		}
	}
}

func testHistoryOnClosedStore(t *testing.T, s store.Store, h store.History) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := h.ReadHistory(ctx, store.Ref{Type: "cart", ID: "c1"}, 0, 10); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ReadHistory after Close: %v, want store.ErrClosed", err)
	}
}
