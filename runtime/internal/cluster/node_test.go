package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store/memory"
)

func newTestNode(t *testing.T, st *memory.Store, id string) *Node {
	t.Helper()
	n, err := New(Config{ID: id, Address: id, Shards: 64, LeaseTTL: time.Second, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func tickAll(t *testing.T, nodes ...*Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		for _, n := range nodes {
			if err := n.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestNodesShareShards: nodes that join split the shards evenly, each
// shard served by exactly one; a node that leaves hands its shards over.
func TestNodesShareShards(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := newTestNode(t, st, "a"), newTestNode(t, st, "b")
	if err := a.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Held() != 64 {
		t.Fatalf("a alone holds %d shards, want 64", a.Held())
	}
	if err := b.Join(ctx); err != nil {
		t.Fatal(err)
	}
	tickAll(t, a, b)
	if a.Held() != 32 || b.Held() != 32 {
		t.Fatalf("held a=%d b=%d, want 32 each", a.Held(), b.Held())
	}
	for s := range 64 {
		_, byA := a.Serving(s)
		_, byB := b.Serving(s)
		if byA == byB {
			t.Fatalf("shard %d served by a=%v b=%v, want exactly one", s, byA, byB)
		}
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	tickAll(t, a)
	if a.Held() != 64 {
		t.Errorf("after b left, a holds %d shards, want 64 (at once, not after expiry)", a.Held())
	}
}

// TestShardCountIsFixed: a node configured with another shard count
// refuses to join, and says how to fix it.
func TestShardCountIsFixed(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := context.Background()
	if err := newTestNode(t, st, "a").Join(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := New(Config{ID: "b", Address: "b", Shards: 128, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	err = other.Join(ctx)
	if err == nil || err.Error() != "this node is configured with 128 shards, but the cluster in this database has 64; start it with --shards 64 (the count is fixed when the first node starts)" {
		t.Errorf("Join with another shard count: %v", err)
	}
}

// TestRestartedNodeTakesBackItsLeases: a node that restarts with the same
// ID takes its shards back at once, with new epochs, instead of waiting
// for its old leases to lapse.
func TestRestartedNodeTakesBackItsLeases(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := context.Background()
	first := newTestNode(t, st, "a")
	if err := first.Join(ctx); err != nil {
		t.Fatal(err)
	}
	oldEpoch, _ := first.Serving(7)
	second := newTestNode(t, st, "a") // the same node after kill -9
	if err := second.Join(ctx); err != nil {
		t.Fatal(err)
	}
	epoch, ok := second.Serving(7)
	if !ok || epoch <= oldEpoch {
		t.Errorf("restarted node serves shard 7: %v at epoch %d, want a new epoch over %d", ok, epoch, oldEpoch)
	}
}
