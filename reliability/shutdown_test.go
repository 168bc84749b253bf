package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// TestShutdownUnderLoad sends SIGTERM while clients write (INVARIANTS.md,
// invariant 11): the process exits 0, every acknowledged command is
// stored, and calls in flight either complete or fail with UNAVAILABLE,
// never with an error that suggests something broke.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		schema := newSchema(t, "shutdown")
		shutdownUnderLoad(t, "postgres", []string{"--database-url", databaseURL(), "--database-schema", schema}, func(t *testing.T, carts []string) history {
			return readHistory(t, openPostgres(t, schema), carts)
		})
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		shutdownUnderLoad(t, "embedded", []string{"--data-dir", dir}, func(t *testing.T, carts []string) history {
			st, err := embedded.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			return readHistory(t, st, carts)
		})
	})
}

const shutdownRounds = 3

func shutdownUnderLoad(t *testing.T, name string, flags []string, read func(*testing.T, []string) history) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	carts := cartNames("shutdown-"+name, 24)
	l := newLedger()
	inFlightOK, inFlightFailed := 0, 0
	for round := range shutdownRounds {
		srv := startServer(t, serverConfig{flags: flags})
		ctx, stop := context.WithCancel(t.Context())
		ld := &load{ledger: l, carts: carts, prefix: fmt.Sprintf("s%d", round), workers: 16, retryPause: 20 * time.Millisecond}
		done := make(chan struct{})
		go func() { ld.run(ctx, srv.carts); close(done) }()
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		termAt := l.now()
		if err := srv.term(); err != nil {
			t.Errorf("round %d: exit after SIGTERM under load: %v, want 0\n%s", round, err, srv.log)
		}
		if !strings.Contains(srv.log.String(), "stopped cleanly") {
			t.Errorf("round %d: no clean-stop line in the log:\n%s", round, srv.log)
		}
		srv.checkNoRaces(t)
		stop()
		<-done
		w := l.window(termAt, termAt+1)
		inFlightOK += w.Acked
		inFlightFailed += w.Sent - w.Acked
		count("SIGTERMs under load", 1)
	}
	all := l.window(0, l.now())
	for code, n := range all.Codes {
		if code != codes.OK && code != codes.Unavailable {
			t.Errorf("%d calls failed with %v (%s); during a shutdown a call completes or fails with UNAVAILABLE", n, code, all.Errors[code])
		}
	}

	srv := startServer(t, serverConfig{flags: flags})
	served := getCarts(t, srv.carts, carts)
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	h := read(t, carts)
	v := l.check(t, h)
	checkConverged(t, served, h)
	t.Logf("%s: %d SIGTERMs, %d commands sent; in flight at SIGTERM: %d completed, %d failed; %v; codes %v",
		name, shutdownRounds, l.sent(), inFlightOK, inFlightFailed, v, all.Codes)
	note("shutdown/%s: %d SIGTERMs under load; calls in flight at SIGTERM: %d completed, %d failed cleanly; %v",
		name, shutdownRounds, inFlightOK, inFlightFailed, v)
	count("commands acknowledged", v.Acked)
	count("lost", v.Lost)
	count("duplicated", v.Duplicated)
}
