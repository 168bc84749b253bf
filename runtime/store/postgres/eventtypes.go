package postgres

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
)

// eventType is one (entity type, event type) pair of the registry.
type eventType struct {
	entityType, eventType string
}

// eventTypeCache remembers the pairs this store has seen committed, so
// that Commit sends the registry only pairs it may lack: the first
// commit of a type per process pays one INSERT ... ON CONFLICT DO NOTHING
// in its pipeline, and every later commit nothing.
//
// The cache lives in the store, not in the journal writer, so that the
// registry's promise (no event stored under an unregistered type) is the
// store's alone: whoever calls Commit, every event is registered, and the
// conformance suite checks it of every store. Only this store needs a
// cache: the embedded store looks pairs up in its own memory map, and the
// memory store is a map already. A pair enters the cache only once a
// commit holding it succeeded, so a failed commit, or one whose outcome
// is unknown, leaves it to be sent again; sending a registered pair again
// costs nothing but the statement. Nothing is ever removed from the
// registry, so the cache can never be wrong about a pair it holds.
type eventTypeCache struct {
	// seen is grow-only and read by every commit, written once per pair:
	// the case sync.Map is made for.
	seen sync.Map // eventType → struct{}
}

// unregistered returns the pairs of events that the cache does not hold,
// sorted and without repeats.
func (c *eventTypeCache) unregistered(events []store.Event) []eventType {
	var out []eventType
	for i, e := range events {
		if i > 0 && e.Entity.Type == events[i-1].Entity.Type && e.EventType == events[i-1].EventType {
			continue // an entity's events often share a type
		}
		t := eventType{e.Entity.Type, e.EventType}
		if _, ok := c.seen.Load(t); !ok && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(x, y eventType) int {
		return cmp.Or(cmp.Compare(x.entityType, y.entityType), cmp.Compare(x.eventType, y.eventType))
	})
	return out
}

// registered records pairs that a successful commit registered.
func (c *eventTypeCache) registered(types []eventType) {
	for _, t := range types {
		c.seen.Store(t, struct{}{})
	}
}

// EventTypes implements store.Store.
func (s *Store) EventTypes(ctx context.Context) (map[string][]string, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	rows, err := s.pool.Query(ctx, s.sql.eventTypes)
	if err != nil {
		return nil, s.wrap(err, "read the event types")
	}
	pairs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventType, error) {
		var t eventType
		err := row.Scan(&t.entityType, &t.eventType)
		return t, err
	})
	if err != nil {
		return nil, s.wrap(err, "read the event types")
	}
	types := map[string][]string{}
	for _, t := range pairs { // sorted by the query
		types[t.entityType] = append(types[t.entityType], t.eventType)
	}
	return types, nil
}
