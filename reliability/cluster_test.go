package reliability

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// The cluster scenarios (INVARIANTS.md, invariant 14 and the failure
// table's cluster rows) run three nodes of the real server on one schema,
// with clients that spread AddItem over all of them, retrying a failed
// call on another node with its idempotency key. Each breaks the cluster
// one way under that load and then checks, besides the ledger (lost 0,
// duplicated 0), that no history forked: every cart's stored history runs
// 1..n, and every node's GetCart equals its fold. Each reports the requests
// that failed after their retries, how long until every shard was served
// again, and how many shards moved.

// clusterWorkers is the clients of a scenario: enough to keep every node
// busy on two cores that the race detector shares with three servers.
const clusterWorkers = 8

// clusterSettle is how long the load runs in each state of a scenario
// before the next fault: every worker sends several requests meanwhile.
const clusterSettle = 500 * time.Millisecond

// clusterLoad is the clients of a scenario, running until finish.
type clusterLoad struct {
	c      *testCluster
	ledger *ledger
	carts  []string
	stop   context.CancelFunc
	done   chan struct{}
}

func (c *testCluster) startLoad(t *testing.T, prefix string) *clusterLoad {
	ld := &clusterLoad{c: c, ledger: newLedger(), carts: cartNames("cluster-"+prefix, 24), done: make(chan struct{})}
	ctx, stop := context.WithCancel(context.Background())
	ld.stop = stop
	w := &load{ledger: ld.ledger, carts: ld.carts, prefix: prefix, workers: clusterWorkers, retryPause: 20 * time.Millisecond}
	go func() {
		defer close(ld.done)
		w.run(ctx, c.carts)
	}()
	t.Cleanup(func() {
		stop()
		<-ld.done
	})
	return ld
}

// clusterOutcome is what a scenario's load saw and left.
type clusterOutcome struct {
	verdict
	sent, failed, retries, forked int
	longest                       time.Duration // the longest request, retries included
	h                             history
}

func (o clusterOutcome) String() string {
	return fmt.Sprintf("%d requests, %d failed, %d retries on another node, longest %v; %v forked=%d", o.sent, o.failed, o.retries, ms(o.longest), o.verdict, o.forked)
}

// finish stops the clients and checks what is stored: the ledger, the
// schema holding no event the carts do not (but otherEvents, of probes),
// and no fork.
func (ld *clusterLoad) finish(t *testing.T, otherEvents int) clusterOutcome {
	t.Helper()
	ld.stop()
	<-ld.done
	h := readHistory(t, ld.c.st, ld.carts)
	if n := countPostgresEvents(t, ld.c.schema); n != h.events()+otherEvents {
		t.Errorf("the schema holds %d events, the carts %d: events of entities no command addressed", n, h.events()+otherEvents)
	}
	o := clusterOutcome{verdict: ld.ledger.check(t, h), sent: ld.ledger.sent(), retries: ld.c.conn.retries(), h: h}
	o.failed = o.sent - o.Acked
	o.longest = ld.ledger.maxLatency
	o.forked = forkedCarts(t, ld.c, h)
	if o.Acked == 0 {
		t.Fatal("no command was acknowledged: the load never ran")
	}
	if o.failed > 0 {
		t.Logf("failed requests' codes: %v; one error each: %v", ld.ledger.codeCounts(), ld.ledger.window(0, ld.ledger.now()).Errors)
	}
	return o
}

// forkedCarts counts the carts whose history is not one linear sequence
// (seqs 1..n, no gap, no repeat) or that some running node reports
// otherwise than the fold of that history, failing t for each.
func forkedCarts(t *testing.T, c *testCluster, h history) int {
	t.Helper()
	forked := map[string]bool{}
	for cart, events := range h {
		for i, e := range events {
			if e.Seq != int64(i+1) {
				forked[cart] = true
				t.Errorf("cart %s: event %d has seq %d: the history is not one linear sequence", cart, i+1, e.Seq)
				break
			}
		}
	}
	for _, n := range c.all() {
		srv := n.server()
		if srv == nil {
			continue
		}
		for cart := range h {
			got, err := getCart(t.Context(), srv.carts, cart)
			if err != nil {
				t.Fatalf("GetCart(%s) on node %s: %v", cart, n.name, err)
			}
			if diff := cmp.Diff(fold(t, h[cart]), got, protocmp.Transform()); diff != "" {
				forked[cart] = true
				t.Errorf("cart %s: node %s reports a state that is not the fold of the %d stored events (-stored +served):\n%s", cart, n.name, len(h[cart]), diff)
			}
		}
	}
	return len(forked)
}

// report adds a scenario's figures to the suite's report.
func (o clusterOutcome) report(t *testing.T, name string, moved int64, format string, args ...any) {
	t.Helper()
	detail := fmt.Sprintf(format, args...)
	t.Logf("%s: %v; shards moved %d; %s", name, o, moved, detail)
	note("cluster/%s: %d requests, %d failed, %d retries on another node, longest %v; %s; shards moved %d; lost=%d duplicated=%d forked=%d (acked=%d unacked-but-present=%d)",
		name, o.sent, o.failed, o.retries, ms(o.longest), detail, moved, o.Lost, o.Duplicated, o.forked, o.Acked, o.UnackedPresent)
	count("cluster scenarios", 1)
	count("cluster requests", o.sent)
	count("cluster requests failed", o.failed)
	count("cluster shards moved", int(moved))
	count("commands acknowledged", o.Acked)
	count("lost", o.Lost)
	count("duplicated", o.Duplicated)
	count("forked", o.forked)
}

func ms(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

// TestClusterKill kills a node with SIGKILL under load, twice. Restarted
// at once, it takes its own leases back without waiting for them to
// lapse. Left down, its shards wait for their leases to lapse
// (--lease-ttl) and the two others take them; restarted later, it takes
// its share back from them. Calls for its shards wait meanwhile; calls
// that picked it fail to connect and go to another node.
func TestClusterKill(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "clkill", 3)
	ld := c.startLoad(t, "k")
	time.Sleep(clusterSettle)
	victim := c.all()[0]
	before := c.takeovers(t)

	at := time.Now()
	victim.kill(t)
	victim.start(t)
	started := time.Since(at)
	quick := c.waitShards(t, at, "a node restarted at once takes its shards back", balanced(c.all()...))
	time.Sleep(clusterSettle)

	at = time.Now()
	victim.kill(t)
	failover := c.waitShards(t, at, "the other nodes take the killed node's shards", served(c.except(victim)...))
	time.Sleep(2 * clusterSettle)
	at = time.Now()
	victim.start(t)
	back := c.waitShards(t, at, "the restarted node takes its share back", balanced(c.all()...))
	time.Sleep(clusterSettle)

	o := ld.finish(t, 0)
	moved := c.takeovers(t) - before
	c.stopAll(t)
	o.report(t, "kill", moved, "all shards served again %v after kill -9 and restart at once (the start took %v), %v after kill -9 with the node left down, %v after its restart",
		ms(quick), ms(started), ms(failover), ms(back))
}

// TestClusterRollingRestart restarts every node in turn with SIGTERM
// under load, as a deployment does. A stopping node hands its shards off
// before it stops taking calls, and clients retry calls it refuses on
// another node: not one request may fail.
func TestClusterRollingRestart(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "clroll", 3)
	ld := c.startLoad(t, "r")
	time.Sleep(clusterSettle)
	before := c.takeovers(t)
	var steps []string
	for _, n := range c.all() {
		at := time.Now()
		exited := make(chan time.Duration, 1)
		go func() {
			n.term(t)
			exited <- time.Since(at)
		}()
		handedOff := c.waitShards(t, at, "the other nodes take the stopping node's shards", served(c.except(n)...))
		stopped := <-exited
		at = time.Now()
		n.start(t)
		back := c.waitShards(t, at, "the restarted node takes its share back", balanced(c.all()...))
		steps = append(steps, fmt.Sprintf("%s: all shards served by the others %v after SIGTERM, exit after %v, balanced again %v after the restart", n.name, ms(handedOff), ms(stopped), ms(back)))
		time.Sleep(clusterSettle)
	}
	o := ld.finish(t, 0)
	moved := c.takeovers(t) - before
	handoffs := metricSum(t, "statefun_cluster_handoffs_total", c.all()...)
	c.stopAll(t)
	if o.failed > 0 {
		t.Errorf("%d of %d requests failed during a rolling restart; none may", o.failed, o.sent)
	}
	o.report(t, "rolling", moved, "%s; %d handoffs by the running nodes since their start", strings.Join(steps, "; "), int(handoffs))
}

// TestClusterCutFromDatabase cuts one node from Postgres (its proxy
// refuses every connection) while it keeps running: its leases lapse, the
// two others take its shards, and it must stop serving them at once:
// calls it receives for them get UNAVAILABLE quickly instead of waiting,
// and no write of it lands. Calls for the others' shards it still
// forwards. When the database is back it rejoins and takes its share back.
// Then the same node is partitioned (the proxy holds every byte) until
// the others took its shards, and the partition ends the way a short one
// does for TCP: what it sent meanwhile arrives late. Its commits under way
// name leases it lost, and the database must refuse them by epoch.
func TestClusterCutFromDatabase(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "clcut", 3)
	ld := c.startLoad(t, "c")
	time.Sleep(clusterSettle)
	victim := c.all()[1]
	srv := victim.server()
	before := c.takeovers(t)
	held := map[int]bool{}
	ownerAtCut := map[int]string{}
	for _, l := range c.leases(t) {
		ownerAtCut[l.Shard] = l.Owner
		if l.Owner == victim.grpcAddr {
			held[l.Shard] = true
		}
	}

	cutAt := time.Now()
	victim.proxy.Cut()
	failover := c.waitShards(t, cutAt, "the other nodes take the cut node's shards", served(c.except(victim)...))
	takenAt := time.Now()

	// Probes on carts no client writes: half on shards the cut node held,
	// which it must refuse at once, half on others', which it forwards.
	// Those are shards whose owner stayed: a shard that moved between
	// the other two meanwhile the cut node cannot find
	// (TestClusterCutNodeRoutesByStaleView).
	stayed := map[int]bool{}
	for _, l := range c.leases(t) {
		stayed[l.Shard] = l.Owner == ownerAtCut[l.Shard]
	}
	probes := newLedger()
	var mine, theirs, refusedSKUs []string
	for i := 0; len(mine) < 6 || len(theirs) < 6; i++ {
		cart := fmt.Sprintf("cluster-cut-probe-%03d", i)
		shard := shardOf(cartType, cart)
		switch {
		case held[shard] && len(mine) < 6:
			mine = append(mine, cart)
		case !held[shard] && stayed[shard] && len(theirs) < 6:
			theirs = append(theirs, cart)
		}
	}
	const quickly = 2 * time.Second
	for _, cart := range append(slices.Clone(mine), theirs...) {
		own := slices.Contains(mine, cart)
		ctx, cancel := context.WithTimeout(t.Context(), hangLimit)
		start := time.Now()
		_, readErr := srv.carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: cart})
		readTook := time.Since(start)
		sku := "probe-" + cart
		start = time.Now()
		writeErr := probes.addItem(ctx, srv.carts, cart, sku)
		writeTook := time.Since(start)
		cancel()
		for _, call := range []struct {
			name string
			err  error
			took time.Duration
		}{{"GetCart", readErr, readTook}, {"AddItem", writeErr, writeTook}} {
			switch {
			case own && (status.Code(call.err) != codes.Unavailable || call.took > quickly):
				t.Errorf("%s(%s) on the cut node, for a shard it held: %v after %v; want UNAVAILABLE within %v", call.name, cart, call.err, ms(call.took), quickly)
			case !own && call.err != nil:
				t.Errorf("%s(%s) on the cut node, for another node's shard: %v after %v; want it forwarded", call.name, cart, call.err, ms(call.took))
			}
		}
		if own {
			refusedSKUs = append(refusedSKUs, sku)
		}
	}
	// Stay cut a while, with the clients retrying what the cut node
	// refuses on the others.
	time.Sleep(max(0, 4*time.Second-time.Since(cutAt)))
	healAt := time.Now()
	victim.proxy.Restore()
	back := c.waitShards(t, healAt, "the healed node takes its share back", balanced(c.all()...))
	time.Sleep(clusterSettle)
	afterCut, err := victim.metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// A partition that ends the way a short one ends for TCP: what the
	// node sent meanwhile arrives, late, after the others took its
	// shards. The commits it had under way name leases it lost, and the
	// database must refuse them by epoch.
	stallAt := time.Now()
	victim.proxy.Stall()
	partitioned := c.waitShards(t, stallAt, "the other nodes take the partitioned node's shards", served(c.except(victim)...))
	victim.proxy.deliverHeld()
	deliveredAt := time.Now()
	rejoined := c.waitShards(t, deliveredAt, "the node takes its share back after the partition", balanced(c.all()...))
	time.Sleep(clusterSettle)
	afterPartition, err := victim.metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fenced := int(afterPartition["statefun_journal_fenced_batches_total"] - afterCut["statefun_journal_fenced_batches_total"])
	if fenced == 0 {
		t.Error("no commit of the partitioned node was fenced: it had none under way, or the database took commits that named lost leases")
	}

	probeCarts := append(slices.Clone(mine), theirs...)
	ph := readHistory(t, c.st, probeCarts)
	o := ld.finish(t, ph.events())
	moved := c.takeovers(t) - before
	probes.check(t, ph)
	stored := map[string]int{}
	for _, h := range []history{o.h, ph} {
		for _, events := range h {
			for _, e := range events {
				var added cartv1.ItemAdded
				if err := proto.Unmarshal(e.Payload, &added); err == nil {
					stored[added.GetSku()]++
				}
			}
		}
	}
	for _, sku := range refusedSKUs {
		if stored[sku] > 0 {
			t.Errorf("the cut node refused %s, for a shard whose lease it had lost, yet it is stored", sku)
		}
	}
	// What clients saw of the cut node while it was cut: answers, fast.
	during := c.conn.attemptsWhere(func(a clusterAttempt) bool {
		return a.node == victim && a.end.After(cutAt) && a.start.Before(healAt)
	})
	var failed, acked, ackedAfterTakeover int
	var slowest time.Duration
	for _, a := range during {
		if a.code != codes.OK {
			failed++
			slowest = max(slowest, a.end.Sub(a.start))
			continue
		}
		acked++
		if a.sku != "" && a.start.After(takenAt) {
			// Forwarded to the shard's new owner: stored once, like
			// every acknowledged write (the ledger checked it too).
			ackedAfterTakeover++
			if stored[a.sku] != 1 {
				t.Errorf("%s, acknowledged by the cut node after its shards were taken, is stored %d times", a.sku, stored[a.sku])
			}
		}
	}
	if slowest > quickly {
		t.Errorf("a call to the cut node took %v to fail; it must answer UNAVAILABLE within %v", ms(slowest), quickly)
	}
	if failed == 0 {
		t.Error("no call to the cut node failed: it was not cut")
	}
	c.stopAll(t)
	o.report(t, "cut", moved, "cut: all shards served by the others %v after it; the cut node: %d calls failed (slowest %v), %d succeeded (%d writes forwarded after the takeover), %d leases lost; healed, balanced again %v after. "+
		"Partition delivered late: all shards served by the others %v after it; %d batches of the partitioned node fenced; balanced again %v after",
		ms(failover), failed, ms(slowest), acked, ackedAfterTakeover, int(afterCut["statefun_cluster_leases_lost_total"]), ms(back),
		ms(partitioned), fenced, ms(rejoined))
}

// TestClusterJoin starts a fourth node under load: the three hand it a
// quarter of the shards, draining each before they release it, and the
// binary's cluster command lists four nodes with a quarter each.
func TestClusterJoin(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "cljoin", 3)
	ld := c.startLoad(t, "j")
	time.Sleep(clusterSettle)
	before := c.takeovers(t)
	at := time.Now()
	c.addNode(t)
	joined := c.waitShards(t, at, "the new node takes its share", balanced(c.all()...))
	time.Sleep(2 * clusterSettle)
	// What an operator sees: every node, with its quarter.
	held, free := c.listing(t)
	for _, n := range c.all() {
		if k := held[n.grpcAddr]; k < clusterShards/4 || k > clusterShards/4+1 {
			t.Errorf("cluster lists node %s with %d shards, want %d; listing %v", n.name, k, clusterShards/4, held)
		}
	}
	if len(held) != 4 || free != 0 {
		t.Errorf("cluster lists %d nodes and %d shards without a live lease, want 4 and 0: %v", len(held), free, held)
	}
	o := ld.finish(t, 0)
	moved := c.takeovers(t) - before
	c.stopAll(t)
	o.report(t, "join", moved, "4 nodes balanced %v after the fourth started", ms(joined))
}

// TestClusterPause stops a node's process (SIGSTOP) under load for longer
// than its leases last, as a long garbage-collection pause or a frozen VM
// would: the two others take its shards, and when it wakes up (SIGCONT)
// the commits it had under way name leases it no longer holds. The
// database refuses them by epoch (statefun_journal_fenced_batches_total),
// their callers are told the shard moved and retry at the new owner, and
// nothing of the paused node lands after the takeover. Whether a commit
// was under way at the pause is chance (in most runs one or two are), so
// TestClusterCutFromDatabase's late partition is what makes test relies
// on for fencing; this one runs with -long.
func TestClusterPause(t *testing.T) {
	if !*long {
		t.Skip("a longer scenario; run with -long (make reliability)")
	}
	t.Parallel()
	c := newTestCluster(t, "clpause", 3)
	ld := c.startLoad(t, "p")
	time.Sleep(clusterSettle)
	victim := c.all()[2]
	srv := victim.server()
	before := c.takeovers(t)

	pausedAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	failover := c.waitShards(t, pausedAt, "the other nodes take the paused node's shards", served(c.except(victim)...))
	time.Sleep(clusterSettle)
	resumedAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back := c.waitShards(t, resumedAt, "the resumed node takes its share back", balanced(c.all()...))
	time.Sleep(clusterSettle)
	m, err := victim.metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	o := ld.finish(t, 0)
	moved := c.takeovers(t) - before
	c.stopAll(t)
	o.report(t, "pause", moved, "SIGSTOP for %v: all shards served by the others %v after it; resumed node: %d leases lost, %d batches fenced, balanced again %v after SIGCONT",
		ms(resumedAt.Sub(pausedAt)), ms(failover), int(m["statefun_cluster_leases_lost_total"]), int(m["statefun_journal_fenced_batches_total"]), ms(back))
}
