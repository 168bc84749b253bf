package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store/storetest"
)

// BenchmarkViewQuery is storetest.BenchViewQueries on Postgres.
//
// The queries run twice: first on the table as loaded, without planner
// statistics, as the runtime leaves it on a database without autovacuum
// (this machine's CI configuration: the runtime never runs ANALYZE
// itself); then, as -analyzed, after VACUUM (ANALYZE), which autovacuum
// would have run on a production database long before a table reached
// 1,000,000 rows (it analyzes a table after each 10% of growth, and
// vacuums an insert-only table too).
//
// The callers share the store's connection pool (pgxpool's default size:
// the number of cores, at least 4): the latencies include waiting for a
// connection, as a server's queries would.
//
// The results are named by store, BenchmarkViewQuery/postgres/..., as the
// other store's are, so that a report can tell them apart.
func BenchmarkViewQuery(b *testing.B) { b.Run("postgres", benchViewQuery) }

func benchViewQuery(b *testing.B) {
	s, schema := openStore(b)
	defer s.Close()
	analyze := storetest.ViewBenchStage{Suffix: "-analyzed", Prepare: func(b *testing.B) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, databaseURL())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		start := time.Now()
		if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) "+benchViewTable(b, conn, schema)); err != nil {
			b.Fatal(err)
		}
		b.Logf("VACUUM (ANALYZE) of the view: %v", time.Since(start).Round(time.Millisecond))
	}}
	storetest.BenchViewQueries(b, s, analyze)
}

// benchViewTable finds the table of storetest.BenchView in schema by the start
// of its name (view_<name>_v<version>_<hash>): the name is the store's
// business, and this package's tests see only its exported API.
func benchViewTable(b *testing.B, conn *pgx.Conn, schema string) string {
	pattern := fmt.Sprintf("view\\_%s\\_v%d\\_%%", strings.ReplaceAll(storetest.BenchView.Name, "_", "\\_"), storetest.BenchView.Version)
	var names []string
	rows, err := conn.Query(context.Background(), "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2", schema, pattern)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			b.Fatal(err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	if len(names) != 1 {
		b.Fatalf("tables of view %s in schema %s: %v, want one", storetest.BenchView.Name, schema, names)
	}
	return pgx.Identifier{schema, names[0]}.Sanitize()
}
