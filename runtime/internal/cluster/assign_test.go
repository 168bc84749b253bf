package cluster

import (
	"fmt"
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
