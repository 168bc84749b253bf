package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/postgres"
	"github.com/statefun-go/statefun/runtime/store/storetest"
)

// The tests need a real server. Each test gets a schema of its own with
// a random name, dropped when the test ends.
const (
	urlEnv     = "STATEFUN_TEST_DATABASE_URL"
	defaultURL = "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func databaseURL() string {
	if url := os.Getenv(urlEnv); url != "" {
		return url
	}
	return defaultURL
}

// requireDatabase fails the test, never skips it, when the server is
// down: a store test that silently did not run has not passed.
func requireDatabase(tb testing.TB) {
	tb.Helper()
	conn, err := pgx.Connect(tb.Context(), databaseURL())
	if err != nil {
		tb.Fatalf("no PostgreSQL to test against (%v).\n"+
			"Start the local server: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"+
			"or point %s at one (default %s).", err, urlEnv, defaultURL)
	}
	_ = conn.Close(tb.Context())
}

// newSchema returns a fresh schema name and drops the schema when the
// test ends, after the store using it is closed.
func newSchema(tb testing.TB) string {
	tb.Helper()
	requireDatabase(tb)
	schema := "statefun_test_" + strings.ToLower(rand.Text())
	tb.Cleanup(func() {
		ctx := context.WithoutCancel(tb.Context())
		conn, err := pgx.Connect(ctx, databaseURL())
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

func openStore(tb testing.TB) (*postgres.Store, string) {
	tb.Helper()
	schema := newSchema(tb)
	s, err := postgres.Open(tb.Context(), databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return s, schema
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openStore(t)
		return s
	})
}

func TestHistoryConformance(t *testing.T) {
	storetest.RunHistory(t, func(t *testing.T) store.Store {
		s, _ := openStore(t)
		return s
	})
}

func TestClusterConformance(t *testing.T) {
	storetest.RunCluster(t, func(t *testing.T) store.Store {
		s, _ := openStore(t)
		return s
	})
}

func appliedMigrations(t *testing.T, schema string) []int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows, err := conn.Query(t.Context(), "SELECT version FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize()+" ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

func TestOpenTwiceMigratesOnce(t *testing.T) {
	t.Parallel()
	first, schema := openStore(t)
	defer first.Close()
	want := appliedMigrations(t, schema)
	if len(want) == 0 || want[0] != 1 {
		t.Fatalf("schema_migrations = %v after Open, want 1, 2...", want)
	}
	second, err := postgres.Open(t.Context(), databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer second.Close()
	if err := second.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate of a migrated schema: %v", err)
	}
	if got := appliedMigrations(t, schema); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("schema_migrations = %v after reopening, want %v", got, want)
	}
	// Both stores see one database.
	ref := store.Ref{Type: "cart", ID: "c1"}
	if err := first.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E"}}}); err != nil {
		t.Fatal(err)
	}
	var conflict *store.ConflictError
	if err := second.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E"}}}); !errors.As(err, &conflict) {
		t.Errorf("second store's Commit of seq 1 again: %v, want a conflict", err)
	}
}

func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const processes = 6
	type result struct {
		from, to int
		err      error
	}
	results := make(chan result, processes)
	var start sync.WaitGroup
	start.Add(1)
	for range processes {
		go func() {
			start.Wait()
			from, to, err := postgres.Migrate(t.Context(), databaseURL(), postgres.WithSchema(schema))
			results <- result{from, to, err}
		}()
	}
	start.Done()
	// One of them creates the schema; the others find it up to date.
	created := 0
	for range processes {
		r := <-results
		switch {
		case r.err != nil:
			t.Errorf("concurrent Migrate: %v", r.err)
		case r.from == 0 && r.to > 0:
			created++
		case r.from != r.to || r.to == 0:
			t.Errorf("concurrent Migrate: from version %d to %d, want a created schema or one up to date", r.from, r.to)
		}
	}
	if created != 1 {
		t.Errorf("%d of the concurrent Migrates created the schema, want 1", created)
	}
	if got := appliedMigrations(t, schema); len(got) == 0 || got[0] != 1 {
		t.Errorf("schema_migrations = %v", got)
	}
	s, err := postgres.Open(t.Context(), databaseURL(), postgres.WithSchema(schema), postgres.WithoutMigrate())
	if err != nil {
		t.Fatalf("Open of the migrated schema: %v", err)
	}
	defer s.Close()
	if err := s.Commit(t.Context(), &store.Batch{Values: []store.Value{{Entity: store.Ref{Type: "kv", ID: "k"}, Version: 1}}}); err != nil {
		t.Errorf("Commit: %v", err)
	}
}

func TestWithoutMigrateNamesTheCure(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s, err := postgres.Open(t.Context(), databaseURL(), postgres.WithSchema(schema), postgres.WithoutMigrate())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	err = s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: store.Ref{Type: "cart", ID: "c1"}, Seq: 1}}})
	if err == nil || !strings.Contains(err.Error(), "run Migrate") {
		t.Errorf("Commit to an unmigrated schema: %v, want advice to migrate", err)
	}
}

func TestInvalidSchemaName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"",
		"1st",
		"has-dash",
		"has space",
		`quo"te`,
		"semi;colon",
		"ünï",
		"pg_catalog",
		strings.Repeat("s", 64),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The name is rejected before anything connects: the URL
			// points nowhere.
			_, err := postgres.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none", postgres.WithSchema(name))
			if err == nil || !strings.Contains(err.Error(), "invalid schema name") {
				t.Errorf("Open with schema %q: %v, want an invalid schema name error", name, err)
			}
			_, _, err = postgres.Migrate(t.Context(), "postgres://nobody@127.0.0.1:1/none", postgres.WithSchema(name))
			if err == nil || !strings.Contains(err.Error(), "invalid schema name") {
				t.Errorf("Migrate with schema %q: %v, want an invalid schema name error", name, err)
			}
		})
	}
}

func TestUnusualSchemaNamesWork(t *testing.T) {
	t.Parallel()
	requireDatabase(t)
	// Mixed case survives because the name is always quoted.
	for _, name := range []string{"Statefun_" + rand.Text(), "_" + strings.ToLower(rand.Text())} {
		s, err := postgres.Open(t.Context(), databaseURL(), postgres.WithSchema(name))
		if err != nil {
			t.Fatalf("Open with schema %q: %v", name, err)
		}
		t.Cleanup(func() {
			ctx := context.WithoutCancel(t.Context())
			conn, err := pgx.Connect(ctx, databaseURL())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
				t.Errorf("drop schema %q: %v", name, err)
			}
		})
		ref := store.Ref{Type: "cart", ID: "c1"}
		if err := s.Commit(t.Context(), &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1}}}); err != nil {
			t.Errorf("Commit in schema %q: %v", name, err)
		}
		_ = s.Close()
	}
}

func TestErrorsDoNotLeakThePassword(t *testing.T) {
	t.Parallel()
	const password = "s3cret"
	for _, url := range []string{
		"postgres://ada:s3cret@127.0.0.1:1/db?sslmode=disable",
		"postgresql://ada:s3cret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
		"postgres://ada:s3cret@127.0.0.1:notaport/db",
		"postgres://ada:s3cret@127.0.0.1:1/db?pool_max_conns=many",
		"postgres://ada:s3cret@127.0.0.1:1/db?sslmode=sometimes",
		"postgres://ada:s3cret@[::1/db",
		"host=127.0.0.1 port=1 user=ada password=s3cret dbname=db sslmode=disable",
		"host=127.0.0.1 port=1 user=ada password='s3cret' dbname=db sslmode=nope",
	} {
		for name, open := range map[string]func() error{
			"Open": func() error {
				_, err := postgres.Open(t.Context(), url)
				return err
			},
			"Open WithoutMigrate": func() error {
				_, err := postgres.Open(t.Context(), url, postgres.WithoutMigrate())
				return err
			},
			"Migrate": func() error {
				_, _, err := postgres.Migrate(t.Context(), url)
				return err
			},
		} {
			err := open()
			if err == nil {
				t.Errorf("%s(%d-byte url) succeeded against a closed port", name, len(url))
				continue
			}
			if strings.Contains(err.Error(), password) || strings.Contains(fmt.Sprintf("%+v", err), password) {
				t.Errorf("%s: error shows the password: %v", name, err)
			}
		}
	}
}

// TestConflictRollsBackEarlierStatements checks that the commit's
// statements share one transaction: the events are inserted before the
// values statement finds the conflict, and must not survive it.
func TestConflictRollsBackEarlierStatements(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	defer s.Close()
	cart := store.Ref{Type: "cart", ID: "c1"}
	kv := store.Ref{Type: "kv", ID: "k"}
	err := s.Commit(t.Context(), &store.Batch{
		Events: []store.Event{{Entity: cart, Seq: 1, EventType: "E", Payload: []byte("x")}},
		Values: []store.Value{{Entity: kv, Version: 2, Payload: []byte("no version 1")}},
	})
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) || len(conflict.Entities) != 1 || conflict.Entities[0] != kv {
		t.Fatalf("Commit: %v, want a conflict naming %v only", err, kv)
	}
	_ = s.ReadEvents(t.Context(), cart, 0, func(e store.Event) error {
		t.Errorf("event of a failed commit was stored: %+v", e)
		return nil
	})
}

// TestConflictNamesExactlyTheStale mixes every kind of conflict with
// entities that are fine, in one batch.
// TestGapCheckCoversEveryEntity sends a batch, consistent in itself, in
// which one entity of several, neither first nor last in key order, skips
// a stored seq: the INSERT's check must refuse it (invariant 6) and the
// batch must write nothing.
func TestGapCheckCoversEveryEntity(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	defer s.Close()
	ctx := t.Context()
	ref := func(id string) store.Ref { return store.Ref{Type: "cart", ID: id} }
	ev := func(r store.Ref, seq int64) store.Event { return store.Event{Entity: r, Seq: seq, EventType: "E"} }
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{ev(ref("b"), 1), ev(ref("c"), 1), ev(ref("e"), 1)}}); err != nil {
		t.Fatal(err)
	}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{
		ev(ref("e"), 2),
		ev(ref("a"), 1),
		ev(ref("c"), 3), // seq 2 is missing
		ev(ref("b"), 2), ev(ref("b"), 3),
		ev(ref("d"), 1), ev(ref("d"), 2),
	}})
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("Commit: %v, want a conflict", err)
	}
	if len(conflict.Entities) != 1 || conflict.Entities[0] != ref("c") {
		t.Errorf("conflict names %v, want only %v", conflict.Entities, ref("c"))
	}
	for id, want := range map[string]int{"a": 0, "b": 1, "c": 1, "d": 0, "e": 1} {
		n := 0
		if err := s.ReadEvents(ctx, ref(id), 0, func(store.Event) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s has %d events stored, want %d: the refused batch wrote some", id, n, want)
		}
	}
}

func TestConflictNamesExactlyTheStale(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	defer s.Close()
	ctx := t.Context()
	ref := func(id string) store.Ref { return store.Ref{Type: "cart", ID: id} }
	kv := func(id string) store.Ref { return store.Ref{Type: "kv", ID: id} }
	ev := func(r store.Ref, seq int64) store.Event { return store.Event{Entity: r, Seq: seq, EventType: "E"} }
	answer := func(r store.Ref, key string, expires time.Duration) store.Outcome {
		return store.Outcome{Entity: r, Key: key, Expires: time.Now().Add(expires)}
	}
	if err := s.Commit(ctx, &store.Batch{
		Events: []store.Event{ev(ref("dup"), 1), ev(ref("dup"), 2), ev(ref("ok"), 1), ev(ref("gap"), 1)},
		Values: []store.Value{{Entity: kv("stale"), Version: 1}, {Entity: kv("ok"), Version: 1}},
		Outcomes: []store.Outcome{
			answer(ref("answered"), "k", time.Hour),
			answer(ref("ok"), "expired", -time.Hour),
			answer(ref("dup"), "k", time.Hour),
		},
	}); err != nil {
		t.Fatal(err)
	}
	err := s.Commit(ctx, &store.Batch{
		Events: []store.Event{
			ev(ref("ok"), 2), ev(ref("new"), 1),
			ev(ref("dup"), 2), ev(ref("dup"), 3), // seq 2 is stored
			ev(ref("gap"), 3),                      // seq 2 is missing
			ev(ref("skip"), 1), ev(ref("skip"), 3), // a gap inside the batch
		},
		Values: []store.Value{
			{Entity: kv("ok"), Version: 2}, {Entity: kv("ok"), Version: 3},
			{Entity: kv("stale"), Version: 1},
			{Entity: kv("exists"), Version: 5},
		},
		Outcomes: []store.Outcome{
			answer(ref("ok"), "expired", time.Hour), // replaces an expired answer
			answer(ref("ok"), "new", time.Hour),
			answer(ref("dup"), "k", time.Hour), // named once, for its events
			answer(ref("answered"), "k", time.Hour),
			answer(kv("twice"), "k", time.Hour), answer(kv("twice"), "k", time.Hour),
		},
	})
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("Commit: %v, want a conflict", err)
	}
	want := []store.Ref{ref("dup"), ref("gap"), ref("skip"), kv("stale"), kv("exists"), ref("answered"), kv("twice")}
	if fmt.Sprint(conflict.Entities) != fmt.Sprint(want) {
		t.Errorf("conflict names %v, want %v", conflict.Entities, want)
	}
}

// roundTrips counts the times a connection writes after it has read:
// each is the client waiting for the server once more.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, trips: &r.n, read: true}, nil
}

type countingConn struct {
	net.Conn
	trips *atomic.Int64
	mu    sync.Mutex
	read  bool // the last operation was a read
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.read {
		c.trips.Add(1)
		c.read = false
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.read = true
		c.mu.Unlock()
	}
	return n, err
}

// openCountingStore opens a store on a pool of one connection, whose
// statements so stay prepared, and counts its round trips. The store and
// pool close when the test ends.
func openCountingStore(t *testing.T) (*postgres.Store, *roundTrips) {
	t.Helper()
	schema := newSchema(t)
	trips := &roundTrips{}
	config, err := pgxpool.ParseConfig(databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	config.MaxConns = 1
	config.ConnConfig.DialFunc = trips.dial
	// The pool pings connections idle for over a second before use; a
	// slow test machine must not count that.
	config.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(t.Context(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := postgres.FromPool(t.Context(), pool, postgres.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, trips
}

// TestCommitIsOneRoundTrip holds Commit to its design: a batch with a gap
// check, events of several entities and values costs one round trip once
// the connection has prepared the statements; a conflict costs two.
func TestCommitIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	s, trips := openCountingStore(t)

	batch := func(seq int64) *store.Batch {
		var b store.Batch
		for _, id := range []string{"a", "b", "c"} {
			ref := store.Ref{Type: "cart", ID: id}
			b.Events = append(b.Events, store.Event{Entity: ref, Seq: seq, EventType: "E"}, store.Event{Entity: ref, Seq: seq + 1, EventType: "E"})
			b.Values = append(b.Values, store.Value{Entity: store.Ref{Type: "kv", ID: id}, Version: seq}, store.Value{Entity: store.Ref{Type: "kv", ID: id}, Version: seq + 1})
			b.Outcomes = append(b.Outcomes, store.Outcome{Entity: ref, Key: fmt.Sprint(seq), Reply: []byte("r"), Expires: time.Now().Add(time.Hour)})
		}
		return &b
	}
	commit := func(b *store.Batch) (int64, error) {
		before := trips.n.Load()
		err := s.Commit(t.Context(), b)
		return trips.n.Load() - before, err
	}
	// Warm up: the first use of each statement on a connection prepares it.
	for _, seq := range []int64{1, 3} {
		if _, err := commit(batch(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := commit(batch(5)); err != nil || n != 1 {
		t.Errorf("Commit took %d round trips (err %v), want 1", n, err)
	}
	// A conflict costs the commit, the follow-up read and, as pgx drops
	// the prepared statements of any failed batch (it cannot tell a
	// conflict from a statement gone stale), their deallocation. The
	// commit after it prepares them again; the one after that is back to
	// one round trip. The first conflict also prepares the follow-up.
	var conflict *store.ConflictError
	if _, err := commit(batch(5)); !errors.As(err, &conflict) {
		t.Fatalf("Commit of stored seqs: %v, want a conflict", err)
	}
	if _, err := commit(batch(7)); err != nil {
		t.Fatal(err)
	}
	if n, err := commit(batch(7)); !errors.As(err, &conflict) || n > 3 {
		t.Errorf("conflicting Commit took %d round trips (err %v), want at most 3 and a conflict", n, err)
	}
	if _, err := commit(batch(9)); err != nil {
		t.Fatal(err)
	}
	if n, err := commit(batch(11)); err != nil || n != 1 {
		t.Errorf("Commit after a conflict took %d round trips (err %v), want 1", n, err)
	}
}

// TestOverlappingBatchesOnlyConflict races writers whose batches share
// entities, listed in random order: every failure must be a conflict
// (never a deadlock), and every history must stay gap-free.
func TestOverlappingBatchesOnlyConflict(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	defer s.Close()
	const writers, rounds, entities, perBatch = 8, 40, 12, 6
	ctx := t.Context()
	var wg sync.WaitGroup
	var wins atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				var b store.Batch
				for _, i := range mathrand.Perm(entities)[:perBatch] {
					ref := store.Ref{Type: "cart", ID: fmt.Sprint(i)}
					var head int64
					if err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error { head = e.Seq; return nil }); err != nil {
						t.Error(err)
						return
					}
					kv := store.Ref{Type: "kv", ID: fmt.Sprint(i)}
					v, _, err := s.LoadValue(ctx, kv)
					if err != nil {
						t.Error(err)
						return
					}
					b.Events = append(b.Events, store.Event{Entity: ref, Seq: head + 1, EventType: "E"})
					b.Values = append(b.Values, store.Value{Entity: kv, Version: v.Version + 1, Payload: []byte{byte(w)}})
				}
				var conflict *store.ConflictError
				switch err := s.Commit(ctx, &b); {
				case err == nil:
					wins.Add(1)
				case errors.As(err, &conflict):
					if len(conflict.Entities) == 0 {
						t.Errorf("conflict names no entity")
					}
				default:
					t.Errorf("writer %d: %v, want success or a conflict", w, err)
				}
			}
		}()
	}
	wg.Wait()
	if wins.Load() == 0 {
		t.Fatal("no batch committed")
	}
	for i := range entities {
		ref := store.Ref{Type: "cart", ID: fmt.Sprint(i)}
		next := int64(1)
		if err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error {
			if e.Seq != next {
				return fmt.Errorf("%v has seq %d where %d belongs", ref, e.Seq, next)
			}
			next++
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ref := store.Ref{Type: "cart", ID: "c1"}
	err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1}}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with a canceled context: %v, want context.Canceled", err)
	}
	// Nothing was sent: the outcome is known.
	if errors.Is(err, store.ErrOutcomeUnknown) {
		t.Errorf("Commit with a context canceled before it started: %v wraps store.ErrOutcomeUnknown", err)
	}
	if err := s.ReadEvents(ctx, ref, 0, func(store.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadEvents with a canceled context: %v, want context.Canceled", err)
	}
}

func TestClosedStoreReturnsErrClosed(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ref := store.Ref{Type: "cart", ID: "c1"}
	ctx := t.Context()
	if _, _, err := s.LoadValue(ctx, ref); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadValue after Close: %v, want store.ErrClosed", err)
	}
	if err := s.ReadEvents(ctx, ref, 0, func(store.Event) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ReadEvents after Close: %v, want store.ErrClosed", err)
	}
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1}}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit after Close: %v, want store.ErrClosed", err)
	}
	if err := s.ReadFeed(ctx, "cart", "", 1, func(store.FeedEvent) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ReadFeed after Close: %v, want store.ErrClosed", err)
	}
	if _, err := s.FeedHead(ctx, "cart"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("FeedHead after Close: %v, want store.ErrClosed", err)
	}
	if _, _, err := s.LoadConsumerPosition(ctx, "c", "cart"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadConsumerPosition after Close: %v, want store.ErrClosed", err)
	}
	if err := s.SaveConsumerPosition(ctx, "c", "cart", ""); !errors.Is(err, store.ErrClosed) {
		t.Errorf("SaveConsumerPosition after Close: %v, want store.ErrClosed", err)
	}
}

// BenchmarkCommit measures group commits of single events of distinct
// entities, the journal writer's batch under load.
func BenchmarkCommit(b *testing.B) {
	payload := make([]byte, 128)
	for _, size := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("events=%d", size), func(b *testing.B) {
			s, _ := openStore(b)
			defer s.Close()
			batch := &store.Batch{Events: make([]store.Event, size)}
			next := 0
			for b.Loop() {
				for i := range batch.Events {
					next++
					batch.Events[i] = store.Event{Entity: store.Ref{Type: "bench", ID: fmt.Sprint(next)}, Seq: 1, EventType: "E", Payload: payload}
				}
				if err := s.Commit(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// TestOutcomeKeyHashMatchesTheSQL holds the digest to the SQL that the
// migration documents for it, so that an outcome can be found by hand.
func TestOutcomeKeyHashMatchesTheSQL(t *testing.T) {
	t.Parallel()
	s, schema := openStore(t)
	defer s.Close()
	exp := time.Now().Add(time.Hour)
	outcomes := []store.Outcome{
		{Entity: store.Ref{Type: "cart", ID: "c1"}, Key: "k", Expires: exp},
		{Entity: store.Ref{Type: "ünï", ID: "with\x00nul"}, Key: "ünïcödé ✓", Expires: exp},
		{Entity: store.Ref{Type: "cart", ID: strings.Repeat("i", 2048)}, Key: strings.Repeat("k", 256), Expires: exp},
		{Entity: store.Ref{Type: "cart", ID: ""}, Key: "", Expires: exp},
	}
	if err := s.Commit(t.Context(), &store.Batch{Outcomes: outcomes}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var rows, matching int
	err = conn.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE key_hash = substring(sha256(
		int4send(octet_length(convert_to(entity_type, 'UTF8'))) || convert_to(entity_type, 'UTF8')
		|| int4send(length(entity_id)) || entity_id || key) FOR 16))
		FROM `+pgx.Identifier{schema, "outcomes"}.Sanitize()).Scan(&rows, &matching)
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(outcomes) || matching != rows {
		t.Errorf("%d of %d stored outcomes have the key_hash the SQL computes; want all %d", matching, rows, len(outcomes))
	}
}
