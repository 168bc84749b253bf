package embedded

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// TestHistoryOfOlderFile opens a file written before event times were
// recorded (no event-times bucket): its events read with the zero time,
// and the events committed after the upgrade with theirs.
func TestHistoryOfOlderFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	ref := store.Ref{Type: "cart", ID: "c1"}
	s, err := Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E", Payload: []byte("old")}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What an older binary left: the same file without the bucket.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(eventTimesBucket) })
	if closeErr := db.Close(); err != nil || closeErr != nil {
		t.Fatal(err, closeErr)
	}

	s, err = Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatalf("open the older file: %v", err)
	}
	defer s.Close()
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 2, EventType: "E", Payload: []byte("new")}}}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ReadHistory(ctx, ref, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || string(page[0].Payload) != "old" || string(page[1].Payload) != "new" {
		t.Fatalf("history %+v, want the old event and the new one", page)
	}
	if !page[0].StoredAt.IsZero() {
		t.Errorf("the older file's event stored at %v, want the zero time (its time is not on disk)", page[0].StoredAt)
	}
	if page[1].StoredAt.IsZero() {
		t.Error("the event committed after the upgrade has no time")
	}
}
