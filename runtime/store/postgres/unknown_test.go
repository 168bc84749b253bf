package postgres_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// switchDialer dials the database until told to refuse, then dials a
// closed port; it keeps the connections it made, so a test can cut them.
type switchDialer struct {
	closedPort string
	mu         sync.Mutex
	refuse     bool
	conns      []net.Conn
}

func newSwitchDialer(t *testing.T) *switchDialer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return &switchDialer{closedPort: addr}
}

func (d *switchDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refuse {
		addr = d.closedPort
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, conn)
	}
	return conn, err
}

func (d *switchDialer) refuseFromNowOn() {
	d.mu.Lock()
	d.refuse = true
	d.mu.Unlock()
}

// cut closes every connection the dialer made, as a network failure
// would.
func (d *switchDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
}

// openDialedStore opens a store in a fresh schema over a pool whose
// connections go through d.
func openDialedStore(t *testing.T, d *switchDialer) (*postgres.Store, *pgxpool.Pool, string) {
	t.Helper()
	schema := newSchema(t)
	config, err := pgxpool.ParseConfig(databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	config.ConnConfig.DialFunc = d.dial
	config.ConnConfig.ConnectTimeout = 5 * time.Second
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
	return s, pool, schema
}

// blockedCommit commits batch while another connection holds the row
// lock of kv's value, so that the batch reaches the server and waits
// there. It returns once the server reports the commit waiting for the
// lock, with the channel that will carry Commit's error and a func that
// releases the lock and waits for the server to finish the commit's
// statements.
func blockedCommit(t *testing.T, ctx context.Context, s *postgres.Store, schema string, kv store.Ref, batch *store.Batch) (<-chan error, func()) {
	t.Helper()
	locker, err := pgx.Connect(t.Context(), databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = locker.Close(context.WithoutCancel(t.Context())) })
	tx, err := locker.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	values := pgx.Identifier{schema, "entity_values"}.Sanitize()
	if _, err := tx.Exec(t.Context(), "SELECT FROM "+values+" WHERE entity_type = $1 AND entity_id = $2 FOR UPDATE", kv.Type, []byte(kv.ID)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Commit(ctx, batch) }()

	// The commit's statements name the schema, which no other test uses.
	waiting := func(condition string) int {
		var n int
		if err := locker.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND position($1 in query) > 0 AND "+condition, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); waiting("wait_event_type = 'Lock'") == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the commit never waited for the held lock")
		}
	}
	release := func() {
		if err := tx.Rollback(t.Context()); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); waiting("state = 'active'") > 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the commit's statements still run after the lock was released")
			}
		}
	}
	return errc, release
}

// wholeOrNothing checks that a batch of one value (version 2) and one
// outcome is either all stored or not at all, and says which.
func wholeOrNothing(t *testing.T, s *postgres.Store, kv store.Ref, key string) string {
	t.Helper()
	v, _, err := s.LoadValue(t.Context(), kv)
	if err != nil {
		t.Fatal(err)
	}
	_, answered, err := s.LoadOutcome(t.Context(), kv, key)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case v.Version == 2 && answered:
		return "stored"
	case v.Version == 1 && !answered:
		return "not stored"
	}
	t.Errorf("half a batch is stored: value version %d, outcome stored %v", v.Version, answered)
	return "half stored"
}

// TestCommitOutcomeUnknown: a commit that fails after its batch reached
// the server says the outcome is unknown; one that fails before anything
// was sent does not.
func TestCommitOutcomeUnknown(t *testing.T) {
	t.Parallel()
	kv := store.Ref{Type: "kv", ID: "k"}
	setup := func(t *testing.T, s *postgres.Store) *store.Batch {
		t.Helper()
		if err := s.Commit(t.Context(), &store.Batch{Values: []store.Value{{Entity: kv, Version: 1, Payload: []byte("1")}}}); err != nil {
			t.Fatal(err)
		}
		return &store.Batch{
			Values:   []store.Value{{Entity: kv, Version: 2, Payload: []byte("2")}},
			Outcomes: []store.Outcome{{Entity: kv, Key: "request", Reply: []byte("ok"), Expires: time.Now().Add(time.Hour)}},
		}
	}

	t.Run("ContextEndsAfterSending", func(t *testing.T) {
		t.Parallel()
		s, _, schema := openDialedStore(t, newSwitchDialer(t))
		batch := setup(t, s)
		ctx, cancel := context.WithCancel(t.Context())
		errc, release := blockedCommit(t, ctx, s, schema, kv, batch)
		cancel()
		err := <-errc
		if !errors.Is(err, store.ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
			t.Errorf("Commit canceled while the server runs it: %v; want store.ErrOutcomeUnknown and context.Canceled", err)
		}
		release()
		// The server went on with the batch once the lock was free, so
		// "unknown" was the truth; either way it is whole or absent.
		t.Logf("the batch of the canceled commit is %s", wholeOrNothing(t, s, kv, "request"))
	})

	t.Run("ConnectionBreaksAfterSending", func(t *testing.T) {
		t.Parallel()
		d := newSwitchDialer(t)
		s, _, schema := openDialedStore(t, d)
		batch := setup(t, s)
		errc, release := blockedCommit(t, t.Context(), s, schema, kv, batch)
		d.cut()
		err := <-errc
		if !errors.Is(err, store.ErrOutcomeUnknown) {
			t.Errorf("Commit whose connection broke while the server runs it: %v; want store.ErrOutcomeUnknown", err)
		}
		release()
		t.Logf("the batch of the cut commit is %s", wholeOrNothing(t, s, kv, "request"))
	})

	t.Run("CannotConnect", func(t *testing.T) {
		t.Parallel()
		d := newSwitchDialer(t)
		s, pool, _ := openDialedStore(t, d)
		batch := setup(t, s)
		d.refuseFromNowOn()
		pool.Reset() // no connection left to reuse: the commit must dial
		err := s.Commit(t.Context(), batch)
		if err == nil {
			t.Fatal("Commit with the database unreachable succeeded")
		}
		if errors.Is(err, store.ErrOutcomeUnknown) {
			t.Errorf("Commit that could not connect: %v; it sent nothing, so it must not wrap store.ErrOutcomeUnknown", err)
		}
	})

	t.Run("ServerRefuses", func(t *testing.T) {
		t.Parallel()
		s, _, _ := openDialedStore(t, newSwitchDialer(t))
		batch := setup(t, s)
		batch.Values[0].Version = 3 // version 2 is missing: the fence refuses
		err := s.Commit(t.Context(), batch)
		var conflict *store.ConflictError
		if !errors.As(err, &conflict) || errors.Is(err, store.ErrOutcomeUnknown) {
			t.Errorf("Commit refused by the fence: %v; want a conflict, not an unknown outcome", err)
		}
	})
}
