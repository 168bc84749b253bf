// Package console is the web console of a statefun server: its entities,
// their history and state at any version, and its consumers.
package console

import (
	"context"
	"errors"
	"time"
)

// Source is what the console shows, read through the runtime (and the
// store's interfaces behind it, never SQL). The runtime implements it; the
// console's own tests use a fake.
type Source interface {
	// EntityTypes lists the hosted entity types, sorted by type.
	EntityTypes(ctx context.Context) ([]EntityType, error)
	// EntityID builds the ID of an entity of typ from the values of its
	// key fields, in the order of EntityType.KeyFields (one value for a
	// single key field; composite keys have several).
	EntityID(typ string, keyValues []string) (string, error)
	// Entity returns an entity's state at seq (0: its latest), computed by
	// replaying its events from the nearest snapshot at or before seq.
	// ErrNotFound when the entity has no history.
	Entity(ctx context.Context, typ, id string, seq int64) (Entity, error)
	// Events returns up to limit events of an entity with Seq > afterSeq,
	// oldest first.
	Events(ctx context.Context, typ, id string, afterSeq int64, limit int) ([]Event, error)
	// Consumers lists the consumers (views, publishers and the runtime's
	// own included) with their progress, sorted by name.
	Consumers(ctx context.Context) ([]Consumer, error)
	// Timers lists an entity's pending timers, soonest first.
	Timers(ctx context.Context, typ, id string) ([]Timer, error)
	// Views lists the views, sorted by name.
	Views(ctx context.Context) ([]View, error)
	// Cluster returns the cluster's nodes and who holds its shards, as
	// the store records them; Clustered is false for a single node.
	Cluster(ctx context.Context) (Cluster, error)
}

// Timer is a pending timer of an entity: a call to make at Due.
type Timer struct {
	Name     string
	Due      time.Time
	Method   string // the call's method, "/pkg.Service/Method"
	Attempts int    // failed deliveries so far (it is retried)
}

// View is one view: its version, whether it is complete, and its
// updater's work on this node (its lag is its consumer's).
type View struct {
	Name             string
	Version, Serving int // this binary's version; the one answering queries
	Ready            bool
	Updated, Skipped uint64 // rows written by this node's updater; repeats skipped
}

// Cluster is the membership of a cluster and its shards' owners.
type Cluster struct {
	Clustered bool
	Shards    int // the shard count
	Free      int // shards without a live lease (a failover or a handoff under way)
	Nodes     []Node
}

// Node is a member of the cluster.
type Node struct {
	ID, Address   string
	StartedAt     time.Time
	LastHeartbeat time.Duration // how long ago, by the store's clock
	Shards        int           // the shards it holds
	Self          bool          // the node serving this page
}

// ErrNotFound is returned when no entity of that type and ID has any history.
var ErrNotFound = errors.New("no such entity")

// EntityType is one hosted entity type.
type EntityType struct {
	Type      string
	Kind      string   // "event-sourced" or "key-value"
	Service   string   // the gRPC service, "pkg.Service"
	KeyFields []string // the key's fields, in order
	Cached    int64    // entities in memory on this node
	Hits      uint64   // requests served from memory
	Loads     uint64   // entities loaded from the store
	Evictions uint64   // entities passivated
}

// Entity is an entity's state at one version.
type Entity struct {
	Type, ID string
	// Seq is the version shown: the seq of its last event (event-sourced)
	// or its value's version (key-value); Latest the newest there is.
	Seq, Latest int64
	// StateJSON is the state as protobuf JSON (multi-line, indented).
	StateJSON string
	// SnapshotSeq is the seq of the snapshot the replay started from; 0
	// when it started from the first event.
	SnapshotSeq int64
}

// Event is one stored event.
type Event struct {
	Seq         int64
	Type        string
	StoredAt    time.Time // zero when the store did not record it
	PayloadJSON string    // protobuf JSON, indented
}

// Consumer is one consumer of an entity type's feed.
type Consumer struct {
	Name       string
	EntityType string
	Position   string
	// LagEvents is how many committed events it has yet to handle; LagTime
	// how long ago the oldest of them was stored (0 when it is caught up
	// or the store does not say).
	LagEvents int64
	LagTime   time.Duration
	Retrying  int    // entities whose event it is retrying now
	LastError string // the last handler error, "" if none
}
