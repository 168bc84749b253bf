package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// eventTimesBucket maps the key of each event to the time its commit
// stored it (store.History): microseconds since 1970, a big-endian
// uint64. It sits beside the events bucket rather than in the event
// records so that the layout of the journal, which every load reads,
// stays as it was: an older binary opens the file, reads events as it
// always did, and ignores the bucket. Its commits record no times, so
// their events, and those of a file written before the bucket existed,
// read with the zero time. No format version marks the bucket for that
// reason, as none marks the value-feed or views buckets.
//
// eventTimesBucket is a name on disk: never rename it.
var eventTimesBucket = []byte("event-times")

var _ store.History = (*Store)(nil)

// initEventTimes creates eventTimesBucket in a file that lacks it, in the
// transaction that opens the file. Events already stored get no time:
// when they were committed is not on disk.
func initEventTimes(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(eventTimesBucket); err != nil {
		return fmt.Errorf("create bucket %s: %w", eventTimesBucket, err)
	}
	return nil
}

// writeEventTimes records now as the time of every event of a commit,
// under the keys the commit wrote the events at.
func writeEventTimes(tx *bolt.Tx, eventKeys [][]byte, now time.Time) error {
	if len(eventKeys) == 0 {
		return nil
	}
	times := tx.Bucket(eventTimesBucket)
	// One value for all: bbolt keeps it until the commit, and nobody
	// changes it.
	stamp := binary.BigEndian.AppendUint64(nil, uint64(now.UnixMicro()))
	for _, k := range eventKeys {
		if err := times.Put(k, stamp); err != nil {
			return fmt.Errorf("record the time of event %x: %w", k, err)
		}
	}
	return nil
}

// ReadHistory implements store.History: one read transaction that walks
// the entity's events from afterSeq and looks up each one's time.
func (s *Store) ReadHistory(ctx context.Context, ref store.Ref, afterSeq int64, limit int) ([]store.HistoryEvent, error) {
	if limit < 1 {
		return nil, fmt.Errorf("read the history of %s: limit %d; ask for at least one event", ref, limit)
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	prefix := entityKey(nil, ref)
	var page []store.HistoryEvent
	err := s.view(func(tx *bolt.Tx) error {
		times := tx.Bucket(eventTimesBucket)
		c := tx.Bucket(eventsBucket).Cursor()
		for k, v := c.Seek(eventKey(nil, ref, max(afterSeq, 0)+1)); k != nil && len(page) < limit; k, v = c.Next() {
			if !bytes.HasPrefix(k, prefix) {
				return nil // past the entity's history: keys are prefix-free
			}
			if len(k) != len(prefix)+8 {
				continue // not an event key; skipped as readChunk skips it
			}
			e, err := decodeEvent(ref, k, v)
			if err != nil {
				return err
			}
			h := store.HistoryEvent{Event: e}
			if t := times.Get(k); len(t) == 8 {
				h.StoredAt = time.UnixMicro(int64(binary.BigEndian.Uint64(t)))
			}
			page = append(page, h)
		}
		return nil
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("read the history of %s", ref) }); err != nil {
		return nil, err
	}
	return page, nil
}
