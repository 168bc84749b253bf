package reliability

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestTwoOwners runs two server processes on one Postgres schema, both
// taking writes for the same few carts: INVARIANTS.md's row "two nodes
// think they own an entity". On Postgres every server is a cluster node,
// so the two form a cluster instead of contending: each entity is served
// by the one node holding its shard's lease, the other forwards its calls
// there. No call is ABORTED and no commit conflicts (fencing has nothing
// to refuse), each history stays one linear sequence, and reads on either
// node equal the fold of what is stored: no stale reads.
func TestTwoOwners(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, "owners", 2)

	// Few carts, each written through both processes.
	carts := cartNames("owners", 6)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, n := range c.all() {
		ld := &load{ledger: l, carts: carts, prefix: fmt.Sprintf("p%d", i), workers: 6, retryPause: time.Millisecond}
		wg.Go(func() { ld.run(ctx, n.server().carts) })
	}
	time.Sleep(2 * time.Second)
	stop()
	wg.Wait()

	codeCounts := l.codeCounts()
	// UNAVAILABLE is no contention: a node whose heartbeats ran late on
	// an overloaded machine stops serving until the next one succeeds.
	errs := l.window(0, l.now()).Errors
	for code, n := range codeCounts {
		if code != codes.OK && code != codes.Unavailable {
			t.Errorf("%d calls failed with %v (e.g. %s); two nodes of a cluster do not contend", n, code, errs[code])
		}
	}
	if n := codeCounts[codes.Unavailable]; n > 0 {
		t.Logf("%d calls failed with UNAVAILABLE, e.g. %s", n, errs[codes.Unavailable])
	}
	h := readHistory(t, c.st, carts)
	v := l.check(t, h)
	for _, n := range c.all() {
		checkConverged(t, getCarts(t, n.server().carts, carts), h)
	}
	forwards := metricSum(t, "statefun_cluster_forwards_total", c.all()...)
	conflicts := metricSum(t, "statefun_journal_conflicts_total", c.all()...)
	if forwards == 0 {
		t.Error("no call was forwarded: each node served every cart itself")
	}
	if conflicts > 0 {
		t.Errorf("%v commits conflicted with another writer's", conflicts)
	}
	c.stopAll(t)
	t.Logf("%d commands sent, codes %v, %v forwarded: %v", l.sent(), codeCounts, forwards, v)
	note("two owners: two servers on one schema form a cluster: %d commands sent, %d ABORTED, %d UNAVAILABLE, %d forwarded to the shard's owner, 0 stale reads: %v",
		l.sent(), codeCounts[codes.Aborted], codeCounts[codes.Unavailable], int(forwards), v)
	count("commands acknowledged", v.Acked)
	count("lost", v.Lost)
	count("duplicated", v.Duplicated)
}
