package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// The two orders of a fenced commit and a takeover, made deterministic:
// a third connection holds the one statement that must come second until
// the test has seen the other wait for it (see the package doc, "Cluster").

// connect opens a plain connection to the test database, closed when the
// test ends.
func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(t.Context())) })
	return conn
}

// waitForLockWait returns once a statement of the store in schema that
// mentions table is waiting for a lock, or fails the test when done
// delivers first: the statement it was to wait for went ahead.
func waitForLockWait[T any](t *testing.T, schema, table string, done <-chan T, what string) {
	t.Helper()
	waitForLockWaits(t, schema, table, 1, done, what)
}

// waitForLockWaits is waitForLockWait for n statements.
func waitForLockWaits[T any](t *testing.T, schema, table string, n int, done <-chan T, what string) {
	t.Helper()
	conn := connect(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0`,
			pgx.Identifier{schema}.Sanitize()+"."+table).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		select {
		case v := <-done:
			t.Fatalf("%s did not wait: it returned %v", what, v)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s neither waited for a lock on %s nor returned", what, table)
		}
		time.Sleep(time.Millisecond)
	}
}

func acquireOne(t *testing.T, s *postgres.Store, node string, ttl time.Duration) store.Lease {
	t.Helper()
	got, err := s.Acquire(t.Context(), node, []int{0}, ttl)
	if err != nil || len(got) != 1 {
		t.Fatalf("Acquire(%q, shard 0) = %v, %v", node, got, err)
	}
	return got[0]
}

func fence(node string, l store.Lease) *store.Fence {
	return &store.Fence{Node: node, Shards: []store.ShardEpoch{{Shard: l.Shard, Epoch: l.Epoch}}}
}

// TestTakeoverWaitsForFencedCommit: node a's fenced commit has passed its
// check and is still writing when node b takes a's lapsed lease. b's
// Acquire must wait for the commit to end, and then see its write; were
// the check a plain read, b would take the shard at once and a's write
// would land behind its back.
func TestTakeoverWaitsForFencedCommit(t *testing.T) {
	t.Parallel()
	s, schema := openStore(t)
	defer s.Close()
	ctx := t.Context()
	if _, err := s.InitShards(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ref := store.Ref{Type: "kv", ID: "k"}
	if err := s.Commit(ctx, &store.Batch{Values: []store.Value{{Entity: ref, Version: 1, Payload: []byte("one")}}}); err != nil {
		t.Fatal(err)
	}
	held := acquireOne(t, s, "a", time.Millisecond)
	time.Sleep(20 * time.Millisecond) // a's lease lapses, not yet taken over

	// The value's row lock stops a's commit after its fence check, in
	// the middle of its transaction.
	blocker, err := connect(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := blocker.Exec(ctx, "SELECT FROM "+pgx.Identifier{schema, "entity_values"}.Sanitize()+" FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	go func() {
		committed <- s.Commit(ctx, &store.Batch{Values: []store.Value{{Entity: ref, Version: 2, Payload: []byte("from a")}}, Fence: fence("a", held)})
	}()
	waitForLockWait(t, schema, "entity_values", committed, "a's commit")

	type result struct {
		lease []store.Lease
		err   error
	}
	acquired := make(chan result, 1)
	go func() {
		got, err := s.Acquire(ctx, "b", []int{0}, time.Hour)
		acquired <- result{got, err}
	}()
	waitForLockWait(t, schema, "shard_leases", acquired, "b's Acquire during a's fenced commit")

	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil {
		t.Fatalf("a's commit, fenced while a held the lease: %v", err)
	}
	got := <-acquired
	if got.err != nil || len(got.lease) != 1 || got.lease[0].Epoch != held.Epoch+1 {
		t.Fatalf("b's Acquire = %+v; want shard 0 at epoch %d", got, held.Epoch+1)
	}
	if v, _, err := s.LoadValue(ctx, ref); err != nil || v.Version != 2 {
		t.Errorf("b reads %+v, %v; want a's write, version 2", v, err)
	}
}

// TestCommitBehindTakeoverIsFenced: a takeover of a's lease is in flight
// (updated, not yet committed) when a commits with the old epoch. a's
// fence check must wait for the takeover and then see the new epoch; a
// plain read would see the old one in its snapshot and write.
func TestCommitBehindTakeoverIsFenced(t *testing.T) {
	t.Parallel()
	s, schema := openStore(t)
	defer s.Close()
	ctx := t.Context()
	if _, err := s.InitShards(ctx, 1); err != nil {
		t.Fatal(err)
	}
	held := acquireOne(t, s, "a", time.Hour)

	// What Acquire does, in a transaction the test ends when it chooses.
	takeover, err := connect(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = takeover.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := takeover.Exec(ctx, "UPDATE "+pgx.Identifier{schema, "shard_leases"}.Sanitize()+
		" SET owner = 'b', epoch = epoch + 1, expires = now() + interval '1 hour' WHERE shard = 0"); err != nil {
		t.Fatal(err)
	}
	ref := store.Ref{Type: "cart", ID: "c1"}
	committed := make(chan error, 1)
	go func() {
		committed <- s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E"}}, Fence: fence("a", held)})
	}()
	waitForLockWait(t, schema, "shard_leases", committed, "a's commit during a takeover")
	if err := takeover.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var fenced *store.FencedError
	if err := <-committed; !errors.As(err, &fenced) || !slices.Equal(fenced.Shards, []int{0}) {
		t.Fatalf("a's commit behind b's takeover: %v, want a FencedError naming shard 0", err)
	}
	_ = s.ReadEvents(ctx, ref, 0, func(e store.Event) error {
		t.Errorf("a's refused commit stored %+v", e)
		return nil
	})
}

// TestRacingAcquiresOneWins: two nodes ask for the same free lease at
// the same moment. Both statements start while it is free, and a third
// transaction holding the row makes them meet at its lock. Exactly one
// may win: the other must recheck the lease as the winner left it, not
// as its own snapshot showed it.
func TestRacingAcquiresOneWins(t *testing.T) {
	t.Parallel()
	s, schema := openStore(t)
	defer s.Close()
	ctx := t.Context()
	if _, err := s.InitShards(ctx, 1); err != nil {
		t.Fatal(err)
	}
	blocker, err := connect(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := blocker.Exec(ctx, "SELECT FROM "+pgx.Identifier{schema, "shard_leases"}.Sanitize()+" FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		node  string
		lease []store.Lease
		err   error
	}
	results := make(chan result, 2)
	for _, node := range []string{"a", "b"} {
		go func() {
			got, err := s.Acquire(ctx, node, []int{0}, time.Hour)
			results <- result{node, got, err}
		}()
	}
	waitForLockWaits(t, schema, "shard_leases", 2, results, "an Acquire of a locked lease")
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var winners []string
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("Acquire for %s: %v", r.node, r.err)
		}
		for _, l := range r.lease {
			winners = append(winners, fmt.Sprintf("%s@%d", l.Owner, l.Epoch))
		}
	}
	if len(winners) != 1 || !strings.HasSuffix(winners[0], "@1") {
		t.Errorf("racing Acquires of a free lease returned %v, want one lease at epoch 1", winners)
	}
}

// TestHeartbeatsAndFencedCommitsDoNotDeadlock: a node's commits span all
// its shards while its heartbeats renew them. Both lock the lease rows, in
// shard order; in any other order they would deadlock, which Postgres
// reports after a second as an error to one of them.
func TestHeartbeatsAndFencedCommitsDoNotDeadlock(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	defer s.Close()
	ctx := t.Context()
	const shards = 64
	if _, err := s.InitShards(ctx, shards); err != nil {
		t.Fatal(err)
	}
	all := make([]int, shards)
	for i := range all {
		all[i] = i
	}
	// Shuffle the rows' places in the table, so that a scan's order is
	// not the shard order.
	for _, sh := range []int{5, 40, 3, 63, 17, 0, 22} {
		if _, err := s.Acquire(ctx, "a", []int{sh}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	leases, err := s.Acquire(ctx, "a", all, time.Hour)
	if err != nil || len(leases) != shards {
		t.Fatalf("Acquire of every shard = %d leases, %v", len(leases), err)
	}
	f := &store.Fence{Node: "a"}
	for _, l := range slices.Backward(leases) {
		f.Shards = append(f.Shards, store.ShardEpoch{Shard: l.Shard, Epoch: l.Epoch})
	}

	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 3 {
		wg.Go(func() {
			for seq := int64(1); time.Now().Before(deadline); seq++ {
				ref := store.Ref{Type: "cart", ID: fmt.Sprint(w)}
				if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: seq, EventType: "E"}}, Fence: f}); err != nil {
					errs <- fmt.Errorf("commit: %w", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(deadline) {
			if _, err := s.Heartbeat(ctx, store.Node{ID: "a", Address: "a:9000"}, time.Hour); err != nil {
				errs <- fmt.Errorf("heartbeat: %w", err)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestFencedCommitIsOneRoundTrip: the fence check travels in the commit's
// pipeline, and a refusal names its shards without a follow-up query.
func TestFencedCommitIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	s, trips := openCountingStore(t)
	ctx := t.Context()
	if _, err := s.InitShards(ctx, 2); err != nil {
		t.Fatal(err)
	}
	leases, err := s.Acquire(ctx, "a", []int{0, 1}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &store.Fence{Node: "a", Shards: []store.ShardEpoch{{Shard: 0, Epoch: leases[0].Epoch}, {Shard: 1, Epoch: leases[1].Epoch}}}
	commit := func(seq int64, f *store.Fence) (int64, error) {
		before := trips.n.Load()
		ref := store.Ref{Type: "cart", ID: "c1"}
		err := s.Commit(ctx, &store.Batch{
			Events: []store.Event{{Entity: ref, Seq: seq, EventType: "E"}},
			Values: []store.Value{{Entity: ref, Version: seq}},
			Fence:  f,
		})
		return trips.n.Load() - before, err
	}
	for _, seq := range []int64{1, 2} { // prepares the statements
		if _, err := commit(seq, f); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := commit(3, f); err != nil || n != 1 {
		t.Errorf("fenced Commit took %d round trips (err %v), want 1", n, err)
	}
	if _, err := s.Acquire(ctx, "b", []int{1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "a", []int{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, "b", []int{1}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// pgx deallocates the statements of a failed batch: at most one more.
	var fenced *store.FencedError
	if n, err := commit(4, f); !errors.As(err, &fenced) || !slices.Equal(fenced.Shards, []int{1}) || n > 2 {
		t.Errorf("Commit with a lost lease took %d round trips (err %v), want at most 2 and a FencedError naming shard 1", n, err)
	}
}

// TestHeartbeatDoesNotQueueBehindRequests: with every connection of the
// request pool taken (a busy node: loads and commits in flight), a
// heartbeat still renews the node's leases at once, on a connection of
// its own. Sharing the pool, it would wait, and a busy node would lose
// its own shards.
func TestHeartbeatDoesNotQueueBehindRequests(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.InitShards(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	pool := postgres.PoolForTest(s)
	var held []*pgxpool.Conn
	for range pool.Config().MaxConns {
		c, err := pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	node := store.Node{ID: "a:1", Address: "a:1"}
	if _, err := s.Heartbeat(ctx, node, time.Minute); err != nil {
		t.Fatalf("Heartbeat with the request pool exhausted: %v", err)
	}
	if leases, err := s.Acquire(ctx, node.ID, []int{0, 1}, time.Minute); err != nil || len(leases) != 2 {
		t.Fatalf("Acquire with the request pool exhausted: %v, %v", leases, err)
	}
}
