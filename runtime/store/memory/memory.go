// Package memory is a Store that keeps everything in process memory: for
// unit tests and the testkit. It fences exactly like the durable stores
// (outcome keys included, judged by the process clock),
// and its feeds are numbered in commit order under the store's lock, so a
// reader sees an event as soon as its Commit returns and can never skip
// one. The feed of a key-value type is compacted like the durable
// stores': a value's write removes its entry and appends a new one.
package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// Store is an in-memory store.Store.
type Store struct {
	mu     sync.RWMutex
	closed bool
	events map[store.Ref][]store.Event
	// storedAt holds, for each entity, the time each of its events was
	// committed, in step with events (History).
	storedAt  map[store.Ref][]time.Time
	values    map[store.Ref]store.Value
	snapshots map[store.Ref]store.Snapshot
	// feeds holds, per entity type, every committed event, and the
	// latest value of every key-value entity, in commit order. Commit
	// appends under the write lock, so a number is never given out
	// before all the numbers below it are: a reader cannot skip an event
	// (INVARIANTS.md, invariant 10).
	feeds map[string]*feed
	// valueEntries is the number of each value's one entry in its feed.
	valueEntries map[store.Ref]int
	positions    map[consumerKey]store.Position
	outcomes     map[outcomeKey]store.Outcome
	// eventTypes is the registry of EventTypes: entity type -> event
	// types committed for it.
	eventTypes map[string]map[string]bool
	// viewVersions holds each view version's rows (views.go).
	viewVersions map[viewKey]*viewVersion
	// timers are the pending timers. Due ones are found by a scan: this
	// store is for tests, not for a million timers.
	timers map[timerRef]store.Timer
	// The cluster's tables (store.Cluster), judged by the process clock.
	shards int
	secret []byte // the cluster's (Secret)
	nodes  map[string]store.Node
	leases map[int]store.Lease
}

// feed is the feed of one entity type: its entries in number order,
// with gaps where values were written again.
type feed struct {
	entries []feedEntry
	last    int // the number of the newest entry, the feed's head
	// removed counts the entries of values written again since, which
	// stay in entries until they are more than half of them.
	removed int
}

// feedEntry names one event of a feed, its entity and its seq, or one
// value, its entity. n is its number in the feed, from 1.
type feedEntry struct {
	n       int
	ref     store.Ref
	seq     int64
	value   bool
	removed bool // the value was written again: a newer entry holds it
}

// appendEvent gives an event the next number.
func (f *feed) appendEvent(e store.Event) {
	f.last++
	f.entries = append(f.entries, feedEntry{n: f.last, ref: e.Entity, seq: e.Seq})
}

// appendValue moves a value to the end of the feed: it marks the value's
// old entry removed, numbered old (0: none), and returns the number of
// the new one. Removed entries go once they are half the feed, so memory
// follows the number of entities and events, not of writes.
func (f *feed) appendValue(ref store.Ref, old int) int {
	if old > 0 {
		f.entries[f.find(old)].removed = true
		f.removed++
	}
	f.last++
	f.entries = append(f.entries, feedEntry{n: f.last, ref: ref, value: true})
	if f.removed > len(f.entries)/2 {
		f.entries = slices.DeleteFunc(f.entries, func(e feedEntry) bool { return e.removed })
		f.removed = 0
	}
	return f.last
}

// find returns the index of the first entry numbered n or more,
// len(entries) if none.
func (f *feed) find(n int) int {
	i, _ := slices.BinarySearchFunc(f.entries, n, func(e feedEntry, n int) int { return e.n - n })
	return i
}

type consumerKey struct{ consumer, entityType string }

type timerRef struct {
	ref  store.Ref
	name string
}

type outcomeKey struct {
	ref store.Ref
	key string
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.History = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		events:       map[store.Ref][]store.Event{},
		storedAt:     map[store.Ref][]time.Time{},
		values:       map[store.Ref]store.Value{},
		snapshots:    map[store.Ref]store.Snapshot{},
		feeds:        map[string]*feed{},
		valueEntries: map[store.Ref]int{},
		positions:    map[consumerKey]store.Position{},
		outcomes:     map[outcomeKey]store.Outcome{},
		eventTypes:   map[string]map[string]bool{},
		timers:       map[timerRef]store.Timer{},
		nodes:        map[string]store.Node{},
		leases:       map[int]store.Lease{},
	}
}

// Commit implements store.Store.
func (s *Store) Commit(_ context.Context, b *store.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if err := s.checkFence(b.Fence); err != nil {
		return err
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
	now := time.Now()
	answered := map[outcomeKey]bool{}
	for _, o := range b.Outcomes {
		k := outcomeKey{o.Entity, o.Key}
		stored, ok := s.outcomes[k]
		live := ok && !stored.Expires.Before(now)
		if (live || answered[k]) && !slices.Contains(conflicts, o.Entity) {
			conflicts = append(conflicts, o.Entity)
		}
		answered[k] = true
	}
	if len(conflicts) > 0 {
		return &store.ConflictError{Entities: conflicts}
	}
	for _, e := range b.Events {
		e.Payload = slices.Clone(e.Payload)
		s.events[e.Entity] = append(s.events[e.Entity], e)
		s.storedAt[e.Entity] = append(s.storedAt[e.Entity], now.Truncate(time.Microsecond))
		s.feed(e.Entity.Type).appendEvent(e)
		s.registerEventType(e.Entity.Type, e.EventType)
	}
	for _, v := range b.Values {
		v.Payload = slices.Clone(v.Payload)
		s.values[v.Entity] = v
		s.valueEntries[v.Entity] = s.feed(v.Entity.Type).appendValue(v.Entity, s.valueEntries[v.Entity])
	}
	for _, o := range b.Outcomes {
		o.Reply = slices.Clone(o.Reply)
		s.outcomes[outcomeKey{o.Entity, o.Key}] = o
	}
	for _, c := range b.Timers {
		k := timerRef{c.Entity, c.Name}
		if c.Cancel {
			delete(s.timers, k)
			continue
		}
		t := c.Timer
		t.Call = slices.Clone(t.Call)
		s.timers[k] = t
	}
	return nil
}

// feed returns the feed of entityType, creating it. Commit calls it under
// the write lock.
func (s *Store) feed(entityType string) *feed {
	f := s.feeds[entityType]
	if f == nil {
		f = &feed{}
		s.feeds[entityType] = f
	}
	return f
}

// registerEventType records an event type of an entity type for
// EventTypes. Commit calls it under the write lock, with the events: the
// memory store's "transaction".
func (s *Store) registerEventType(entityType, eventType string) {
	types := s.eventTypes[entityType]
	if types == nil {
		types = map[string]bool{}
		s.eventTypes[entityType] = types
	}
	types[eventType] = true
}

// EventTypes implements store.Store.
func (s *Store) EventTypes(context.Context) (map[string][]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out := make(map[string][]string, len(s.eventTypes))
	for entityType, types := range s.eventTypes {
		out[entityType] = slices.Sorted(maps.Keys(types))
	}
	return out, nil
}

// LoadOutcome implements store.Store.
func (s *Store) LoadOutcome(_ context.Context, ref store.Ref, key string) (store.Outcome, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Outcome{}, false, store.ErrClosed
	}
	o, ok := s.outcomes[outcomeKey{ref, key}]
	if !ok || o.Expires.Before(time.Now()) {
		return store.Outcome{}, false, nil
	}
	o.Reply = slices.Clone(o.Reply)
	return o, true, nil
}

// ExpireOutcomes implements store.Store.
func (s *Store) ExpireOutcomes(_ context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("expire outcomes: limit %d; ask for at least one", limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	deleted := 0
	for k, o := range s.outcomes {
		if deleted == limit {
			break
		}
		if o.Expires.Before(before) {
			delete(s.outcomes, k)
			deleted++
		}
	}
	return deleted, nil
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

// ReadHistory implements store.History.
func (s *Store) ReadHistory(_ context.Context, ref store.Ref, afterSeq int64, limit int) ([]store.HistoryEvent, error) {
	if limit < 1 {
		return nil, fmt.Errorf("read the history of %s: limit %d; ask for at least one event", ref, limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	history, times := s.events[ref], s.storedAt[ref]
	start := min(max(afterSeq, 0), int64(len(history)))
	end := min(start+int64(limit), int64(len(history)))
	out := make([]store.HistoryEvent, 0, end-start)
	for i := start; i < end; i++ {
		e := history[i]
		e.Payload = slices.Clone(e.Payload)
		out = append(out, store.HistoryEvent{Event: e, StoredAt: times[i]})
	}
	return out, nil
}

// ReadFeed implements store.Store. A Position is the number of the feed
// entry before it, in fixed-width hex so that positions sort as they
// follow each other.
func (s *Store) ReadFeed(ctx context.Context, entityType string, after store.Position, limit int, fn func(store.FeedEvent) error) error {
	if limit < 1 {
		return fmt.Errorf("read the feed of %q: limit %d; ask for at least one event", entityType, limit)
	}
	start, err := parsePosition(after)
	if err != nil {
		return fmt.Errorf("read the feed of %q: %w", entityType, err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	// Copy the events out under the lock: fn runs without it, and may
	// commit to this store.
	var events []store.FeedEvent
	if f := s.feeds[entityType]; f != nil {
		for _, entry := range f.entries[f.find(start+1):] {
			if len(events) == limit {
				break
			}
			if entry.removed {
				continue
			}
			var e store.Event
			if entry.value {
				v := s.values[entry.ref]
				e = store.Event{Entity: v.Entity, Seq: v.Version, EventType: store.ValueEventType, Payload: v.Payload}
			} else {
				e = s.events[entry.ref][entry.seq-1]
			}
			e.Payload = slices.Clone(e.Payload)
			events = append(events, store.FeedEvent{Event: e, Position: encodePosition(entry.n)})
		}
	}
	s.mu.RUnlock()
	for _, e := range events {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// FeedHead implements store.Store.
func (s *Store) FeedHead(_ context.Context, entityType string) (store.Position, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", store.ErrClosed
	}
	if f := s.feeds[entityType]; f != nil {
		return encodePosition(f.last), nil
	}
	return "", nil
}

// LoadConsumerPosition implements store.Store.
func (s *Store) LoadConsumerPosition(_ context.Context, consumer, entityType string) (store.Position, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", false, store.ErrClosed
	}
	pos, ok := s.positions[consumerKey{consumer, entityType}]
	return pos, ok, nil
}

// SaveConsumerPosition implements store.Store.
func (s *Store) SaveConsumerPosition(_ context.Context, consumer, entityType string, pos store.Position) error {
	if _, err := parsePosition(pos); err != nil {
		return fmt.Errorf("save the position of consumer %q in the feed of %q: %w", consumer, entityType, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.positions[consumerKey{consumer, entityType}] = pos
	return nil
}

const positionDigits = 16

func encodePosition(n int) store.Position {
	if n == 0 {
		return ""
	}
	return store.Position(fmt.Sprintf("%0*x", positionDigits, n))
}

func parsePosition(pos store.Position) (int, error) {
	if pos == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(pos), 16, strconv.IntSize-1)
	if len(pos) != positionDigits || err != nil {
		return 0, fmt.Errorf("position %q was not made by a memory store; resume from a Position that ReadFeed or FeedHead returned", pos)
	}
	return int(n), nil
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
	if err := s.checkFence(snap.Fence); err != nil {
		return err
	}
	if cur, ok := s.snapshots[snap.Entity]; ok && cur.Seq >= snap.Seq {
		return nil
	}
	snap.Payload = slices.Clone(snap.Payload)
	snap.Fence = nil
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
