package reliability

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// TestTwoOwners runs two server processes on one Postgres schema, both
// taking writes for the same carts, as after a botched failover. INVARIANTS.md's
// row "two nodes think they own an entity": the stale one gets ABORTED and
// resets (fencing), each history stays one linear sequence, and once a
// process has written through its reset, what it reports is the fold of
// what is stored.
func TestTwoOwners(t *testing.T) {
	t.Parallel()
	schema := newSchema(t, "owners")
	flags := []string{"--database-url", databaseURL(), "--database-schema", schema}
	a := startServer(t, serverConfig{flags: flags})
	b := startServer(t, serverConfig{flags: flags})

	// Few carts, so that both processes keep writing the same ones.
	carts := cartNames("owners", 6)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, srv := range []*server{a, b} {
		ld := &load{ledger: l, carts: carts, prefix: fmt.Sprintf("p%d", i), workers: 6, retryPause: time.Millisecond}
		wg.Go(func() { ld.run(ctx, srv.carts) })
	}
	time.Sleep(4 * time.Second)
	stop()
	wg.Wait()

	codeCounts := l.codeCounts()
	for code, n := range codeCounts {
		if code != codes.OK && code != codes.Aborted {
			t.Errorf("%d calls failed with %v; a fenced writer must see ABORTED", n, code)
		}
	}
	if codeCounts[codes.Aborted] == 0 {
		t.Errorf("no call was ABORTED: the two processes never contended, so fencing was not tested (codes %v)", codeCounts)
	}

	// Convergence: a write through each process, retried while fenced,
	// brings that process's view to the stored history.
	st := openPostgres(t, schema)
	for i, srv := range []*server{a, b} {
		for _, cart := range carts {
			for attempt := 0; ; attempt++ {
				err := l.addItem(t.Context(), srv.carts, cart, fmt.Sprintf("converge-%d-%s-%d", i, cart, attempt))
				if err == nil {
					break
				}
				if status.Code(err) != codes.Aborted || attempt == 10 {
					t.Fatalf("write through process %d to %s: %v", i, cart, err)
				}
			}
			got, err := getCart(t.Context(), srv.carts, cart)
			if err != nil {
				t.Fatal(err)
			}
			h := readHistory(t, st, []string{cart})
			checkConverged(t, map[string]*cartv1.Cart{cart: got}, h)
		}
	}

	h := readHistory(t, st, carts)
	// Fencing guards writes only: a process that did not write since the
	// other one did still reads its own, older state. Counted, not failed:
	// it is the documented cost of running two owners, which the lease
	// plan in INVARIANTS.md is to prevent.
	staleReads := 0
	for _, cart := range carts {
		got, err := getCart(t.Context(), a.carts, cart)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, fold(t, h[cart])) {
			staleReads++
		}
	}
	v := l.check(t, h)
	for _, srv := range []*server{a, b} {
		if err := srv.term(); err != nil {
			t.Errorf("SIGTERM: %v\n%s", err, srv.log)
		}
		srv.checkNoRaces(t)
	}
	t.Logf("%d commands sent, codes %v: %v; %d of %d carts read stale on the process that wrote first", l.sent(), codeCounts, v, staleReads, len(carts))
	note("two owners: %d commands sent, %d ABORTED by fencing: %v; reads on the process that did not write last: %d of %d carts stale",
		l.sent(), codeCounts[codes.Aborted], v, staleReads, len(carts))
	count("commands acknowledged", v.Acked)
	count("commands fenced (ABORTED)", codeCounts[codes.Aborted])
	count("lost", v.Lost)
	count("duplicated", v.Duplicated)
}
