package embedded_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var ctx = context.Background()

// TestConformance runs the suite with fsync on, as a server runs.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

func TestHistoryConformance(t *testing.T) {
	t.Parallel()
	storetest.RunHistory(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) })
}

func open(t *testing.T, dir string, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestDataSurvivesReopen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "not", "yet", "there")
	cart := store.Ref{Type: "cart", ID: "c1"}
	kv := store.Ref{Type: "customer", ID: "ada"}

	s := open(t, dir)
	answer := store.Outcome{Entity: cart, Key: "add-b", Reply: []byte("added"), Expires: time.Now().Add(time.Hour)}
	if err := s.Commit(ctx, &store.Batch{
		Events:   []store.Event{{Entity: cart, Seq: 1, EventType: "ItemAdded", Payload: []byte("a")}, {Entity: cart, Seq: 2, EventType: "ItemAdded", Payload: []byte("b")}},
		Values:   []store.Value{{Entity: kv, Version: 1, Payload: []byte("london")}},
		Outcomes: []store.Outcome{answer},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, store.Snapshot{Entity: cart, Seq: 2, Payload: []byte("ab")}); err != nil {
		t.Fatal(err)
	}
	head, err := s.FeedHead(ctx, "cart")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveConsumerPosition(ctx, "projector", "cart", head); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, err %v; want mode 0700", info.Mode(), err)
	}

	s = open(t, dir)
	defer s.Close()
	var got []string
	if err := s.ReadEvents(ctx, cart, 0, func(e store.Event) error {
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Seq, e.EventType, e.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "1:ItemAdded:a 2:ItemAdded:b"; strings.Join(got, " ") != want {
		t.Errorf("events after reopen: %q, want %q", got, want)
	}
	if v, found, err := s.LoadValue(ctx, kv); err != nil || !found || v.Version != 1 || string(v.Payload) != "london" {
		t.Errorf("value after reopen: %+v found=%v err=%v", v, found, err)
	}
	if snap, found, err := s.LatestSnapshot(ctx, cart); err != nil || !found || snap.Seq != 2 || string(snap.Payload) != "ab" {
		t.Errorf("snapshot after reopen: %+v found=%v err=%v", snap, found, err)
	}
	// The fence survives the restart: a stale writer still conflicts and
	// the history goes on where it stopped.
	var conflict *store.ConflictError
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: cart, Seq: 2, EventType: "E"}}}); !errors.As(err, &conflict) {
		t.Errorf("stale write after reopen: %v, want a conflict", err)
	}
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: cart, Seq: 3, EventType: "E"}}}); err != nil {
		t.Errorf("next write after reopen: %v", err)
	}
	// The event type registry survives, and goes on growing.
	if types, err := s.EventTypes(ctx); err != nil || fmt.Sprint(types) != "map[cart:[E ItemAdded]]" {
		t.Errorf("event types after reopen: %v, %v; want map[cart:[E ItemAdded]]", types, err)
	}
	// So do the stored answers, and the fence of their keys.
	if o, found, err := s.LoadOutcome(ctx, cart, "add-b"); err != nil || !found || string(o.Reply) != "added" {
		t.Errorf("outcome after reopen: %+v found=%v err=%v", o, found, err)
	}
	if err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{answer}}); !errors.As(err, &conflict) {
		t.Errorf("answering a stored key again after reopen: %v, want a conflict", err)
	}
	// The feed and the consumer's place in it survive too.
	pos, found, err := s.LoadConsumerPosition(ctx, "projector", "cart")
	if err != nil || !found || pos != head {
		t.Fatalf("consumer position after reopen: %q found=%v err=%v, want %q", pos, found, err, head)
	}
	got = nil
	if err := s.ReadFeed(ctx, "cart", "", 10, func(e store.FeedEvent) error {
		got = append(got, fmt.Sprintf("%d:%t", e.Seq, e.Position > pos))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := "1:false 2:false 3:true"; strings.Join(got, " ") != want {
		t.Errorf("feed after reopen (seq:after the saved position): %q, want %q", got, want)
	}
}

func TestSecondOpenFailsQuickly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()

	start := time.Now()
	second, err := embedded.Open(dir)
	if err == nil {
		second.Close()
		t.Fatal("second Open of a directory in use succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("second Open took %v to fail", took)
	}
	want := fmt.Sprintf("data directory %s is in use by another statefun process (lock held on statefun.db); stop it or choose another --data-dir", dir)
	if err.Error() != want {
		t.Errorf("error:\n got %q\nwant %q", err, want)
	}
}

func TestBadFile(t *testing.T) {
	t.Parallel()
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rand.Uint32())
	}
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
		want  string
	}{
		{"Garbage", writeFile(garbage), "the file is not a statefun data file or is damaged"},
		{"ShortText", writeFile([]byte("not a database\n")), "the file is not a statefun data file or is damaged"},
		{"ZeroPages", writeFile(make([]byte, 16<<10)), "the file is not a statefun data file or is damaged"},
		{"AnotherProgram", writeBolt(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("their-data"))
			return err
		}), "the file was written by another program, not statefun"},
		{"FutureFormat", writeBolt(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			return meta.Put([]byte("format"), binary.BigEndian.AppendUint64(nil, 99))
		}), "the file has format version 99, written by a newer statefun; this binary reads formats up to 6: upgrade statefun"},
		{"DamagedFormat", writeBolt(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucket([]byte("meta"))
			if err != nil {
				return err
			}
			return meta.Put([]byte("format"), []byte{1})
		}), "format version is 1 bytes, want 8: the file is damaged"},
		{"DamagedPages", writeDamaged, "the data file is damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, embedded.FileName)
			tt.write(t, path)
			s, err := embedded.Open(dir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s and say %q", err, path, tt.want)
			}
			// A refused file is left as it was, and unlocked.
			if s, err := embedded.Open(dir); err == nil || strings.Contains(err.Error(), "in use") {
				t.Errorf("second Open: %v", err)
				if s != nil {
					s.Close()
				}
			}
		})
	}
}

// TestDamagedPageIsAnError damages pages that Open does not read: the
// store reports the damage instead of crashing the server.
func TestDamagedPageIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	s := open(t, dir, embedded.WithNoSync(true))
	ref := store.Ref{Type: "cart", ID: "c1"}
	var b store.Batch
	for seq := int64(1); seq <= 1000; seq++ {
		b.Events = append(b.Events, store.Event{Entity: ref, Seq: seq, EventType: "E", Payload: make([]byte, 100)})
	}
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Zero the leaves that hold the events: a page of zeros has no valid
	// page type.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	var leaves []int
	err = db.View(func(tx *bolt.Tx) error {
		for id := 0; ; id++ {
			info, err := tx.Page(id)
			if err != nil || info == nil {
				return err
			}
			if info.Type == "leaf" && info.Count >= 20 {
				leaves = append(leaves, id)
			}
		}
	})
	if closeErr := db.Close(); err != nil || closeErr != nil || len(leaves) == 0 {
		t.Fatalf("finding event pages: %v, %v, %d pages", err, closeErr, len(leaves))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range leaves {
		if _, err := f.WriteAt(make([]byte, pageSize), int64(id*pageSize)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, embedded.WithNoSync(true))
	defer s.Close()
	err = s.ReadEvents(ctx, ref, 0, func(store.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "the data file is damaged") {
		t.Errorf("ReadEvents of damaged pages: %v", err)
	}
	err = s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1001, EventType: "E"}}})
	if err == nil || !strings.Contains(err.Error(), "the data file is damaged") {
		t.Errorf("Commit onto damaged pages: %v", err)
	}
	// Entities on intact pages still work. (Not a value: its feed entry
	// would go to the feed bucket, whose leaves are damaged too.)
	other := store.Ref{Type: "order", ID: "o1"}
	if err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{{Entity: other, Key: "k", Expires: time.Now().Add(time.Hour)}}}); err != nil {
		t.Errorf("Commit of an entity on intact pages: %v", err)
	}
}

func writeFile(content []byte) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeDamaged writes a store whose meta pages are intact but whose other
// pages are garbage: bbolt panics on such a file.
func writeDamaged(t *testing.T, path string) {
	t.Helper()
	s := open(t, filepath.Dir(path), embedded.WithNoSync(true))
	ref := store.Ref{Type: "cart", ID: "c1"}
	var b store.Batch
	for seq := int64(1); seq <= 1000; seq++ {
		b.Events = append(b.Events, store.Event{Entity: ref, Seq: seq, EventType: "E", Payload: make([]byte, 100)})
	}
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const metaPages = 2 * 4096
	for i := metaPages; i < len(data); i++ {
		data[i] = byte(i*13 + 5)
	}
	writeFile(data)(t, path)
}

func writeBolt(fn func(*bolt.Tx) error) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPayloadsAreCopies reads after Close has unmapped the file: a payload
// still pointing into bbolt's memory would fault.
func TestPayloadsAreCopies(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), embedded.WithNoSync(true))
	ref := store.Ref{Type: "cart", ID: "c1"}
	// Larger than a page: bbolt copies tiny (inline) buckets out of the
	// file, which would hide a missing copy.
	payload := bytes.Repeat([]byte("p"), 8<<10)
	if err := s.Commit(ctx, &store.Batch{
		Events:   []store.Event{{Entity: ref, Seq: 1, EventType: "E", Payload: payload}},
		Values:   []store.Value{{Entity: ref, Version: 1, Payload: payload}},
		Outcomes: []store.Outcome{{Entity: ref, Key: "k", Reply: payload, Expires: time.Now().Add(time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 1, Payload: payload}); err != nil {
		t.Fatal(err)
	}
	var event, fed store.Event
	if err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error { event = e; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.ReadFeed(ctx, ref.Type, "", 1, func(e store.FeedEvent) error { fed = e.Event; return nil }); err != nil {
		t.Fatal(err)
	}
	value, _, err := s.LoadValue(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	snap, _, err := s.LatestSnapshot(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	outcome, _, err := s.LoadOutcome(ctx, ref, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"event": event.Payload, "feed event": fed.Payload, "value": value.Payload, "snapshot": snap.Payload, "outcome": outcome.Reply} {
		if !bytes.Equal(got, payload) {
			t.Errorf("%s payload after Close = %q", name, got)
		}
		got[0] = 'x' // bbolt maps its file read-only: this would fault.
	}
}

// TestCommitInsideReadEvents commits from inside the callback, growing the
// file past its current mapping. Were ReadEvents to hold its read
// transaction around fn, the commit would wait forever to remap the file.
func TestCommitInsideReadEvents(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), embedded.WithNoSync(true))
	defer s.Close()
	ref := store.Ref{Type: "cart", ID: "reader"}
	var b store.Batch
	for seq := int64(1); seq <= 2500; seq++ {
		b.Events = append(b.Events, store.Event{Entity: ref, Seq: seq, EventType: "E"})
	}
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	other := store.Ref{Type: "cart", ID: "writer"}
	big := make([]byte, 8<<20)
	seen := int64(0)
	err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error {
		seen++
		if e.Seq%1000 != 0 {
			return nil
		}
		return s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: other, Seq: e.Seq / 1000, EventType: "Big", Payload: big}}})
	})
	if err != nil || seen != 2500 {
		t.Fatalf("ReadEvents: %v after %d events", err, seen)
	}
}

// TestCommitInsideReadFeed is TestCommitInsideReadEvents for feeds.
func TestCommitInsideReadFeed(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), embedded.WithNoSync(true))
	defer s.Close()
	var b store.Batch
	for seq := int64(1); seq <= 2500; seq++ {
		b.Events = append(b.Events, store.Event{Entity: store.Ref{Type: "cart", ID: "reader"}, Seq: seq, EventType: "E"})
	}
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	other := store.Ref{Type: "order", ID: "writer"}
	big := make([]byte, 8<<20)
	seen := int64(0)
	err := s.ReadFeed(ctx, "cart", "", 5000, func(e store.FeedEvent) error {
		seen++
		if e.Seq%1000 != 0 {
			return nil
		}
		return s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: other, Seq: e.Seq / 1000, EventType: "Big", Payload: big}}})
	})
	if err != nil || seen != 2500 {
		t.Fatalf("ReadFeed: %v after %d events", err, seen)
	}
}

func TestOverlongEntityKey(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), embedded.WithNoSync(true))
	defer s.Close()
	long := store.Ref{Type: "cart", ID: strings.Repeat("k", 40<<10)}
	fine := store.Ref{Type: "cart", ID: "fine"}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{
		{Entity: fine, Seq: 1, EventType: "E"},
		{Entity: long, Seq: 1, EventType: "E"},
	}})
	var conflict *store.ConflictError
	if err == nil || errors.As(err, &conflict) || !strings.Contains(err.Error(), "use shorter entity IDs") {
		t.Fatalf("Commit of an overlong ID: %v, want an error that says to shorten it", err)
	}
	if err := s.ReadEvents(ctx, fine, 0, func(store.Event) error { return errors.New("written") }); err != nil {
		t.Errorf("the rest of a refused batch: %v", err)
	}
	if err := s.SaveSnapshot(ctx, store.Snapshot{Entity: long, Seq: 1}); err == nil {
		t.Error("SaveSnapshot of an overlong ID succeeded")
	}
	// An outcome's key counts against the limit too.
	nearly := store.Ref{Type: "cart", ID: strings.Repeat("k", 32<<10-40)}
	err = s.Commit(ctx, &store.Batch{
		Events:   []store.Event{{Entity: nearly, Seq: 1, EventType: "E"}},
		Outcomes: []store.Outcome{{Entity: nearly, Key: strings.Repeat("x", 256), Expires: time.Now().Add(time.Hour)}},
	})
	if err == nil || errors.As(err, &conflict) || !strings.Contains(err.Error(), "use shorter entity IDs or idempotency keys") {
		t.Fatalf("Commit of an overlong outcome key: %v, want an error that says to shorten it", err)
	}
	if err := s.ReadEvents(ctx, nearly, 0, func(store.Event) error { return errors.New("written") }); err != nil {
		t.Errorf("the events of a batch refused for its outcome: %v", err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ref := store.Ref{Type: "cart", ID: "c1"}
	errs := map[string]error{
		"Commit":               s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1}}}),
		"ReadEvents":           s.ReadEvents(ctx, ref, 0, func(store.Event) error { return nil }),
		"SaveSnapshot":         s.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 1}),
		"DeleteSnapshots":      s.DeleteSnapshots(ctx, "cart"),
		"ReadFeed":             s.ReadFeed(ctx, "cart", "", 1, func(store.FeedEvent) error { return nil }),
		"SaveConsumerPosition": s.SaveConsumerPosition(ctx, "c", "cart", ""),
	}
	_, _, errs["LatestSnapshot"] = s.LatestSnapshot(ctx, ref)
	_, _, errs["LoadValue"] = s.LoadValue(ctx, ref)
	_, errs["FeedHead"] = s.FeedHead(ctx, "cart")
	_, _, errs["LoadConsumerPosition"] = s.LoadConsumerPosition(ctx, "c", "cart")
	_, _, errs["LoadOutcome"] = s.LoadOutcome(ctx, ref, "k")
	_, errs["ExpireOutcomes"] = s.ExpireOutcomes(ctx, time.Now(), 1)
	for name, err := range errs {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want store.ErrClosed", name, err)
		}
	}
}

func TestCanceledCommitWritesNothing(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), embedded.WithNoSync(true))
	defer s.Close()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	ref := store.Ref{Type: "cart", ID: "c1"}
	err := s.Commit(canceled, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1}}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with a canceled context: %v", err)
	}
	// The store is local: it knows nothing was written.
	if errors.Is(err, store.ErrOutcomeUnknown) {
		t.Errorf("Commit with a canceled context: %v wraps store.ErrOutcomeUnknown", err)
	}
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1}}}); err != nil {
		t.Fatalf("seq 1 after a canceled commit: %v", err)
	}
}
