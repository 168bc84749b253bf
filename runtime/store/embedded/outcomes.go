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

// outcomeKey is entityKey ‖ key. entityKey is prefix-free, so the key
// needs no length of its own: whatever follows the entity is the key.
func outcomeKey(ref store.Ref, key string) []byte {
	k := entityKey(make([]byte, 0, 2*binary.MaxVarintLen64+len(ref.Type)+len(ref.ID)+len(key)), ref)
	return append(k, key...)
}

// maxOutcomeKey leaves room for the expiry that precedes the outcome key
// in the expiry index.
const maxOutcomeKey = bolt.MaxKeySize - 8

func checkOutcomeKeySize(o store.Outcome, key []byte) error {
	if len(key) <= maxOutcomeKey {
		return nil
	}
	return fmt.Errorf("outcome of entity %.40q… of type %.40q: its type, ID and key take %d bytes, over the embedded store's limit of %d; use shorter entity IDs or idempotency keys",
		o.Entity.ID, o.Entity.Type, len(key), maxOutcomeKey)
}

// expiresBytes encodes a time to the microsecond as 8 bytes whose byte
// order is time order: big-endian, with the sign bit flipped so that
// times before 1970 sort first.
func expiresBytes(t time.Time) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixMicro())^(1<<63))
	return b
}

func expiresTime(b []byte) time.Time {
	return time.UnixMicro(int64(binary.BigEndian.Uint64(b) ^ (1 << 63)))
}

// expiryKey is expiresBytes ‖ outcomeKey: the expiry index, which
// ExpireOutcomes walks in time order.
func expiryKey(expires [8]byte, outcomeKey []byte) []byte {
	k := make([]byte, 0, 8+len(outcomeKey))
	k = append(k, expires[:]...)
	return append(k, outcomeKey...)
}

// outcomeValue is expiresBytes ‖ uvarint(code) ‖ uvarint(len(message)) ‖
// message ‖ reply.
func outcomeValue(o store.Outcome, expires [8]byte) []byte {
	v := make([]byte, 0, 8+2*binary.MaxVarintLen64+len(o.Message)+len(o.Reply))
	v = append(v, expires[:]...)
	v = binary.AppendUvarint(v, uint64(o.Code))
	v = binary.AppendUvarint(v, uint64(len(o.Message)))
	v = append(v, o.Message...)
	return append(v, o.Reply...)
}

// decodeOutcome copies an outcome out of bbolt's memory.
func decodeOutcome(ref store.Ref, key string, value []byte) (store.Outcome, error) {
	damaged := func(what string) error {
		return fmt.Errorf("outcome of %s key %.40q is damaged: %s; restore the data directory from a backup", ref, key, what)
	}
	if len(value) < 8 {
		return store.Outcome{}, damaged("shorter than its expiry")
	}
	o := store.Outcome{Entity: ref, Key: key, Expires: expiresTime(value)}
	rest := value[8:]
	code, n := binary.Uvarint(rest)
	if n <= 0 || code > 1<<32-1 {
		return store.Outcome{}, damaged("bad code")
	}
	o.Code = uint32(code)
	rest = rest[n:]
	size, n := binary.Uvarint(rest)
	if n <= 0 || size > uint64(len(rest)-n) {
		return store.Outcome{}, damaged("bad message length")
	}
	rest = rest[n:]
	o.Message = string(rest[:size])
	o.Reply = bytes.Clone(rest[size:])
	return o, nil
}

// outcomeWrite is one outcome of a batch, checked and ready to write.
type outcomeWrite struct {
	key []byte
	// replaced is the expiry index entry of the expired outcome this one
	// replaces, nil if there is none.
	replaced []byte
}

// checkOutcomes returns the outcome writes of a batch, and calls conflict
// for every entity whose outcome key is answered already: stored and not
// expired at now, or twice in the batch.
func checkOutcomes(outcomes *bolt.Bucket, b *store.Batch, now time.Time, conflict func(store.Ref)) ([]outcomeWrite, error) {
	writes := make([]outcomeWrite, len(b.Outcomes))
	inBatch := map[string]bool{}
	for i, o := range b.Outcomes {
		key := outcomeKey(o.Entity, o.Key)
		if err := checkOutcomeKeySize(o, key); err != nil {
			return nil, err
		}
		writes[i].key = key
		if inBatch[string(key)] {
			conflict(o.Entity)
			continue
		}
		inBatch[string(key)] = true
		stored := outcomes.Get(key)
		if stored == nil {
			continue
		}
		if len(stored) < 8 {
			return nil, fmt.Errorf("outcome of %s key %.40q is damaged: shorter than its expiry; restore the data directory from a backup", o.Entity, o.Key)
		}
		if !expiresTime(stored).Before(now) {
			conflict(o.Entity)
			continue
		}
		writes[i].replaced = expiryKey([8]byte(stored[:8]), key)
	}
	return writes, nil
}

// writeOutcomes stores the checked outcomes of a batch and their expiry
// index entries, dropping the entries of the expired outcomes they
// replace.
func writeOutcomes(tx *bolt.Tx, outcomes []store.Outcome, writes []outcomeWrite) error {
	if len(outcomes) == 0 {
		return nil
	}
	bucket, index := tx.Bucket(outcomesBucket), tx.Bucket(outcomeExpiryBucket)
	for i, o := range outcomes {
		w := writes[i]
		if w.replaced != nil {
			if err := index.Delete(w.replaced); err != nil {
				return fmt.Errorf("replace the expired outcome of %s: %w", o.Entity, err)
			}
		}
		expires := expiresBytes(o.Expires)
		if err := bucket.Put(w.key, outcomeValue(o, expires)); err != nil {
			return fmt.Errorf("write an outcome of %s: %w", o.Entity, err)
		}
		if err := index.Put(expiryKey(expires, w.key), nil); err != nil {
			return fmt.Errorf("index the expiry of an outcome of %s: %w", o.Entity, err)
		}
	}
	return nil
}

// LoadOutcome implements store.Store.
func (s *Store) LoadOutcome(ctx context.Context, ref store.Ref, key string) (store.Outcome, bool, error) {
	if err := s.check(ctx); err != nil {
		return store.Outcome{}, false, err
	}
	var o store.Outcome
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		stored := tx.Bucket(outcomesBucket).Get(outcomeKey(ref, key))
		if stored == nil {
			return nil
		}
		var err error
		o, err = decodeOutcome(ref, key, stored)
		found = err == nil
		return err
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("read an outcome of %s", ref) }); err != nil {
		return store.Outcome{}, false, err
	}
	if !found || o.Expires.Before(time.Now()) {
		return store.Outcome{}, false, nil
	}
	return o, true, nil
}

// ExpireOutcomes implements store.Store. It walks the expiry index from
// the oldest expiry, in one write transaction.
func (s *Store) ExpireOutcomes(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("expire outcomes: limit %d; ask for at least one", limit)
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	cutoff := expiresBytes(before)
	deleted := 0
	err := s.update(func(tx *bolt.Tx) error {
		deleted = 0
		bucket, index := tx.Bucket(outcomesBucket), tx.Bucket(outcomeExpiryBucket)
		// Collect first, then delete: deleting under a live cursor can make
		// bbolt's Next skip the key after the deleted one.
		var keys [][]byte
		c := index.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < limit; k, _ = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("outcome expiry key %x is damaged; restore the data directory from a backup", k)
			}
			if bytes.Compare(k[:8], cutoff[:]) >= 0 {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := index.Delete(k); err != nil {
				return err
			}
			if err := bucket.Delete(k[8:]); err != nil {
				return err
			}
		}
		deleted = len(keys)
		return nil
	})
	if err := s.txError(err, func() string { return "expire outcomes" }); err != nil {
		return 0, err
	}
	return deleted, nil
}
