package cluster

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestAssignBalanced: every node gets within one shard of every other.
func TestAssignBalanced(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 3, 5, 7, 16, 100} {
		nodes := make([]string, n)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("10.0.0.%d:8080", i)
		}
		owners := Assign(nodes, 1024)
		load := map[string]int{}
		for s, o := range owners {
			if o == "" {
				t.Fatalf("%d nodes: shard %d has no owner", n, s)
			}
			load[o]++
		}
		lo, hi := 1024, 0
		for _, node := range nodes {
			lo, hi = min(lo, load[node]), max(hi, load[node])
		}
		if hi-lo > 1 {
			t.Errorf("%d nodes: loads from %d to %d", n, lo, hi)
		}
		t.Logf("%d nodes: loads %d..%d", n, lo, hi)
	}
}

// TestAssignMovesLittle: a node joining or leaving moves not much more
// than the shards it gains or had.
func TestAssignMovesLittle(t *testing.T) {
	t.Parallel()
	const shards = 1024
	for _, n := range []int{2, 3, 5, 10, 30} {
		nodes := make([]string, n)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("node-%d", i)
		}
		before := Assign(nodes, shards)
		after := Assign(append(nodes, "newcomer"), shards)
		moved := 0
		for s := range shards {
			if before[s] != after[s] {
				moved++
			}
		}
		ideal := shards / (n + 1)
		t.Logf("%d→%d nodes: %d moved, ideal %d (%.2fx)", n, n+1, moved, ideal, float64(moved)/float64(ideal))
		if float64(moved) > 1.5*float64(ideal)+8 {
			t.Errorf("%d→%d nodes: %d shards moved, ideal %d", n, n+1, moved, ideal)
		}
	}
}

// TestAssignMatchesReference: Assign computes exactly what the first
// version of it computed (assignReference, kept below as it was written),
// so that nodes of different versions agree on the assignment during a
// rolling upgrade.
func TestAssignMatchesReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 30 {
		nodes := make([]string, 1+rng.IntN(40))
		for i := range nodes {
			nodes[i] = fmt.Sprintf("10.0.%d.%d:8080", rng.IntN(4), rng.IntN(256))
		}
		shards := 1 + rng.IntN(500)
		if got, want := Assign(nodes, shards), assignReference(nodes, shards); !slices.Equal(got, want) {
			t.Fatalf("Assign(%q, %d) differs from the reference", nodes, shards)
		}
	}
}

// BenchmarkAssign: the assignment each node computes on each heartbeat.
func BenchmarkAssign(b *testing.B) {
	for _, c := range []struct{ nodes, shards int }{{30, 1024}, {100, 10000}, {200, 4096}} {
		nodes := make([]string, c.nodes)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("node-%03d", i)
		}
		b.Run(fmt.Sprintf("nodes=%d/shards=%d", c.nodes, c.shards), func(b *testing.B) {
			for b.Loop() {
				Assign(nodes, c.shards)
			}
		})
	}
}

// assignReference is Assign as first written: hash/fnv per score and a
// sort of the nodes per shard.
func assignReference(nodes []string, shards int) []string {
	score := func(node string, shard int) uint64 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(node))
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(shard))
		_, _ = h.Write(b[:])
		x := h.Sum64()
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		return x
	}
	owners := make([]string, shards)
	if len(nodes) == 0 {
		return owners
	}
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	base, extra := shards/len(nodes), shards%len(nodes)
	load := make(map[string]int, len(nodes))
	ranked := make([]string, len(nodes))
	scores := make(map[string]uint64, len(nodes))
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
