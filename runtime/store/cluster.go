package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Cluster is implemented by stores that several statefun nodes can share
// (Postgres, and the memory store for tests): the database is the
// cluster's coordinator. It keeps the shard count, the nodes and one lease
// per shard; a node serves a shard's entities only while it holds the
// shard's lease, and every write for a shard names the lease's epoch so
// that a node that lost it writes nothing (INVARIANTS.md, invariant 14).
//
// Times in leases are the store's clock (for Postgres, the database
// server's now()); nodes never compare them with their own clocks, only
// durations.
type Cluster interface {
	// InitShards records n as the cluster's shard count if none is
	// recorded yet, and returns the recorded count.
	InitShards(ctx context.Context, n int) (int, error)

	// Secret records candidate as the cluster's shared secret if none is
	// recorded yet, and returns the recorded one. The nodes sign the calls
	// they forward to each other with it (internal tokens), so that a
	// node trusts a forwarded call's caller only when another node, not
	// an outsider, made it. Anyone who can read the store can read it,
	// which grants nothing they could not do through the store already.
	Secret(ctx context.Context, candidate []byte) ([]byte, error)

	// Heartbeat registers node (or refreshes its heartbeat and address)
	// and extends to now+ttl every lease it holds, in one statement. It
	// returns the leases node holds after that.
	Heartbeat(ctx context.Context, node Node, ttl time.Duration) ([]Lease, error)

	// Nodes returns the registered nodes with their last heartbeat, as
	// the store's clock saw it, and how long ago that was.
	Nodes(ctx context.Context) ([]Node, error)

	// Acquire takes, for node, the leases of those shards that no node
	// holds or whose lease expired (or that node itself holds: a
	// restarted node takes back its own), each with a new epoch, valid
	// until now+ttl. It returns the leases it took.
	Acquire(ctx context.Context, node string, shards []int, ttl time.Duration) ([]Lease, error)

	// Release gives up node's leases of shards at once, so another node
	// may take them without waiting for them to expire.
	Release(ctx context.Context, node string, shards []int) error

	// Leases returns every shard's lease: who holds it, since which
	// epoch, until when (by the store's clock).
	Leases(ctx context.Context) ([]Lease, error)

	// Leave removes node from the nodes. Its leases stay as they are: a
	// leaving node hands its shards off (Release) after the other nodes
	// have seen it leave, so that they are ready to take them.
	Leave(ctx context.Context, node string) error

	// SaveConsumerPositionFenced is SaveConsumerPosition for a consumer
	// run by the owner of a shard: it writes nothing, and returns a
	// *FencedError, unless fence holds in the same transaction.
	SaveConsumerPositionFenced(ctx context.Context, consumer, entityType string, pos Position, fence *Fence) error
}

// Node is a member of a cluster.
type Node struct {
	// ID names the node; it is its advertised address, so a restarted
	// node is the same node.
	ID string
	// Address is where peers reach the node's gRPC port.
	Address   string
	StartedAt time.Time
	Heartbeat time.Time
	// Age is how long ago the last heartbeat was, by the store's clock
	// (filled in by Nodes).
	Age time.Duration
}

// Lease is one shard's lease.
type Lease struct {
	Shard int
	Owner string // "" when no node holds it
	Epoch int64
	// Expires is when the lease lapses, by the store's clock.
	Expires time.Time
	// Remaining is Expires minus the store's now when the lease was
	// read or written (negative when expired).
	Remaining time.Duration
}

// ShardEpoch names the lease a write depends on.
type ShardEpoch struct {
	Shard int
	Epoch int64
}

// Fence is a writer's claim to the shards of a write: the store applies
// the write only if, in the same transaction, Node holds every named
// shard's lease at the named epoch. Whether the lease has expired does not
// matter: a lease that lapsed but was not taken over still excludes every
// other writer, and one that was taken over has a new epoch.
type Fence struct {
	Node   string
	Shards []ShardEpoch
}

// FencedError reports that a write was refused because its writer no
// longer holds the leases of these shards at the epochs it named: another
// node owns them now. Nothing was written.
type FencedError struct {
	Shards []int
}

func (e *FencedError) Error() string {
	s := slices.Clone(e.Shards)
	slices.Sort(s)
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = fmt.Sprint(n)
	}
	return fmt.Sprintf("this node no longer holds the lease of shard %s: another node owns it now", strings.Join(parts, ", "))
}
