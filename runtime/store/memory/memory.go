// Package memory is a Store that keeps everything in process memory: for
// unit tests and the testkit. It fences exactly like the durable stores.
package memory

import (
	"context"
	"slices"
	"sync"

	"github.com/statefun-go/statefun/runtime/store"
)

// Store is an in-memory store.Store.
type Store struct {
	mu        sync.RWMutex
	closed    bool
	events    map[store.Ref][]store.Event
	values    map[store.Ref]store.Value
	snapshots map[store.Ref]store.Snapshot
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		events:    map[store.Ref][]store.Event{},
		values:    map[store.Ref]store.Value{},
		snapshots: map[store.Ref]store.Snapshot{},
	}
}

// Commit implements store.Store.
func (s *Store) Commit(_ context.Context, b *store.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	// Check everything before writing anything: all or nothing.
	var conflicts []store.Ref
	next := map[store.Ref]int64{}
	for _, e := range b.Events {
		want, ok := next[e.Entity]
		if !ok {
			want = int64(len(s.events[e.Entity])) + 1
		}
		if e.Seq != want && !slices.Contains(conflicts, e.Entity) {
			conflicts = append(conflicts, e.Entity)
		}
		next[e.Entity] = e.Seq + 1
	}
	versions := map[store.Ref]int64{}
	for _, v := range b.Values {
		cur, ok := versions[v.Entity]
		if !ok {
			cur = s.values[v.Entity].Version
		}
		if v.Version != cur+1 && !slices.Contains(conflicts, v.Entity) {
			conflicts = append(conflicts, v.Entity)
		}
		versions[v.Entity] = v.Version
	}
	if len(conflicts) > 0 {
		return &store.ConflictError{Entities: conflicts}
	}
	for _, e := range b.Events {
		e.Payload = slices.Clone(e.Payload)
		s.events[e.Entity] = append(s.events[e.Entity], e)
	}
	for _, v := range b.Values {
		v.Payload = slices.Clone(v.Payload)
		s.values[v.Entity] = v
	}
	return nil
}

// ReadEvents implements store.Store.
func (s *Store) ReadEvents(ctx context.Context, ref store.Ref, afterSeq int64, fn func(store.Event) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	history := s.events[ref]
	if afterSeq < 0 {
		afterSeq = 0
	}
	if afterSeq > int64(len(history)) {
		afterSeq = int64(len(history))
	}
	// Events are never changed once appended, so a slice of them stays
	// valid after the lock is released.
	events := history[afterSeq:]
	s.mu.RUnlock()
	for _, e := range events {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.Payload = slices.Clone(e.Payload)
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// LatestSnapshot implements store.Store.
func (s *Store) LatestSnapshot(_ context.Context, ref store.Ref) (store.Snapshot, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Snapshot{}, false, store.ErrClosed
	}
	snap, ok := s.snapshots[ref]
	snap.Payload = slices.Clone(snap.Payload)
	return snap, ok, nil
}

// SaveSnapshot implements store.Store.
func (s *Store) SaveSnapshot(_ context.Context, snap store.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if cur, ok := s.snapshots[snap.Entity]; ok && cur.Seq >= snap.Seq {
		return nil
	}
	snap.Payload = slices.Clone(snap.Payload)
	s.snapshots[snap.Entity] = snap
	return nil
}

// DeleteSnapshots implements store.Store.
func (s *Store) DeleteSnapshots(_ context.Context, entityType string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	for ref := range s.snapshots {
		if ref.Type == entityType {
			delete(s.snapshots, ref)
		}
	}
	return nil
}

// LoadValue implements store.Store.
func (s *Store) LoadValue(_ context.Context, ref store.Ref) (store.Value, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Value{}, false, store.ErrClosed
	}
	v, ok := s.values[ref]
	v.Payload = slices.Clone(v.Payload)
	return v, ok, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
