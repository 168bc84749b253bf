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
const formatVersion = 1

// Bucket names and the meta key. They are names on disk: never rename them.
var (
	metaBucket      = []byte("meta")
	eventsBucket    = []byte("events")
	valuesBucket    = []byte("values")
	snapshotsBucket = []byte("snapshots")

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
func eventKey(dst []byte, ref store.Ref, seq int64) []byte {
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
	if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
		return 0
	}
	return int64(binary.BigEndian.Uint64(k[len(prefix):]))
}

// errNotStatefun marks a bbolt file that some other program wrote.
var errNotStatefun = errors.New("no statefun meta bucket")

// initLayout creates the buckets of a new file, and checks the format
// version of an existing one.
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
	if v := binary.BigEndian.Uint64(raw); v != formatVersion {
		if v > formatVersion {
			return fmt.Errorf("the file has format version %d, written by a newer statefun; this binary reads only format %d: upgrade statefun", v, formatVersion)
		}
		return fmt.Errorf("the file has unknown format version %d (this binary reads format %d): the file is damaged; restore it from a backup", v, formatVersion)
	}
	for _, name := range [][]byte{eventsBucket, valuesBucket, snapshotsBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}
