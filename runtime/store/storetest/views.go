package storetest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

// viewTests are the tests of views (store.Views): rows kept by seq,
// queried by conditions on typed columns, in an order, a page at a time.
// Every query's answer is written out as entity IDs, worked out by hand
// from the rows of viewRows, so that all stores must agree with it and
// so with each other.
var viewTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"EnsureViewIsIdempotent", testEnsureViewIsIdempotent},
	{"EnsureViewRefusesChangedColumns", testEnsureViewRefusesChangedColumns},
	{"ConcurrentEnsureView", testConcurrentEnsureView},
	{"ViewOfNoVersionIsAnError", testViewOfNoVersionIsAnError},
	{"ViewRowsKeepTheNewestSeq", testViewRowsKeepTheNewestSeq},
	{"ViewTombstones", testViewTombstones},
	{"ViewUpdateIsAllOrNothing", testViewUpdateIsAllOrNothing},
	{"ViewUpdateMovesIndexedValues", testViewUpdateMovesIndexedValues},
	{"ViewPayloadsRoundTrip", testViewPayloadsRoundTrip},
	{"ViewConditions", testViewConditions},
	{"ViewOrders", testViewOrders},
	{"ViewPaging", testViewPaging},
	{"ViewPagingWithCondition", testViewPagingWithCondition},
	{"ViewQueryStopsOnError", testViewQueryStopsOnError},
	{"ViewVersions", testViewVersions},
	{"ViewNamesAreKeptApart", testViewNamesAreKeptApart},
	{"ViewQueriesDuringUpdates", testViewQueriesDuringUpdates},
	{"ViewDroppedDuringQueries", testViewDroppedDuringQueries},
}

// viewDef has a column of every kind, plain and repeated.
var viewDef = store.ViewDef{
	Name:       "shop.cart-summary_v",
	Version:    1,
	EntityType: "cart",
	Columns: []store.ViewColumn{
		{Name: "city", Kind: store.ViewString},
		{Name: "score", Kind: store.ViewInt},
		{Name: "price", Kind: store.ViewFloat},
		{Name: "open", Kind: store.ViewBool},
		{Name: "code", Kind: store.ViewBytes},
		{Name: "tags", Kind: store.ViewString, Repeated: true},
		{Name: "nums", Kind: store.ViewInt, Repeated: true},
		{Name: "weights", Kind: store.ViewFloat, Repeated: true},
		{Name: "flags", Kind: store.ViewBool, Repeated: true},
		{Name: "blobs", Kind: store.ViewBytes, Repeated: true},
	},
}

// The columns of viewDef, by index.
const (
	colCity = iota
	colScore
	colPrice
	colOpen
	colCode
	colTags
	colNums
	colWeights
	colFlags
	colBlobs
)

var (
	nan    = math.NaN()
	negZ   = math.Copysign(0, -1)
	posInf = math.Inf(1)
	negInf = math.Inf(-1)
)

func b(bs ...byte) []byte { return append([]byte{}, bs...) }

// viewRows are the rows the condition and order tests query. In byte
// order the cities are "" < "Zoo" < "a\x00b" < "apple" = "apple" <
// "zebra" < "Äpfel" < "éclair", so a store that compares strings by a
// linguistic collation (Zoo after apple, Ä near A) fails.
func viewRows() []store.ViewRow {
	row := func(id, city string, score int64, price float64, open bool, code []byte, tags []string, nums []int64, weights []float64, flags []bool, blobs [][]byte) store.ViewRow {
		return store.ViewRow{EntityID: id, Seq: 1, Row: []byte("row of " + id), Columns: []any{city, score, price, open, code, tags, nums, weights, flags, blobs}}
	}
	return []store.ViewRow{
		row("r1", "apple", -5, 1.5, true, b(0x00), []string{"red", "fruit"}, []int64{1, 2}, []float64{0.5}, []bool{true}, [][]byte{b(0x01)}),
		row("r2", "Zoo", 0, -2.25, false, b(0xff), []string{}, []int64{}, []float64{}, []bool{}, [][]byte{}),
		row("r3", "zebra", 100, 0, true, b(), []string{"fruit"}, []int64{-7}, []float64{-1.5, 2.5}, []bool{false}, [][]byte{b(0xff, 0x00)}),
		row("r4", "Äpfel", -5, nan, false, b(0x00, 0x01), []string{"grün"}, []int64{2, 2}, []float64{nan}, []bool{false, true}, [][]byte{b(0x00), b(0xff)}),
		row("r5", "éclair", math.MaxInt64, negZ, true, b(0x7f), []string{"red"}, []int64{-9}, []float64{negZ}, []bool{true, true}, [][]byte{b(0x7f)}),
		row("r6", "a\x00b", math.MinInt64, posInf, false, b(0x00, 0x00), []string{"Red"}, []int64{0}, []float64{posInf}, []bool{false}, [][]byte{b()}),
		row("r7", "", 7, negInf, true, b(0x80), []string{"😀", "red"}, []int64{5}, []float64{negInf, 1}, []bool{true}, [][]byte{b(0x80)}),
		row("r8", "apple", 7, 1.5, false, b(0x01), []string{"apple"}, []int64{100}, []float64{1.5}, nil, [][]byte{b(0x01), b(0x01)}),
	}
}

func ensureView(t *testing.T, s store.Store, def store.ViewDef) {
	t.Helper()
	if err := s.EnsureView(ctx, def); err != nil {
		t.Fatalf("EnsureView(%s v%d): %v", def.Name, def.Version, err)
	}
}

func updateView(t *testing.T, s store.Store, def store.ViewDef, rows ...store.ViewRow) {
	t.Helper()
	if err := s.UpdateViewRows(ctx, def, rows); err != nil {
		t.Fatalf("UpdateViewRows(%s v%d): %v", def.Name, def.Version, err)
	}
}

func queryView(t *testing.T, s store.Store, def store.ViewDef, q store.ViewQuery) []store.ViewRow {
	t.Helper()
	var rows []store.ViewRow
	if err := s.QueryView(ctx, def, q, func(r store.ViewRow) error {
		rows = append(rows, r)
		return nil
	}); err != nil {
		t.Fatalf("QueryView(%+v): %v", q, err)
	}
	return rows
}

func rowIDs(rows []store.ViewRow) string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.EntityID
	}
	return strings.Join(ids, " ")
}

func loadView(t *testing.T, s store.Store, def store.ViewDef, ids ...string) map[string]store.ViewRow {
	t.Helper()
	rows, err := s.LoadViewRows(ctx, def, ids)
	if err != nil {
		t.Fatalf("LoadViewRows(%q): %v", ids, err)
	}
	return rows
}

// sameColumns compares column values, an empty list equal to a nil one
// and NaN equal to NaN.
func sameColumns(got, want []any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		if !sameValue(got[i], want[i]) {
			return false
		}
	}
	return true
}

func sameValue(got, want any) bool {
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && (g == w && math.Signbit(g) == math.Signbit(w) || math.IsNaN(g) && math.IsNaN(w))
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case []string:
		g, ok := got.([]string)
		return ok && slices.Equal(g, w)
	case []int64:
		g, ok := got.([]int64)
		return ok && slices.Equal(g, w)
	case []bool:
		g, ok := got.([]bool)
		return ok && slices.Equal(g, w)
	case []float64:
		g, ok := got.([]float64)
		return ok && slices.EqualFunc(g, w, func(a, b float64) bool { return sameValue(a, b) })
	case [][]byte:
		g, ok := got.([][]byte)
		return ok && slices.EqualFunc(g, w, bytes.Equal)
	}
	return got == want
}

func wantRow(t *testing.T, what string, got store.ViewRow, want store.ViewRow) {
	t.Helper()
	if got.EntityID != want.EntityID || got.Seq != want.Seq || !bytes.Equal(got.Row, want.Row) || (got.Row == nil) != (want.Row == nil) || !sameColumns(got.Columns, want.Columns) {
		t.Errorf("%s: row %+v, want %+v", what, got, want)
	}
}

func testEnsureViewIsIdempotent(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, viewRows()[0])
	ensureView(t, s, viewDef)
	if rows := loadView(t, s, viewDef, "r1"); len(rows) != 1 {
		t.Errorf("a second EnsureView lost the view's rows: %v", rows)
	}
	if vs, err := s.ViewVersions(ctx, viewDef.Name); err != nil || len(vs) != 1 {
		t.Errorf("ViewVersions after two EnsureViews: %v %v, want one version", vs, err)
	}
}

func testEnsureViewRefusesChangedColumns(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	changed := []store.ViewDef{viewDef, viewDef, viewDef, viewDef, viewDef}
	changed[0].Columns = viewDef.Columns[:3]
	changed[1].Columns = slices.Clone(viewDef.Columns)
	changed[1].Columns[0].Kind = store.ViewBytes
	changed[2].Columns = slices.Clone(viewDef.Columns)
	changed[2].Columns[colTags].Repeated = false
	changed[3].Columns = slices.Clone(viewDef.Columns)
	changed[3].Columns[colScore].Name = "points"
	changed[4].EntityType = "order"
	for i, def := range changed {
		err := s.EnsureView(ctx, def)
		if err == nil || !strings.Contains(err.Error(), "version") {
			t.Errorf("EnsureView of changed definition %d: %v, want an error that asks for a new version", i, err)
		}
	}
	next := changed[0]
	next.Version = 2
	ensureView(t, s, next)
}

func testConcurrentEnsureView(t *testing.T, s store.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- s.EnsureView(ctx, viewDef) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent EnsureView: %v", err)
		}
	}
	updateView(t, s, viewDef, viewRows()...)
	if got := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Limit: 100})); got != "r1 r2 r3 r4 r5 r6 r7 r8" {
		t.Errorf("rows after concurrent EnsureView: %s", got)
	}
}

func testViewOfNoVersionIsAnError(t *testing.T, s store.Store) {
	missing := viewDef
	missing.Name = "never.ensured"
	if err := s.UpdateViewRows(ctx, missing, viewRows()[:1]); err == nil {
		t.Error("UpdateViewRows of a view never ensured succeeded")
	}
	if _, err := s.LoadViewRows(ctx, missing, []string{"r1"}); err == nil {
		t.Error("LoadViewRows of a view never ensured succeeded")
	}
	if err := s.QueryView(ctx, missing, store.ViewQuery{Limit: 1}, func(store.ViewRow) error { return nil }); err == nil {
		t.Error("QueryView of a view never ensured succeeded")
	}
	if err := s.MarkViewReady(ctx, missing); err == nil {
		t.Error("MarkViewReady of a view never ensured succeeded")
	}
	if err := s.DropView(ctx, missing); err != nil {
		t.Errorf("DropView of a view never ensured: %v, want nothing to do", err)
	}
}

// seqRow is a row of viewDef whose payload and city name its version.
func seqRow(id string, seq int64, what string) store.ViewRow {
	r := viewRows()[0]
	r.EntityID, r.Seq, r.Row = id, seq, []byte(what)
	r.Columns = slices.Clone(r.Columns)
	r.Columns[colCity] = what
	return r
}

func tombstone(id string, seq int64) store.ViewRow { return store.ViewRow{EntityID: id, Seq: seq} }

func cityIs(city string) *store.ViewCond {
	return &store.ViewCond{Op: store.ViewEq, Column: colCity, Value: city}
}

func testViewRowsKeepTheNewestSeq(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, seqRow("a", 5, "five"), seqRow("b", 1, "b1"))
	updateView(t, s, viewDef, seqRow("a", 3, "older"))
	updateView(t, s, viewDef, seqRow("a", 5, "same seq"))
	got := loadView(t, s, viewDef, "a")
	wantRow(t, "after an older and an equal seq", got["a"], seqRow("a", 5, "five"))
	// In one batch: a newer row of a, an older one of b.
	updateView(t, s, viewDef, seqRow("a", 6, "six"), seqRow("b", 0, "b0"))
	got = loadView(t, s, viewDef, "a", "b", "nobody")
	wantRow(t, "newer seq", got["a"], seqRow("a", 6, "six"))
	wantRow(t, "older seq in a batch", got["b"], seqRow("b", 1, "b1"))
	if _, ok := got["nobody"]; ok || len(got) != 2 {
		t.Errorf("LoadViewRows returned %d rows, want a and b only", len(got))
	}
	if ids := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: cityIs("six"), Limit: 10})); ids != "a" {
		t.Errorf("query of the newest value: %q, want a", ids)
	}
	for _, stale := range []string{"five", "older", "same seq", "b0"} {
		if ids := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: cityIs(stale), Limit: 10})); ids != "" {
			t.Errorf("query of the replaced or refused value %q: %q, want nothing", stale, ids)
		}
	}
}

func testViewTombstones(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, seqRow("a", 5, "alive"), seqRow("b", 1, "alive"))
	updateView(t, s, viewDef, tombstone("a", 7))
	got := loadView(t, s, viewDef, "a")
	if r, ok := got["a"]; !ok || r.Seq != 7 || r.Row != nil || r.Columns != nil {
		t.Errorf("tombstone loads as %+v (found %v), want seq 7, no row, no columns", r, ok)
	}
	if ids := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Limit: 10})); ids != "b" {
		t.Errorf("query returns %q, want b only: a tombstone is never returned", ids)
	}
	if ids := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: cityIs("alive"), Limit: 10})); ids != "b" {
		t.Errorf("query by the deleted row's value returns %q, want b only", ids)
	}
	// A row at or below the tombstone's seq does not bring it back.
	updateView(t, s, viewDef, seqRow("a", 7, "equal"))
	updateView(t, s, viewDef, seqRow("a", 6, "older"))
	if r := loadView(t, s, viewDef, "a")["a"]; r.Seq != 7 || r.Row != nil {
		t.Errorf("tombstone after older rows: %+v, want the tombstone at 7", r)
	}
	// An older tombstone does not delete a newer row.
	updateView(t, s, viewDef, tombstone("b", 1))
	if ids := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Limit: 10})); ids != "b" {
		t.Errorf("a tombstone at an equal seq deleted b: %q", ids)
	}
	updateView(t, s, viewDef, seqRow("a", 8, "back"))
	wantRow(t, "resurrected", loadView(t, s, viewDef, "a")["a"], seqRow("a", 8, "back"))
	if ids := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: cityIs("back"), Limit: 10})); ids != "a" {
		t.Errorf("query of the resurrected row: %q, want a", ids)
	}
	// A tombstone of an entity without a row is kept, with its seq.
	updateView(t, s, viewDef, tombstone("c", 3))
	updateView(t, s, viewDef, seqRow("c", 2, "late"))
	if r, ok := loadView(t, s, viewDef, "c")["c"]; !ok || r.Seq != 3 || r.Row != nil {
		t.Errorf("tombstone of a new entity: %+v (found %v), want seq 3", r, ok)
	}
}

func testViewUpdateIsAllOrNothing(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, seqRow("a", 1, "first"))
	bad := seqRow("b", 1, "bad")
	bad.Columns = slices.Clone(bad.Columns)
	bad.Columns[colScore] = "not an int"
	if err := s.UpdateViewRows(ctx, viewDef, []store.ViewRow{seqRow("a", 2, "second"), bad}); err == nil {
		t.Fatal("UpdateViewRows with a mistyped column value succeeded")
	}
	if err := s.UpdateViewRows(ctx, viewDef, []store.ViewRow{seqRow("a", 2, "second"), seqRow("a", 3, "third")}); err == nil {
		t.Fatal("UpdateViewRows with two rows of one entity succeeded")
	}
	got := loadView(t, s, viewDef, "a", "b")
	if len(got) != 1 || got["a"].Seq != 1 {
		t.Errorf("refused updates wrote rows: %+v", got)
	}
}

// testViewUpdateMovesIndexedValues: a row whose values change is found by
// its new values only, plain and repeated.
func testViewUpdateMovesIndexedValues(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	rows := viewRows()
	updateView(t, s, viewDef, rows...)
	moved := rows[0]
	moved.Seq = 2
	moved.Columns = slices.Clone(moved.Columns)
	moved.Columns[colScore] = int64(100)
	moved.Columns[colTags] = []string{"blue"}
	updateView(t, s, viewDef, moved)
	tests := []struct {
		cond store.ViewCond
		want string
	}{
		{store.ViewCond{Op: store.ViewEq, Column: colScore, Value: int64(-5)}, "r4"},
		{store.ViewCond{Op: store.ViewEq, Column: colScore, Value: int64(100)}, "r1 r3"},
		{store.ViewCond{Op: store.ViewEq, Column: colTags, Value: "red"}, "r5 r7"},
		{store.ViewCond{Op: store.ViewEq, Column: colTags, Value: "fruit"}, "r3"},
		{store.ViewCond{Op: store.ViewEq, Column: colTags, Value: "blue"}, "r1"},
	}
	for _, tt := range tests {
		if got := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: &tt.cond, Limit: 100})); got != tt.want {
			t.Errorf("column %d = %v: %q, want %q", tt.cond.Column, tt.cond.Value, got, tt.want)
		}
	}
}

func testViewPayloadsRoundTrip(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	rows := viewRows()
	rows[0].Row = []byte{}                              // empty: a row, not a tombstone
	rows[1].Row = []byte{0, 1, 2, 0xff, 0xfe}           // binary
	rows[2].Row = bytes.Repeat([]byte{0xab}, 1<<20)     // large
	rows[3].EntityID = "'; DROP TABLE x; --\x00ünï ✓/%" // awkward ID
	updateView(t, s, viewDef, rows...)
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.EntityID
	}
	loaded := loadView(t, s, viewDef, ids...)
	queried := map[string]store.ViewRow{}
	for _, r := range queryView(t, s, viewDef, store.ViewQuery{Limit: 100}) {
		queried[r.EntityID] = r
	}
	for _, want := range rows {
		wantRow(t, "LoadViewRows "+want.EntityID, loaded[want.EntityID], want)
		wantRow(t, "QueryView "+want.EntityID, queried[want.EntityID], want)
	}
}

func eq(col int, v any) store.ViewCond {
	return store.ViewCond{Op: store.ViewEq, Column: col, Value: v}
}
func ne(col int, v any) store.ViewCond {
	return store.ViewCond{Op: store.ViewNe, Column: col, Value: v}
}
func lt(col int, v any) store.ViewCond {
	return store.ViewCond{Op: store.ViewLt, Column: col, Value: v}
}
func le(col int, v any) store.ViewCond {
	return store.ViewCond{Op: store.ViewLe, Column: col, Value: v}
}
func gt(col int, v any) store.ViewCond {
	return store.ViewCond{Op: store.ViewGt, Column: col, Value: v}
}
func ge(col int, v any) store.ViewCond {
	return store.ViewCond{Op: store.ViewGe, Column: col, Value: v}
}
func and(args ...store.ViewCond) store.ViewCond { return store.ViewCond{Op: store.ViewAnd, Args: args} }
func or(args ...store.ViewCond) store.ViewCond  { return store.ViewCond{Op: store.ViewOr, Args: args} }
func not(arg store.ViewCond) store.ViewCond {
	return store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{arg}}
}

func testViewConditions(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, viewRows()...)
	tests := []struct {
		cond store.ViewCond
		want string
	}{
		// Strings, byte by byte.
		{eq(colCity, "apple"), "r1 r8"},
		{eq(colCity, "a\x00b"), "r6"},
		{eq(colCity, ""), "r7"},
		{ne(colCity, "apple"), "r2 r3 r4 r5 r6 r7"},
		{lt(colCity, "a"), "r2 r7"},
		{lt(colCity, "apple"), "r2 r6 r7"},
		{le(colCity, "apple"), "r1 r2 r6 r7 r8"},
		{gt(colCity, "zebra"), "r4 r5"},
		{ge(colCity, "Äpfel"), "r4 r5"},
		{gt(colCity, "Äpfel"), "r5"},
		// Ints.
		{eq(colScore, int64(-5)), "r1 r4"},
		{eq(colScore, int64(math.MinInt64)), "r6"},
		{ne(colScore, int64(7)), "r1 r2 r3 r4 r5 r6"},
		{lt(colScore, int64(0)), "r1 r4 r6"},
		{le(colScore, int64(-5)), "r1 r4 r6"},
		{gt(colScore, int64(7)), "r3 r5"},
		{ge(colScore, int64(7)), "r3 r5 r7 r8"},
		// Floats: -0 = 0, NaN = NaN and above +Inf.
		{eq(colPrice, 1.5), "r1 r8"},
		{eq(colPrice, 0.0), "r3 r5"},
		{eq(colPrice, negZ), "r3 r5"},
		{eq(colPrice, nan), "r4"},
		{ne(colPrice, 1.5), "r2 r3 r4 r5 r6 r7"},
		{lt(colPrice, 0.0), "r2 r7"},
		{le(colPrice, 0.0), "r2 r3 r5 r7"},
		{gt(colPrice, 1.5), "r4 r6"},
		{ge(colPrice, 1.5), "r1 r4 r6 r8"},
		{lt(colPrice, nan), "r1 r2 r3 r5 r6 r7 r8"},
		{gt(colPrice, posInf), "r4"},
		// Bools: false < true.
		{eq(colOpen, true), "r1 r3 r5 r7"},
		{ne(colOpen, true), "r2 r4 r6 r8"},
		{lt(colOpen, true), "r2 r4 r6 r8"},
		{le(colOpen, false), "r2 r4 r6 r8"},
		{gt(colOpen, false), "r1 r3 r5 r7"},
		{ge(colOpen, false), "r1 r2 r3 r4 r5 r6 r7 r8"},
		// Bytes, byte by byte, a prefix first.
		{eq(colCode, b(0x00)), "r1"},
		{eq(colCode, b()), "r3"},
		{ne(colCode, b(0x00)), "r2 r3 r4 r5 r6 r7 r8"},
		{lt(colCode, b(0x01)), "r1 r3 r4 r6"},
		{le(colCode, b(0x01)), "r1 r3 r4 r6 r8"},
		{gt(colCode, b(0x7f)), "r2 r7"},
		{ge(colCode, b(0x80)), "r2 r7"},
		// Repeated: a comparison holds when it holds for any element;
		// an empty list matches none, != included.
		{eq(colTags, "red"), "r1 r5 r7"},
		{ne(colTags, "red"), "r1 r3 r4 r6 r7 r8"},
		{lt(colTags, "b"), "r6 r8"},
		{le(colTags, "fruit"), "r1 r3 r6 r8"},
		{gt(colTags, "red"), "r7"},
		{ge(colTags, "red"), "r1 r5 r7"},
		{not(eq(colTags, "red")), "r2 r3 r4 r6 r8"},
		{eq(colNums, int64(2)), "r1 r4"},
		{ne(colNums, int64(2)), "r1 r3 r5 r6 r7 r8"},
		{lt(colNums, int64(0)), "r3 r5"},
		{le(colNums, int64(0)), "r3 r5 r6"},
		{gt(colNums, int64(4)), "r7 r8"},
		{ge(colNums, int64(2)), "r1 r4 r7 r8"},
		{eq(colWeights, 0.0), "r5"},
		{eq(colWeights, nan), "r4"},
		{ne(colWeights, 0.5), "r3 r4 r5 r6 r7 r8"},
		{lt(colWeights, 0.0), "r3 r7"},
		{le(colWeights, 0.0), "r3 r5 r7"},
		{gt(colWeights, 2.0), "r3 r4 r6"},
		{ge(colWeights, 1.5), "r3 r4 r6 r8"},
		{eq(colFlags, true), "r1 r4 r5 r7"},
		{ne(colFlags, true), "r3 r4 r6"},
		{lt(colFlags, true), "r3 r4 r6"},
		{le(colFlags, false), "r3 r4 r6"},
		{gt(colFlags, false), "r1 r4 r5 r7"},
		{ge(colFlags, false), "r1 r3 r4 r5 r6 r7"},
		{eq(colBlobs, b(0x01)), "r1 r8"},
		{eq(colBlobs, b()), "r6"},
		{ne(colBlobs, b(0x01)), "r3 r4 r5 r6 r7"},
		{lt(colBlobs, b(0x01)), "r4 r6"},
		{le(colBlobs, b(0x01)), "r1 r4 r6 r8"},
		{gt(colBlobs, b(0x7f)), "r3 r4 r7"},
		{ge(colBlobs, b(0x7f)), "r3 r4 r5 r7"},
		// AND, OR, NOT, nested and empty.
		{and(eq(colOpen, true), gt(colScore, int64(0))), "r3 r5 r7"},
		{or(eq(colCity, "Zoo"), eq(colNums, int64(2))), "r1 r2 r4"},
		{or(eq(colCity, "apple"), eq(colTags, "red")), "r1 r5 r7 r8"},
		{not(eq(colOpen, true)), "r2 r4 r6 r8"},
		{and(or(lt(colScore, int64(0)), gt(colPrice, 1.5)), not(eq(colCode, b(0x00)))), "r4 r6"},
		{or(and(ge(colCity, "a"), lt(colCity, "b")), eq(colScore, int64(100))), "r1 r3 r6 r8"},
		{and(eq(colCity, "apple"), eq(colOpen, false)), "r8"},
		{not(or(eq(colCity, "apple"), not(eq(colOpen, false)))), "r2 r4 r6"},
		{and(), "r1 r2 r3 r4 r5 r6 r7 r8"},
		{or(), ""},
		{not(or()), "r1 r2 r3 r4 r5 r6 r7 r8"},
		{or(and(eq(colTags, "red"), eq(colOpen, false)), and()), "r1 r2 r3 r4 r5 r6 r7 r8"},
	}
	for _, tt := range tests {
		cond := tt.cond
		if got := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: &cond, Limit: 100})); got != tt.want {
			t.Errorf("where %s: %q, want %q", condString(cond), got, tt.want)
		}
	}
}

func condString(c store.ViewCond) string {
	switch c.Op {
	case store.ViewAnd, store.ViewOr, store.ViewNot:
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			args[i] = condString(a)
		}
		return c.Op.String() + "(" + strings.Join(args, ", ") + ")"
	}
	return fmt.Sprintf("%s %v %#v", viewDef.Columns[c.Column].Name, c.Op, c.Value)
}

func testViewOrders(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, viewRows()...)
	asc := func(col int) store.ViewOrder { return store.ViewOrder{Column: col} }
	desc := func(col int) store.ViewOrder { return store.ViewOrder{Column: col, Desc: true} }
	closed := eq(colOpen, false)
	tests := []struct {
		where *store.ViewCond
		order []store.ViewOrder
		limit int
		want  string
	}{
		{nil, nil, 100, "r1 r2 r3 r4 r5 r6 r7 r8"},
		{nil, nil, 3, "r1 r2 r3"},
		{nil, []store.ViewOrder{asc(colCity)}, 100, "r7 r2 r6 r1 r8 r3 r4 r5"},
		// Ties stay in ascending ID order under DESC too.
		{nil, []store.ViewOrder{desc(colCity)}, 100, "r5 r4 r3 r1 r8 r6 r2 r7"},
		{nil, []store.ViewOrder{asc(colScore)}, 100, "r6 r1 r4 r2 r7 r8 r3 r5"},
		{nil, []store.ViewOrder{desc(colScore)}, 100, "r5 r3 r7 r8 r2 r1 r4 r6"},
		{nil, []store.ViewOrder{asc(colPrice)}, 100, "r7 r2 r3 r5 r1 r8 r6 r4"},
		{nil, []store.ViewOrder{desc(colPrice)}, 100, "r4 r6 r1 r8 r3 r5 r2 r7"},
		{nil, []store.ViewOrder{asc(colCode)}, 100, "r3 r1 r6 r4 r8 r5 r7 r2"},
		{nil, []store.ViewOrder{asc(colOpen), desc(colScore)}, 100, "r8 r2 r4 r6 r5 r3 r7 r1"},
		{nil, []store.ViewOrder{desc(colOpen), asc(colCity)}, 100, "r7 r1 r3 r5 r2 r6 r8 r4"},
		{nil, []store.ViewOrder{asc(colScore), desc(colPrice)}, 100, "r6 r4 r1 r2 r8 r7 r3 r5"},
		{nil, []store.ViewOrder{asc(colCity)}, 3, "r7 r2 r6"},
		{&closed, []store.ViewOrder{asc(colPrice)}, 2, "r2 r8"},
		{&closed, []store.ViewOrder{desc(colPrice)}, 100, "r4 r6 r8 r2"},
	}
	for _, tt := range tests {
		got := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: tt.where, Order: tt.order, Limit: tt.limit}))
		if got != tt.want {
			t.Errorf("order %+v limit %d: %q, want %q", tt.order, tt.limit, got, tt.want)
		}
	}
}

// pageRows are 50 rows with many ties in the sort columns, and IDs whose
// byte order is not their numeric order.
func pageRows() []store.ViewRow {
	var rows []store.ViewRow
	for i := range 50 {
		r := seqRow(fmt.Sprintf("p%d", i), 1, fmt.Sprintf("city-%d", i%3))
		r.Columns[colScore] = int64(i % 4)
		r.Columns[colOpen] = i%5 == 0
		rows = append(rows, r)
	}
	return rows
}

// pageThrough reads every row of q a page of size at a time, each page
// starting after the cursor of the last one.
func pageThrough(t *testing.T, s store.Store, q store.ViewQuery, size int) []store.ViewRow {
	t.Helper()
	q.Limit = size
	var all []store.ViewRow
	for range 100 {
		page := queryView(t, s, viewDef, q)
		all = append(all, page...)
		if len(page) < size {
			return all
		}
		last := page[len(page)-1]
		cursor := &store.ViewCursor{EntityID: last.EntityID}
		for _, o := range q.Order {
			cursor.Values = append(cursor.Values, last.Columns[o.Column])
		}
		q.After = cursor
	}
	t.Fatal("paging did not end after 100 pages")
	return nil
}

func testViewPaging(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	rows := pageRows()
	updateView(t, s, viewDef, rows...)
	order := []store.ViewOrder{{Column: colScore}, {Column: colCity, Desc: true}, {Column: colOpen}}
	want := slices.Clone(rows)
	slices.SortFunc(want, func(a, b store.ViewRow) int {
		return cmp.Or(
			cmp.Compare(a.Columns[colScore].(int64), b.Columns[colScore].(int64)),
			-strings.Compare(a.Columns[colCity].(string), b.Columns[colCity].(string)),
			cmp.Compare(boolInt(a.Columns[colOpen].(bool)), boolInt(b.Columns[colOpen].(bool))),
			strings.Compare(a.EntityID, b.EntityID))
	})
	if got := rowIDs(pageThrough(t, s, store.ViewQuery{Order: order}, 7)); got != rowIDs(want) {
		t.Errorf("pages of 7 in order %+v:\n got %s\nwant %s", order, got, rowIDs(want))
	}
	byID := slices.Clone(rows)
	slices.SortFunc(byID, func(a, b store.ViewRow) int { return strings.Compare(a.EntityID, b.EntityID) })
	if got := rowIDs(pageThrough(t, s, store.ViewQuery{}, 7)); got != rowIDs(byID) {
		t.Errorf("pages of 7 in ID order:\n got %s\nwant %s", got, rowIDs(byID))
	}
	if got := rowIDs(pageThrough(t, s, store.ViewQuery{Order: order}, 50)); got != rowIDs(want) {
		t.Errorf("one page of 50:\n got %s\nwant %s", got, rowIDs(want))
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

func testViewPagingWithCondition(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	rows := pageRows()
	updateView(t, s, viewDef, rows...)
	// city-1 or score 0, by score DESC then ID.
	where := or(eq(colCity, "city-1"), eq(colScore, int64(0)))
	var want []store.ViewRow
	for _, r := range rows {
		if r.Columns[colCity] == "city-1" || r.Columns[colScore] == int64(0) {
			want = append(want, r)
		}
	}
	slices.SortFunc(want, func(a, b store.ViewRow) int {
		return cmp.Or(-cmp.Compare(a.Columns[colScore].(int64), b.Columns[colScore].(int64)), strings.Compare(a.EntityID, b.EntityID))
	})
	got := pageThrough(t, s, store.ViewQuery{Where: &where, Order: []store.ViewOrder{{Column: colScore, Desc: true}}}, 4)
	if rowIDs(got) != rowIDs(want) {
		t.Errorf("pages of 4 where %s:\n got %s\nwant %s", condString(where), rowIDs(got), rowIDs(want))
	}
}

func testViewQueryStopsOnError(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	updateView(t, s, viewDef, viewRows()...)
	stop := errors.New("stop")
	calls := 0
	err := s.QueryView(ctx, viewDef, store.ViewQuery{Limit: 100}, func(store.ViewRow) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("QueryView returned %v after %d calls; want the callback's error after 1", err, calls)
	}
	if err := s.QueryView(ctx, viewDef, store.ViewQuery{Limit: 0}, func(store.ViewRow) error { return nil }); err == nil {
		t.Error("QueryView with limit 0 succeeded")
	}
}

func testViewVersions(t *testing.T, s store.Store) {
	versions := func() string {
		t.Helper()
		vs, err := s.ViewVersions(ctx, viewDef.Name)
		if err != nil {
			t.Fatalf("ViewVersions: %v", err)
		}
		var out []string
		for _, v := range vs {
			if v.Def.Name != viewDef.Name || v.Def.EntityType != viewDef.EntityType || !slices.Equal(v.Def.Columns, viewDef.Columns) {
				t.Errorf("version %d has definition %+v", v.Def.Version, v.Def)
			}
			out = append(out, fmt.Sprintf("%d:%v", v.Def.Version, v.Ready))
		}
		return strings.Join(out, " ")
	}
	if got := versions(); got != "" {
		t.Fatalf("versions of a view never ensured: %s", got)
	}
	def := func(version int) store.ViewDef {
		d := viewDef
		d.Version = version
		return d
	}
	for _, v := range []int{2, 10, 1} {
		ensureView(t, s, def(v))
	}
	other := viewDef
	other.Name = "other"
	ensureView(t, s, other)
	if got := versions(); got != "1:false 2:false 10:false" {
		t.Errorf("versions %s, want 1, 2 and 10, oldest first, none ready", got)
	}
	if err := s.MarkViewReady(ctx, def(2)); err != nil {
		t.Fatalf("MarkViewReady: %v", err)
	}
	if got := versions(); got != "1:false 2:true 10:false" {
		t.Errorf("versions %s after MarkViewReady(2)", got)
	}
	updateView(t, s, def(1), viewRows()...)
	updateView(t, s, def(2), viewRows()[:1]...)
	if err := s.DropView(ctx, def(1)); err != nil {
		t.Fatalf("DropView: %v", err)
	}
	if got := versions(); got != "2:true 10:false" {
		t.Errorf("versions %s after DropView(1)", got)
	}
	if _, err := s.LoadViewRows(ctx, def(1), []string{"r1"}); err == nil {
		t.Error("LoadViewRows of a dropped version succeeded")
	}
	if rows := loadView(t, s, def(2), "r1", "r2"); len(rows) != 1 {
		t.Errorf("DropView(1) changed version 2: %v", rows)
	}
	// Ensured again, the version starts empty.
	ensureView(t, s, def(1))
	if rows := loadView(t, s, def(1), "r1"); len(rows) != 0 {
		t.Errorf("a dropped version ensured again still has rows: %v", rows)
	}
	if got := versions(); got != "1:false 2:true 10:false" {
		t.Errorf("versions %s after ensuring 1 again", got)
	}
	if vs, err := s.ViewVersions(ctx, "other"); err != nil || len(vs) != 1 {
		t.Errorf("versions of other: %v %v", vs, err)
	}
}

// testViewNamesAreKeptApart: names that differ only in punctuation, or
// share a long prefix, are different views.
func testViewNamesAreKeptApart(t *testing.T, s store.Store) {
	long := strings.Repeat("very.long-view_name.", 8)
	names := []string{"shop.orders", "shop_orders", "shop-orders", "Shop.Orders", long + "a", long + "b"}
	for i, name := range names {
		def := viewDef
		def.Name = name
		ensureView(t, s, def)
		updateView(t, s, def, seqRow(fmt.Sprint(i), 1, name))
	}
	for i, name := range names {
		def := viewDef
		def.Name = name
		if got := rowIDs(queryView(t, s, def, store.ViewQuery{Limit: 10})); got != fmt.Sprint(i) {
			t.Errorf("view %q holds %q, want only its own row %d", name, got, i)
		}
	}
}

// testViewQueriesDuringUpdates: a query that runs while the updater
// writes sees each row whole, its payload from the same update as the
// column values it matched on.
func testViewQueriesDuringUpdates(t *testing.T, s store.Store) {
	ensureView(t, s, viewDef)
	const entities, rounds = 20, 30
	version := func(id string, seq int64) store.ViewRow {
		r := seqRow(id, seq, fmt.Sprintf("seq %d", seq))
		r.Columns[colScore] = seq
		r.Columns[colOpen] = seq%2 == 0
		return r
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			even := eq(colOpen, true)
			for {
				select {
				case <-done:
					return
				default:
				}
				err := s.QueryView(ctx, viewDef, store.ViewQuery{Where: &even, Order: []store.ViewOrder{{Column: colScore, Desc: true}}, Limit: entities}, func(r store.ViewRow) error {
					score := r.Columns[colScore].(int64)
					if string(r.Row) != fmt.Sprintf("seq %d", score) || r.Columns[colCity] != string(r.Row) || score%2 != 0 || r.Seq != score {
						return fmt.Errorf("row %s: seq %d, payload %q, score %d, city %v: parts of different updates", r.EntityID, r.Seq, r.Row, score, r.Columns[colCity])
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for seq := int64(1); seq <= rounds; seq++ {
		rows := make([]store.ViewRow, entities)
		for i := range rows {
			rows[i] = version(fmt.Sprintf("e%02d", i), seq)
		}
		if err := s.UpdateViewRows(ctx, viewDef, rows); err != nil {
			close(done)
			wg.Wait()
			t.Fatalf("UpdateViewRows round %d: %v", seq, err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := queryView(t, s, viewDef, store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: colScore, Value: int64(rounds)}, Limit: 100}); len(got) != entities {
		t.Errorf("%d rows at the last round, want %d", len(got), entities)
	}
}

// testViewDroppedDuringQueries: a version dropped and ensured again while
// queries run (which may fail meanwhile) starts empty: no store keeps
// the dropped rows, on disk or in memory.
func testViewDroppedDuringQueries(t *testing.T, s store.Store) {
	for round := range 5 {
		ensureView(t, s, viewDef)
		updateView(t, s, viewDef, viewRows()...)
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				for range 20 {
					_ = s.QueryView(ctx, viewDef, store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: colCity, Value: "apple"}, Limit: 10}, func(store.ViewRow) error { return nil })
				}
			})
		}
		if err := s.DropView(ctx, viewDef); err != nil {
			t.Fatalf("DropView: %v", err)
		}
		ensureView(t, s, viewDef)
		wg.Wait()
		if got := rowIDs(queryView(t, s, viewDef, store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: colCity, Value: "apple"}, Limit: 10})); got != "" {
			t.Fatalf("round %d: the version ensured again after a drop returns %q", round, got)
		}
		if rows := loadView(t, s, viewDef, "r1"); len(rows) != 0 {
			t.Fatalf("round %d: the version ensured again after a drop loads %v", round, rows)
		}
		if err := s.DropView(ctx, viewDef); err != nil {
			t.Fatalf("DropView: %v", err)
		}
	}
}
