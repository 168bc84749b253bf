package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// TestOpenUpgradesFormat1 opens a file written before feeds existed: Open
// builds each type's feed from the stored events, each entity's history
// in seq order, and later commits follow them.
func TestOpenUpgradesFormat1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored := []store.Event{
		{Entity: store.Ref{Type: "cart", ID: "b"}, Seq: 1, EventType: "E", Payload: []byte("b1")},
		{Entity: store.Ref{Type: "cart", ID: "b"}, Seq: 2, EventType: "E", Payload: []byte("b2")},
		{Entity: store.Ref{Type: "cart", ID: "a"}, Seq: 1, EventType: "E", Payload: []byte("a1")},
		{Entity: store.Ref{Type: "carts", ID: "a"}, Seq: 1, EventType: "E", Payload: []byte("other type")},
		{Entity: store.Ref{Type: "cart", ID: "a"}, Seq: 2, EventType: "E", Payload: []byte("a2")},
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		if err := meta.Put(formatKey, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		for _, name := range [][]byte{valuesBucket, snapshotsBucket} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		events, err := tx.CreateBucket(eventsBucket)
		if err != nil {
			return err
		}
		for _, e := range stored {
			if err := events.Put(eventKey(nil, e.Entity, e.Seq), eventValue(e.EventType, e.Payload)); err != nil {
				return err
			}
		}
		return nil
	})
	if closeErr := db.Close(); err != nil || closeErr != nil {
		t.Fatal(err, closeErr)
	}

	s, err := Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatalf("Open of a format 1 file: %v", err)
	}
	defer s.Close()
	feed := func(entityType string, after store.Position) (got []string, last store.Position) {
		t.Helper()
		last = after
		if err := s.ReadFeed(t.Context(), entityType, after, 100, func(e store.FeedEvent) error {
			got = append(got, fmt.Sprintf("%s#%d:%s", e.Entity.ID, e.Seq, e.Payload))
			last = e.Position
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got, last
	}
	got, last := feed("cart", "")
	if want := "a#1:a1 a#2:a2 b#1:b1 b#2:b2"; strings.Join(got, " ") != want {
		t.Errorf("cart feed after the upgrade = %q, want %q", got, want)
	}
	if got, _ := feed("carts", ""); strings.Join(got, " ") != "a#1:other type" {
		t.Errorf("carts feed after the upgrade = %q", got)
	}
	if types, err := s.EventTypes(t.Context()); err != nil || fmt.Sprint(types) != "map[cart:[E] carts:[E]]" {
		t.Errorf("event types after the upgrade = %v, %v; want map[cart:[E] carts:[E]]", types, err)
	}
	if head, err := s.FeedHead(t.Context(), "cart"); err != nil || head != last {
		t.Errorf("FeedHead = %q, %v; want %q", head, err, last)
	}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: store.Ref{Type: "cart", ID: "a"}, Seq: 3, EventType: "E", Payload: []byte("a3")}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := feed("cart", last); strings.Join(got, " ") != "a#3:a3" {
		t.Errorf("cart feed after the upgraded events = %q, want a#3:a3", got)
	}
	var version uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint64(tx.Bucket(metaBucket).Get(formatKey))
		return nil
	}); err != nil || version != formatVersion {
		t.Errorf("format version after the upgrade = %d (%v), want %d", version, err, formatVersion)
	}
}

// TestOpenUpgradesFormat2 opens a file written before outcomes existed:
// Open adds their buckets and bumps the format, the stored history is
// untouched, and outcomes then commit, load and expire.
func TestOpenUpgradesFormat2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ref := store.Ref{Type: "cart", ID: "c1"}
	s, err := Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E", Payload: []byte("before")}}}); err != nil {
		t.Fatal(err)
	}
	// Turn the file back into format 2: no outcome buckets.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{outcomesBucket, outcomeExpiryBucket} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(formatKey, binary.BigEndian.AppendUint64(nil, 2))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatalf("Open of a format 2 file: %v", err)
	}
	defer s.Close()
	var version uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint64(tx.Bucket(metaBucket).Get(formatKey))
		return nil
	}); err != nil || version != formatVersion {
		t.Errorf("format version after the upgrade = %d (%v), want %d", version, err, formatVersion)
	}
	var events []string
	if err := s.ReadEvents(t.Context(), ref, 0, func(e store.Event) error {
		events = append(events, string(e.Payload))
		return nil
	}); err != nil || strings.Join(events, " ") != "before" {
		t.Errorf("events after the upgrade = %q, %v", events, err)
	}
	o := store.Outcome{Entity: ref, Key: "k", Reply: []byte("r"), Expires: time.Now().Add(time.Hour)}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 2, EventType: "E"}}, Outcomes: []store.Outcome{o}}); err != nil {
		t.Fatalf("Commit with an outcome after the upgrade: %v", err)
	}
	if got, found, err := s.LoadOutcome(t.Context(), ref, "k"); err != nil || !found || string(got.Reply) != "r" {
		t.Errorf("LoadOutcome after the upgrade = %+v, %v, %v", got, found, err)
	}
	if n, err := s.ExpireOutcomes(t.Context(), time.Now().Add(2*time.Hour), 10); err != nil || n != 1 {
		t.Errorf("ExpireOutcomes after the upgrade = %d, %v; want 1", n, err)
	}
}

// TestOpenUpgradesFormat3 opens a file written before the event type
// registry existed: Open builds the registry from the stored events, once,
// and later commits add to it.
func TestOpenUpgradesFormat3(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{
		{Entity: store.Ref{Type: "cart", ID: "a"}, Seq: 1, EventType: "ItemAdded"},
		{Entity: store.Ref{Type: "cart", ID: "a"}, Seq: 2, EventType: "CheckedOut"},
		{Entity: store.Ref{Type: "cart", ID: "b"}, Seq: 1, EventType: "ItemAdded"},
		{Entity: store.Ref{Type: "cartItemAdded", ID: "a"}, Seq: 1, EventType: ""},
	}}); err != nil {
		t.Fatal(err)
	}
	// Turn the file back into format 3: no registry.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(eventTypesBucket); err != nil {
			return err
		}
		return tx.Bucket(metaBucket).Put(formatKey, binary.BigEndian.AppendUint64(nil, 3))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatalf("Open of a format 3 file: %v", err)
	}
	defer s.Close()
	types, err := s.EventTypes(t.Context())
	if want := `map[cart:[CheckedOut ItemAdded] cartItemAdded:[]]`; err != nil || fmt.Sprint(types) != want {
		t.Errorf("event types after the upgrade = %v, %v; want %s", types, err, want)
	}
	if got := types["cartItemAdded"]; len(got) != 1 || got[0] != "" {
		t.Errorf("event types of cartItemAdded = %q, want one, the empty name", got)
	}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: store.Ref{Type: "cart", ID: "b"}, Seq: 2, EventType: "ItemRemoved"}}}); err != nil {
		t.Fatal(err)
	}
	if types, err := s.EventTypes(t.Context()); err != nil || fmt.Sprint(types["cart"]) != "[CheckedOut ItemAdded ItemRemoved]" {
		t.Errorf("event types of cart after a commit = %v, %v", types["cart"], err)
	}
	var version uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint64(tx.Bucket(metaBucket).Get(formatKey))
		return nil
	}); err != nil || version != formatVersion {
		t.Errorf("format version after the upgrade = %d (%v), want %d", version, err, formatVersion)
	}
}

func TestOpenUpgradesFormat4(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	ref := store.Ref{Type: "cart", ID: "a"}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "ItemAdded"}}}); err != nil {
		t.Fatal(err)
	}
	// Turn the file back into format 4: no timer buckets.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{timersBucket, timerDueBucket} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(formatKey, binary.BigEndian.AppendUint64(nil, 4))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, WithNoSync(true))
	if err != nil {
		t.Fatalf("Open of a format 4 file: %v", err)
	}
	defer s.Close()
	due := time.UnixMicro(time.Now().UnixMicro())
	tm := store.Timer{Entity: ref, Name: "expire", ID: 1, Due: due, Call: []byte("call")}
	if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 2, EventType: "ItemAdded"}}, Timers: []store.TimerChange{{Timer: tm}}}); err != nil {
		t.Fatalf("Commit with a timer after the upgrade: %v", err)
	}
	got, err := s.DueTimers(t.Context(), nil, due, 10)
	if err != nil || len(got) != 1 || got[0].Name != "expire" || !got[0].Due.Equal(due) {
		t.Errorf("DueTimers after the upgrade = %+v, %v; want the timer", got, err)
	}
	var version uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint64(tx.Bucket(metaBucket).Get(formatKey))
		return nil
	}); err != nil || version != formatVersion {
		t.Errorf("format version after the upgrade = %d (%v), want %d", version, err, formatVersion)
	}
}

// TestExpiresSortsInTimeOrder holds the expiry index to its promise:
// byte order is time order, before 1970 too.
func TestExpiresSortsInTimeOrder(t *testing.T) {
	t.Parallel()
	times := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Unix(0, 0),
		time.Unix(0, 1000),
		time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i, tm := range times {
		b := expiresBytes(tm)
		if got := expiresTime(b[:]); !got.Equal(tm) {
			t.Errorf("expiresTime(expiresBytes(%v)) = %v", tm, got)
		}
		if i > 0 {
			prev := expiresBytes(times[i-1])
			if bytes.Compare(prev[:], b[:]) >= 0 {
				t.Errorf("expiresBytes(%v) does not sort before expiresBytes(%v)", times[i-1], tm)
			}
		}
	}
}
