package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
)

// TestEventInsertProbesThePrimaryKey: the gap check of insert-events must
// look up each marked row's predecessor through the primary key, never
// read the events table whole. On a table without statistics (a fresh
// schema on a database without autovacuum, as this repository's CI runs)
// Postgres 15 planned an EXISTS there as a hashed subplan: a sequential
// scan of every event on every commit, 30 ms per commit at 20,000 events.
func TestEventInsertProbesThePrimaryKey(t *testing.T) {
	ctx := t.Context()
	s, conn, _ := planTestStore(t)
	// The store runs the statement prepared, and Postgres keeps a prepared
	// statement's generic plan once it has one: a plan made while the
	// table was empty goes on serving after it has grown. Plan it now, on
	// the empty table, as a server's first commits do.
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "PREPARE insert_events (text[], bytea[], bigint[], text[], bytea[], boolean[]) AS "+s.sql.insertEvents); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "EXECUTE insert_events('{}', '{}', '{}', '{}', '{}', '{}')"); err != nil {
		t.Fatal(err)
	}
	// Then history, without ANALYZE: no statistics, as in production
	// before the first autovacuum (or without one).
	for batch := range 20 {
		b := &store.Batch{}
		for i := range 1000 {
			b.Events = append(b.Events, store.Event{
				Entity: store.Ref{Type: "cart", ID: fmt.Sprintf("c-%05d", batch*1000+i)}, Seq: 1, EventType: "ItemAdded", Payload: []byte{1},
			})
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // EXPLAIN ANALYZE inserted; nothing is kept
	rows, err := tx.Query(ctx, `EXPLAIN (ANALYZE, COSTS OFF) EXECUTE insert_events('{cart,cart}', '{c-00001,c-00002}', '{2,2}', '{ItemAdded,ItemAdded}', '{"\\x01","\\x01"}', '{true,true}')`)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if p := plan.String(); strings.Contains(p, "Seq Scan on events") || strings.Contains(p, "hashed SubPlan") || !strings.Contains(p, "events_pkey") {
		t.Errorf("insert-events reads the events table instead of probing its primary key:\n%s", p)
	}
}

// TestTimerQueriesUseTheirIndexes: the timer loop's read of due timers,
// planned while the timers table was empty (prepared, generic plan kept),
// must still walk timers_due once it holds many timers: a sequential scan
// per round would make firing slower with every timer pending.
func TestTimerQueriesUseTheirIndexes(t *testing.T) {
	ctx := t.Context()
	s, conn, _ := planTestStore(t)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	queries := []struct {
		name, sql, types, empty, args, index string
	}{
		{"due-timers", s.sql.dueTimers, "integer[], timestamptz, integer", "NULL, now(), 10", "NULL, now(), 512", "timers_due"},
		{"due-timers of shards", s.sql.dueTimers, "integer[], timestamptz, integer", "'{1}', now(), 10", "'{1,2,3}', now(), 512", "timers_due"},
	}
	for i, q := range queries {
		if _, err := conn.Exec(ctx, fmt.Sprintf("PREPARE q%d (%s) AS %s", i, q.types, q.sql)); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("EXECUTE q%d(%s)", i, q.empty)); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
	}
	for batch := range 20 {
		b := &store.Batch{}
		for i := range 1000 {
			n := batch*1000 + i
			b.Timers = append(b.Timers, store.TimerChange{Timer: store.Timer{
				Entity: store.Ref{Type: "cart", ID: fmt.Sprintf("c-%05d", n)}, Name: "t", ID: int64(n + 1), Shard: n % 64,
				Due: time.Now().Add(time.Duration(n) * time.Second), Call: []byte{1},
			}})
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for i, q := range queries {
		plan := explain(ctx, t, conn, fmt.Sprintf("EXECUTE q%d(%s)", i, q.args))
		if strings.Contains(plan, "Seq Scan on timers") || !strings.Contains(plan, q.index) {
			t.Errorf("%s does not use %s:\n%s", q.name, q.index, plan)
		}
	}
}

// explain returns the plan of statement as it runs, inside a transaction
// that is rolled back.
func explain(ctx context.Context, t *testing.T, conn *pgx.Conn, statement string) string {
	t.Helper()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // nothing is kept
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF) "+statement)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan.String()
}

// TestTimerChangesProbeThePrimaryKey: cancelling, finishing and retrying
// timers touch each timer through the primary key, never by reading the
// table, even with plans made while the table was empty.
func TestTimerChangesProbeThePrimaryKey(t *testing.T) {
	ctx := t.Context()
	s, conn, schema := planTestStore(t)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	key := []any{[]string{"cart"}, [][]byte{[]byte("c-00001")}, []string{"t"}}
	changes := []struct {
		name, sql string
		args      []any
	}{
		{"cancel-timers", s.sql.cancelTimers, key},
		{"finish-timers", s.sql.finishTimers, append(key[:3:3], []int64{2})},
		{"retry-timers", s.sql.retryTimers, append(key[:3:3], []int64{3}, []time.Time{time.Now()})},
	}
	// Plans made on the empty table, kept by the session.
	for range 6 {
		for _, c := range changes {
			if _, err := conn.Exec(ctx, c.sql, c.args...); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	for batch := range 20 {
		b := &store.Batch{}
		for i := range 1000 {
			n := batch*1000 + i
			b.Timers = append(b.Timers, store.TimerChange{Timer: store.Timer{
				Entity: store.Ref{Type: "cart", ID: fmt.Sprintf("c-%05d", n)}, Name: "t", ID: int64(n + 1), Shard: n % 64,
				Due: time.Now().Add(time.Duration(n) * time.Second), Call: []byte{1},
			}})
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range changes {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, c.sql, c.args...); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var seq, idx int64
		err = tx.QueryRow(ctx, "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE schemaname = $1 AND relname = 'timers'", schema).Scan(&seq, &idx)
		_ = tx.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if seq != 0 || idx == 0 {
			t.Errorf("%s read the timers table %d times and probed an index %d times; want only probes", c.name, seq, idx)
		}
	}
}

// planTestStore opens a store on a schema of its own, and a connection of
// the test's own to the same database to EXPLAIN the store's statements
// on, and the schema; the test's end closes both and drops the schema.
func planTestStore(t *testing.T) (*Store, *pgx.Conn, string) {
	t.Helper()
	url, _, schema := cpuTestDatabase(t)
	s, err := Open(t.Context(), url, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return s, conn, schema
}
