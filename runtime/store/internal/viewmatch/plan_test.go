package viewmatch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/statefun-go/statefun/runtime/store"
)

// propertyDef has a plain column of every kind and two repeated ones.
var propertyDef = store.ViewDef{Name: "p", Version: 1, EntityType: "e", Columns: []store.ViewColumn{
	{Name: "s", Kind: store.ViewString},
	{Name: "n", Kind: store.ViewInt},
	{Name: "f", Kind: store.ViewFloat},
	{Name: "b", Kind: store.ViewBool},
	{Name: "by", Kind: store.ViewBytes},
	{Name: "tags", Kind: store.ViewInt, Repeated: true},
	{Name: "names", Kind: store.ViewString, Repeated: true},
	{Name: "blobs", Kind: store.ViewBytes, Repeated: true},
}}

// propertyValue draws a value of a column's kind from a small pool, so
// that rows tie often, with the values whose order is easy to get wrong:
// NaN above +Inf, -0 equal to 0, bytes above ASCII, the int extremes.
func propertyValue(r *rand.Rand, k store.ViewKind) any {
	switch k {
	case store.ViewString:
		return []string{"", "a", "ab", "b", "é", "z"}[r.IntN(6)]
	case store.ViewInt:
		return []int64{math.MinInt64, -2, -1, 0, 1, 2, 3, math.MaxInt64}[r.IntN(8)]
	case store.ViewFloat:
		return []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 1.5, -2.5, 1e300}[r.IntN(8)]
	case store.ViewBool:
		return r.IntN(2) == 1
	case store.ViewBytes:
		return [][]byte{nil, {}, {0}, {1}, {0, 1}, {0xff}}[r.IntN(6)]
	}
	panic(fmt.Sprint("no values of kind ", k))
}

func propertyRow(r *rand.Rand, id string, seq int64) store.ViewRow {
	if r.IntN(8) == 0 {
		return store.ViewRow{EntityID: id, Seq: seq}
	}
	cols := make([]any, len(propertyDef.Columns))
	for i, c := range propertyDef.Columns {
		if !c.Repeated {
			cols[i] = propertyValue(r, c.Kind)
			continue
		}
		n := r.IntN(4)
		switch c.Kind {
		case store.ViewInt:
			list := []int64{}
			for range n {
				list = append(list, propertyValue(r, c.Kind).(int64))
			}
			cols[i] = list
		case store.ViewString:
			list := []string{}
			for range n {
				list = append(list, propertyValue(r, c.Kind).(string))
			}
			cols[i] = list
		case store.ViewBytes:
			list := [][]byte{}
			for range n {
				list = append(list, propertyValue(r, c.Kind).([]byte))
			}
			cols[i] = list
		}
	}
	return store.ViewRow{EntityID: id, Seq: seq, Row: []byte(id), Columns: cols}
}

// propertyCond draws a condition: mostly ANDs of comparisons, so that
// ranges and equalities of the plain columns give the planner choices,
// with ORs, NOTs and !=s among them.
func propertyCond(r *rand.Rand, depth int) store.ViewCond {
	if depth > 0 {
		switch r.IntN(6) {
		case 0, 1, 2:
			args := make([]store.ViewCond, 1+r.IntN(3))
			for i := range args {
				args[i] = propertyCond(r, depth-1)
			}
			return store.ViewCond{Op: store.ViewAnd, Args: args}
		case 3:
			args := make([]store.ViewCond, r.IntN(3))
			for i := range args {
				args[i] = propertyCond(r, depth-1)
			}
			return store.ViewCond{Op: store.ViewOr, Args: args}
		case 4:
			return store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{propertyCond(r, depth-1)}}
		}
	}
	column := r.IntN(len(propertyDef.Columns))
	ops := []store.ViewOp{store.ViewEq, store.ViewNe, store.ViewLt, store.ViewLe, store.ViewGt, store.ViewGe}
	return store.ViewCond{Op: ops[r.IntN(len(ops))], Column: column, Value: propertyValue(r, propertyDef.Columns[column].Kind)}
}

func propertyQuery(r *rand.Rand) store.ViewQuery {
	var q store.ViewQuery
	if r.IntN(8) != 0 {
		c := propertyCond(r, r.IntN(3))
		q.Where = &c
	}
	for _, column := range r.Perm(5)[:r.IntN(4)] {
		q.Order = append(q.Order, store.ViewOrder{Column: column, Desc: r.IntN(2) == 1})
	}
	q.Limit = []int{1, 2, 3, 7, 20, 1000}[r.IntN(6)]
	return q
}

// bruteForce is the page of q over rows by the definition: every live row
// matched, sorted, cut at Limit.
func bruteForce(rows map[string]store.ViewRow, q store.ViewQuery) []string {
	var matched []store.ViewRow
	for _, row := range rows {
		if row.Row != nil && Match(q.Where, row.Columns) && After(q.Order, q.After, row.Columns, row.EntityID) {
			matched = append(matched, row)
		}
	}
	slices.SortFunc(matched, func(a, b store.ViewRow) int {
		return CompareRows(q.Order, a.Columns, a.EntityID, b.Columns, b.EntityID)
	})
	var out []string
	for _, row := range matched[:min(len(matched), q.Limit)] {
		out = append(out, row.EntityID)
	}
	return out
}

// TestQueryAgreesWithBruteForce: over random tables (rows written,
// replaced, deleted) and random queries, every page of every plan is the
// page a sort of all matching rows gives, and paging with cursors walks
// the same rows in the same order to the end.
func TestQueryAgreesWithBruteForce(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 11))
	plans := map[string]int{}
	for round := range 120 {
		table := NewTable(propertyDef)
		rows := map[string]store.ViewRow{}
		loaded := map[string]bool{} // rows whose payload the table does not keep
		ids := 1 + r.IntN(300)
		for seq := range int64(r.IntN(3 * ids)) {
			row := propertyRow(r, fmt.Sprintf("e%03d", r.IntN(ids)), seq+1)
			if r.IntN(2) == 0 {
				// The embedded store's path: the table keeps the columns.
				table.Load(row.EntityID, row.Seq, row.Row != nil, Clone(row.Columns))
				loaded[row.EntityID] = true
			} else {
				table.Put(row, true)
				loaded[row.EntityID] = false
			}
			rows[row.EntityID] = row
		}
		for range 60 {
			q := propertyQuery(r)
			p := table.plan(q)
			switch {
			case p.walk:
				plans["walk"]++
			case p.all:
				plans["all"]++
			case len(p.probes) == 1 && p.probes[0].ranged:
				plans["range"]++
			case len(p.probes) == 1:
				plans["element"]++
			default:
				plans["union"]++
			}
			var walked []string
			for page := 0; ; page++ {
				got := table.Query(q)
				want := bruteForce(rows, q)
				var gotIDs []string
				for _, row := range got {
					gotIDs = append(gotIDs, row.EntityID)
					stored := rows[row.EntityID]
					if !sameColumns(row.Columns, stored.Columns) {
						t.Fatalf("round %d: row %q came back with columns %#v, stored with %#v", round, row.EntityID, row.Columns, stored.Columns)
					}
					if !loaded[row.EntityID] && string(row.Row) != string(stored.Row) || row.Seq != stored.Seq {
						t.Fatalf("round %d: row %q came back at seq %d with %q, stored at %d with %q", round, row.EntityID, row.Seq, row.Row, stored.Seq, stored.Row)
					}
				}
				if !slices.Equal(gotIDs, want) {
					t.Fatalf("round %d, page %d of %s (plan %+v):\n got %v\nwant %v", round, page, describeQuery(q), p, gotIDs, want)
				}
				walked = append(walked, gotIDs...)
				if len(got) < q.Limit || page == 40 {
					break
				}
				last := got[len(got)-1]
				cursor := &store.ViewCursor{EntityID: last.EntityID}
				for _, o := range q.Order {
					cursor.Values = append(cursor.Values, last.Columns[o.Column])
				}
				q.After = cursor
			}
			if len(walked) < 40*q.Limit {
				all := q
				all.After, all.Limit = nil, len(rows)+1
				if want := bruteForce(rows, all); !slices.Equal(walked, want) {
					t.Fatalf("round %d: paging %s gave\n %v\nwant %v", round, describeQuery(q), walked, want)
				}
			}
		}
	}
	// The comparison is worth something only if every plan ran, often.
	for _, kind := range []string{"walk", "all", "range", "element", "union"} {
		if plans[kind] < 100 {
			t.Errorf("plan %s ran %d times of %v; change the random queries so that it runs", kind, plans[kind], plans)
		}
	}
}

// sameColumns reports whether two rows' values are the same values: a
// -0 is not a 0, nor a nil []byte an empty one, though they compare
// equal. An empty list is the same as none (Clone makes it nil).
func sameColumns(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		fa, aFloat := a[i].(float64)
		fb, bFloat := b[i].(float64)
		switch {
		case aFloat && bFloat:
			if math.Float64bits(fa) != math.Float64bits(fb) {
				return false
			}
		case isEmptyList(a[i]) && isEmptyList(b[i]):
		case !reflect.DeepEqual(a[i], b[i]):
			return false
		}
	}
	return true
}

func isEmptyList(v any) bool {
	if _, ok := v.([]byte); ok {
		return false
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Slice && rv.Len() == 0
}

func describeQuery(q store.ViewQuery) string {
	var b strings.Builder
	if q.Where != nil {
		fmt.Fprintf(&b, "WHERE %s ", describeCond(q.Where))
	}
	for i, o := range q.Order {
		if i == 0 {
			b.WriteString("ORDER BY ")
		}
		fmt.Fprintf(&b, "%s desc=%v, ", propertyDef.Columns[o.Column].Name, o.Desc)
	}
	fmt.Fprintf(&b, "LIMIT %d", q.Limit)
	if q.After != nil {
		fmt.Fprintf(&b, " AFTER %#v %q", q.After.Values, q.After.EntityID)
	}
	return b.String()
}

func describeCond(c *store.ViewCond) string {
	switch c.Op {
	case store.ViewAnd, store.ViewOr, store.ViewNot:
		var args []string
		for i := range c.Args {
			args = append(args, describeCond(&c.Args[i]))
		}
		return c.Op.String() + "(" + strings.Join(args, ", ") + ")"
	}
	return fmt.Sprintf("%s %v %#v", propertyDef.Columns[c.Column].Name, c.Op, c.Value)
}

// ordersTable has n rows: total i*7 mod n (unique), status i mod 4,
// customer i mod 100.
func ordersTable(n int) *Table {
	def := store.ViewDef{Name: "orders", Version: 1, EntityType: "order", Columns: []store.ViewColumn{
		{Name: "customer", Kind: store.ViewString},
		{Name: "total", Kind: store.ViewInt},
		{Name: "status", Kind: store.ViewInt},
		{Name: "skus", Kind: store.ViewString, Repeated: true},
	}}
	t := NewTable(def)
	for i := range n {
		t.Put(store.ViewRow{EntityID: fmt.Sprintf("o%06d", i), Seq: 1, Row: []byte{}, Columns: []any{
			fmt.Sprintf("c%03d", i%100), int64(i * 7 % n), int64(i % 4), []string{fmt.Sprintf("sku%d", i%1000)},
		}}, true)
	}
	return t
}

// TestOrderedQueriesReadAboutLimitRows: a range of the order column, or
// an order with a condition the index cannot narrow, walks the order
// column's index and stops after Limit rows (and their ties), where a
// scan would read every row; a narrow equality is read instead.
func TestOrderedQueriesReadAboutLimitRows(t *testing.T) {
	t.Parallel()
	const n = 10_000 // 7 and n are coprime: totals 0..n-1, once each
	table := ordersTable(n)
	total := func(op store.ViewOp, v int64) store.ViewCond { return store.ViewCond{Op: op, Column: 1, Value: v} }
	and := func(args ...store.ViewCond) *store.ViewCond { return &store.ViewCond{Op: store.ViewAnd, Args: args} }
	byTotalDesc := []store.ViewOrder{{Column: 1, Desc: true}}
	tests := []struct {
		name        string
		q           store.ViewQuery
		maxExamined int
		first       int64 // the first row's total
	}{
		{"range of the order column", store.ViewQuery{Where: and(total(store.ViewGe, 3000), total(store.ViewLt, 5000)), Order: byTotalDesc, Limit: 50}, 50, 4999},
		{"order alone", store.ViewQuery{Order: byTotalDesc, Limit: 10}, 10, n - 1},
		{"cursor", store.ViewQuery{Order: byTotalDesc, Limit: 10, After: &store.ViewCursor{Values: []any{int64(5000)}, EntityID: "o999999"}}, 11, 4999},
		// status = 1 holds for a quarter of the rows: too many to sort,
		// so the walk reads about 4 rows per match.
		{"wide equality", store.ViewQuery{Where: and(store.ViewCond{Op: store.ViewEq, Column: 2, Value: int64(1)}), Order: byTotalDesc, Limit: 20}, 200, -1},
		{"narrow equality", store.ViewQuery{Where: and(store.ViewCond{Op: store.ViewEq, Column: 0, Value: "c042"}), Order: byTotalDesc, Limit: 20}, 100, -1},
	}
	for _, tt := range tests {
		page, examined := table.query(tt.q)
		if len(page) != tt.q.Limit || examined > tt.maxExamined {
			t.Errorf("%s: %d rows after reading %d, want %d after %d at most", tt.name, len(page), examined, tt.q.Limit, tt.maxExamined)
			continue
		}
		if got := page[0].e.columns[1].(int64); tt.first >= 0 && got != tt.first {
			t.Errorf("%s: first total %d, want %d", tt.name, got, tt.first)
		}
	}
}

// TestWalkCompletesTheTieGroupAtTheLimit: a walk by a column with few
// values cuts at Limit only after the tie group in which it falls, so
// the rows of the group come in the order of the next columns and IDs,
// not in the index's.
func TestWalkCompletesTheTieGroupAtTheLimit(t *testing.T) {
	t.Parallel()
	table := ordersTable(1000)
	q := store.ViewQuery{Order: []store.ViewOrder{{Column: 2, Desc: true}, {Column: 1, Desc: false}}, Limit: 5}
	if p := table.plan(q); !p.walk {
		t.Fatalf("ORDER BY status, total is planned as %+v, not a walk of status", p)
	}
	page, examined := table.query(q)
	// status 3 is rows 3, 7, 11, ...: totals (4i+3)*7 mod 1000; the five
	// smallest of those 250 rows, which only a read of all 250 finds.
	var want []string
	for i := 3; i < 1000; i += 4 {
		want = append(want, fmt.Sprintf("o%06d", i))
	}
	slices.SortFunc(want, func(a, b string) int {
		var ia, ib int
		_, _ = fmt.Sscanf(a, "o%d", &ia)
		_, _ = fmt.Sscanf(b, "o%d", &ib)
		return (ia * 7 % 1000) - (ib * 7 % 1000)
	})
	if got := pageIDs(page); got != strings.Join(want[:5], " ") || examined != 250 {
		t.Errorf("got %s after reading %d rows, want %s after the 250 of status 3", got, examined, strings.Join(want[:5], " "))
	}
}

// TestPlanPrefersTheNarrowestAccess: of an AND's equalities and ranges
// the planner reads the one that names the fewest rows, and walks the
// order column when none is narrow enough to sort.
func TestPlanPrefersTheNarrowestAccess(t *testing.T) {
	t.Parallel()
	table := ordersTable(10_000)
	eq := func(column int, v any) store.ViewCond {
		return store.ViewCond{Op: store.ViewEq, Column: column, Value: v}
	}
	cmpOn := func(op store.ViewOp, column int, v any) store.ViewCond {
		return store.ViewCond{Op: op, Column: column, Value: v}
	}
	and := func(args ...store.ViewCond) *store.ViewCond { return &store.ViewCond{Op: store.ViewAnd, Args: args} }
	describe := func(p plan) string {
		switch {
		case p.walk:
			return "walk"
		case p.all:
			return "all"
		}
		var out []string
		for _, pr := range p.probes {
			name := []string{"customer", "total", "status", "skus"}[pr.column]
			if pr.ranged {
				out = append(out, "range "+name)
			} else {
				out = append(out, "element "+name)
			}
		}
		return strings.Join(out, " + ")
	}
	tests := []struct {
		name string
		q    store.ViewQuery
		want string
	}{
		{"narrow range beats wide equality", store.ViewQuery{Where: and(eq(2, int64(1)), cmpOn(store.ViewLt, 1, int64(30))), Limit: 10}, "range total"},
		{"equality beats wide range", store.ViewQuery{Where: and(eq(0, "c001"), cmpOn(store.ViewGe, 1, int64(30))), Limit: 10}, "range customer"},
		{"repeated element", store.ViewQuery{Where: and(eq(3, "sku7"), cmpOn(store.ViewGe, 1, int64(30))), Limit: 10}, "element skus"},
		{"nested ands intersect", store.ViewQuery{Where: and(*and(cmpOn(store.ViewGe, 1, int64(100))), cmpOn(store.ViewLe, 1, int64(105))), Limit: 10}, "range total"},
		{"or of equalities", store.ViewQuery{Where: &store.ViewCond{Op: store.ViewOr, Args: []store.ViewCond{eq(0, "c001"), eq(3, "sku9")}}, Limit: 10}, "range customer + element skus"},
		{"not", store.ViewQuery{Where: &store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{eq(0, "c001")}}, Limit: 10}, "all"},
		{"wide range unordered", store.ViewQuery{Where: and(cmpOn(store.ViewGe, 1, int64(0))), Limit: 10}, "all"},
		{"wide range ordered by another column", store.ViewQuery{Where: and(cmpOn(store.ViewGe, 1, int64(100))), Order: []store.ViewOrder{{Column: 0}}, Limit: 10}, "walk"},
		{"narrow equality ordered", store.ViewQuery{Where: and(eq(0, "c001")), Order: []store.ViewOrder{{Column: 1}}, Limit: 10}, "range customer"},
		{"range of the order column", store.ViewQuery{Where: and(cmpOn(store.ViewLt, 1, int64(30))), Order: []store.ViewOrder{{Column: 1}}, Limit: 10}, "walk"},
	}
	for _, tt := range tests {
		if got := describe(table.plan(tt.q)); got != tt.want {
			t.Errorf("%s: planned %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestTableSharesEqualValuesButKeepsFloatBits: rows with equal strings
// share one value, and a -0 stays -0 beside a 0 (they are equal, not
// the same value).
func TestTableSharesEqualValuesButKeepsFloatBits(t *testing.T) {
	t.Parallel()
	def := store.ViewDef{Name: "v", Version: 1, EntityType: "e", Columns: []store.ViewColumn{{Name: "s", Kind: store.ViewString}, {Name: "f", Kind: store.ViewFloat}}}
	table := NewTable(def)
	table.Put(store.ViewRow{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{strings.Repeat("x", 3), 0.0}}, true)
	table.Put(store.ViewRow{EntityID: "b", Seq: 1, Row: []byte{}, Columns: []any{strings.Repeat("x", 3), math.Copysign(0, -1)}}, true)
	a, b := table.rows["a"].columns[0].(string), table.rows["b"].columns[0].(string)
	if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("two rows of one string keep a copy each")
	}
	if r, _, _ := table.Get("b"); !math.Signbit(r.Columns[1].(float64)) {
		t.Errorf("-0 came back as %v", r.Columns[1])
	}
}
