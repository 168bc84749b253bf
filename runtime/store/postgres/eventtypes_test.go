package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// TestMigrationRegistersStoredEventTypes upgrades a schema written before
// the event type registry existed (migration 4): migration 5 fills the
// registry from the stored events, each pair first seen when its oldest
// event was written, and later commits add to it.
func TestMigrationRegistersStoredEventTypes(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	quoted := pgx.Identifier{schema}.Sanitize()
	sqls := []string{
		"CREATE SCHEMA " + quoted,
		"CREATE TABLE " + quoted + ".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	}
	for version, file := range []string{"0001_init.sql", "0002_feed.sql", "0003_outcomes.sql", "0004_cluster.sql"} {
		sql, err := os.ReadFile("migrations/" + file)
		if err != nil {
			t.Fatal(err)
		}
		sqls = append(sqls, strings.ReplaceAll(string(sql), "{{schema}}", quoted),
			fmt.Sprintf("INSERT INTO %s.schema_migrations (version) VALUES (%d)", quoted, version+1))
	}
	sqls = append(sqls, "INSERT INTO "+quoted+".events (entity_type, entity_id, seq, event_type, payload, written_at) VALUES"+
		" ('cart', 'a', 1, 'ItemAdded', '', '2024-01-01 10:00:02+00'),"+
		" ('cart', 'b', 1, 'ItemAdded', '', '2024-01-01 10:00:01+00'),"+
		" ('cart', 'a', 2, 'CheckedOut', '', '2024-01-01 10:00:03+00'),"+
		" ('order', 'a', 1, 'Placed', '', '2024-01-01 10:00:00+00')")
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%.80s: %v", sql, err)
		}
	}

	s, err := postgres.Open(ctx, databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("Open of a version 4 schema: %v", err)
	}
	defer s.Close()
	if types, err := s.EventTypes(ctx); err != nil || fmt.Sprint(types) != "map[cart:[CheckedOut ItemAdded] order:[Placed]]" {
		t.Errorf("event types after the migration = %v, %v; want map[cart:[CheckedOut ItemAdded] order:[Placed]]", types, err)
	}
	var firstSeen time.Time
	if err := conn.QueryRow(ctx, "SELECT first_seen_at FROM "+quoted+".event_types WHERE entity_type = 'cart' AND event_type = 'ItemAdded'").Scan(&firstSeen); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 1, 1, 10, 0, 1, 0, time.UTC); !firstSeen.Equal(want) {
		t.Errorf("cart/ItemAdded first seen at %v, want %v (its oldest event)", firstSeen, want)
	}
	if err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: store.Ref{Type: "cart", ID: "b"}, Seq: 2, EventType: "ItemRemoved"}}}); err != nil {
		t.Fatal(err)
	}
	if types, err := s.EventTypes(ctx); err != nil || fmt.Sprint(types["cart"]) != "[CheckedOut ItemAdded ItemRemoved]" {
		t.Errorf("event types of cart after a commit = %v, %v", types["cart"], err)
	}
}

// TestEventTypesAreSharedByStores: the registry is in the database, not
// in a store's memory. A store opened later (a restart, another node)
// sees what another registered, and sending a pair that another store
// registered already (this one has not seen it committed) is harmless.
func TestEventTypesAreSharedByStores(t *testing.T) {
	t.Parallel()
	first, schema := openStore(t)
	defer first.Close()
	ctx := t.Context()
	ref := store.Ref{Type: "cart", ID: "a"}
	if err := first.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 1, EventType: "ItemAdded"}}}); err != nil {
		t.Fatal(err)
	}
	second, err := postgres.Open(ctx, databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if types, err := second.EventTypes(ctx); err != nil || fmt.Sprint(types) != "map[cart:[ItemAdded]]" {
		t.Errorf("event types seen by a second store = %v, %v; want map[cart:[ItemAdded]]", types, err)
	}
	// The second store has not committed ItemAdded itself, so it sends
	// the pair again, beside a new one.
	if err := second.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: ref, Seq: 2, EventType: "ItemAdded"}, {Entity: ref, Seq: 3, EventType: "CheckedOut"}}}); err != nil {
		t.Fatalf("second store's commit of a registered and a new type: %v", err)
	}
	if types, err := first.EventTypes(ctx); err != nil || fmt.Sprint(types) != "map[cart:[CheckedOut ItemAdded]]" {
		t.Errorf("event types = %v, %v; want map[cart:[CheckedOut ItemAdded]]", types, err)
	}
}
