package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// stmtKind names the statements of store.Cluster, to count them.
type stmtKind int

const (
	stmtInitShards stmtKind = iota
	stmtHeartbeat
	stmtNodes
	stmtLeases
	stmtAcquire
	stmtRelease
	stmtLeave
	stmtFenced
	numStmtKinds
)

func (k stmtKind) String() string {
	return [...]string{"InitShards", "Heartbeat", "Nodes", "Leases", "Acquire", "Release", "Leave", "SaveConsumerPositionFenced"}[k]
}

// simDB is the simulation's database: the lease semantics of the memory
// store (runtime/store/memory/cluster.go) on the simulation's clock, the
// database clock, instead of time.Now. Its methods are statements
// executing: the scheduler calls them at the virtual instant a statement
// reaches the database, never a node directly (nodes reach it through a
// simConn).
type simDB struct {
	// clock is the database clock: virtual time since simEpoch.
	clock  func() time.Duration
	shards int
	nodes  map[string]store.Node
	// nodeIDs lists the nodes' IDs in order.
	nodeIDs []string
	leases  []store.Lease
	// expires is each lease's Expires as virtual time, to compute what
	// remains in integers.
	expires []time.Duration
	// stmts counts the statements executed, by kind; rows counts the
	// lease and node rows they wrote or returned.
	stmts, rows [numStmtKinds]int64
	// lastOwner is the last node that took each shard's lease; moves
	// counts, per shard, the times a node took a lease another node took
	// before it, since resetMoves.
	lastOwner []string
	moves     []int
	// owned indexes the leases by owner: what Postgres's index on the
	// owner column does for a heartbeat.
	owned map[string]map[int]bool
	// history keeps each shard's last changes of hands, to explain a
	// failed check.
	history [][]leaseChange
}

// leaseChange is a lease changing hands: taken (by a node, at an epoch)
// or given up (node "").
type leaseChange struct {
	at    time.Duration
	node  string
	epoch int64
}

func (c leaseChange) String() string {
	if c.node == "" {
		return fmt.Sprintf("%v released", c.at)
	}
	return fmt.Sprintf("%v %s took it at epoch %d", c.at, c.node, c.epoch)
}

func newSimDB(clock func() time.Duration) *simDB {
	return &simDB{clock: clock, nodes: map[string]store.Node{}, owned: map[string]map[int]bool{}}
}

func (db *simDB) now() time.Time { return simEpoch.Add(db.clock()) }

func (db *simDB) setExpires(shard int, at time.Duration) {
	db.expires[shard] = at
	db.leases[shard].Expires = simEpoch.Add(at)
}

func (db *simDB) count(k stmtKind, rows int) {
	db.stmts[k]++
	db.rows[k] += int64(rows)
}

func (db *simDB) initShards(n int) (int, error) {
	db.count(stmtInitShards, 0)
	if n < 1 {
		return 0, fmt.Errorf("shard count %d: use at least 1", n)
	}
	if db.shards == 0 {
		db.shards = n
		db.leases = make([]store.Lease, n)
		for i := range db.leases {
			db.leases[i] = store.Lease{Shard: i}
		}
		db.expires = make([]time.Duration, n)
		for i := range n {
			db.setExpires(i, -time.Hour)
		}
		db.history = make([][]leaseChange, n)
		db.lastOwner = make([]string, n)
		db.moves = make([]int, n)
	}
	return db.shards, nil
}

// heartbeat registers node, or refreshes it, and extends every lease it
// holds to now+ttl, expired or not (as long as no other node took it).
func (db *simDB) heartbeat(node store.Node, ttl time.Duration) []store.Lease {
	now := db.now()
	until := db.clock() + ttl
	if cur, ok := db.nodes[node.ID]; ok {
		node.StartedAt = cur.StartedAt
	} else if node.StartedAt.IsZero() {
		node.StartedAt = now
	}
	node.Heartbeat = now
	if _, ok := db.nodes[node.ID]; !ok {
		i, _ := slices.BinarySearch(db.nodeIDs, node.ID)
		db.nodeIDs = slices.Insert(db.nodeIDs, i, node.ID)
	}
	db.nodes[node.ID] = node
	var held []store.Lease
	for _, sh := range db.ownedBy(node.ID) {
		db.setExpires(sh, until)
		r := db.leases[sh]
		r.Remaining = ttl
		held = append(held, r)
	}
	db.count(stmtHeartbeat, 1+len(held))
	return held
}

func (db *simDB) nodeList() []store.Node {
	now := db.now()
	out := make([]store.Node, 0, len(db.nodes))
	for _, id := range db.nodeIDs {
		n := db.nodes[id]
		n.Age = now.Sub(n.Heartbeat)
		out = append(out, n)
	}
	db.count(stmtNodes, len(out))
	return out
}

// acquire takes the leases of those shards no node holds, whose lease
// expired, or that node holds already, each with a new epoch.
func (db *simDB) acquire(node string, shards []int, ttl time.Duration) []store.Lease {
	now := db.clock()
	var got []store.Lease
	for _, sh := range shards {
		if sh < 0 || sh >= db.shards {
			continue
		}
		l := &db.leases[sh]
		if l.Owner != "" && l.Owner != node && db.expires[sh] >= now {
			continue
		}
		db.setOwner(sh, node)
		l.Epoch++
		db.setExpires(sh, now+ttl)
		r := *l
		r.Remaining = ttl
		got = append(got, r)
		if last := db.lastOwner[sh]; last != node {
			if last != "" {
				db.moves[sh]++
			}
			db.lastOwner[sh] = node
		}
	}
	db.count(stmtAcquire, len(shards))
	return got
}

// releaseLeases gives up node's leases of shards and returns those it
// gave up.
func (db *simDB) releaseLeases(node string, shards []int) []int {
	db.count(stmtRelease, len(shards))
	return db.release(node, shards)
}

func (db *simDB) release(node string, shards []int) []int {
	now := db.clock()
	var released []int
	for _, sh := range shards {
		if sh < 0 || sh >= db.shards {
			continue
		}
		if l := &db.leases[sh]; l.Owner == node {
			db.setOwner(sh, "")
			db.setExpires(sh, now)
			released = append(released, sh)
		}
	}
	return released
}

func (db *simDB) leaseList() []store.Lease {
	now := db.clock()
	out := slices.Clone(db.leases)
	for i := range out {
		out[i].Remaining = db.expires[i] - now
	}
	db.count(stmtLeases, len(out))
	return out
}

// leave removes node and releases its leases; it returns those.
func (db *simDB) leave(node string) []int {
	if i, ok := slices.BinarySearch(db.nodeIDs, node); ok {
		db.nodeIDs = slices.Delete(db.nodeIDs, i, i+1)
	}
	delete(db.nodes, node)
	released := db.release(node, db.ownedBy(node))
	db.count(stmtLeave, 1+len(released))
	return released
}

// ownedBy returns the shards whose lease node holds, in order.
func (db *simDB) ownedBy(node string) []int {
	shards := make([]int, 0, len(db.owned[node]))
	for sh := range db.owned[node] {
		shards = append(shards, sh)
	}
	slices.Sort(shards)
	return shards
}

func (db *simDB) setOwner(shard int, node string) {
	l := &db.leases[shard]
	h := append(db.history[shard], leaseChange{db.clock(), node, l.Epoch}) //nolint:gocritic // h is trimmed and stored back below
	if node != "" {
		h[len(h)-1].epoch++ // the new epoch
	}
	db.history[shard] = h[max(0, len(h)-6):]
	if l.Owner != "" {
		delete(db.owned[l.Owner], shard)
	}
	l.Owner = node
	if node != "" {
		if db.owned[node] == nil {
			db.owned[node] = map[int]bool{}
		}
		db.owned[node][shard] = true
	}
}

// mayWrite says whether a write for shard, fenced with node and epoch,
// would commit now: the fence of every write for a shard (store.Fence).
func (db *simDB) mayWrite(node string, shard int, epoch int64) bool {
	l := db.leases[shard]
	return l.Owner == node && l.Epoch == epoch
}

func (db *simDB) checkFence(f *store.Fence) error {
	db.count(stmtFenced, len(f.Shards))
	if f.Node == "" {
		return errors.New("a fence must name its node")
	}
	var lost []int
	for _, se := range f.Shards {
		if !db.mayWrite(f.Node, se.Shard, se.Epoch) {
			lost = append(lost, se.Shard)
		}
	}
	if len(lost) > 0 {
		return &store.FencedError{Shards: lost}
	}
	return nil
}

// resetMoves starts counting moves afresh.
func (db *simDB) resetMoves() { clear(db.moves) }
