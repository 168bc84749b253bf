package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// clusterTests are the tests of store.Cluster: shard count, membership,
// leases, and writes fenced by them.
//
// Lease times are the store's clock (for Postgres, the database
// server's). A lease meant to stay live gets an hour; one meant to lapse
// gets a millisecond, and the test then waits lapse, so that neither a
// slow machine nor clocks a little apart can decide a test.
var clusterTests = []struct {
	name string
	fn   func(*testing.T, store.Store, store.Cluster)
}{
	{"InitShardsRecordsOnce", testInitShardsRecordsOnce},
	{"SecretRecordsTheFirst", testSecretRecordsTheFirst},
	{"InitShardsConcurrently", testInitShardsConcurrently},
	{"ClusterRejectsBadArguments", testClusterRejectsBadArguments},
	{"HeartbeatRegistersAndRenewsOwnLeases", testHeartbeatRegistersAndRenewsOwnLeases},
	{"AcquireTakesFreeAndExpiredLeases", testAcquireTakesFreeAndExpiredLeases},
	{"ReacquireOwnLeaseRaisesEpoch", testReacquireOwnLeaseRaisesEpoch},
	{"ReleaseFreesAtOnce", testReleaseFreesAtOnce},
	{"LeaveKeepsLeases", testLeaveKeepsLeases},
	{"FencedCommitWrites", testFencedCommitWrites},
	{"StaleFenceWritesNothing", testStaleFenceWritesNothing},
	{"StaleFenceRegistersNoEventTypes", testStaleFenceRegistersNoEventTypes},
	{"FenceAndSeqBothStale", testFenceAndSeqBothStale},
	{"FencedSnapshot", testFencedSnapshot},
	{"FencedConsumerPosition", testFencedConsumerPosition},
	{"ConcurrentAcquireOneOwner", testConcurrentAcquireOneOwner},
	{"CommitRacingTakeover", testCommitRacingTakeover},
	{"FencedTimers", testFencedTimers},
}

// RunCluster runs the cluster suite against stores that implement
// store.Cluster; for any other store each test is skipped. open returns a
// new, empty store for one test, as for Run; the suite closes it.
func RunCluster(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	for _, tt := range clusterTests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			c, ok := s.(store.Cluster)
			if !ok {
				t.Skipf("%T does not implement store.Cluster", s)
			}
			tt.fn(t, s, c)
		})
	}
}

const (
	live  = time.Hour        // a lease that outlives the test
	brief = time.Millisecond // a lease that lapses during lapse()
)

// lapse waits until every lease taken for brief has expired.
func lapse() { time.Sleep(20 * time.Millisecond) }

func initShards(t *testing.T, c store.Cluster, n int) {
	t.Helper()
	if got, err := c.InitShards(ctx, n); err != nil || got != n {
		t.Fatalf("InitShards(%d) = %d, %v; want %d", n, got, err, n)
	}
}

// acquire returns the leases node took, in shard order.
func acquire(t *testing.T, c store.Cluster, node string, ttl time.Duration, shards ...int) []store.Lease {
	t.Helper()
	got, err := c.Acquire(ctx, node, shards, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q, %v): %v", node, shards, err)
	}
	slices.SortFunc(got, func(a, b store.Lease) int { return a.Shard - b.Shard })
	for _, l := range got {
		if l.Owner != node || l.Remaining <= 0 || l.Remaining > ttl {
			t.Errorf("Acquire(%q, %v, %v) returned %+v: want owner %q and 0 < remaining <= ttl", node, shards, ttl, l, node)
		}
	}
	return got
}

// wantLeases checks what node holds, as "shard@epoch" strings, against the
// leases returned by a call.
func wantLeases(t *testing.T, call string, got []store.Lease, want ...string) {
	t.Helper()
	have := make([]string, len(got))
	for i, l := range got {
		have[i] = fmt.Sprintf("%d@%d", l.Shard, l.Epoch)
	}
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Errorf("%s returned leases %v, want %v", call, have, want)
	}
}

// owners returns every shard's owner and epoch, "owner@epoch" ("" for no
// owner), in shard order.
func owners(t *testing.T, c store.Cluster) []string {
	t.Helper()
	leases, err := c.Leases(ctx)
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	out := make([]string, len(leases))
	for i, l := range leases {
		if l.Shard != i {
			t.Fatalf("Leases()[%d] is shard %d: want every shard once, in order: %+v", i, l.Shard, leases)
		}
		out[i] = fmt.Sprintf("%s@%d", l.Owner, l.Epoch)
	}
	return out
}

func wantOwners(t *testing.T, c store.Cluster, want ...string) {
	t.Helper()
	if got := owners(t, c); !slices.Equal(got, want) {
		t.Errorf("leases (owner@epoch by shard) = %v, want %v", got, want)
	}
}

// fenceOf is node a's claim to the given leases.
func fenceOf(leases ...store.Lease) *store.Fence {
	f := &store.Fence{Node: "a"}
	for _, l := range leases {
		f.Shards = append(f.Shards, store.ShardEpoch{Shard: l.Shard, Epoch: l.Epoch})
	}
	return f
}

// wantFenced checks that err is a *store.FencedError naming exactly shards.
func wantFenced(t *testing.T, err error, shards ...int) {
	t.Helper()
	var fenced *store.FencedError
	if !errors.As(err, &fenced) {
		t.Fatalf("error %v, want a *store.FencedError naming shards %v", err, shards)
	}
	got := slices.Clone(fenced.Shards)
	slices.Sort(got)
	slices.Sort(shards)
	if !slices.Equal(got, shards) {
		t.Errorf("FencedError names shards %v, want exactly %v", got, shards)
	}
}

func testInitShardsRecordsOnce(t *testing.T, _ store.Store, c store.Cluster) {
	initShards(t, c, 4)
	if got, err := c.InitShards(ctx, 8); err != nil || got != 4 {
		t.Errorf("second InitShards(8) = %d, %v; want the recorded 4", got, err)
	}
	wantOwners(t, c, "@0", "@0", "@0", "@0")
}

// testSecretRecordsTheFirst: nodes starting together, each with its own
// random candidate, all end up with one secret, and a short one is refused.
func testSecretRecordsTheFirst(t *testing.T, _ store.Store, c store.Cluster) {
	const nodes = 6
	got := make([][]byte, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		candidate := bytes.Repeat([]byte{byte('a' + i)}, 32)
		wg.Go(func() { got[i], errs[i] = c.Secret(ctx, candidate) })
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil || !bytes.Equal(got[i], got[0]) || len(got[i]) != 32 {
			t.Fatalf("concurrent Secret calls returned %q, errors %v: want one 32-byte secret for all", got, errs)
		}
	}
	if later, err := c.Secret(ctx, bytes.Repeat([]byte{'z'}, 40)); err != nil || !bytes.Equal(later, got[0]) {
		t.Errorf("a later Secret = %q, %v; want the recorded %q", later, err, got[0])
	}
	if _, err := c.Secret(ctx, []byte("short")); err == nil {
		t.Error("Secret accepted a 5-byte candidate")
	}
}

// testInitShardsConcurrently: nodes starting together, each with its own
// idea of the count, all end up with the one that was recorded.
func testInitShardsConcurrently(t *testing.T, _ store.Store, c store.Cluster) {
	const nodes = 8
	counts := make([]int, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { counts[i], errs[i] = c.InitShards(ctx, i+1) })
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil || counts[i] != counts[0] {
			t.Fatalf("concurrent InitShards returned %v, errors %v: want one count for all", counts, errs)
		}
	}
	if got := owners(t, c); len(got) != counts[0] {
		t.Errorf("%d leases after recording %d shards", len(got), counts[0])
	}
}

func testClusterRejectsBadArguments(t *testing.T, s store.Store, c store.Cluster) {
	if _, err := c.InitShards(ctx, 0); err == nil {
		t.Error("InitShards(0) succeeded")
	}
	initShards(t, c, 1)
	if _, err := c.Heartbeat(ctx, store.Node{}, live); err == nil {
		t.Error("Heartbeat of a node without an ID succeeded")
	}
	if _, err := c.Heartbeat(ctx, store.Node{ID: "a"}, 0); err == nil {
		t.Error("Heartbeat with ttl 0 succeeded")
	}
	if _, err := c.Acquire(ctx, "", []int{0}, live); err == nil {
		t.Error("Acquire for a node without an ID succeeded")
	}
	if _, err := c.Acquire(ctx, "a", []int{0}, -time.Second); err == nil {
		t.Error("Acquire with a negative ttl succeeded")
	}
	wantOwners(t, c, "@0")
	ref := store.Ref{Type: "cart", ID: "c1"}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "")}, Fence: &store.Fence{}})
	var fenced *store.FencedError
	if err == nil || errors.As(err, &fenced) {
		t.Errorf("Commit fenced by no node: %v, want an error that is not a FencedError", err)
	}
	equalEvents(t, readAll(t, s, ref, 0), nil)
}

func testHeartbeatRegistersAndRenewsOwnLeases(t *testing.T, _ store.Store, c store.Cluster) {
	initShards(t, c, 3)
	started := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	held, err := c.Heartbeat(ctx, store.Node{ID: "a", Address: "10.0.0.1:9000", StartedAt: started}, live)
	if err != nil || len(held) != 0 {
		t.Fatalf("first Heartbeat = %v, %v; want no leases", held, err)
	}
	if _, err := c.Heartbeat(ctx, store.Node{ID: "b", Address: "10.0.0.2:9000"}, live); err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("Nodes = %+v, %v; want a and b", nodes, err)
	}
	slices.SortFunc(nodes, func(x, y store.Node) int { return strings.Compare(x.ID, y.ID) })
	a, b := nodes[0], nodes[1]
	if a.ID != "a" || a.Address != "10.0.0.1:9000" || !a.StartedAt.Equal(started) || a.Heartbeat.IsZero() || a.Age < 0 || a.Age > time.Minute {
		t.Errorf("node a = %+v; want address 10.0.0.1:9000, started %v, a heartbeat just now", a, started)
	}
	if b.ID != "b" || b.StartedAt.IsZero() || b.Age > time.Minute {
		t.Errorf("node b = %+v; want it started now, since it gave no start", b)
	}

	const minute = time.Minute
	mine := acquire(t, c, "a", minute, 0, 1)
	acquire(t, c, "b", minute, 2)
	// A restart under the same ID moves the address and keeps the start.
	held, err = c.Heartbeat(ctx, store.Node{ID: "a", Address: "10.0.0.9:9000", StartedAt: time.Now()}, live)
	if err != nil {
		t.Fatal(err)
	}
	wantLeases(t, "Heartbeat of a", held, "0@1", "1@1")
	for _, l := range held {
		if l.Owner != "a" || l.Remaining <= minute || l.Remaining > live || !l.Expires.After(mine[0].Expires) {
			t.Errorf("renewed lease %+v: want owner a, remaining past the minute it had and at most %v", l, live)
		}
	}
	leases, err := c.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if other := leases[2]; other.Owner != "b" || other.Remaining > minute {
		t.Errorf("a's heartbeat extended b's lease: %+v", other)
	}
	wantOwners(t, c, "a@1", "a@1", "b@1")
	nodes, err = c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == "a" && (n.Address != "10.0.0.9:9000" || !n.StartedAt.Equal(started) || n.Heartbeat.Before(a.Heartbeat)) {
			t.Errorf("node a after a second heartbeat = %+v; want address 10.0.0.9:9000, started still %v", n, started)
		}
	}
}

func testAcquireTakesFreeAndExpiredLeases(t *testing.T, _ store.Store, c store.Cluster) {
	initShards(t, c, 4)
	wantLeases(t, "Acquire of free shards", acquire(t, c, "a", live, 0, 1), "0@1", "1@1")
	// b takes only what no one holds; 99 is no shard.
	wantLeases(t, "Acquire of held shards", acquire(t, c, "b", live, 0, 1, 2, 99), "2@1")
	wantLeases(t, "Acquire for a moment", acquire(t, c, "a", brief, 3), "3@1")
	lapse()
	wantLeases(t, "Acquire of an expired lease", acquire(t, c, "b", live, 3), "3@2")
	wantOwners(t, c, "a@1", "a@1", "b@1", "b@2")
}

// testReacquireOwnLeaseRaisesEpoch: a node restarted under the same ID
// takes its lease back with a new epoch, which fences its previous
// incarnation.
func testReacquireOwnLeaseRaisesEpoch(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 1)
	before := acquire(t, c, "a", live, 0)
	after := acquire(t, c, "a", live, 0)
	wantLeases(t, "second Acquire of a's own live lease", after, "0@2")
	ref := store.Ref{Type: "cart", ID: "c1"}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "old")}, Fence: fenceOf(before...)})
	wantFenced(t, err, 0)
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "new")}, Fence: fenceOf(after...)})
	equalEvents(t, readAll(t, s, ref, 0), []store.Event{ev(ref, 1, "E", "new")})
}

func testReleaseFreesAtOnce(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 2)
	acquire(t, c, "a", live, 0, 1)
	held := acquire(t, c, "a", live, 0)
	wantLeases(t, "Acquire again", held, "0@2")
	if err := c.Release(ctx, "b", []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	wantOwners(t, c, "a@2", "a@1") // b held nothing to release
	if err := c.Release(ctx, "a", []int{0}); err != nil {
		t.Fatal(err)
	}
	// Free at once, with its epoch kept for the next Acquire to raise.
	wantOwners(t, c, "@2", "a@1")
	ref := store.Ref{Type: "cart", ID: "c1"}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "")}, Fence: fenceOf(held...)})
	wantFenced(t, err, 0)
	wantLeases(t, "Acquire of a released lease", acquire(t, c, "b", live, 0), "0@3")
	wantOwners(t, c, "b@3", "a@1")
}

// testLeaveKeepsLeases: a node that leaves the membership keeps its
// leases until it releases them: it hands its shards off after the other
// nodes have seen it go.
func testLeaveKeepsLeases(t *testing.T, _ store.Store, c store.Cluster) {
	initShards(t, c, 4)
	for _, id := range []string{"a", "b"} {
		if _, err := c.Heartbeat(ctx, store.Node{ID: id, Address: id + ":9000"}, live); err != nil {
			t.Fatal(err)
		}
	}
	acquire(t, c, "a", live, 0, 1, 2)
	acquire(t, c, "b", live, 3)
	if err := c.Leave(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "b" {
		t.Errorf("Nodes after a left = %+v, %v; want b alone", nodes, err)
	}
	wantOwners(t, c, "a@1", "a@1", "a@1", "b@1")
	if got := acquire(t, c, "c", live, 0, 1, 2, 3); len(got) != 0 {
		t.Errorf("c took %v from a node that left but still holds them", got)
	}
	if err := c.Release(ctx, "a", []int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	wantLeases(t, "Acquire after a released", acquire(t, c, "c", live, 0, 1, 2, 3), "0@2", "1@2", "2@2")
}

// fencedBatch writes one of everything a Commit holds for ref.
func fencedBatch(ref store.Ref, fence *store.Fence) *store.Batch {
	return &store.Batch{
		Events:   []store.Event{ev(ref, 1, "E", "1"), ev(ref, 2, "E", "2")},
		Values:   []store.Value{{Entity: ref, Version: 1, Payload: []byte("v")}},
		Outcomes: []store.Outcome{okOutcome(ref, "k", "reply", now().Add(hour))},
		Timers:   schedule(timer(ref, "t", 1, 0, now().Add(hour), "call")),
		Fence:    fence,
	}
}

func wantNothingStored(t *testing.T, s store.Store, ref store.Ref) {
	t.Helper()
	equalEvents(t, readAll(t, s, ref, 0), nil)
	if v, found, err := s.LoadValue(ctx, ref); err != nil || found {
		t.Errorf("value of a refused batch: %+v found=%v err=%v", v, found, err)
	}
	wantNoOutcome(t, s, ref, "k")
	equalTimers(t, "timers of a refused batch", entityTimers(t, s, ref), nil)
}

func testFencedCommitWrites(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 2)
	leases := acquire(t, c, "a", live, 0, 1)
	ref := store.Ref{Type: "cart", ID: "c1"}
	b := fencedBatch(ref, fenceOf(leases...))
	commit(t, s, b)
	equalEvents(t, readAll(t, s, ref, 0), b.Events)
	if v, found, err := s.LoadValue(ctx, ref); err != nil || !found || v.Version != 1 {
		t.Errorf("value of a fenced batch: %+v found=%v err=%v", v, found, err)
	}
	wantOutcome(t, s, b.Outcomes[0])
	equalTimers(t, "timers of a fenced batch", entityTimers(t, s, ref), []store.Timer{b.Timers[0].Timer})
}

// testStaleFenceWritesNothing: a writer that lost some of the leases of
// its batch, one to expiry and takeover, one to its own Release, writes
// nothing, and learns exactly which it lost.
func testStaleFenceWritesNothing(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 3)
	held := acquire(t, c, "a", live, 0, 2)
	held = append(held, acquire(t, c, "a", brief, 1)...)
	lapse()
	acquire(t, c, "b", live, 1)
	if err := c.Release(ctx, "a", []int{2}); err != nil {
		t.Fatal(err)
	}
	acquire(t, c, "b", live, 2)
	wantOwners(t, c, "a@1", "b@2", "b@2")

	ref := store.Ref{Type: "cart", ID: "c1"}
	wantFenced(t, s.Commit(ctx, fencedBatch(ref, fenceOf(held...))), 1, 2)
	wantNothingStored(t, s, ref)

	// The owner counts as well as the epoch.
	wantFenced(t, s.Commit(ctx, fencedBatch(ref, &store.Fence{Node: "c", Shards: []store.ShardEpoch{{Shard: 1, Epoch: 2}}})), 1)
	// A shard that does not exist has no lease to hold.
	wantFenced(t, s.Commit(ctx, fencedBatch(ref, &store.Fence{Node: "a", Shards: []store.ShardEpoch{{Shard: 0, Epoch: 1}, {Shard: 7, Epoch: 1}}})), 7)
	wantNothingStored(t, s, ref)

	// What a still holds, it writes.
	commit(t, s, fencedBatch(ref, fenceOf(held[0])))
	equalEvents(t, readAll(t, s, ref, 0), fencedBatch(ref, nil).Events)
}

// testStaleFenceRegistersNoEventTypes: a fenced batch refused registers
// none of its event types, and registers them once its fence holds.
func testStaleFenceRegistersNoEventTypes(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 1)
	old := acquire(t, c, "a", live, 0)
	cur := acquire(t, c, "a", live, 0)
	ref := store.Ref{Type: "cart", ID: "c1"}
	batch := func(fence *store.Fence) *store.Batch {
		return &store.Batch{Events: []store.Event{ev(ref, 1, "Fenced", "")}, Fence: fence}
	}
	wantFenced(t, s.Commit(ctx, batch(fenceOf(old...))), 0)
	wantEventTypes(t, s, "")
	commit(t, s, batch(fenceOf(cur...)))
	wantEventTypes(t, s, `"cart": ["Fenced"]`)
}

// testFenceAndSeqBothStale: a batch refused for both reasons writes
// nothing; one whose fence holds is still refused for its seq.
func testFenceAndSeqBothStale(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 1)
	old := acquire(t, c, "a", live, 0)
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "first")}, Fence: fenceOf(old...)})
	cur := acquire(t, c, "a", live, 0)

	err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "again")}, Fence: fenceOf(old...)})
	var fenced *store.FencedError
	var conflict *store.ConflictError
	if !errors.As(err, &fenced) && !errors.As(err, &conflict) {
		t.Errorf("Commit stale in fence and seq: %v, want a FencedError or a ConflictError", err)
	}
	wantFenced(t, s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 2, "E", "stale")}, Fence: fenceOf(old...)}), 0)
	wantConflict(t, s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "again")}, Fence: fenceOf(cur...)}), ref)
	equalEvents(t, readAll(t, s, ref, 0), []store.Event{ev(ref, 1, "E", "first")})
}

func testFencedSnapshot(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 1)
	old := acquire(t, c, "a", live, 0)
	ref := store.Ref{Type: "cart", ID: "c1"}
	if err := s.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 5, Payload: []byte("five"), Fence: fenceOf(old...)}); err != nil {
		t.Fatalf("SaveSnapshot with a valid fence: %v", err)
	}
	acquire(t, c, "a", live, 0)
	wantFenced(t, s.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 9, Payload: []byte("nine"), Fence: fenceOf(old...)}), 0)
	snap, found, err := s.LatestSnapshot(ctx, ref)
	if err != nil || !found || snap.Seq != 5 || string(snap.Payload) != "five" {
		t.Errorf("LatestSnapshot = %+v found=%v err=%v; want seq 5, the fenced save ignored", snap, found, err)
	}
}

func testFencedConsumerPosition(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 1)
	old := acquire(t, c, "a", live, 0)
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "1"), ev(ref, 2, "E", "2")}})
	feed, _ := followFeed(t, s, "cart", "", 10, 2)
	first, second := feed[0].Position, feed[1].Position
	load := func() store.Position {
		t.Helper()
		pos, found, err := s.LoadConsumerPosition(ctx, "projector", "cart")
		if err != nil || !found {
			t.Fatalf("LoadConsumerPosition: found=%v err=%v", found, err)
		}
		return pos
	}
	if err := c.SaveConsumerPositionFenced(ctx, "projector", "cart", first, fenceOf(old...)); err != nil {
		t.Fatalf("SaveConsumerPositionFenced with a valid fence: %v", err)
	}
	if got := load(); got != first {
		t.Fatalf("position = %q, want %q", got, first)
	}
	acquire(t, c, "a", live, 0)
	wantFenced(t, c.SaveConsumerPositionFenced(ctx, "projector", "cart", second, fenceOf(old...)), 0)
	if got := load(); got != first {
		t.Errorf("position after a fenced save = %q, want it still %q", got, first)
	}
}

// testConcurrentAcquireOneOwner: nodes race for the same shards. First
// with leases that stay: each shard goes to one node, once. Then in
// rounds of Acquire and Release: every lease handed out has an epoch of
// its own, and the epochs count the Acquires exactly.
func testConcurrentAcquireOneOwner(t *testing.T, _ store.Store, c store.Cluster) {
	const nodes, shards, rounds = 8, 8, 15
	initShards(t, c, shards)
	all := make([]int, shards)
	for i := range all {
		all[i] = i
	}
	race := func(round func(node string) ([]store.Lease, error)) []store.Lease {
		t.Helper()
		results := make([][]store.Lease, nodes)
		errs := make([]error, nodes)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				<-start
				results[i], errs[i] = round(fmt.Sprint("node", i))
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		return slices.Concat(results...)
	}

	first := race(func(node string) ([]store.Lease, error) { return c.Acquire(ctx, node, all, live) })
	owner := map[int]string{}
	for _, l := range first {
		if prev, taken := owner[l.Shard]; taken || l.Epoch != 1 {
			t.Errorf("shard %d given to %s at epoch %d, already given to %q", l.Shard, l.Owner, l.Epoch, prev)
		}
		owner[l.Shard] = l.Owner
	}
	if len(owner) != shards {
		t.Errorf("%d of %d shards taken by racing nodes", len(owner), shards)
	}
	leases, err := c.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Owner != owner[l.Shard] {
			t.Errorf("shard %d is %q's, but Acquire gave it to %q", l.Shard, l.Owner, owner[l.Shard])
		}
	}

	taken := race(func(node string) ([]store.Lease, error) {
		var got []store.Lease
		for range rounds {
			leases, err := c.Acquire(ctx, node, all, live)
			if err != nil {
				return nil, err
			}
			got = append(got, leases...)
			held := make([]int, len(leases))
			for i, l := range leases {
				held[i] = l.Shard
			}
			if err := c.Release(ctx, node, held); err != nil {
				return nil, err
			}
		}
		return got, nil
	})
	epochs := map[int][]int64{}
	for _, l := range taken {
		epochs[l.Shard] = append(epochs[l.Shard], l.Epoch)
	}
	leases, err = c.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for shard := range shards {
		got := epochs[shard]
		slices.Sort(got)
		for i, e := range got {
			if e != int64(i)+2 {
				t.Fatalf("shard %d: Acquires returned epochs %v; want each of 2, 3... once", shard, got)
			}
		}
		if want := int64(len(got)) + 1; leases[shard].Epoch != want {
			t.Errorf("shard %d ends at epoch %d after %d Acquires, want %d", shard, leases[shard].Epoch, len(got)+1, want)
		}
	}
}

// testCommitRacingTakeover: node a's lease has lapsed and a commits with
// it while node b takes the shard over and reads the entity. Either a's
// commit came first, and then b, which took the shard after it, sees all
// of it; or a is refused, and nothing of its batch is ever stored. Never
// may a's write land after b took the shard: b would serve state that
// misses a write a was told was stored.
//
// The race is run many times with b starting at different moments.
// Stores that must lock to keep this (Postgres) also test the two orders
// deterministically.
func testCommitRacingTakeover(t *testing.T, s store.Store, c store.Cluster) {
	const rounds, events = 40, 200
	initShards(t, c, 1)
	var committed, refused int
	for round := range rounds {
		ref := store.Ref{Type: "cart", ID: fmt.Sprint("race", round)}
		held := acquire(t, c, "a", brief, 0)
		lapse()
		b := &store.Batch{Fence: fenceOf(held...)}
		for seq := range int64(events) {
			b.Events = append(b.Events, ev(ref, seq+1, "E", "from a"))
		}
		var commitErr error
		var took []store.Lease
		seen := -1
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			commitErr = s.Commit(ctx, b)
		})
		wg.Go(func() {
			<-start
			time.Sleep(time.Duration(round%10) * 200 * time.Microsecond)
			var err error
			if took, err = c.Acquire(ctx, "b", []int{0}, live); err != nil || len(took) != 1 {
				t.Errorf("b's Acquire of a lapsed lease = %v, %v", took, err)
				return
			}
			seen = 0
			_ = s.ReadEvents(ctx, ref, 0, func(store.Event) error { seen++; return nil })
		})
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		stored := len(readAll(t, s, ref, 0))
		var fenced *store.FencedError
		switch {
		case commitErr == nil:
			committed++
			if seen != events {
				t.Fatalf("round %d: a's fenced commit succeeded, but b, which took the shard (epoch %d), read %d of its %d events: the write landed after the takeover",
					round, took[0].Epoch, seen, events)
			}
		case errors.As(commitErr, &fenced):
			refused++
			if stored != 0 {
				t.Fatalf("round %d: a's commit was refused, but %d events are stored", round, stored)
			}
		default:
			t.Fatalf("round %d: a's commit: %v, want success or a FencedError", round, commitErr)
		}
		if err := c.Release(ctx, "b", []int{0}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds: a committed first in %d, was refused in %d", rounds, committed, refused)
}

// testFencedTimers: a node that lost a shard can neither finish nor retry
// the timers it fired: the new owner fires them again.
func testFencedTimers(t *testing.T, s store.Store, c store.Cluster) {
	initShards(t, c, 2)
	leases := acquire(t, c, "a", brief, 0, 1)
	ref := store.Ref{Type: "cart", ID: "c1"}
	tm := timer(ref, "t", 1, 1, now(), "call")
	commit(t, s, &store.Batch{Timers: schedule(tm)})
	lapse()
	acquire(t, c, "b", live, 1)
	stale := fenceOf(leases...)
	wantFenced(t, s.RetryTimers(ctx, []store.TimerRetry{{TimerKey: tm.Key(), Due: now().Add(hour)}}, stale), 1)
	wantFenced(t, s.FinishTimers(ctx, []store.TimerKey{tm.Key()}, stale), 1)
	equalTimers(t, "timers after fenced finish and retry", entityTimers(t, s, ref), []store.Timer{tm})
	fresh := fenceOf(acquire(t, c, "a", live, 0)...)
	if err := s.FinishTimers(ctx, []store.TimerKey{tm.Key()}, fresh); err != nil {
		t.Fatalf("FinishTimers under a held lease: %v", err)
	}
	equalTimers(t, "timers after a finish", entityTimers(t, s, ref), nil)
}
