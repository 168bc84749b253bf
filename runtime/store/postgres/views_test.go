package postgres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

// TestViewEqualityUsesTheColumnIndex: a query with an equality on a
// column, plain or repeated, must read that column's index, not every
// row of the view, even before the table has statistics (no ANALYZE), as
// on a version being built.
func TestViewEqualityUsesTheColumnIndex(t *testing.T) {
	ctx := t.Context()
	s, conn, _ := planTestStore(t)
	def := store.ViewDef{Name: "shop.carts-by_city", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{
		{Name: "city", Kind: store.ViewString},
		{Name: "items", Kind: store.ViewInt},
		{Name: "tags", Kind: store.ViewString, Repeated: true},
	}}
	if err := s.EnsureView(ctx, def); err != nil {
		t.Fatal(err)
	}
	for batch := range 20 {
		rows := make([]store.ViewRow, 1000)
		for i := range rows {
			n := batch*1000 + i
			rows[i] = store.ViewRow{
				EntityID: fmt.Sprintf("c-%05d", n), Seq: 1, Row: []byte{1},
				Columns: []any{fmt.Sprintf("city-%04d", n%2000), int64(n % 500), []string{fmt.Sprintf("tag-%04d", n%3000), "common"}},
			}
		}
		if err := s.UpdateViewRows(ctx, def, rows); err != nil {
			t.Fatal(err)
		}
	}
	table := viewTable(def)
	tests := []struct {
		name  string
		query store.ViewQuery
		index string
	}{
		{"string equality", store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: 0, Value: "city-0042"}, Limit: 100}, table + "_c0"},
		{"int equality, ordered", store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: 1, Value: int64(7)}, Order: []store.ViewOrder{{Column: 1, Desc: true}}, Limit: 10}, table + "_c1"},
		{"repeated equality", store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: 2, Value: "tag-0042"}, Limit: 100}, table + "_c2"},
		{"repeated equality and a range", store.ViewQuery{Where: &store.ViewCond{Op: store.ViewAnd, Args: []store.ViewCond{
			{Op: store.ViewEq, Column: 2, Value: "tag-0042"}, {Op: store.ViewGt, Column: 1, Value: int64(3)},
		}}, Limit: 100}, table + "_c2"},
	}
	for _, tt := range tests {
		sql, args := s.compileQuery(def, tt.query)
		// Planned as QueryView plans it: with its parameters' values.
		rows, err := conn.Query(ctx, "EXPLAIN (COSTS OFF) "+sql, append([]any{viewQueryMode}, args...)...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
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
		if p := plan.String(); strings.Contains(p, "Seq Scan") || !strings.Contains(p, tt.index) {
			t.Errorf("%s reads the view's rows instead of index %s:\n%s", tt.name, tt.index, p)
		}
	}
}

func TestViewTableNames(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	long := strings.Repeat("x", 200)
	for _, name := range []string{"shop.orders", "shop_orders", "Shop.Orders", "shop-orders", long + "1", long + "2", "ünïcödé", `a"b`} {
		for _, version := range []int{1, 2, 2147483647} {
			table := viewTable(store.ViewDef{Name: name, Version: version})
			key := fmt.Sprintf("%s v%d", name, version)
			if other, ok := seen[table]; ok {
				t.Errorf("%s and %s share table %s", key, other, table)
			}
			seen[table] = key
			// The longest index name must fit Postgres's 63 bytes.
			if n := len(table + "_c999"); n > 63 {
				t.Errorf("%s: table %s leaves index names of %d bytes", key, table, n)
			}
		}
	}
}

// TestViewValueTooLongToIndex: a value over a btree entry's limit is
// refused, with the cure, and the batch writes nothing.
func TestViewValueTooLongToIndex(t *testing.T) {
	ctx := t.Context()
	url, _, schema := cpuTestDatabase(t)
	s, err := Open(ctx, url, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	def := store.ViewDef{Name: "v", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{{Name: "note", Kind: store.ViewBytes}}}
	if err := s.EnsureView(ctx, def); err != nil {
		t.Fatal(err)
	}
	// Random-looking bytes, which TOAST cannot compress under the limit.
	long := make([]byte, 8000)
	x := uint64(88172645463325252)
	for i := range long {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		long[i] = byte(x)
	}
	err = s.UpdateViewRows(ctx, def, []store.ViewRow{
		{EntityID: "short", Seq: 1, Row: []byte{}, Columns: []any{[]byte("fine")}},
		{EntityID: "long", Seq: 1, Row: []byte{}, Columns: []any{long}},
	})
	if err == nil || !strings.Contains(err.Error(), "cannot be indexed") {
		t.Fatalf("UpdateViewRows with an 8000-byte column value: %v, want an error that names the limit", err)
	}
	if rows, err := s.LoadViewRows(ctx, def, []string{"short"}); err != nil || len(rows) != 0 {
		t.Errorf("the refused batch wrote %v (%v)", rows, err)
	}
}
