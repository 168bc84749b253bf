package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// appendToFeeds gives each event of a batch the next number in the feed
// of its type, and moves each value of the batch to the end of the feed
// of its type (valuefeed.go), inside the Commit's write transaction.
//
// bbolt runs one write transaction at a time, and readers see only
// committed ones, so numbers are handed out in commit order: once a
// reader sees number n of a type, every number below it is committed
// and visible too. A reader that resumes after the last number it saw
// therefore never skips an event (INVARIANTS.md, invariant 10), nor the
// latest value of an entity. The events of one entity are consecutive
// and in seq order within a batch, and its later events can only commit
// in later transactions, so the feed keeps every entity's history in seq
// order.
func appendToFeeds(tx *bolt.Tx, b *store.Batch, eventKeys, valueKeys [][]byte) error {
	if len(b.Events) == 0 && len(b.Values) == 0 {
		return nil
	}
	feeds := newFeedTails(tx)
	var t *feedTail
	for i, e := range b.Events {
		if t == nil || e.Entity.Type != b.Events[i-1].Entity.Type {
			var err error
			if t, err = feeds.tail(e.Entity.Type); err != nil {
				return err
			}
		}
		t.last++
		// The event key minus its typePrefix, which the feed key
		// already holds.
		if err := feeds.feed.Put(feedKey(t.prefix, t.last), eventKeys[i][len(t.prefix):]); err != nil {
			return fmt.Errorf("add event %d of %s to its feed: %w", e.Seq, e.Entity, err)
		}
	}
	if len(b.Values) > 0 {
		valueFeed := tx.Bucket(valueFeedBucket)
		for i, v := range b.Values {
			t, err := feeds.tail(v.Entity.Type)
			if err != nil {
				return err
			}
			if err := feeds.appendValue(valueFeed, t, valueKeys[i]); err != nil {
				return fmt.Errorf("add version %d of %s to its feed: %w", v.Version, v.Entity, err)
			}
		}
	}
	return feeds.saveHeads()
}

// ReadFeed implements store.Store. Like ReadEvents it copies events out
// in chunks, one read transaction each, and calls fn outside any
// transaction.
func (s *Store) ReadFeed(ctx context.Context, entityType string, after store.Position, limit int, fn func(store.FeedEvent) error) error {
	if limit < 1 {
		return fmt.Errorf("read the feed of %q: limit %d; ask for at least one event", entityType, limit)
	}
	n, err := parsePosition(after)
	if err != nil {
		return fmt.Errorf("read the feed of %q: %w", entityType, err)
	}
	prefix := typePrefix(nil, entityType)
	for limit > 0 {
		if err := s.check(ctx); err != nil {
			return err
		}
		var chunk []store.FeedEvent
		var more bool
		err := s.view(func(tx *bolt.Tx) error {
			var err error
			chunk, n, more, err = readFeedChunk(tx, entityType, prefix, n, limit)
			return err
		})
		if err := s.txError(err, func() string { return fmt.Sprintf("read the feed of %q", entityType) }); err != nil {
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
		limit -= len(chunk)
	}
	return nil
}

// readFeedChunk copies out up to want events of the feed whose typePrefix
// is prefix, after number after, within the chunk limits of ReadEvents.
// It returns the number of the last one, and whether it stopped at a
// limit rather than at the end of the feed.
func readFeedChunk(tx *bolt.Tx, entityType string, prefix []byte, after uint64, want int) (chunk []store.FeedEvent, last uint64, more bool, err error) {
	last = after
	if after == math.MaxUint64 {
		return nil, last, false, nil
	}
	events, values := tx.Bucket(eventsBucket), tx.Bucket(valuesBucket)
	c := tx.Bucket(feedBucket).Cursor()
	size := 0
	for k, v := c.Seek(feedKey(prefix, after+1)); k != nil; k, v = c.Next() {
		if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
			return chunk, last, false, nil
		}
		if len(chunk) == min(want, readChunkEvents) || size >= readChunkBytes {
			return chunk, last, true, nil
		}
		n := binary.BigEndian.Uint64(k[len(prefix):])
		key := append(append(make([]byte, 0, len(prefix)+len(v)), prefix...), v...)
		ref, isValue, ok := decodeFeedEntry(entityType, v)
		if !ok {
			return nil, 0, false, fmt.Errorf("entry %d of the feed of %q is damaged; restore the data directory from a backup", n, entityType)
		}
		var e store.Event
		if isValue {
			e, err = decodeFeedValue(ref, n, values.Get(key))
		} else if stored := events.Get(key); stored == nil {
			err = fmt.Errorf("event %d of the feed of %q is missing; restore the data directory from a backup", n, entityType)
		} else {
			e, err = decodeEvent(ref, key, stored)
		}
		if err != nil {
			return nil, 0, false, err
		}
		chunk = append(chunk, store.FeedEvent{Event: e, Position: encodePosition(n)})
		size += len(e.Payload)
		last = n
	}
	return chunk, last, false, nil
}

// FeedHead implements store.Store.
func (s *Store) FeedHead(ctx context.Context, entityType string) (store.Position, error) {
	if err := s.check(ctx); err != nil {
		return "", err
	}
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		stored := tx.Bucket(feedHeadsBucket).Get(typePrefix(nil, entityType))
		if stored == nil {
			return nil
		}
		if len(stored) != 8 {
			return fmt.Errorf("feed head of %q is damaged: %d bytes, want 8; restore the data directory from a backup", entityType, len(stored))
		}
		n = binary.BigEndian.Uint64(stored)
		return nil
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("read the feed head of %q", entityType) }); err != nil {
		return "", err
	}
	return encodePosition(n), nil
}

// LoadConsumerPosition implements store.Store.
func (s *Store) LoadConsumerPosition(ctx context.Context, consumer, entityType string) (store.Position, bool, error) {
	if err := s.check(ctx); err != nil {
		return "", false, err
	}
	key := consumerKey(consumer, entityType)
	if len(key) > bolt.MaxKeySize {
		return "", false, nil // SaveConsumerPosition refuses such a key
	}
	var n uint64
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		stored := tx.Bucket(consumersBucket).Get(key)
		if stored == nil {
			return nil
		}
		if len(stored) != 8 {
			return fmt.Errorf("position of consumer %q in the feed of %q is damaged: %d bytes, want 8; restore the data directory from a backup", consumer, entityType, len(stored))
		}
		n, found = binary.BigEndian.Uint64(stored), true
		return nil
	})
	what := func() string {
		return fmt.Sprintf("read the position of consumer %q in the feed of %q", consumer, entityType)
	}
	if err := s.txError(err, what); err != nil {
		return "", false, err
	}
	return encodePosition(n), found, nil
}

// SaveConsumerPosition implements store.Store.
func (s *Store) SaveConsumerPosition(ctx context.Context, consumer, entityType string, pos store.Position) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	what := func() string {
		return fmt.Sprintf("save the position of consumer %q in the feed of %q", consumer, entityType)
	}
	n, err := parsePosition(pos)
	if err != nil {
		return fmt.Errorf("%s: %w", what(), err)
	}
	key := consumerKey(consumer, entityType)
	if len(key) > bolt.MaxKeySize {
		return fmt.Errorf("%s: the consumer and type names take %d bytes, over the embedded store's limit of %d; use a shorter consumer name", what(), len(key), bolt.MaxKeySize)
	}
	err = s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(consumersBucket).Put(key, binary.BigEndian.AppendUint64(nil, n))
	})
	return s.txError(err, what)
}

// positionDigits is the width of a Position: a feed number in hex,
// zero-padded so that positions sort as they follow each other.
const positionDigits = 16

// encodePosition returns the Position after the nth event of a feed; the
// zero Position for n = 0.
func encodePosition(n uint64) store.Position {
	if n == 0 {
		return ""
	}
	return store.Position(fmt.Sprintf("%0*x", positionDigits, n))
}

func parsePosition(pos store.Position) (uint64, error) {
	if pos == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(pos), 16, 64)
	if len(pos) != positionDigits || err != nil || n == 0 {
		return 0, fmt.Errorf("position %q was not made by an embedded store; resume from a Position that ReadFeed or FeedHead returned", pos)
	}
	return n, nil
}
