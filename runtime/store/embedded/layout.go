package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// formatVersion is the version of the layout below, kept in the meta
// bucket. Bump it whenever a change would make an older binary misread the
// file, and teach Open to migrate the older versions it still accepts.
//
//  1. events, values, snapshots.
//  2. feeds and consumer positions. Open builds the feeds of a version 1
//     file from its events.
//  3. outcomes of idempotency keys and their expiry index. Open adds the
//     empty buckets to an older file. An older binary must not open a
//     file with outcomes: it would not consult them, and would run again
//     a command whose answer is stored.
//  4. the registry of event types per entity type (EventTypes). Open
//     builds it from the events of an older file. An older binary must
//     not open a file with a registry: it would store events without
//     registering their types, and the startup check that reads the
//     registry would miss them.
//  5. pending timers and their due index. Open adds the empty buckets to
//     an older file. An older binary must not open a file with timers: it
//     would never fire them.
//  6. value feeds: values take places in their type's feed, and the
//     value-feed bucket points at each entity's one entry. Open fills them
//     from the stored values of an older file (initValueFeeds). An older
//     binary must not open a file with value feeds: it would write values
//     without feed entries, which views of key-value entities would miss.
const formatVersion = 6

// Bucket names and the meta key. They are names on disk: never rename them.
var (
	metaBucket      = []byte("meta")
	eventsBucket    = []byte("events")
	valuesBucket    = []byte("values")
	snapshotsBucket = []byte("snapshots")
	feedBucket      = []byte("feed")
	feedHeadsBucket = []byte("feed-heads")
	consumersBucket = []byte("consumers")
	outcomesBucket  = []byte("outcomes")
	// outcomeExpiryBucket is the expiry index of the outcomes.
	outcomeExpiryBucket = []byte("outcome-expiry")
	eventTypesBucket    = []byte("event-types")
	timersBucket        = []byte("timers")
	// timerDueBucket is the due index of the timers.
	timerDueBucket = []byte("timer-due")

	formatKey = []byte("format")
)

// typePrefix encodes an entity type as uvarint(len(type)) ‖ type. The
// length prefix makes the encoding prefix-free: no type's prefix is a
// prefix of another's, whatever bytes (NUL included) the names hold, so a
// prefix scan finds exactly one entity type.
func typePrefix(dst []byte, entityType string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(entityType)))
	return append(dst, entityType...)
}

// entityKey encodes a Ref as typePrefix ‖ uvarint(len(id)) ‖ id: again
// prefix-free, so the keys of one entity's events are exactly the keys that
// start with its entityKey.
func entityKey(dst []byte, ref store.Ref) []byte {
	dst = typePrefix(dst, ref.Type)
	dst = binary.AppendUvarint(dst, uint64(len(ref.ID)))
	return append(dst, ref.ID...)
}

// maxEntityKey is the longest entityKey: bbolt's key limit, less the seq
// that follows it in an event key. Values and snapshots share the limit so
// that every kind of entity accepts the same IDs.
const maxEntityKey = bolt.MaxKeySize - 8

// checkKeySize rejects an entity whose key bbolt could not store, before
// anything of its batch is written.
func checkKeySize(ref store.Ref, key []byte) error {
	if len(key) <= maxEntityKey {
		return nil
	}
	return fmt.Errorf("entity %.40q… of type %.40q: its type and ID take %d bytes, over the embedded store's limit of %d; use shorter entity IDs",
		ref.ID, ref.Type, len(key), maxEntityKey)
}

// eventKey is entityKey ‖ big-endian uint64 seq. Big-endian makes bbolt's
// byte order the numeric order, so a cursor walks a history in seq order.
func eventKey(dst []byte, ref store.Ref, seq int64) []byte { //nolint:unparam // dst keeps the append form of typePrefix and entityKey
	dst = entityKey(dst, ref)
	return binary.BigEndian.AppendUint64(dst, uint64(seq))
}

// eventValue is uvarint(len(eventType)) ‖ eventType ‖ payload.
func eventValue(eventType string, payload []byte) []byte {
	v := make([]byte, 0, binary.MaxVarintLen64+len(eventType)+len(payload))
	v = binary.AppendUvarint(v, uint64(len(eventType)))
	v = append(v, eventType...)
	return append(v, payload...)
}

// decodeEvent copies an event out of bbolt's memory, which is only valid
// inside the transaction that read it.
func decodeEvent(ref store.Ref, key, value []byte) (store.Event, error) {
	seq := int64(binary.BigEndian.Uint64(key[len(key)-8:]))
	n, size := binary.Uvarint(value)
	if size <= 0 || n > uint64(len(value)-size) {
		return store.Event{}, fmt.Errorf("event %d of %s is damaged: bad event type length; restore the data directory from a backup", seq, ref)
	}
	rest := value[size:]
	return store.Event{
		Entity:    ref,
		Seq:       seq,
		EventType: string(rest[:n]),
		Payload:   bytes.Clone(rest[n:]),
	}, nil
}

// versionedValue is a big-endian uint64 (a value's version or a
// snapshot's seq) ‖ payload.
func versionedValue(version int64, payload []byte) []byte {
	v := make([]byte, 0, 8+len(payload))
	v = binary.BigEndian.AppendUint64(v, uint64(version))
	return append(v, payload...)
}

// decodeVersioned splits a versionedValue, copying the payload out of
// bbolt's memory.
func decodeVersioned(what string, ref store.Ref, value []byte) (int64, []byte, error) {
	if len(value) < 8 {
		return 0, nil, fmt.Errorf("%s of %s is damaged: %d bytes, shorter than its version; restore the data directory from a backup", what, ref, len(value))
	}
	return int64(binary.BigEndian.Uint64(value)), bytes.Clone(value[8:]), nil
}

// lastSeq returns the seq of the newest stored event of the entity whose
// entityKey is prefix, 0 if it has none.
func lastSeq(events *bolt.Bucket, prefix []byte) int64 {
	c := events.Cursor()
	// Every key of the entity sorts below prefix ‖ MaxUint64 (seqs are
	// int64), so the key before the first one at or past it is the newest.
	k, _ := c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), math.MaxUint64))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	// Walk back past keys that start like the entity's event keys but are
	// not (statefun writes none: a damaged or foreign record), so that
	// such a key cannot hide the head of the history from the fence.
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
		if len(k) == len(prefix)+8 {
			return int64(binary.BigEndian.Uint64(k[len(prefix):]))
		}
	}
	return 0
}

// errNotStatefun marks a bbolt file that some other program wrote.
var errNotStatefun = errors.New("no statefun meta bucket")

// initLayout creates the buckets of a new file, and checks the format
// version of an existing one, upgrading an older format it still reads.
func initLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		// A file with buckets but no meta bucket belongs to another program:
		// adding ours to it would mix two programs' data in one file.
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return errNotStatefun }); err != nil {
			return err
		}
		var err error
		if meta, err = tx.CreateBucket(metaBucket); err != nil {
			return err
		}
		if err := meta.Put(formatKey, binary.BigEndian.AppendUint64(nil, formatVersion)); err != nil {
			return err
		}
	}
	raw := meta.Get(formatKey)
	if len(raw) != 8 {
		return fmt.Errorf("format version is %d bytes, want 8: the file is damaged; restore it from a backup", len(raw))
	}
	version := binary.BigEndian.Uint64(raw)
	switch {
	case version > formatVersion:
		return fmt.Errorf("the file has format version %d, written by a newer statefun; this binary reads formats up to %d: upgrade statefun", version, formatVersion)
	case version < 1:
		return fmt.Errorf("the file has unknown format version %d (this binary reads formats 1 to %d): the file is damaged; restore it from a backup", version, formatVersion)
	}
	// Creating the buckets a format lacks is the whole upgrade from 2 to
	// 3 and from 4 to 5, and part of the upgrades from 1 and to 4.
	for _, name := range [][]byte{eventsBucket, valuesBucket, snapshotsBucket, feedBucket, feedHeadsBucket, consumersBucket, outcomesBucket, outcomeExpiryBucket, eventTypesBucket, timersBucket, timerDueBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if version == 1 {
		if err := buildFeeds(tx); err != nil {
			return fmt.Errorf("upgrade the file from format 1 to 2: %w", err)
		}
	}
	if version < 4 {
		if err := buildEventTypes(tx); err != nil {
			return fmt.Errorf("upgrade the file from format %d to 4: %w", version, err)
		}
	}
	if version < formatVersion {
		if err := meta.Put(formatKey, binary.BigEndian.AppendUint64(nil, formatVersion)); err != nil {
			return err
		}
	}
	return nil
}

// buildFeeds fills the feeds of a file written in format 1, which had
// none, from its events. The order they were committed in is not on
// disk, so each type's feed lists its entities one after the other, each
// history in seq order: a valid feed order, as it keeps every entity's
// events in seq order. It runs in the transaction that opens the file, so
// a crash leaves the file in format 1, to be upgraded on the next open.
func buildFeeds(tx *bolt.Tx) error {
	feed, heads := tx.Bucket(feedBucket), tx.Bucket(feedHeadsBucket)
	var prefix []byte
	var n uint64
	saveHead := func() error {
		if prefix == nil {
			return nil
		}
		return heads.Put(prefix, binary.BigEndian.AppendUint64(nil, n))
	}
	c := tx.Bucket(eventsBucket).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		size := typePrefixSize(k)
		if size == 0 || len(k) < size+8 {
			return fmt.Errorf("event key %x is damaged; restore the data directory from a backup", k)
		}
		// Keys are sorted and type prefixes are prefix-free, so each
		// type's events are one run of keys.
		if !bytes.Equal(k[:size], prefix) {
			if err := saveHead(); err != nil {
				return err
			}
			prefix, n = bytes.Clone(k[:size]), 0
		}
		n++
		// Clone what bbolt keeps until the commit: k points into the
		// memory map, which the commit may replace.
		if err := feed.Put(feedKey(prefix, n), bytes.Clone(k[size:])); err != nil {
			return err
		}
	}
	return saveHead()
}

// buildEventTypes fills the event type registry of a file written before
// format 4 from its events: one scan of the journal, once, in the
// transaction that opens the file (a crash leaves the file in its old
// format, to be upgraded on the next open). Later, Commit registers the
// types of the events it writes in their own transaction.
func buildEventTypes(tx *bolt.Tx) error {
	registry := tx.Bucket(eventTypesBucket)
	c := tx.Bucket(eventsBucket).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		size := typePrefixSize(k)
		if size == 0 || len(k) < size+8 {
			return fmt.Errorf("event key %x is damaged; restore the data directory from a backup", k)
		}
		n, lenSize := binary.Uvarint(v)
		if lenSize <= 0 || n > uint64(len(v)-lenSize) {
			return fmt.Errorf("event %x is damaged: bad event type length; restore the data directory from a backup", k)
		}
		// k and v point into the memory map, which the commit may
		// replace, and Put keeps its key until then: build a fresh one.
		key := append(bytes.Clone(k[:size]), v[lenSize:lenSize+int(n)]...)
		if registry.Get(key) == nil {
			if err := registry.Put(key, []byte{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// eventTypeKey is typePrefix ‖ event type, the key of a pair in the event
// type registry; the value is empty. The type prefix is prefix-free, so
// the rest of the key is the event type, and the keys of one entity type
// are those that start with its typePrefix.
func eventTypeKey(entityType, eventType string) []byte {
	k := make([]byte, 0, binary.MaxVarintLen64+len(entityType)+len(eventType))
	k = typePrefix(k, entityType)
	return append(k, eventType...)
}

// registerEventTypes records in the registry the event types of events
// that it lacks, inside the transaction that writes them. There is no
// cache in memory (the Postgres store has one): a lookup walks bbolt's
// B+tree in the memory map, cheap next to the writes of the same
// transaction, and looking before putting keeps a registered pair from
// dirtying its page.
func registerEventTypes(tx *bolt.Tx, events []store.Event) error {
	registry := tx.Bucket(eventTypesBucket)
	for i, e := range events {
		if i > 0 && e.Entity.Type == events[i-1].Entity.Type && e.EventType == events[i-1].EventType {
			continue // an entity's events often share a type
		}
		key := eventTypeKey(e.Entity.Type, e.EventType)
		if registry.Get(key) != nil {
			continue
		}
		if err := registry.Put(key, []byte{}); err != nil {
			return fmt.Errorf("register event type %q of %q: %w", e.EventType, e.Entity.Type, err)
		}
	}
	return nil
}

// typePrefixSize returns the length of the typePrefix that key starts
// with, or 0 if it does not start with one.
func typePrefixSize(key []byte) int {
	n, size := binary.Uvarint(key)
	if size <= 0 || n > uint64(len(key)-size) {
		return 0
	}
	return size + int(n)
}

// feedKey is typePrefix ‖ big-endian uint64 n, the key of the nth event
// in the feed of a type. The value is the event's key without its
// typePrefix: uvarint(len(id)) ‖ id ‖ seq.
func feedKey(prefix []byte, n uint64) []byte {
	k := make([]byte, 0, len(prefix)+8)
	k = append(k, prefix...)
	return binary.BigEndian.AppendUint64(k, n)
}

// consumerKey is uvarint(len(consumer)) ‖ consumer ‖ typePrefix, the key
// of a consumer's position in the feed of a type.
func consumerKey(consumer, entityType string) []byte {
	k := binary.AppendUvarint(nil, uint64(len(consumer)))
	k = append(k, consumer...)
	return typePrefix(k, entityType)
}
