// Package embedded is the store statefun uses when no database URL is
// configured: a single file in a local data directory, so a first run needs
// nothing installed and state survives a restart.
//
// # Why bbolt
//
// The file is a go.etcd.io/bbolt database: a copy-on-write B+tree in one
// memory-mapped file, in pure Go (no cgo, so the server stays one static
// binary). bbolt has one writer at a time and serialisable transactions,
// which is exactly the shape of the journal: the journal writer already
// batches everything pending into one Commit (group commit), and each
// Commit is one bbolt write transaction. There is no write-ahead log to
// replay and no background compaction to tune.
//
// # Durability
//
// Commit returns nil only after its transaction is on disk: bbolt writes the
// new pages, fdatasyncs, then writes the meta page that makes them live and
// fdatasyncs again. A crash before the second sync leaves the previous meta
// page in charge, so a batch is either wholly there after a restart or not
// at all. WithNoSync turns the syncs off, for tests only.
//
// # File layout
//
// dir/statefun.db holds fourteen buckets, and a fifteenth, views, once a
// view exists (its layout is in views.go). Entity types, IDs, keys and
// consumer names are arbitrary bytes, so every variable-length field
// that something follows is length-prefixed (uvarint) and no key can be
// read two ways:
//
//	meta            "format"                    → uint64 format version (5)
//	events          len‖type‖len‖id‖seq         → len‖event type‖payload
//	event-times     len‖type‖len‖id‖seq         → stored at (the event's commit time)
//	values          len‖type‖len‖id             → version‖payload
//	snapshots       len‖type‖len‖id             → seq‖payload
//	feed            len‖type‖n                  → len‖id‖seq (an event: its key after its type)
//	                                              or len‖id (a value: its key after its type)
//	feed-heads      len‖type                    → n of the type's newest feed entry
//	value-feed      len‖type‖len‖id             → n of the value's one entry in the feed
//	consumers       len‖consumer‖len‖type       → n the consumer has read up to
//	outcomes        len‖type‖len‖id‖key         → expires‖code‖len‖message‖reply
//	outcome-expiry  expires‖len‖type‖len‖id‖key → nothing (an index)
//	event-types     len‖type‖event type         → nothing (the registry of EventTypes)
//	timers          len‖type‖len‖id‖name        → due‖id‖shard‖attempts‖call
//	timer-due       due‖len‖type‖len‖id‖name    → nothing (an index)
//
// seq, version and n are big-endian uint64, so bbolt's byte order is
// numeric order and a cursor reads a history in seq order and a feed in n
// order. expires is microseconds since 1970 as a big-endian uint64 with
// its sign bit flipped, which sorts in time order: ExpireOutcomes reads
// the expiry index from its first key until it passes its cutoff, and
// Commit keeps the index and the outcomes in step. code is a uvarint.
// Only the newest snapshot of an entity is kept. Open refuses a file with
// a newer format version rather than misread it, and upgrades an older
// one in place, in one transaction, the first time a newer binary opens
// it: a format 1 file gets its feeds built from its events, and a file
// before format 3 gets the (empty) outcome buckets, and one before format
// 4 its event type registry, built from its events.
//
// # Event types
//
// Commit registers each (entity type, event type) pair of its events in
// the event-types bucket, inside its write transaction, so the registry
// and the journal cannot disagree after a crash: no event is stored
// under a type the registry lacks (INVARIANTS.md, invariant 9).
//
// # Feeds
//
// Commit numbers each event in the feed of its entity type, 1, 2, 3...,
// inside its write transaction. bbolt runs one write transaction at a
// time, so numbers are taken in commit order and a reader never sees
// number n before every number below it: a consumer that resumes after
// the last number it read cannot skip an event (INVARIANTS.md, invariant 10),
// and sees each event as soon as its Commit returns. A Position is the
// number in 16 hex digits.
//
// The feed of a key-value type holds one entry per value, numbered by the
// same counter in the same transactions: Commit deletes the value's entry
// (value-feed names it) and appends a new one, so the feed is compacted
// and a reader never misses an entity's latest value (valuefeed.go). The
// value-feed bucket was added without a new format version, as the views
// bucket was: Open creates it in a file that lacks it and adds the values
// already stored to the feeds, in the same transaction. An older binary
// still opens the file and ignores the bucket: a value it writes keeps
// its old entry or gets none, so a reader of the feed may miss it until a
// newer binary writes the entity again.
//
// # History
//
// Commit records the time of its events (microseconds since 1970, from the
// process clock) in the event-times bucket, under the events' own keys, for
// store.History (history.go). Like value-feed, the bucket came without a new
// format version: an older binary ignores it, and the events it writes, like
// those of a file from before the bucket, read with the zero time.
//
// # Outcomes
//
// An outcome commits in the same transaction as the rest of its batch.
// Commit refuses the batch (a *store.ConflictError) when an outcome's key
// is stored and has not expired by the process clock, and replaces one
// that has expired. The store is local: Commit knows whether its
// transaction committed and never returns store.ErrOutcomeUnknown.
//
// bbolt locks the file, so a second process opening the same directory gets
// an error after a short wait instead of corrupting it.
//
// # Damage
//
// bbolt panics when it meets a damaged page. The store turns such panics
// into errors that name the file and say to restore it, so a bad disk
// fails the entities it touches instead of crashing the server. (Damage
// that makes bbolt read outside its memory map is a fault no Go code can
// recover from.)
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/statefun-go/statefun/runtime/store"
)

// FileName is the name of the database file inside the data directory.
const FileName = "statefun.db"

// lockTimeout bounds the wait for the file lock: long enough to ride out a
// previous process that is still exiting, short enough that a second
// server on the same directory fails at once with a clear message.
const lockTimeout = time.Second

// ReadEvents copies events out in chunks of at most this many events or
// bytes (whichever comes first, and at least one event), one read
// transaction per chunk. It calls fn outside any transaction: a long-lived
// read transaction pins the pages it sees, so the file could only grow
// while it is open, and a callback that commits to the same store would
// deadlock against it when the commit needs to remap the file.
const (
	readChunkEvents = 1000
	readChunkBytes  = 4 << 20
)

// Store is a store.Store kept in one bbolt file.
type Store struct {
	db     *bolt.DB
	path   string
	closed atomic.Bool
	// views are the view versions loaded since Open (views.go).
	views storeViews
}

var _ store.Store = (*Store)(nil)

// Open opens the store in dir, creating the directory (mode 0700) and the
// file if needed. It fails quickly if another process has the directory
// open.
func Open(dir string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w; check its permissions or choose another --data-dir", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := openFile(path, o)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("data directory %s is in use by another statefun process (lock held on %s); stop it or choose another --data-dir", dir, FileName)
		}
		return nil, err
	}
	return &Store{db: db, path: path, views: storeViews{views: map[viewKey]*loadedView{}}}, nil
}

// openFile opens the bbolt file and checks its layout.
func openFile(path string, o options) (db *bolt.DB, err error) {
	// bbolt panics on some damaged files instead of returning an error.
	// A panic inside bolt.Open leaves the file open and locked, so keep
	// hold of it to release the lock (its memory map leaks, but Open
	// failed: the process is about to exit).
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			} else if file != nil {
				unlock(file)
				_ = file.Close()
			}
			db, err = nil, damaged(path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		NoSync:  o.noSync,
		// The hashmap freelist keeps commits fast as the file grows and
		// frees pages (it is what etcd uses).
		FreelistType: bolt.FreelistMapType,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open %s: %w: the file is not a statefun data file or is damaged; move it aside (or restore a backup) or choose another --data-dir", path, err)
	case err != nil:
		return nil, fmt.Errorf("open data file: %w; check the permissions of its directory or choose another --data-dir", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := initLayout(tx); err != nil {
			return err
		}
		if err := initEventTimes(tx); err != nil {
			return err
		}
		return initValueFeeds(tx)
	}); err != nil {
		_ = db.Close()
		if errors.Is(err, errNotStatefun) {
			return nil, fmt.Errorf("open %s: the file was written by another program, not statefun; move it aside or choose another --data-dir", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// errDamaged marks errors from a damaged file.
var errDamaged = errors.New("the data file is damaged")

func damaged(path string, panicValue any) error {
	return fmt.Errorf("%s: %w (%v); stop statefun and restore it from a backup, or move it aside to start empty", path, errDamaged, panicValue)
}

// view and update run a bbolt transaction. bbolt panics when it meets a
// damaged page; by the time the panic reaches here it has rolled the
// transaction back, so the store can report the damage as an error and go
// on serving the entities whose pages are intact.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer s.recoverDamage(&err)
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer s.recoverDamage(&err)
	return s.db.Update(fn)
}

func (s *Store) recoverDamage(err *error) {
	if r := recover(); r != nil {
		*err = damaged(s.path, r)
	}
}

// check reports whether a call may go ahead.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// txError turns the error of a transaction into the one a caller sees.
// what is a func so that the hot path, where err is nil, formats nothing.
func (s *Store) txError(err error, what func() string) error {
	var conflict *store.ConflictError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		// Close won the race with a call that had already checked.
		return store.ErrClosed
	case errors.As(err, &conflict), errors.Is(err, errDamaged), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		return fmt.Errorf("%s in %s: %w", what(), s.path, err)
	}
}

// errSingleNode refuses a write fenced by a cluster lease: the embedded
// store is one process's file and cannot coordinate a cluster.
var errSingleNode = errors.New("the embedded store is single-node and holds no cluster leases; use Postgres to run a cluster")

// Commit implements store.Store. The whole batch is one write transaction,
// checked in full before anything is written.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if b.Fence != nil {
		return errSingleNode
	}
	if b.Len() == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		// The wait for bbolt's writer lock can be long under load: a batch
		// whose caller gave up meanwhile is not written.
		if err := ctx.Err(); err != nil {
			return err
		}
		events, values := tx.Bucket(eventsBucket), tx.Bucket(valuesBucket)
		now := time.Now()
		eventKeys, valueKeys, outcomeWrites, err := checkBatch(tx, b, now)
		if err != nil {
			return err
		}
		for i, e := range b.Events {
			if err := events.Put(eventKeys[i], eventValue(e.EventType, e.Payload)); err != nil {
				return fmt.Errorf("write event %d of %s: %w", e.Seq, e.Entity, err)
			}
		}
		if err := writeEventTimes(tx, eventKeys, now); err != nil {
			return err
		}
		for i, v := range b.Values {
			if err := values.Put(valueKeys[i], versionedValue(v.Version, v.Payload)); err != nil {
				return fmt.Errorf("write version %d of %s: %w", v.Version, v.Entity, err)
			}
		}
		if err := writeOutcomes(tx, b.Outcomes, outcomeWrites); err != nil {
			return err
		}
		if err := registerEventTypes(tx, b.Events); err != nil {
			return err
		}
		if err := writeTimerChanges(tx, b.Timers); err != nil {
			return err
		}
		return appendToFeeds(tx, b, eventKeys, valueKeys)
	})
	return s.txError(err, func() string {
		return fmt.Sprintf("commit %d events, %d values and %d outcomes", len(b.Events), len(b.Values), len(b.Outcomes))
	})
}

// checkBatch checks the batch against the stored history and outcomes at
// now, and returns the keys to write, or a *store.ConflictError naming
// every entity whose history is not what the batch expects or whose
// outcome key is answered already.
func checkBatch(tx *bolt.Tx, b *store.Batch, now time.Time) (eventKeys, valueKeys [][]byte, outcomes []outcomeWrite, err error) {
	events, values := tx.Bucket(eventsBucket), tx.Bucket(valuesBucket)
	var conflicts []store.Ref
	conflicted := map[store.Ref]bool{}
	conflict := func(ref store.Ref) {
		if !conflicted[ref] {
			conflicted[ref] = true
			conflicts = append(conflicts, ref)
		}
	}

	eventKeys = make([][]byte, len(b.Events))
	next := map[store.Ref]int64{}
	for i, e := range b.Events {
		key := eventKey(nil, e.Entity, e.Seq)
		if err := checkKeySize(e.Entity, key[:len(key)-8]); err != nil {
			return nil, nil, nil, err
		}
		eventKeys[i] = key
		want, ok := next[e.Entity]
		if !ok {
			want = lastSeq(events, key[:len(key)-8]) + 1
		}
		if e.Seq != want {
			conflict(e.Entity)
		}
		next[e.Entity] = e.Seq + 1
	}

	valueKeys = make([][]byte, len(b.Values))
	versions := map[store.Ref]int64{}
	for i, v := range b.Values {
		key := entityKey(nil, v.Entity)
		if err := checkKeySize(v.Entity, key); err != nil {
			return nil, nil, nil, err
		}
		valueKeys[i] = key
		cur, ok := versions[v.Entity]
		if !ok {
			if stored := values.Get(key); stored != nil {
				if cur, _, err = decodeVersioned("value", v.Entity, stored); err != nil {
					return nil, nil, nil, err
				}
			}
		}
		if v.Version != cur+1 {
			conflict(v.Entity)
		}
		versions[v.Entity] = v.Version
	}

	outcomes, err = checkOutcomes(tx.Bucket(outcomesBucket), b, now, conflict)
	if err != nil {
		return nil, nil, nil, err
	}

	if len(conflicts) > 0 {
		return nil, nil, nil, &store.ConflictError{Entities: conflicts}
	}
	return eventKeys, valueKeys, outcomes, nil
}

// ReadEvents implements store.Store.
func (s *Store) ReadEvents(ctx context.Context, ref store.Ref, afterSeq int64, fn func(store.Event) error) error {
	afterSeq = max(afterSeq, 0)
	prefix := entityKey(nil, ref)
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		if afterSeq == math.MaxInt64 {
			return nil
		}
		var chunk []store.Event
		var more bool
		err := s.view(func(tx *bolt.Tx) error {
			var err error
			chunk, more, err = readChunk(tx.Bucket(eventsBucket), ref, prefix, afterSeq)
			return err
		})
		if err := s.txError(err, func() string { return fmt.Sprintf("read events of %s", ref) }); err != nil {
			return err
		}
		for _, e := range chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		afterSeq = chunk[len(chunk)-1].Seq
	}
}

// readChunk copies out the next events of the entity whose entityKey is
// prefix, after afterSeq. more reports that it stopped at a limit rather
// than at the end of the history.
func readChunk(events *bolt.Bucket, ref store.Ref, prefix []byte, afterSeq int64) (chunk []store.Event, more bool, err error) {
	c := events.Cursor()
	size := 0
	for k, v := c.Seek(eventKey(nil, ref, afterSeq+1)); k != nil; k, v = c.Next() {
		// Keys are prefix-free, so the first key without the prefix is
		// past the end of this entity's history.
		if !bytes.HasPrefix(k, prefix) {
			return chunk, false, nil
		}
		if len(k) != len(prefix)+8 {
			continue // not an event key; skipped as lastSeq skips it
		}
		if len(chunk) == readChunkEvents || size >= readChunkBytes {
			return chunk, true, nil
		}
		e, err := decodeEvent(ref, k, v)
		if err != nil {
			return nil, false, err
		}
		chunk = append(chunk, e)
		size += len(e.Payload)
	}
	return chunk, false, nil
}

// LatestSnapshot implements store.Store.
func (s *Store) LatestSnapshot(ctx context.Context, ref store.Ref) (store.Snapshot, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Snapshot{}, false, err
	}
	snap := store.Snapshot{Entity: ref}
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		stored := tx.Bucket(snapshotsBucket).Get(entityKey(nil, ref))
		if stored == nil {
			return nil
		}
		found = true
		var err error
		snap.Seq, snap.Payload, err = decodeVersioned("snapshot", ref, stored)
		return err
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("read snapshot of %s", ref) }); err != nil {
		return store.Snapshot{}, false, err
	}
	return snap, found, nil
}

// SaveSnapshot implements store.Store. It keeps only the newest snapshot of
// an entity: recovery never needs an older one.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if snap.Fence != nil {
		return errSingleNode
	}
	key := entityKey(nil, snap.Entity)
	if err := checkKeySize(snap.Entity, key); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		snapshots := tx.Bucket(snapshotsBucket)
		if stored := snapshots.Get(key); stored != nil {
			seq, _, err := decodeVersioned("snapshot", snap.Entity, stored)
			if err != nil {
				return err
			}
			if seq >= snap.Seq {
				return nil
			}
		}
		return snapshots.Put(key, versionedValue(snap.Seq, snap.Payload))
	})
	return s.txError(err, func() string { return fmt.Sprintf("save snapshot %d of %s", snap.Seq, snap.Entity) })
}

// DeleteSnapshots implements store.Store.
func (s *Store) DeleteSnapshots(ctx context.Context, entityType string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	prefix := typePrefix(nil, entityType)
	err := s.update(func(tx *bolt.Tx) error {
		snapshots := tx.Bucket(snapshotsBucket)
		// Collect first, then delete: deleting under a live cursor can make
		// bbolt's Next skip the key after the deleted one.
		var keys [][]byte
		c := snapshots.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := snapshots.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return s.txError(err, func() string { return fmt.Sprintf("delete snapshots of %q", entityType) })
}

// EventTypes implements store.Store: one read of the registry bucket.
func (s *Store) EventTypes(ctx context.Context) (map[string][]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	types := map[string][]string{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(eventTypesBucket).ForEach(func(k, _ []byte) error {
			size := typePrefixSize(k)
			if size == 0 {
				return fmt.Errorf("event type key %x is damaged; restore the data directory from a backup", k)
			}
			_, lenSize := binary.Uvarint(k)
			entityType := string(k[lenSize:size])
			// Keys sort by entity type, then by event type: each list
			// comes out sorted.
			types[entityType] = append(types[entityType], string(k[size:]))
			return nil
		})
	})
	if err := s.txError(err, func() string { return "read the event types" }); err != nil {
		return nil, err
	}
	return types, nil
}

// LoadValue implements store.Store.
func (s *Store) LoadValue(ctx context.Context, ref store.Ref) (store.Value, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Value{}, false, err
	}
	v := store.Value{Entity: ref}
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		stored := tx.Bucket(valuesBucket).Get(entityKey(nil, ref))
		if stored == nil {
			return nil
		}
		found = true
		var err error
		v.Version, v.Payload, err = decodeVersioned("value", ref, stored)
		return err
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("read value of %s", ref) }); err != nil {
		return store.Value{}, false, err
	}
	return v, found, nil
}

// Close implements store.Store. It waits for transactions in flight, then
// releases the file and its lock. Closing twice is a no-op.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}
