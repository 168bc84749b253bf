package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// readFeed reads the whole feed of carts after a position.
func readFeed(t *testing.T, s *postgres.Store, after store.Position) []store.FeedEvent {
	t.Helper()
	var got []store.FeedEvent
	if err := s.ReadFeed(t.Context(), "cart", after, 1000, func(e store.FeedEvent) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatalf("ReadFeed: %v", err)
	}
	return got
}

// waitForFeed reads the feed until it holds want events: other sessions'
// transactions on the test database may hold the horizon back for a moment.
func waitForFeed(t *testing.T, s *postgres.Store, after store.Position, want int) []store.FeedEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := readFeed(t, s, after)
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				t.Fatalf("feed after %q has %d events, want %d: %v", after, len(got), want, got)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func describe(feed []store.FeedEvent) string {
	var b strings.Builder
	for _, e := range feed {
		fmt.Fprintf(&b, "%s#%d ", e.Entity, e.Seq)
	}
	return strings.TrimSpace(b.String())
}

// TestFeedWaitsForOlderTransactions is invariant 10 (INVARIANTS.md) made
// deterministic: a transaction takes its ID, then a later one commits
// first. A reader given the later event would resume past the earlier
// one and never see it, so the feed must hold the later event back until
// the earlier transaction ends, then deliver both in order.
func TestFeedWaitsForOlderTransactions(t *testing.T) {
	t.Parallel()
	s, schema := openStore(t)
	defer s.Close()
	ctx := t.Context()
	early := store.Ref{Type: "cart", ID: "early"}
	late := store.Ref{Type: "cart", ID: "late"}

	// A writer outside the store holds a transaction open after its
	// insert, as a slow commit would.
	conn, err := pgx.Connect(ctx, databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	held, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Rollback(context.WithoutCancel(ctx)) }()
	var heldID uint64
	err = held.QueryRow(ctx, "INSERT INTO "+pgx.Identifier{schema, "events"}.Sanitize()+
		" (entity_type, entity_id, seq, event_type, payload) VALUES ($1, $2, 1, 'E', 'held') RETURNING tx_id",
		early.Type, []byte(early.ID)).Scan(&heldID)
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: late, Seq: 1, EventType: "E", Payload: []byte("late")}}}); err != nil {
		t.Fatal(err)
	}
	var lateID uint64
	if err := conn.QueryRow(ctx, "SELECT tx_id FROM "+pgx.Identifier{schema, "events"}.Sanitize()+" WHERE entity_id = $1", []byte(late.ID)).Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	if lateID <= heldID {
		t.Fatalf("the store's transaction %d is not younger than the held one %d: the test sets up nothing", lateID, heldID)
	}

	head, err := s.FeedHead(ctx, "cart")
	if err != nil {
		t.Fatal(err)
	}
	// The late event is committed, but the held transaction could still
	// add an event before it in the feed: no read may return it yet.
	for range 20 {
		if got := readFeed(t, s, ""); len(got) != 0 {
			t.Fatalf("feed returned %s while an older transaction was open: a reader resuming after it would skip that transaction's event", describe(got))
		}
		time.Sleep(5 * time.Millisecond)
	}

	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := waitForFeed(t, s, "", 2)
	if describe(got) != "cart/early#1 cart/late#1" {
		t.Fatalf("feed = %s, want cart/early#1 cart/late#1", describe(got))
	}
	// A consumer that started from the head while the held transaction
	// was open gets its event too: "from now" skips nothing in flight.
	if fromHead := waitForFeed(t, s, head, 2); describe(fromHead) != describe(got) {
		t.Fatalf("feed after the head taken during the transaction = %s, want %s", describe(fromHead), describe(got))
	}
	if rest := readFeed(t, s, got[0].Position); describe(rest) != "cart/late#1" {
		t.Fatalf("feed after the first event = %s, want cart/late#1", describe(rest))
	}
}

// TestMigrationNumbersExistingEvents upgrades a schema written before
// feeds existed: its events join the feed in the order they were
// written, each entity's in seq order, ahead of every later commit.
func TestMigrationNumbersExistingEvents(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	events := pgx.Identifier{schema, "events"}.Sanitize()
	for _, sql := range []string{
		"CREATE SCHEMA " + quoted,
		strings.ReplaceAll(string(init), "{{schema}}", quoted),
		"CREATE TABLE " + quoted + ".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO " + quoted + ".schema_migrations (version) VALUES (1)",
		// b#2's transaction began before a#1's and b#1's, but committed
		// after them: its written_at is the earliest.
		"INSERT INTO " + events + " (entity_type, entity_id, seq, event_type, payload, written_at) VALUES" +
			" ('cart', 'b', 1, 'E', '', '2024-01-01 10:00:02')," +
			" ('cart', 'b', 2, 'E', '', '2024-01-01 10:00:01')," +
			" ('cart', 'a', 1, 'E', '', '2024-01-01 10:00:03')," +
			" ('cart', 'a', 2, 'E', '', '2024-01-01 10:00:04')," +
			" ('cart', 'c', 1, 'E', '', '2024-01-01 10:00:00')," +
			" ('order', 'a', 1, 'E', '', '2024-01-01 10:00:00')",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	s, err := postgres.Open(ctx, databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("Open of a version 1 schema: %v", err)
	}
	defer s.Close()
	if got := appliedMigrations(t, schema); fmt.Sprint(got) != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Errorf("schema_migrations = %v, want [1 2 3 4 5 6 7 8 9 10]", got)
	}
	// The upgraded schema runs a cluster too (migration 0004).
	if n, err := s.InitShards(ctx, 4); err != nil || n != 4 {
		t.Errorf("InitShards on the migrated schema = %d, %v", n, err)
	}
	got := waitForFeed(t, s, "", 5)
	if want := "cart/c#1 cart/b#1 cart/b#2 cart/a#1 cart/a#2"; describe(got) != want {
		t.Errorf("feed of migrated events = %s, want %s", describe(got), want)
	}
	if err := s.Commit(ctx, &store.Batch{
		Events: []store.Event{
			{Entity: store.Ref{Type: "cart", ID: "a"}, Seq: 3, EventType: "E"},
			{Entity: store.Ref{Type: "cart", ID: "0"}, Seq: 1, EventType: "E"},
		},
		// The migrated schema takes outcomes too.
		Outcomes: []store.Outcome{{Entity: store.Ref{Type: "cart", ID: "a"}, Key: "k", Expires: time.Now().Add(time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}
	if rest := waitForFeed(t, s, got[len(got)-1].Position, 2); describe(rest) != "cart/0#1 cart/a#3" {
		t.Errorf("feed after the migrated events = %s, want cart/0#1 cart/a#3", describe(rest))
	}
}

// waitForValues reads the feed of a key-value type after a position until
// it holds want entries, and returns them as "id@version:payload".
func waitForValues(t *testing.T, s *postgres.Store, entityType string, after store.Position, want int) ([]string, store.Position) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []string
		last := after
		if err := s.ReadFeed(t.Context(), entityType, after, 1000, func(e store.FeedEvent) error {
			if e.EventType != store.ValueEventType {
				t.Errorf("feed of %q holds %+v, not a value", entityType, e)
			}
			got = append(got, fmt.Sprintf("%s@%d:%s", e.Entity.ID, e.Seq, e.Payload))
			last = e.Position
			return nil
		}); err != nil {
			t.Fatalf("ReadFeed: %v", err)
		}
		if len(got) >= want || time.Now().After(deadline) {
			if len(got) != want {
				t.Fatalf("feed of %q after %q has %d entries, want %d: %v", entityType, after, len(got), want, got)
			}
			return got, last
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestValueFeedWaitsForOlderTransactions is invariant 10 for values: a
// transaction writes a value and stays open, a later one writes another
// and commits first. The feed must hold the later value back until the
// earlier transaction ends, then deliver both in order.
func TestValueFeedWaitsForOlderTransactions(t *testing.T) {
	t.Parallel()
	s, schema := openStore(t)
	defer s.Close()
	ctx := t.Context()
	values := pgx.Identifier{schema, "entity_values"}.Sanitize()

	// A writer outside the store (an older binary, say) inserts a value
	// and holds its transaction open: the columns' defaults give the row
	// its place.
	conn := connect(t)
	held, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Rollback(context.WithoutCancel(ctx)) }()
	var heldID uint64
	if err := held.QueryRow(ctx, "INSERT INTO "+values+" (entity_type, entity_id, version, payload) VALUES ('customer', 'early', 1, 'e1') RETURNING tx_id").Scan(&heldID); err != nil {
		t.Fatal(err)
	}

	late := store.Ref{Type: "customer", ID: "late"}
	if err := s.Commit(ctx, &store.Batch{Values: []store.Value{{Entity: late, Version: 1, Payload: []byte("l1")}}}); err != nil {
		t.Fatal(err)
	}
	var lateID uint64
	if err := connect(t).QueryRow(ctx, "SELECT tx_id FROM "+values+" WHERE entity_id = 'late'").Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	if lateID <= heldID {
		t.Fatalf("the store's transaction %d is not younger than the held one %d: the test sets up nothing", lateID, heldID)
	}
	head, err := s.FeedHead(ctx, "customer")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if got, _ := waitForValues(t, s, "customer", "", 0); len(got) != 0 {
			t.Fatalf("feed returned %v while an older transaction was open: a reader resuming after it would skip that transaction's value", got)
		}
		time.Sleep(5 * time.Millisecond)
	}

	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := waitForValues(t, s, "customer", "", 2)
	if strings.Join(got, " ") != "early@1:e1 late@1:l1" {
		t.Fatalf("feed = %v, want early@1:e1 late@1:l1", got)
	}
	if fromHead, _ := waitForValues(t, s, "customer", head, 2); strings.Join(fromHead, " ") != strings.Join(got, " ") {
		t.Fatalf("feed after the head taken during the transaction = %v, want %v", fromHead, got)
	}
}

// TestMigrationAddsExistingValuesToTheFeed upgrades a schema written
// before values had feeds: its values join the feeds of their types
// ahead of every later write, and the writes of an older binary still
// running (which sets neither tx_id nor feed_pos) move their entity in
// the feed like the store's own.
func TestMigrationAddsExistingValuesToTheFeed(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	ctx := t.Context()
	conn := connect(t)
	quoted := pgx.Identifier{schema}.Sanitize()
	values := pgx.Identifier{schema, "entity_values"}.Sanitize()
	files, err := filepath.Glob("migrations/000[1-8]_*.sql")
	if err != nil || len(files) != 8 {
		t.Fatalf("migrations 1 to 8: %v, %v", files, err)
	}
	statements := []string{
		"CREATE SCHEMA " + quoted,
		"CREATE TABLE " + quoted + ".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO " + quoted + ".schema_migrations (version) SELECT generate_series(1, 8)",
	}
	for _, file := range files {
		sql, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		statements = append(statements, strings.ReplaceAll(string(sql), "{{schema}}", quoted))
	}
	statements = append(statements, "INSERT INTO "+values+" (entity_type, entity_id, version, payload) VALUES"+
		" ('customer', 'a', 3, 'a3'), ('customer', 'b', 1, 'b1'), ('account', 'x', 1, 'x1')")
	for _, sql := range statements {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%.60s: %v", sql, err)
		}
	}

	s, err := postgres.Open(ctx, databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("Open of a version 8 schema: %v", err)
	}
	defer s.Close()
	got, end := waitForValues(t, s, "customer", "", 2)
	if slices.Sort(got); strings.Join(got, " ") != "a@3:a3 b@1:b1" {
		t.Errorf("feed of migrated values = %v, want a@3:a3 and b@1:b1", got)
	}
	if got, _ := waitForValues(t, s, "account", "", 1); got[0] != "x@1:x1" {
		t.Errorf("feed of migrated account values = %v, want x@1:x1", got)
	}

	if err := s.Commit(ctx, &store.Batch{Values: []store.Value{
		{Entity: store.Ref{Type: "customer", ID: "b"}, Version: 2, Payload: []byte("b2")},
	}}); err != nil {
		t.Fatal(err)
	}
	rest, end := waitForValues(t, s, "customer", end, 1)
	if rest[0] != "b@2:b2" {
		t.Errorf("feed after the migrated values = %v, want b@2:b2", rest)
	}
	// An older binary's write-values: no tx_id, no feed_pos.
	for _, sql := range []string{
		"UPDATE " + values + " SET version = 4, payload = 'a4', written_at = now() WHERE entity_type = 'customer' AND entity_id = 'a' AND version = 3",
		"INSERT INTO " + values + " (entity_type, entity_id, version, payload) VALUES ('customer', 'c', 1, 'c1')",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if rest, _ := waitForValues(t, s, "customer", end, 2); strings.Join(rest, " ") != "a@4:a4 c@1:c1" {
		t.Errorf("feed after an older binary's writes = %v, want a@4:a4 c@1:c1", rest)
	}
	if all, _ := waitForValues(t, s, "customer", "", 3); strings.Join(all, " ") != "b@2:b2 a@4:a4 c@1:c1" {
		t.Errorf("feed from the start = %v, want b@2:b2 a@4:a4 c@1:c1", all)
	}
}
