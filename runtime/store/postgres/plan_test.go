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

// TestReadFeedWalksTheFeedIndexes: read-feed merges the events and the
// values of a type, and must do it by walking events_feed and
// entity_values_feed in feed order, each for at most the limit, and
// merging the two streams: never by reading, or sorting, every row of
// the type. Planned once on empty tables (prepared, generic plan kept,
// as the store's pool does), and checked for an event-sourced type and a
// key-value type on tables that hold 20,000 rows of each.
func TestReadFeedWalksTheFeedIndexes(t *testing.T) {
	ctx := t.Context()
	s, conn, _ := planTestStore(t)
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "PREPARE read_feed (text, xid8, bigint, integer) AS "+s.sql.readFeed); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "EXECUTE read_feed('cart', '0', 0, 10)"); err != nil {
		t.Fatal(err)
	}
	for batch := range 20 {
		b := &store.Batch{}
		for i := range 1000 {
			id := fmt.Sprintf("c-%05d", batch*1000+i)
			b.Events = append(b.Events, store.Event{Entity: store.Ref{Type: "cart", ID: id}, Seq: 1, EventType: "ItemAdded", Payload: []byte{1}})
			b.Values = append(b.Values, store.Value{Entity: store.Ref{Type: "customer", ID: id}, Version: 1, Payload: []byte{1}})
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, entityType := range []string{"cart", "customer"} {
		plan := explain(ctx, t, conn, fmt.Sprintf("EXECUTE read_feed('%s', '0', 0, 100)", entityType))
		var sorts, walks int
		for line := range strings.Lines(plan) {
			node := strings.TrimPrefix(strings.TrimSpace(line), "->  ")
			switch {
			case strings.HasPrefix(node, "Sort ("), strings.HasPrefix(node, "Incremental Sort"):
				sorts++
			case strings.HasPrefix(node, "Index Scan using events_feed on events"),
				strings.HasPrefix(node, "Index Scan using entity_values_feed on entity_values"):
				walks++
				if !strings.Contains(node, "rows=100 ") && !strings.Contains(node, "rows=0 ") {
					t.Errorf("read-feed of %s: an index walk did not stop at the limit: %s", entityType, node)
				}
			}
		}
		if sorts > 0 || walks != 2 || !strings.Contains(plan, "Merge Append") || strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Bitmap") {
			t.Errorf("read-feed of %s does not merge two walks of the feed indexes:\n%s", entityType, plan)
		}
	}
}

// TestValueWritesTakeTheirFeedPlaceThemselves: write-values sets the
// place in the feed of every row it writes, so the trigger that does it
// for an older binary's writes (migration 0009) never calls its function
// for the store's own: a plpgsql call per value written would be the
// price otherwise.
func TestValueWritesTakeTheirFeedPlaceThemselves(t *testing.T) {
	ctx := t.Context()
	s, conn, schema := planTestStore(t)
	if err := s.Commit(ctx, &store.Batch{Values: []store.Value{{Entity: store.Ref{Type: "customer", ID: "a"}, Version: 1, Payload: []byte{1}}}}); err != nil {
		t.Fatal(err)
	}
	const trigger = "Trigger entity_values_move_in_feed"
	if _, err := conn.Exec(ctx, "PREPARE write_values (text[], bytea[], bigint[], bigint[], bytea[]) AS "+s.sql.writeValues); err != nil {
		t.Fatal(err)
	}
	// An update and an insert.
	if plan := explain(ctx, t, conn, `EXECUTE write_values('{customer,customer}', '{a,b}', '{1,0}', '{2,1}', '{"\\x02","\\x01"}')`); strings.Contains(plan, trigger) {
		t.Errorf("write-values calls the trigger's function:\n%s", plan)
	}
	// The check sees the trigger where it fires: an older binary's update.
	if plan := explain(ctx, t, conn, "UPDATE "+pgx.Identifier{schema, "entity_values"}.Sanitize()+" SET version = 2, payload = '\\x02', written_at = now() WHERE entity_type = 'customer' AND entity_id = 'a' AND version = 1"); !strings.Contains(plan, trigger+": time=") {
		t.Errorf("an update that leaves tx_id and feed_pos does not call the trigger:\n%s", plan)
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
