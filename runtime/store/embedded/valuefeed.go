package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// The feed of a key-value entity type (store.Feed) shares the feed and
// feed-heads buckets with the events: its entries take numbers from the
// same counter, in the same write transactions, so they are in commit
// order for the same reason (see appendToFeeds). An entry of a value is
// the value's key after its typePrefix, uvarint(len(id)) ‖ id: unlike an
// event's, no seq follows the ID, which is how readFeedChunk tells the
// two apart, and it reads the value itself from the values bucket.
//
// The feed is compacted: valueFeedBucket maps each value's key to the
// number of its one entry, and a write of the value deletes that entry
// and appends a new one. A reader that had passed the old number so
// meets the entity again, with its new value; one that had not reached it
// meets only the new value.
//
// valueFeedBucket is a name on disk: never rename it.
var valueFeedBucket = []byte("value-feed")

// initValueFeeds creates valueFeedBucket in a file that lacks it, inside
// the transaction that opens the file, and fills the feeds with the
// values already stored, which were written before feeds of values
// existed: one entry per value, after the type's entries so far. A crash
// leaves the file without the bucket, to be filled on the next open.
//
// The file's format version stays: an older binary ignores the bucket
// (but its value writes do not reach the feed; see the package doc).
func initValueFeeds(tx *bolt.Tx) error {
	if tx.Bucket(valueFeedBucket) != nil {
		return nil
	}
	valueFeed, err := tx.CreateBucket(valueFeedBucket)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", valueFeedBucket, err)
	}
	feeds := newFeedTails(tx)
	c := tx.Bucket(valuesBucket).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		size := typePrefixSize(k)
		if size == 0 {
			return fmt.Errorf("value key %x is damaged; restore the data directory from a backup", k)
		}
		// k points into the memory map, which the commit may replace, and
		// Put keeps its key until then: clone it.
		key := bytes.Clone(k)
		_, lenSize := binary.Uvarint(key)
		t, err := feeds.tail(string(key[lenSize:size]))
		if err != nil {
			return err
		}
		if err := feeds.appendValue(valueFeed, t, key); err != nil {
			return fmt.Errorf("add a stored value to its feed: %w", err)
		}
	}
	return feeds.saveHeads()
}

// feedTails are the feeds a write transaction appends to: the number of
// each one's newest entry, read from feed-heads at its first use and
// written back by saveHeads.
type feedTails struct {
	feed, heads *bolt.Bucket
	tails       map[string]*feedTail // by entity type
	order       []*feedTail          // to write the heads in a fixed order
}

type feedTail struct {
	prefix []byte // the type's typePrefix
	last   uint64
}

func newFeedTails(tx *bolt.Tx) *feedTails {
	return &feedTails{feed: tx.Bucket(feedBucket), heads: tx.Bucket(feedHeadsBucket), tails: map[string]*feedTail{}}
}

// tail returns the feed of entityType.
func (f *feedTails) tail(entityType string) (*feedTail, error) {
	if t := f.tails[entityType]; t != nil {
		return t, nil
	}
	t := &feedTail{prefix: typePrefix(nil, entityType)}
	if stored := f.heads.Get(t.prefix); stored != nil {
		if len(stored) != 8 {
			return nil, fmt.Errorf("feed head of %q is damaged: %d bytes, want 8; restore the data directory from a backup", entityType, len(stored))
		}
		t.last = binary.BigEndian.Uint64(stored)
	}
	f.tails[entityType] = t
	f.order = append(f.order, t)
	return t, nil
}

// appendValue moves the value whose key (its entityKey) is key to the end
// of its type's feed t: it deletes the value's entry, if it has one, and
// appends a new one.
func (f *feedTails) appendValue(valueFeed *bolt.Bucket, t *feedTail, key []byte) error {
	if stored := valueFeed.Get(key); stored != nil {
		if len(stored) != 8 {
			return fmt.Errorf("feed entry of value %x is damaged: %d bytes, want 8; restore the data directory from a backup", key, len(stored))
		}
		if err := f.feed.Delete(feedKey(t.prefix, binary.BigEndian.Uint64(stored))); err != nil {
			return err
		}
	}
	t.last++
	if err := f.feed.Put(feedKey(t.prefix, t.last), key[len(t.prefix):]); err != nil {
		return err
	}
	return valueFeed.Put(key, binary.BigEndian.AppendUint64(nil, t.last))
}

// saveHeads writes the number of each feed's newest entry.
func (f *feedTails) saveHeads() error {
	for _, t := range f.order {
		if err := f.heads.Put(t.prefix, binary.BigEndian.AppendUint64(nil, t.last)); err != nil {
			return fmt.Errorf("write a feed head: %w", err)
		}
	}
	return nil
}

// decodeFeedEntry reads the value of a feed entry: the key of an event
// or of a value without its typePrefix. For an event it is
// uvarint(len(id)) ‖ id ‖ seq, for a value uvarint(len(id)) ‖ id.
func decodeFeedEntry(entityType string, v []byte) (ref store.Ref, isValue, ok bool) {
	n, size := binary.Uvarint(v)
	if size <= 0 || n > uint64(len(v)-size) {
		return store.Ref{}, false, false
	}
	switch uint64(len(v)-size) - n {
	case 8:
	case 0:
		isValue = true
	default:
		return store.Ref{}, false, false
	}
	return store.Ref{Type: entityType, ID: string(v[size : size+int(n)])}, isValue, true
}

// decodeFeedValue copies the value of the feed entry numbered n out of
// bbolt's memory, as a FeedEvent without its Position.
func decodeFeedValue(ref store.Ref, n uint64, stored []byte) (store.Event, error) {
	if stored == nil {
		return store.Event{}, fmt.Errorf("value %d of the feed of %q is missing; restore the data directory from a backup", n, ref.Type)
	}
	version, payload, err := decodeVersioned("value", ref, stored)
	if err != nil {
		return store.Event{}, err
	}
	return store.Event{Entity: ref, Seq: version, EventType: store.ValueEventType, Payload: payload}, nil
}
