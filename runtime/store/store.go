// Package store defines where statefun keeps entity history: the Store
// interface every backend implements, split into the roles its callers
// use (Journal, Snapshots, Outcomes, Feed, Positions, Registry, Timers), and the
// records it holds.
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
	"time"
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
	// Fence, when set, makes the save conditional like a Batch's.
	Fence *Fence
}

// Outcome is what a command that carried an idempotency key answered: stored with the
// command's events (same transaction) so that a retry with the same key gets the same
// answer without running the command again.
//
// (Entity, Key) names an outcome. While one is stored and has not expired,
// a Commit carrying another outcome for the same (Entity, Key) is refused
// as a conflict: two writers answered the same request, and one of them is
// stale. Expiry is judged by the store's clock (a database server's, for
// a store that has one, so that every node agrees), and stores keep
// Expires to the microsecond.
type Outcome struct {
	Entity  Ref
	Key     string
	Code    uint32    // gRPC status code; 0 means OK and Reply holds the reply
	Message string    // the error message when Code != 0
	Reply   []byte    // the reply in protobuf binary encoding when Code == 0
	Expires time.Time // after this the outcome may be deleted and the key reused
}

// Batch is what one Commit writes: events and values of any number of
// entities, and the outcomes of the commands that produced them. An
// entity's events in a batch are consecutive and in order. An outcome
// needs no event or value of its entity in the batch (a command that
// failed, or changed nothing, still records its answer); a batch holding
// two outcomes for one (Entity, Key) contradicts itself and conflicts.
type Batch struct {
	Events   []Event
	Values   []Value
	Outcomes []Outcome
	// Timers are the changes the batch's commands made to their entities'
	// timers, in the order they made them: of several changes to one
	// (Entity, Name), the last wins.
	Timers []TimerChange
	// Fence, when set, makes the whole batch conditional on the writer
	// still holding the leases it names (Cluster stores only): if any is
	// lost, Commit writes nothing and returns a *FencedError naming every
	// lost shard.
	Fence *Fence
}

// Len returns the number of records in the batch, outcomes included: a
// batch that holds only outcomes is written.
func (b *Batch) Len() int {
	return len(b.Events) + len(b.Values) + len(b.Outcomes) + len(b.Timers)
}

// Position is a place in an entity type's feed: the committed events of
// every entity of that type (or the values of a key-value type), in the
// order consumers read them. It is opaque: only the store that returned
// it interprets it. The zero Position is before the first event.
type Position string

// FeedEvent is an event read from a feed, with the position just after it.
// In the feed of a key-value entity type it carries a value instead: see
// ValueEventType.
type FeedEvent struct {
	Event
	Position Position
}

// ValueEventType is the EventType of a FeedEvent that carries the value
// of a key-value entity rather than an event: its Seq is the value's
// Version and its Payload the value's payload. The name cannot clash with
// a stored event type, which comes from a proto message's name.
const ValueEventType = "statefun.value"

// ConflictError reports that Commit wrote nothing because the history of
// some entities is not what the batch expected: another writer got there
// first (an event at the same Seq exists, the value has another version,
// or an outcome with the same key exists and has not expired). The writer
// of those entities is stale and must reload them.
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

// ErrOutcomeUnknown is wrapped by Commit errors after which the batch may or may not be
// durable (the connection broke or the deadline passed after the batch was sent). A Commit
// error that does not wrap it means nothing was written.
//
// Only a networked store returns it: a local store knows whether its own
// transaction committed. The errors that wrap it keep the cause in their
// chain too (errors.Is(err, context.DeadlineExceeded) still works).
var ErrOutcomeUnknown = errors.New("the commit's outcome is unknown")

// Store keeps entity history: the union of the roles below, each named
// for what its callers do, plus Close. A backend implements Store and
// passes the one conformance suite (storetest); inside the runtime each
// caller depends only on the role it uses. Implementations are safe for
// concurrent use.
type Store interface {
	Journal
	Snapshots
	Outcomes
	Feed
	Positions
	Registry
	Timers
	Views

	// Close releases the store's resources.
	Close() error
}

// Committer is what the journal writer needs: it only commits. It is the
// writing half of Journal.
type Committer interface {
	// Commit writes the batch atomically, outcomes and the registration
	// of its events' types (EventTypes) included: all of it is durable
	// when Commit returns nil. When some entities' history changed
	// under the writer, or one of their outcomes' keys is already
	// answered (stored and not expired), it returns a *ConflictError
	// naming them, and writes nothing; an expired outcome with the same
	// key is replaced. Any other error wrapping ErrOutcomeUnknown leaves
	// the batch written or not; one that does not wrap it wrote nothing.
	// It must not keep batch or its slices once it returns: the journal
	// writer builds the next batch in them.
	Commit(ctx context.Context, batch *Batch) error
}

// Journal is the history of entities: the journal writer appends to it
// (Committer), and an entity host reads it back when it loads an entity,
// after the latest snapshot (Snapshots). What Commit made durable is what
// the reads return.
type Journal interface {
	Committer

	// ReadEvents calls fn with the events of ref whose Seq is greater than
	// afterSeq, in Seq order. It stops at the first error fn returns.
	ReadEvents(ctx context.Context, ref Ref, afterSeq int64, fn func(Event) error) error

	// LoadValue returns the value of a key-value entity.
	LoadValue(ctx context.Context, ref Ref) (Value, bool, error)
}

// Snapshots are the saved states of event-sourced entities. The
// snapshotter saves them off the hot path once their events are durable;
// an entity host starts a load from the latest. They only shorten
// recovery: a store may drop any of them without losing history.
type Snapshots interface {
	// LatestSnapshot returns the snapshot of ref with the greatest Seq.
	LatestSnapshot(ctx context.Context, ref Ref) (Snapshot, bool, error)

	// SaveSnapshot stores a snapshot. A snapshot older than the stored one
	// is ignored.
	SaveSnapshot(ctx context.Context, snap Snapshot) error

	// DeleteSnapshots deletes every snapshot of an entity type.
	DeleteSnapshots(ctx context.Context, entityType string) error
}

// Outcomes are the stored answers of commands that carried an idempotency
// key, written by Commit with the command's events. An entity host looks
// one up before running a keyed command again; the runtime's sweeper
// deletes the expired ones.
type Outcomes interface {
	// LoadOutcome returns the outcome stored for key on ref, unless it has expired (Expires before now).
	LoadOutcome(ctx context.Context, ref Ref, key string) (Outcome, bool, error)

	// ExpireOutcomes deletes up to limit outcomes that expired before `before`, and returns how many it deleted.
	// A caller that gets limit back calls again for the next chunk. limit must be at least 1.
	ExpireOutcomes(ctx context.Context, before time.Time, limit int) (int, error)
}

// Feed is what consumers, the calls dispatcher and view updaters among
// them, read: the committed events of each event-sourced entity type, and
// the committed values of each key-value entity type, in feed order.
//
// The feed of a key-value type is compacted: it holds one FeedEvent per
// entity, its latest value (EventType ValueEventType, Seq its Version),
// at the place of the commit that wrote that value. A later write of the
// entity takes it from there to the place of the new commit. A reader
// that had passed the old place so sees the entity again, with the new
// value; one that had not reached it sees only the new value. A reader
// never sees an entity's versions go back, nor one version twice, and
// one that follows the feed to its end has seen every entity's latest
// value. Within one Commit the values come in no particular order, as do
// events of different entities.
//
// An entity type is event-sourced or key-value, never both, but the
// feed does not ask which: ReadFeed returns the events and values stored
// under entityType, whichever there are, in one order.
type Feed interface {
	// ReadFeed calls fn with up to limit committed events (or values) of
	// entityType that follow after, in feed order. Feed order keeps each
	// entity's events in Seq order. A reader that resumes from the last
	// Position it was given never misses an event, even one whose
	// transaction committed after events that follow it in the feed: such
	// an event must not be returned before every event ordered before it
	// is committed (INVARIANTS.md, invariant 10). The same holds for a
	// value: a reader never misses the latest value of an entity.
	ReadFeed(ctx context.Context, entityType string, after Position, limit int, fn func(FeedEvent) error) error

	// FeedHead returns the Position after the last committed event (or
	// value) of entityType, for a consumer that starts from now.
	FeedHead(ctx context.Context, entityType string) (Position, error)
}

// Positions are where each consumer stopped reading a feed, saved by the
// consumer as it goes and read when it starts, so that a restart resumes
// there. In a cluster the consumer saves through
// Cluster.SaveConsumerPositionFenced instead.
type Positions interface {
	// LoadConsumerPosition returns where a consumer stopped reading the
	// feed of entityType.
	LoadConsumerPosition(ctx context.Context, consumer, entityType string) (Position, bool, error)

	// SaveConsumerPosition durably records where a consumer stopped.
	SaveConsumerPosition(ctx context.Context, consumer, entityType string, pos Position) error
}

// Registry is the record of every event type ever committed, which the
// runtime reads at startup (checkEventTypes) to refuse serving entities
// whose stored events its binary could not apply.
type Registry interface {
	// EventTypes returns, per entity type, the name of every event type
	// ever committed for it, sorted; entity types without events are
	// absent. It reads a registry, not the journal: Commit records each
	// (entity type, event type) pair it has not recorded before in the
	// batch's own transaction, so no event is ever stored under a type
	// missing here (INVARIANTS.md, invariant 9). Nothing is removed.
	EventTypes(ctx context.Context) (map[string][]string, error)
}
