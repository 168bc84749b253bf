package reliability

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestDatabaseOutage puts a TCP proxy between the server and Postgres and
// breaks it under load, three times: a cut (every connection closed, new
// ones refused: the database restarting), a stall (connections open, no
// byte moving: a partition) and lost replies (requests reach the database,
// nothing comes back: commits land unacknowledged, the case of an unknown
// outcome). INVARIANTS.md's row "database down": callers get
// UNAVAILABLE quickly instead of hanging, nothing acknowledged is lost,
// and the server recovers when the database returns, without a restart;
// entities whose commits failed were reset, so what the server reports is
// the fold of what is stored.
//
// Two more clients run alongside (retryRun), retrying every failed command
// through the outages until it is acknowledged: one with an idempotency
// key, which must end with every command acknowledged and stored once, and
// one without, whose duplicates the test reports.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	schema := newSchema(t, "outage")
	proxy, err := NewProxy(databaseAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	// The URL carries a password (trust auth ignores it) that no error or
	// log line may show, however the connection fails.
	const password = "outage-Pw-5e1d"
	srv := startServer(t, serverConfig{flags: []string{"--database-url", withPassword(t, urlVia(t, proxy.Addr()), password), "--database-schema", schema}})

	carts := cartNames("outage", 24)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	ld := &load{ledger: l, carts: carts, prefix: "o", workers: 16, retryPause: 20 * time.Millisecond}
	done := make(chan struct{})
	go func() { ld.run(ctx, srv.carts); close(done) }()
	retries := newRetryRun("outage")
	retries.start(t, srv.carts)

	// phase runs the load for a while in one state of the network, and
	// returns the ledger times it began and ended at: what the calls sent
	// meanwhile saw is read once they have all finished.
	type span struct{ from, to time.Duration }
	phase := func(d time.Duration) span {
		from := l.now()
		time.Sleep(d)
		return span{from, l.now()}
	}
	// A stall must outlast the commit timeout (10 s) for commits to fail
	// rather than merely wait, and outlast it twice for the entities
	// reset by those failures to fail their reload too.
	// Lost replies need outlast one commit timeout: the batch sent as they
	// begin lands, and its sender gives up on it after 10 s.
	const cut, stall, lostReplies = 4 * time.Second, 25 * time.Second, 12 * time.Second
	before := phase(time.Second)

	proxy.Cut()
	during := phase(cut)
	proxy.Restore()
	after := phase(3 * time.Second)
	// report checks a fault's calls. Lost replies need not fail a call:
	// when they begin, the commit in flight may have been answered
	// already, and the next one may wait for a connection to be set up.
	report := func(kind string, duringSpan, afterSpan span, mustFail bool) {
		during, after := l.window(duringSpan.from, duringSpan.to), l.window(afterSpan.from, afterSpan.to)
		t.Logf("%s: errors seen: %v", kind, during.Errors)
		t.Logf("%s: during: %d calls, %d acknowledged, longest %v, codes %v; after: %d calls, %d acknowledged, longest %v",
			kind, during.Sent, during.Acked, during.MaxLatency.Round(time.Millisecond), during.Codes,
			after.Sent, after.Acked, after.MaxLatency.Round(time.Millisecond))
		note("outage/%s: during: %d calls, longest %v, codes %v; after restore: %d calls, %d acknowledged",
			kind, during.Sent, during.MaxLatency.Round(time.Millisecond), during.Codes, after.Sent, after.Acked)
		count("outages injected", 1)
		for code, n := range during.Codes {
			if code != codes.OK && code != codes.Unavailable && code != codes.Aborted {
				t.Errorf("%s: %d calls failed with %v; a database outage must read as UNAVAILABLE (or ABORTED for a change dropped with its entity)", kind, n, code)
			}
		}
		if mustFail && during.Codes[codes.Unavailable] == 0 {
			t.Errorf("%s: no call failed with UNAVAILABLE", kind)
		}
		if after.Acked == 0 {
			t.Errorf("%s: no call succeeded after the database came back: the server did not recover", kind)
		}
	}
	cutDuring, cutAfter := during, after

	proxy.Stall()
	stallDuring := phase(stall)
	proxy.Restore()
	stallAfter := phase(3 * time.Second)

	proxy.StallReplies()
	during = phase(lostReplies)
	proxy.Restore()
	after = phase(3 * time.Second)

	stop()
	<-done
	retries.finish(t)
	report("cut", cutDuring, cutAfter, true)
	report("stall", stallDuring, stallAfter, true)
	report("lost replies", during, after, false)
	if l.window(before.from, before.to).Acked == 0 {
		t.Fatal("no call succeeded before the outage: the load never ran")
	}
	if l.maxLatency >= hangLimit {
		t.Errorf("a call took %v: calls must fail, not hang, while the database is away", l.maxLatency)
	}
	select {
	case <-srv.exited:
		t.Fatalf("the server exited during the outage: %v\n%s", srv.exitErr, srv.log)
	default:
	}

	all := slices.Concat(carts, retries.carts())
	served := getCarts(t, srv.carts, all)
	h := readHistory(t, openPostgres(t, schema), all)
	v := l.check(t, h.only(carts))
	checkConverged(t, served, h)
	retries.check(t, h)
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	srv.checkNoRaces(t)
	if strings.Contains(srv.log.String(), password) {
		t.Errorf("the server log shows the database password:\n%s", srv.log)
	}
	for _, client := range append(retries.ledgers(), l) {
		if client.errorsContain(password) {
			t.Error("an error returned to a caller shows the database password")
		}
	}
	if v.ToldNotStoredYetStored > 0 {
		// "Not stored" is a promise: a retry without a key relies on it.
		t.Errorf("%d commands were answered %q and are stored: the store reported a commit that may have landed as one that did not", v.ToldNotStoredYetStored, notStoredPrefix)
	}
	t.Logf("%d commands sent, longest call %v: %v", l.sent(), l.maxLatency.Round(time.Millisecond), v)
	note("outage: %d commands sent, longest call %v, %d proxy connections: %v", l.sent(), l.maxLatency.Round(time.Millisecond), proxy.Accepted(), v)
	count("commands acknowledged", v.Acked)
	count("lost", v.Lost)
	count("duplicated", v.Duplicated)
	count("told not stored, yet stored", v.ToldNotStoredYetStored)
}
