package statefun

import (
	"context"
	"fmt"
	"sync"
)

// storedEvent is one journaled event: its position in the entity's history,
// its stored type name and its protobuf payload.
type storedEvent struct {
	seq     int64
	typ     string
	payload []byte
}

// storedValue is the state of a key-value entity and its version.
type storedValue struct {
	version int64
	payload []byte
}

type entityRef struct{ typ, id string }

// errConflict reports a write that lost against another writer of the same
// entity (fencing): the writer's view of the history is stale.
var errConflict = fmt.Errorf("entity history changed under this writer")

// memoryStore keeps journals in process memory. It is the store of New
// until durable stores arrive; it fences like them: an append must start
// right after the last stored event.
type memoryStore struct {
	mu     sync.Mutex
	events map[entityRef][]storedEvent
	values map[entityRef]storedValue
}

func newMemoryStore() *memoryStore {
	return &memoryStore{events: map[entityRef][]storedEvent{}, values: map[entityRef]storedValue{}}
}

func (s *memoryStore) loadEvents(_ context.Context, ref entityRef) ([]storedEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]storedEvent(nil), s.events[ref]...), nil
}

func (s *memoryStore) appendEvents(_ context.Context, ref entityRef, events []storedEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	history := s.events[ref]
	if len(events) == 0 {
		return nil
	}
	if events[0].seq != int64(len(history))+1 {
		return fmt.Errorf("append %s/%s at %d after %d: %w", ref.typ, ref.id, events[0].seq, len(history), errConflict)
	}
	s.events[ref] = append(history, events...)
	return nil
}

func (s *memoryStore) loadValue(_ context.Context, ref entityRef) (storedValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[ref], nil
}

func (s *memoryStore) putValue(_ context.Context, ref entityRef, v storedValue) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.values[ref]; v.version != cur.version+1 {
		return fmt.Errorf("put %s/%s version %d over %d: %w", ref.typ, ref.id, v.version, cur.version, errConflict)
	}
	s.values[ref] = v
	return nil
}
