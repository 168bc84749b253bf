package embedded

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// TestOpenAddsStoredValuesToTheFeed opens a file written before values
// had feeds: Open puts every stored value in the feed of its type, once,
// leaves the feeds of events as they were, and later writes move the
// values as usual.
func TestOpenAddsStoredValuesToTheFeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	customer := func(id string) store.Ref { return store.Ref{Type: "customer", ID: id} }
	cart := store.Ref{Type: "cart", ID: "c"}
	for _, b := range []*store.Batch{
		{Values: []store.Value{{Entity: customer("b"), Version: 1, Payload: []byte("b1")}}, Events: []store.Event{{Entity: cart, Seq: 1, EventType: "E", Payload: []byte("e1")}}},
		{Values: []store.Value{{Entity: customer("a"), Version: 1, Payload: []byte("a1")}, {Entity: store.Ref{Type: "account", ID: "x"}, Version: 1, Payload: []byte("x1")}}},
		{Values: []store.Value{{Entity: customer("b"), Version: 2, Payload: []byte("b2")}}, Events: []store.Event{{Entity: cart, Seq: 2, EventType: "E", Payload: []byte("e2")}}},
	} {
		if err := s.Commit(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	cartBefore, _ := readTestFeed(t, s, "cart", "")

	// Turn the file into what the binary before value feeds wrote: no
	// value-feed bucket, no value in a feed, no feed head of a type that
	// has only values. The values themselves are stored as they were.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(valueFeedBucket); err != nil {
			return err
		}
		feed := tx.Bucket(feedBucket)
		var valueEntries [][]byte
		if err := feed.ForEach(func(k, v []byte) error {
			_, isValue, ok := decodeFeedEntry("", v)
			if !ok {
				return fmt.Errorf("feed entry %x: %x is no entry", k, v)
			}
			if isValue {
				valueEntries = append(valueEntries, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		if len(valueEntries) != 3 {
			return fmt.Errorf("the feeds hold %d values, want 3: the test sets up nothing", len(valueEntries))
		}
		for _, k := range valueEntries {
			if err := feed.Delete(k); err != nil {
				return err
			}
		}
		for _, typ := range []string{"customer", "account"} {
			if err := tx.Bucket(feedHeadsBucket).Delete(typePrefix(nil, typ)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for open := range 2 {
		s, err = Open(dir, WithNoSync(true))
		if err != nil {
			t.Fatalf("Open of a file without value feeds: %v", err)
		}
		got, end := readTestFeed(t, s, "customer", "")
		if want := "a@1:a1 b@2:b2"; strings.Join(got, " ") != want {
			t.Errorf("open %d: customer feed = %q, want %q", open+1, got, want)
		}
		if head, err := s.FeedHead(t.Context(), "customer"); err != nil || head != end {
			t.Errorf("open %d: FeedHead of customer = %q, %v; want %q", open+1, head, err, end)
		}
		if got, _ := readTestFeed(t, s, "account", ""); strings.Join(got, " ") != "x@1:x1" {
			t.Errorf("open %d: account feed = %q, want x@1:x1", open+1, got)
		}
		if got, _ := readTestFeed(t, s, "cart", ""); strings.Join(got, " ") != strings.Join(cartBefore, " ") {
			t.Errorf("open %d: cart feed = %q, want it as before, %q", open+1, got, cartBefore)
		}
		if open == 1 {
			break
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Close()
	_, end := readTestFeed(t, s, "customer", "")
	if err := s.Commit(t.Context(), &store.Batch{Values: []store.Value{{Entity: customer("a"), Version: 2, Payload: []byte("a2")}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := readTestFeed(t, s, "customer", end); strings.Join(got, " ") != "a@2:a2" {
		t.Errorf("customer feed after a's next write = %q, want a@2:a2", got)
	}
	if got, _ := readTestFeed(t, s, "customer", ""); strings.Join(got, " ") != "b@2:b2 a@2:a2" {
		t.Errorf("customer feed from the start = %q, want b@2:b2 a@2:a2", got)
	}
}

// readTestFeed reads a whole feed after a position, as id@seq:payload.
func readTestFeed(t *testing.T, s *Store, entityType string, after store.Position) (got []string, last store.Position) {
	t.Helper()
	last = after
	if err := s.ReadFeed(t.Context(), entityType, after, 100, func(e store.FeedEvent) error {
		got = append(got, fmt.Sprintf("%s@%d:%s", e.Entity.ID, e.Seq, e.Payload))
		last = e.Position
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got, last
}
