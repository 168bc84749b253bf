package pgproxy_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/statefun-go/statefun/bench/pgproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func databaseURL() string {
	if url := os.Getenv("STATEFUN_TEST_DATABASE_URL"); url != "" {
		return url
	}
	return "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
}

// startProxy starts a proxy to the test database and returns it with a URL
// that reaches the database through it.
func startProxy(t *testing.T, delay time.Duration, sslmode string) (*pgproxy.Proxy, string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pgproxy.Listen("127.0.0.1:0", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), delay)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve() }()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	url := "postgres://" + cfg.User + "@" + p.Addr().String() + "/" + cfg.Database + "?sslmode=" + sslmode
	return p, url
}

// TestCountsRoundTrips checks the counters against what pgx is known to
// send: one round trip per query outside a pipeline, one for a whole
// pipeline.
func TestCountsRoundTrips(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{0, 100 * time.Microsecond} {
		t.Run("delay="+delay.String(), func(t *testing.T) {
			t.Parallel()
			p, url := startProxy(t, delay, "disable")
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("connect through the proxy: %v", err)
			}
			defer conn.Close(ctx)
			before := p.Stats()
			// Cached statements: the first use prepares (a round trip of
			// its own), later uses are one round trip each.
			for i := range 3 {
				var n int
				if err := conn.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
					t.Fatalf("query: %v, %d", err, n)
				}
			}
			batch := &pgx.Batch{}
			batch.Queue("SELECT 1::int")
			batch.Queue("SELECT 2::int")
			if err := conn.SendBatch(ctx, batch).Close(); err != nil {
				t.Fatal(err)
			}
			got := p.Stats()
			trips := got.RoundTrips - before.RoundTrips
			// 1 prepare + 3 executions; the batch prepares its two new
			// statements in one round trip, then runs them in one more.
			if trips != 6 {
				t.Errorf("round trips = %d, want 6", trips)
			}
			if stmts := got.Statements - before.Statements; stmts != 5 {
				t.Errorf("statements = %d, want 5", stmts)
			}
			if got.Connections != 1 {
				t.Errorf("connections = %d, want 1", got.Connections)
			}
		})
	}
}

// TestEncryptedPassesThrough: a client that negotiates TLS still works
// through the proxy (the proxy only stops counting), and one whose server
// refuses TLS is counted as usual.
func TestEncryptedPassesThrough(t *testing.T) {
	t.Parallel()
	p, url := startProxy(t, 0, "prefer")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect through the proxy with sslmode=prefer: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("query: %v, %d", err, n)
	}
	encrypted := isTLS(conn)
	if trips := p.Stats().RoundTrips; encrypted != (trips == 0) {
		t.Errorf("TLS %v, %d round trips counted: want none counted exactly when encrypted", encrypted, trips)
	}
}

func isTLS(conn *pgx.Conn) bool {
	_, ok := conn.PgConn().Conn().(interface{ ConnectionState() tls.ConnectionState })
	return ok
}

// TestDelay checks that a round trip takes at least twice the delay.
func TestDelay(t *testing.T) {
	t.Parallel()
	const delay = 5 * time.Millisecond
	p, url := startProxy(t, delay, "disable")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*delay {
		t.Errorf("a round trip took %v, want at least %v", took, 2*delay)
	}
	st := p.Stats()
	if st.DelayedChunks == 0 || st.DelayNanos/st.DelayedChunks < int64(delay) {
		t.Errorf("delay applied: %d chunks, %d ns in all; want each held at least %v", st.DelayedChunks, st.DelayNanos, delay)
	}
}
