// Package cluster keeps a statefun node's place in a cluster: it registers
// the node in the database, holds the leases of the shards the node owns,
// and moves shards between nodes when nodes join and leave. The database
// is the coordinator (store.Cluster); there is no consensus protocol and no
// other service. See SCALING.md for the design and its figures.
package cluster

import (
	"encoding/binary"
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
// membership.
func score(node string, shard int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(node))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(shard))
	_, _ = h.Write(b[:])
	// FNV's low bits mix poorly for inputs that differ in one byte; a
	// finalizer spreads them (splitmix64's).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Assign returns, for each shard, the node that should own it: rendezvous
// hashing (each shard prefers the nodes in the order of their scores)
// with bounded loads (a node takes floor(shards/nodes) shards, some one
// more, so loads differ by at most one). A node
// joining or leaving moves about the shards it gains or had, and a few
// more where a full node pushes a shard to its next choice; every node
// ends within one shard of every other.
func Assign(nodes []string, shards int) []string {
	owners := make([]string, shards)
	if len(nodes) == 0 {
		return owners
	}
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	// Every node gets base shards, and extra of them one more: loads
	// differ by at most one.
	base, extra := shards/len(nodes), shards%len(nodes)
	load := make(map[string]int, len(nodes))
	ranked := make([]string, len(nodes))
	scores := make(map[string]uint64, len(nodes))
	// Shards pick in the order of their best score, not their number, so
	// that which shards spill to a second choice does not depend on
	// numbering alone but on how strongly they prefer their first.
	order := make([]int, shards)
	best := make([]uint64, shards)
	for s := range shards {
		order[s] = s
		for _, n := range nodes {
			best[s] = max(best[s], score(n, s))
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
		copy(ranked, nodes)
		for _, n := range nodes {
			scores[n] = score(n, s)
		}
		slices.SortFunc(ranked, func(a, b string) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		for _, n := range ranked {
			if load[n] < base || (load[n] == base && extra > 0) {
				if load[n] == base {
					extra--
				}
				owners[s] = n
				load[n]++
				break
			}
		}
	}
	return owners
}
