package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// timerKey is entityKey ‖ name: entityKey is prefix-free, so whatever
// follows the entity is the name, and one entity's timers are the keys
// that start with its entityKey.
func timerKey(ref store.Ref, name string) []byte {
	k := entityKey(make([]byte, 0, 2*binary.MaxVarintLen64+len(ref.Type)+len(ref.ID)+len(name)), ref)
	return append(k, name...)
}

// timerValue is expiresBytes(due) ‖ big-endian uint64 id ‖ uvarint(shard) ‖
// uvarint(attempts) ‖ call.
func timerValue(t store.Timer) []byte {
	due := expiresBytes(t.Due)
	v := make([]byte, 0, 16+2*binary.MaxVarintLen64+len(t.Call))
	v = append(v, due[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(t.ID))
	v = binary.AppendUvarint(v, uint64(t.Shard))
	v = binary.AppendUvarint(v, uint64(t.Attempts))
	return append(v, t.Call...)
}

// decodeTimer reads a timer out of bbolt's memory, copying what it keeps.
func decodeTimer(key, value []byte) (store.Timer, error) {
	damaged := func(what string) error {
		return fmt.Errorf("timer %x is damaged: %s; restore the data directory from a backup", key, what)
	}
	var t store.Timer
	rest := key
	for _, field := range []*string{&t.Entity.Type, &t.Entity.ID} {
		n, size := binary.Uvarint(rest)
		if size <= 0 || n > uint64(len(rest)-size) {
			return t, damaged("bad length in its key")
		}
		*field, rest = string(rest[size:size+int(n)]), rest[size+int(n):]
	}
	t.Name = string(rest)
	if len(value) < 16 {
		return t, damaged("its value is too short")
	}
	t.Due = expiresTime(value[:8])
	t.ID = int64(binary.BigEndian.Uint64(value[8:16]))
	rest = value[16:]
	shard, size := binary.Uvarint(rest)
	if size <= 0 {
		return t, damaged("bad shard")
	}
	rest = rest[size:]
	attempts, size := binary.Uvarint(rest)
	if size <= 0 {
		return t, damaged("bad attempts")
	}
	t.Shard, t.Attempts, t.Call = int(shard), int(attempts), bytes.Clone(rest[size:])
	return t, nil
}

// timerDueKey is expiresBytes(due) ‖ timerKey: the due index, which
// DueTimers walks in time order.
func timerDueKey(due time.Time, key []byte) []byte {
	b := expiresBytes(due)
	k := make([]byte, 0, 8+len(key))
	k = append(k, b[:]...)
	return append(k, key...)
}

// maxTimerKey leaves room for the due time that precedes the timer key in
// the due index.
const maxTimerKey = bolt.MaxKeySize - 8

// putTimer writes t, replacing the timer of its name and its index entry.
func putTimer(timers, due *bolt.Bucket, t store.Timer) error {
	key := timerKey(t.Entity, t.Name)
	if len(key) > maxTimerKey {
		return fmt.Errorf("timer %.40q of entity %.40q… of type %.40q: its type, ID and name take %d bytes, over the embedded store's limit of %d; use shorter timer names or entity IDs",
			t.Name, t.Entity.ID, t.Entity.Type, len(key), maxTimerKey)
	}
	if err := deleteTimer(timers, due, key); err != nil {
		return err
	}
	if err := timers.Put(key, timerValue(t)); err != nil {
		return err
	}
	return due.Put(timerDueKey(t.Due, key), []byte{})
}

// deleteTimer deletes the timer stored at key, if any, and its index entry.
func deleteTimer(timers, due *bolt.Bucket, key []byte) error {
	old := timers.Get(key)
	if old == nil {
		return nil
	}
	if len(old) < 8 {
		return fmt.Errorf("timer %x is damaged: its value is too short; restore the data directory from a backup", key)
	}
	if err := due.Delete(append(bytes.Clone(old[:8]), key...)); err != nil {
		return err
	}
	return timers.Delete(key)
}

// writeTimerChanges applies a batch's timer changes in order, inside its
// transaction.
func writeTimerChanges(tx *bolt.Tx, changes []store.TimerChange) error {
	if len(changes) == 0 {
		return nil
	}
	timers, due := tx.Bucket(timersBucket), tx.Bucket(timerDueBucket)
	for _, c := range changes {
		var err error
		if c.Cancel {
			err = deleteTimer(timers, due, timerKey(c.Entity, c.Name))
		} else {
			err = putTimer(timers, due, c.Timer)
		}
		if err != nil {
			return fmt.Errorf("timer %q of %s: %w", c.Name, c.Entity, err)
		}
	}
	return nil
}

// DueTimers implements store.Timers: a walk of the due index from its
// first key until it passes before or has limit timers.
func (s *Store) DueTimers(ctx context.Context, shards []int, before time.Time, limit int) ([]store.Timer, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("embedded: due timers: limit %d; ask for at least one", limit)
	}
	cutoff := expiresBytes(before)
	var due []store.Timer
	err := s.view(func(tx *bolt.Tx) error {
		timers := tx.Bucket(timersBucket)
		c := tx.Bucket(timerDueBucket).Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) < 8 || bytes.Compare(k[:8], cutoff[:]) > 0 {
				break
			}
			t, err := decodeTimer(k[8:], timers.Get(k[8:]))
			if err != nil {
				return err
			}
			if shards == nil || slices.Contains(shards, t.Shard) {
				due = append(due, t)
			}
		}
		return nil
	})
	return due, s.txError(err, func() string { return "find due timers" })
}

// NextTimerDue implements store.Timers.
func (s *Store) NextTimerDue(ctx context.Context, shards []int) (time.Time, bool, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, false, err
	}
	var next time.Time
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		timers := tx.Bucket(timersBucket)
		c := tx.Bucket(timerDueBucket).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("timer index key %x is damaged; restore the data directory from a backup", k)
			}
			if shards != nil {
				t, err := decodeTimer(k[8:], timers.Get(k[8:]))
				if err != nil {
					return err
				}
				if !slices.Contains(shards, t.Shard) {
					continue
				}
			}
			next, found = expiresTime(k[:8]), true
			return nil
		}
		return nil
	})
	return next, found, s.txError(err, func() string { return "find the next timer due" })
}

// FinishTimers implements store.Timers. The store is single-node: a fence
// is refused.
func (s *Store) FinishTimers(ctx context.Context, done []store.TimerKey, fence *store.Fence) error {
	return s.changeTimers(ctx, fence, fmt.Sprintf("finish %d timers", len(done)), func(timers, due *bolt.Bucket) error {
		for _, k := range done {
			key := timerKey(k.Entity, k.Name)
			if id, ok := storedTimerID(timers, key); ok && id == k.ID {
				if err := deleteTimer(timers, due, key); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// RetryTimers implements store.Timers.
func (s *Store) RetryTimers(ctx context.Context, retries []store.TimerRetry, fence *store.Fence) error {
	return s.changeTimers(ctx, fence, fmt.Sprintf("retry %d timers", len(retries)), func(timers, due *bolt.Bucket) error {
		for _, r := range retries {
			key := timerKey(r.Entity, r.Name)
			if id, ok := storedTimerID(timers, key); !ok || id != r.ID {
				continue
			}
			t, err := decodeTimer(key, timers.Get(key))
			if err != nil {
				return err
			}
			t.Due, t.Attempts = r.Due, t.Attempts+1
			if err := putTimer(timers, due, t); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) changeTimers(ctx context.Context, fence *store.Fence, doing string, fn func(timers, due *bolt.Bucket) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if fence != nil {
		return errSingleNode
	}
	err := s.update(func(tx *bolt.Tx) error {
		return fn(tx.Bucket(timersBucket), tx.Bucket(timerDueBucket))
	})
	return s.txError(err, func() string { return doing })
}

// storedTimerID returns the ID of the timer stored at key.
func storedTimerID(timers *bolt.Bucket, key []byte) (int64, bool) {
	v := timers.Get(key)
	if len(v) < 16 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v[8:16])), true
}

// EntityTimers implements store.Timers: the keys that start with the
// entity's key, which come in name order.
func (s *Store) EntityTimers(ctx context.Context, ref store.Ref) ([]store.Timer, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	prefix := entityKey(nil, ref)
	var ts []store.Timer
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(timersBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			t, err := decodeTimer(k, v)
			if err != nil {
				return err
			}
			ts = append(ts, t)
		}
		return nil
	})
	return ts, s.txError(err, func() string { return fmt.Sprintf("read the timers of %s", ref) })
}
