// Package store defines where statefun keeps entity history: the Store
// interface every backend implements, and the records it holds.
//
// Backends live in subpackages: postgres (production), embedded (a local
// file, the default when no database is configured) and memory (tests).
// storetest holds the conformance suite that each of them passes.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Ref names one entity: its stable type name and its ID.
type Ref struct {
	Type string
	ID   string
}

func (r Ref) String() string { return r.Type + "/" + r.ID }

// Event is one journaled event of an event-sourced entity.
type Event struct {
	Entity Ref
	// Seq is the event's position in the entity's history, from 1, with no
	// gaps. (Entity, Seq) is unique: that is the fence against two writers.
	Seq int64
	// EventType is the stored event type name from the annotations.
	EventType string
	// Payload is the event in protobuf binary encoding.
	Payload []byte
}

// Value is the state of a key-value entity.
type Value struct {
	Entity Ref
	// Version counts the writes of the value, from 1. A write of version
	// v succeeds only if the stored version is v-1 (0: no value yet).
	Version int64
	Payload []byte
}

// Snapshot is the state of an event-sourced entity after its first Seq
// events. Snapshots are an optimisation: history is complete without them.
type Snapshot struct {
	Entity  Ref
	Seq     int64
	Payload []byte
}

// Batch is what one Commit writes: events and values of any number of
// entities. An entity's events in a batch are consecutive and in order.
type Batch struct {
	Events []Event
	Values []Value
}

// Len returns the number of records in the batch.
func (b *Batch) Len() int { return len(b.Events) + len(b.Values) }

// ConflictError reports that Commit wrote nothing because the history of
// some entities is not what the batch expected: another writer got there
// first (an event at the same Seq exists, or the value has another
// version). The writer of those entities is stale and must reload them.
type ConflictError struct {
	Entities []Ref
}

func (e *ConflictError) Error() string {
	names := make([]string, len(e.Entities))
	for i, r := range e.Entities {
		names[i] = r.String()
	}
	return fmt.Sprintf("conflicting writes to %s: another writer changed their history; reload them", strings.Join(names, ", "))
}

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("store is closed")

// Store keeps entity history. Implementations are safe for concurrent use.
type Store interface {
	// Commit writes the batch atomically: all of it is durable when Commit
	// returns nil, none of it otherwise. When some entities' history
	// changed under the writer it returns a *ConflictError naming them, and
	// writes nothing.
	Commit(ctx context.Context, batch *Batch) error

	// ReadEvents calls fn with the events of ref whose Seq is greater than
	// afterSeq, in Seq order. It stops at the first error fn returns.
	ReadEvents(ctx context.Context, ref Ref, afterSeq int64, fn func(Event) error) error

	// LatestSnapshot returns the snapshot of ref with the greatest Seq.
	LatestSnapshot(ctx context.Context, ref Ref) (Snapshot, bool, error)

	// SaveSnapshot stores a snapshot. A snapshot older than the stored one
	// is ignored.
	SaveSnapshot(ctx context.Context, snap Snapshot) error

	// DeleteSnapshots deletes every snapshot of an entity type.
	DeleteSnapshots(ctx context.Context, entityType string) error

	// LoadValue returns the value of a key-value entity.
	LoadValue(ctx context.Context, ref Ref) (Value, bool, error)

	// Close releases the store's resources.
	Close() error
}
