package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

// eventTypeTests are the tests of the event type registry
// (store.Store.EventTypes): Commit registers the types of the events it
// writes in the same transaction, so the registry holds every type in
// the journal and none that is not (INVARIANTS.md, invariant 9).
var eventTypeTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"EventTypesOfCommittedEvents", testEventTypesOfCommittedEvents},
	{"FailedCommitRegistersNoEventTypes", testFailedCommitRegistersNoEventTypes},
	{"ConcurrentCommitsRegisterEventTypes", testConcurrentCommitsRegisterEventTypes},
}

// wantEventTypes checks the whole registry, written as
// "entity type: event type, event type; entity type: ...".
func wantEventTypes(t *testing.T, s store.Store, want string) {
	t.Helper()
	types, err := s.EventTypes(ctx)
	if err != nil {
		t.Fatalf("EventTypes: %v", err)
	}
	var parts []string
	for _, entityType := range slices.Sorted(maps.Keys(types)) {
		parts = append(parts, fmt.Sprintf("%q: %q", entityType, types[entityType]))
	}
	if got := strings.Join(parts, "; "); got != want {
		t.Errorf("EventTypes = %s\nwant          %s", got, want)
	}
}

func testEventTypesOfCommittedEvents(t *testing.T, s store.Store) {
	wantEventTypes(t, s, "")
	x1, x2 := store.Ref{Type: "x", ID: "1"}, store.Ref{Type: "x", ID: "2"}
	// Type names that share a prefix, and an entity type whose name is
	// another's with an event type's name appended, must stay apart.
	xb := store.Ref{Type: "xB", ID: "1"}
	commit(t, s, &store.Batch{
		Events: []store.Event{ev(x1, 1, "B", ""), ev(x1, 2, "A", ""), ev(x1, 3, "B", ""), ev(x2, 1, "A", ""), ev(xb, 1, "", "")},
		// Key-value entities have no event types.
		Values: []store.Value{{Entity: store.Ref{Type: "kv", ID: "1"}, Version: 1}},
	})
	wantEventTypes(t, s, `"x": ["A" "B"]; "xB": [""]`)
	// Types registered before are not listed twice; a new one joins them.
	commit(t, s, &store.Batch{Events: []store.Event{ev(x1, 4, "A", ""), ev(x2, 2, "C", ""), ev(store.Ref{Type: "y", ID: "1"}, 1, "A", "")}})
	wantEventTypes(t, s, `"x": ["A" "B" "C"]; "xB": [""]; "y": ["A"]`)
}

// testFailedCommitRegistersNoEventTypes: a refused batch registers none
// of its types, whether the store finds out before writing (the batch
// contradicts itself) or in the transaction (a stored seq); and a store
// that remembers what it registered must not remember a refused batch's
// types as registered.
func testFailedCommitRegistersNoEventTypes(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "x", ID: "1"}
	other := store.Ref{Type: "y", ID: "1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "A", "")}})

	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(other, 1, "New", ""), ev(ref, 1, "New", "")}})
	wantConflict(t, err, ref)
	err = s.Commit(ctx, &store.Batch{Events: []store.Event{ev(other, 1, "Gap", ""), ev(other, 3, "Gap", "")}})
	wantConflict(t, err, other)
	err = s.Commit(ctx, &store.Batch{
		Events:   []store.Event{ev(other, 1, "Answered", "")},
		Outcomes: []store.Outcome{okOutcome(ref, "k", "", now().Add(hour)), okOutcome(ref, "k", "", now().Add(hour))},
	})
	if err == nil {
		t.Fatal("Commit of one key answered twice succeeded")
	}
	wantEventTypes(t, s, `"x": ["A"]`)

	// The refused types register with the next batch that holds them.
	commit(t, s, &store.Batch{Events: []store.Event{ev(other, 1, "New", ""), ev(ref, 2, "New", "")}})
	wantEventTypes(t, s, `"x": ["A" "New"]; "y": ["New"]`)
}

// testConcurrentCommitsRegisterEventTypes: writers of different entities
// committing the same new types at once all succeed (registering a type
// another writer is registering is no conflict), and each type is listed
// once.
func testConcurrentCommitsRegisterEventTypes(t *testing.T, s store.Store) {
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ref := store.Ref{Type: "x", ID: fmt.Sprint(w)}
			// Half of the writers list the types in the other order.
			types := []string{"A", "B", "C"}
			if w%2 == 1 {
				slices.Reverse(types)
			}
			var events []store.Event
			for i, typ := range types {
				events = append(events, ev(ref, int64(i+1), typ, ""))
			}
			errs <- s.Commit(ctx, &store.Batch{Events: events})
		})
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if err := errors.Join(failed...); err != nil {
		t.Fatalf("concurrent commits of new event types: %v", err)
	}
	wantEventTypes(t, s, `"x": ["A" "B" "C"]`)
}
