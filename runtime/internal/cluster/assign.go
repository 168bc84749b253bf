// Package cluster keeps a statefun node's place in a cluster: it registers
// the node in the database, holds the leases of the shards the node owns,
// and moves shards between nodes when nodes join and leave. The database
// is the coordinator (store.Cluster); there is no consensus protocol and no
// other service. See SCALING.md for the design and its figures.
package cluster

import (
	"hash/fnv"
	"slices"
)

// ShardOf maps an entity to its shard. The map is part of the stored
// format: changing it would move every entity to another shard while its
// history stays where it is, so it is fixed: FNV-1a (64-bit) over the
// entity type, a zero byte and the entity ID, modulo the shard count.
func ShardOf(entityType, id string, shards int) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(entityType))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(id))
	return int(h.Sum64() % uint64(shards))
}

// score is a node's rendezvous weight for a shard: every node computes the
// same scores, so every node computes the same assignment from the same
// membership. It is FNV-1a (64-bit) over the node's name and the shard's
// number as 8 little-endian bytes; nodeHash is the part over the name, so
// that Assign hashes each name once, not once per shard.
func score(node uint64, shard int) uint64 {
	x := node
	for i := range 8 {
		x ^= uint64(byte(uint64(shard) >> (8 * i)))
		x *= fnvPrime
	}
	// FNV's low bits mix poorly for inputs that differ in one byte; a
	// finalizer spreads them (splitmix64's).
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// FNV-1a's 64-bit parameters (hash/fnv's, inlined so that scoring a shard
// allocates nothing).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// nodeHash is FNV-1a's state after a node's name.
func nodeHash(node string) uint64 {
	x := uint64(fnvOffset)
	for i := range len(node) {
		x ^= uint64(node[i])
		x *= fnvPrime
	}
	return x
}

// Assign returns, for each shard, the node that should own it: rendezvous
// hashing (each shard prefers the nodes in the order of their scores)
// with bounded loads (a node takes floor(shards/nodes) shards, some one
// more, so loads differ by at most one). A node
// joining or leaving moves about the shards it gains or had, and a few
// more where a full node pushes a shard to its next choice; every node
// ends within one shard of every other.
//
// Every node must compute the same assignment, whichever version of
// statefun it runs during a rolling upgrade: the result is part of the
// protocol, and TestAssignMatchesReference pins it.
func Assign(nodes []string, shards int) []string {
	owners := make([]string, shards)
	if len(nodes) == 0 {
		return owners
	}
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	hashes := make([]uint64, len(nodes))
	for i, n := range nodes {
		hashes[i] = nodeHash(n)
	}
	// Every node gets base shards, and extra of them one more: loads
	// differ by at most one.
	base, extra := shards/len(nodes), shards%len(nodes)
	load := make([]int, len(nodes))
	// Shards pick in the order of their best score, not their number, so
	// that which shards spill to a second choice does not depend on
	// numbering alone but on how strongly they prefer their first.
	order := make([]int, shards)
	best := make([]uint64, shards)
	for s := range shards {
		order[s] = s
		for _, h := range hashes {
			best[s] = max(best[s], score(h, s))
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case best[a] > best[b]:
			return -1
		case best[a] < best[b]:
			return 1
		}
		return a - b
	})
	for _, s := range order {
		// The shard's most preferred node among those with room: the
		// first with room in the order of the shard's scores. Nodes are
		// few next to shards, so a scan beats sorting them per shard.
		pick, top := -1, uint64(0)
		for i, h := range hashes {
			if load[i] > base || (load[i] == base && extra == 0) {
				continue
			}
			if sc := score(h, s); pick < 0 || sc > top {
				pick, top = i, sc
			}
		}
		if load[pick] == base {
			extra--
		}
		owners[s] = nodes[pick]
		load[pick]++
	}
	return owners
}
