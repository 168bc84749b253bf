package viewmatch

import (
	"fmt"
	"strings"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

func tableOf(n int) *Table {
	def := store.ViewDef{Name: "v", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{
		{Name: "city", Kind: store.ViewString},
		{Name: "tags", Kind: store.ViewInt, Repeated: true},
	}}
	t := NewTable(def)
	for i := range n {
		t.Put(store.ViewRow{EntityID: fmt.Sprintf("e%04d", i), Seq: 1, Row: []byte{1}, Columns: []any{fmt.Sprintf("city-%d", i%100), []int64{int64(i % 7), 1000 + int64(i)}}}, true)
	}
	return t
}

func ids(rows []store.ViewRow) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.EntityID)
	}
	return strings.Join(out, " ")
}

func pageIDs(rows []topRow) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.id)
	}
	return strings.Join(out, " ")
}

// TestQueryReadsOnlyTheRowsOfAnEquality: an equality, alone, in an AND or
// in an OR of equalities, reads the rows its index names, not the table;
// so does a range of a plain column.
func TestQueryReadsOnlyTheRowsOfAnEquality(t *testing.T) {
	t.Parallel()
	table := tableOf(1000)
	city := func(c string) store.ViewCond { return store.ViewCond{Op: store.ViewEq, Column: 0, Value: c} }
	tag := func(v int64) store.ViewCond { return store.ViewCond{Op: store.ViewEq, Column: 1, Value: v} }
	above := store.ViewCond{Op: store.ViewGt, Column: 0, Value: "city-5"}
	tests := []struct {
		name     string
		where    store.ViewCond
		examined int
		want     string
	}{
		{"plain", city("city-42"), 10, "e0042 e0142 e0242"},
		{"repeated", tag(1500), 1, "e0500"},
		{"and", store.ViewCond{Op: store.ViewAnd, Args: []store.ViewCond{above, city("city-7"), tag(1007)}}, 1, "e0007"},
		{"or", store.ViewCond{Op: store.ViewOr, Args: []store.ViewCond{city("city-3"), tag(1004)}}, 11, "e0003 e0004 e0103"},
		// city-50..city-59 and city-6..city-99: 54 cities of 10 rows.
		{"range", above, 540, "e0006 e0007 e0008"},
		{"not", store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{city("city-7")}}, 1000, "e0000 e0001 e0002"},
	}
	for _, tt := range tests {
		got, examined := table.query(store.ViewQuery{Where: &tt.where, Limit: 3})
		if pageIDs(got) != tt.want || examined != tt.examined {
			t.Errorf("%s: %q after reading %d rows, want %q after %d", tt.name, pageIDs(got), examined, tt.want, tt.examined)
		}
	}
}

func TestTableUpdatesItsIndexes(t *testing.T) {
	t.Parallel()
	table := tableOf(10)
	where := store.ViewCond{Op: store.ViewEq, Column: 1, Value: int64(1003)}
	table.Put(store.ViewRow{EntityID: "e0003", Seq: 2}, true) // tombstone
	if got, examined := table.query(store.ViewQuery{Where: &where, Limit: 10}); len(got) != 0 || examined != 0 {
		t.Errorf("a tombstone is still indexed: %q, %d rows read", pageIDs(got), examined)
	}
	table.Put(store.ViewRow{EntityID: "e0003", Seq: 2, Row: []byte{}, Columns: []any{"x", []int64{1003}}}, true)
	if got := table.Query(store.ViewQuery{Where: &where, Limit: 10}); len(got) != 0 {
		t.Errorf("a row at the tombstone's seq came back: %q", ids(got))
	}
	table.Put(store.ViewRow{EntityID: "e0003", Seq: 3, Row: []byte{}, Columns: []any{"x", []int64{1003}}}, true)
	if got := table.Query(store.ViewQuery{Where: &where, Limit: 10}); ids(got) != "e0003" {
		t.Errorf("a newer row is not found: %q", ids(got))
	}
}
