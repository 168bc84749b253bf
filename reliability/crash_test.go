package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// TestCrashUnderLoad kills the server with SIGKILL at random moments while
// clients add items to many carts, restarts it on the same store, and
// checks INVARIANTS.md's row "process killed": every acknowledged event is there
// after the restart, once, in order, with no gap and nothing half written,
// and the restarted server's state is the fold of what is stored.
//
// Two more clients run alongside (retryRun), retrying every failed command
// across the kills and restarts until it is acknowledged: one with an
// idempotency key, which must end with every command acknowledged and
// stored once, and one without, whose duplicates the test reports.
func TestCrashUnderLoad(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		schema := newSchema(t, "crash")
		flags := []string{"--database-url", databaseURL(), "--database-schema", schema}
		crashUnderLoad(t, "postgres", flags, func(t *testing.T, carts []string) history {
			h := readHistory(t, openPostgres(t, schema), carts)
			if n := countPostgresEvents(t, schema); n != h.events() {
				t.Errorf("the schema holds %d events, the carts %d: events of entities no command addressed", n, h.events())
			}
			return h
		})
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		crashUnderLoad(t, "embedded", []string{"--data-dir", dir}, func(t *testing.T, carts []string) history {
			// The server is dead: the file lock is free.
			st, err := embedded.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			h := readHistory(t, st, carts)
			_ = st.Close()
			if n := countEmbeddedEvents(t, dir); n != h.events() {
				t.Errorf("the data file holds %d events, the carts %d: events of entities no command addressed", n, h.events())
			}
			return h
		})
	})
}

// crashRounds is how many times each store's server is killed.
const crashRounds = 5

func crashUnderLoad(t *testing.T, name string, flags []string, read func(*testing.T, []string) history) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	carts := cartNames("crash-"+name, 24)
	l := newLedger()
	// The retrying clients keep their commands across restarts: their
	// calls go to whichever server runs.
	retries, to := newRetryRun("crash-"+name), &redirect{}
	for round := range crashRounds {
		srv := startServer(t, serverConfig{flags: flags})
		to.set(srv.conn)
		if round == 0 {
			retries.start(t, cartv1.NewShoppingCartServiceClient(to))
		}
		ctx, stop := context.WithCancel(t.Context())
		ld := &load{ledger: l, carts: carts, prefix: fmt.Sprintf("r%d", round), workers: 16, retryPause: 20 * time.Millisecond}
		done := make(chan struct{})
		go func() { ld.run(ctx, srv.carts); close(done) }()
		// From right after start (entities still loading, the snapshot
		// of the previous round maybe half saved) to well into the load.
		time.Sleep(time.Duration(50+rng.IntN(2000)) * time.Millisecond)
		srv.kill()
		stop()
		<-done
		srv.checkNoRaces(t)
		count("crashes injected (kill -9)", 1)
	}

	// The last start: recovery, the retrying clients' last retries, then
	// a clean stop so that the embedded store's file can be read.
	srv := startServer(t, serverConfig{flags: flags})
	to.set(srv.conn)
	retries.finish(t)
	all := slices.Concat(carts, retries.carts())
	served := getCarts(t, srv.carts, all)
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM after recovery: %v\n%s", err, srv.log)
	}
	srv.checkNoRaces(t)

	h := read(t, all)
	v := l.check(t, h.only(carts))
	checkConverged(t, served, h)
	retries.check(t, h)
	if v.Acked == 0 {
		t.Fatal("no command was acknowledged: the load never ran")
	}
	t.Logf("%s: %d crashes, %d commands sent: %v; codes %v", name, crashRounds, l.sent(), v, l.codeCounts())
	count("commands acknowledged", v.Acked)
	count("lost", v.Lost)
	count("duplicated", v.Duplicated)
	count("told not stored, yet stored", v.ToldNotStoredYetStored)
	note("crash/%s: %d kill -9, %d commands sent, %v", name, crashRounds, l.sent(), v)
}

// countEmbeddedEvents counts every event in the embedded store's file,
// whatever entity it belongs to.
func countEmbeddedEvents(t *testing.T, dir string) int {
	t.Helper()
	db, err := bolt.Open(dir+"/"+embedded.FileName, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events"))
		if b == nil {
			return fmt.Errorf("no events bucket")
		}
		n = b.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
