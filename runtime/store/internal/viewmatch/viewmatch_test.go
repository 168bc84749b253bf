package viewmatch

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

func TestCompare(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	tests := []struct {
		a, b any
		want int
	}{
		{"a", "b", -1},
		{"b", "a", 1},
		{"ab", "ab", 0},
		{"a", "ab", -1},
		{"Z", "a", -1},      // bytewise, not case-folded
		{"z", "é", -1},      // é is 0xC3 0xA9: above every ASCII byte
		{"é", "ü", -1},      // U+00E9 < U+00FC in UTF-8 bytes
		{"\uFFFD", "😀", -1}, // 3-byte sequence below a 4-byte one
		{[]byte{1}, []byte{1, 0}, -1},
		{[]byte{0xff}, []byte{0x7f, 0xff}, 1},
		{[]byte{}, []byte(nil), 0},
		{int64(-5), int64(3), -1},
		{int64(math.MinInt64), int64(math.MaxInt64), -1},
		{int64(7), int64(7), 0},
		{-1.5, 2.25, -1},
		{math.Copysign(0, -1), 0.0, 0},
		{nan, nan, 0},
		{nan, math.Inf(1), 1},
		{math.Inf(-1), nan, -1},
		{false, true, -1},
		{true, false, 1},
		{true, true, 0},
	}
	for _, tt := range tests {
		if got := Compare(tt.a, tt.b); got != tt.want {
			t.Errorf("Compare(%#v, %#v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func cmpOp(op store.ViewOp, col int, v any) store.ViewCond {
	return store.ViewCond{Op: op, Column: col, Value: v}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	// Columns: 0 string, 1 int, 2 []int64 tags, 3 []string (empty).
	row := []any{"berlin", int64(10), []int64{3, 7}, []string{}}
	tests := []struct {
		name string
		cond *store.ViewCond
		want bool
	}{
		{"nil matches", nil, true},
		{"eq", &store.ViewCond{Op: store.ViewEq, Column: 0, Value: "berlin"}, true},
		{"eq other", &store.ViewCond{Op: store.ViewEq, Column: 0, Value: "bern"}, false},
		{"ne", &store.ViewCond{Op: store.ViewNe, Column: 1, Value: int64(10)}, false},
		{"lt", &store.ViewCond{Op: store.ViewLt, Column: 1, Value: int64(11)}, true},
		{"le equal", &store.ViewCond{Op: store.ViewLe, Column: 1, Value: int64(10)}, true},
		{"gt equal", &store.ViewCond{Op: store.ViewGt, Column: 1, Value: int64(10)}, false},
		{"ge", &store.ViewCond{Op: store.ViewGe, Column: 1, Value: int64(10)}, true},
		{"repeated eq some element", &store.ViewCond{Op: store.ViewEq, Column: 2, Value: int64(7)}, true},
		{"repeated eq no element", &store.ViewCond{Op: store.ViewEq, Column: 2, Value: int64(5)}, false},
		{"repeated ne holds for one element", &store.ViewCond{Op: store.ViewNe, Column: 2, Value: int64(3)}, true},
		{"repeated gt one element", &store.ViewCond{Op: store.ViewGt, Column: 2, Value: int64(6)}, true},
		{"repeated gt none", &store.ViewCond{Op: store.ViewGt, Column: 2, Value: int64(7)}, false},
		{"empty list ne", &store.ViewCond{Op: store.ViewNe, Column: 3, Value: "x"}, false},
		{"not of empty list eq", &store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{cmpOp(store.ViewEq, 3, "x")}}, true},
		{"empty and", &store.ViewCond{Op: store.ViewAnd}, true},
		{"empty or", &store.ViewCond{Op: store.ViewOr}, false},
		{"and", &store.ViewCond{Op: store.ViewAnd, Args: []store.ViewCond{cmpOp(store.ViewEq, 0, "berlin"), cmpOp(store.ViewLt, 1, int64(5))}}, false},
		{"or", &store.ViewCond{Op: store.ViewOr, Args: []store.ViewCond{cmpOp(store.ViewEq, 0, "paris"), cmpOp(store.ViewGe, 1, int64(5))}}, true},
		{"not and", &store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{{Op: store.ViewAnd, Args: []store.ViewCond{cmpOp(store.ViewEq, 0, "berlin"), cmpOp(store.ViewLt, 1, int64(5))}}}}, true},
	}
	for _, tt := range tests {
		if got := Match(tt.cond, row); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOrderAndCursor(t *testing.T) {
	t.Parallel()
	type row struct {
		id   string
		cols []any
	}
	rows := []row{
		{"e", []any{"b", int64(1)}},
		{"a", []any{"a", int64(1)}},
		{"d", []any{"b", int64(2)}},
		{"c", []any{"a", int64(2)}},
		{"b", []any{"b", int64(1)}},
		{"f", []any{"a", int64(1)}},
	}
	order := []store.ViewOrder{{Column: 0}, {Column: 1, Desc: true}}
	slices.SortFunc(rows, func(a, b row) int { return CompareRows(order, a.cols, a.id, b.cols, b.id) })
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.id)
	}
	if got := strings.Join(ids, ""); got != "cafdbe" {
		t.Fatalf("sorted by column 0 ASC, 1 DESC, id: %s, want cafdbe", got)
	}
	// Every row is after exactly the rows before it.
	for i, r := range rows {
		cursor := &store.ViewCursor{Values: []any{r.cols[0], r.cols[1]}, EntityID: r.id}
		for j, other := range rows {
			if got := After(order, cursor, other.cols, other.id); got != (j > i) {
				t.Errorf("After(cursor at %s, %s) = %v, want %v", r.id, other.id, got, j > i)
			}
		}
	}
	if !After(order, nil, rows[0].cols, rows[0].id) {
		t.Error("a nil cursor excludes a row")
	}
}

func TestKeyAgreesWithCompare(t *testing.T) {
	t.Parallel()
	values := []any{"a", "", []byte("a"), []byte{}, int64(0), int64(-1), 0.0, math.Copysign(0, -1), math.NaN(), math.Inf(1), 1.5, true, false}
	for _, a := range values {
		for _, b := range values {
			sameType := typeRank(a) == typeRank(b)
			if got, want := Key(a) == Key(b), sameType && Compare(a, b) == 0; got != want {
				t.Errorf("Key(%#v) == Key(%#v) is %v; Compare says equal: %v", a, b, got, want)
			}
		}
	}
}

func TestChecks(t *testing.T) {
	t.Parallel()
	def := store.ViewDef{Name: "v", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{
		{Name: "city", Kind: store.ViewString},
		{Name: "tags", Kind: store.ViewString, Repeated: true},
	}}
	if err := CheckDef(def); err != nil {
		t.Fatalf("CheckDef: %v", err)
	}
	for i, bad := range []store.ViewDef{
		{Version: 1, EntityType: "cart"},
		{Name: "v", Version: 0, EntityType: "cart"},
		{Name: "v", Version: 1 << 31, EntityType: "cart"},
		{Name: "v", Version: 1},
		{Name: "v", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{{Name: "a", Kind: store.ViewString}, {Name: "a", Kind: store.ViewInt}}},
		{Name: "v", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{{Name: "a", Kind: 0}}},
	} {
		if err := CheckDef(bad); err == nil {
			t.Errorf("CheckDef accepted bad definition %d: %+v", i, bad)
		}
	}
	badRows := [][]store.ViewRow{
		{{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{"x"}}},
		{{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{int64(1), []string{}}}},
		{{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{"x", "y"}}},
		{{EntityID: "a", Seq: 1, Columns: []any{"x", []string{}}}},
		{{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{"x", []string{}}}, {EntityID: "a", Seq: 2}},
	}
	for i, rows := range badRows {
		if err := CheckRows(def, rows); err == nil {
			t.Errorf("CheckRows accepted bad rows %d: %+v", i, rows)
		}
	}
	if err := CheckRows(def, []store.ViewRow{{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{"x", []string(nil)}}, {EntityID: "b", Seq: 1}, {EntityID: "c", Seq: 1, Columns: []any{}}}); err != nil {
		t.Errorf("CheckRows refused good rows: %v", err)
	}
	badQueries := []store.ViewQuery{
		{Limit: 0},
		{Limit: 1, Where: &store.ViewCond{Op: store.ViewEq, Column: 0, Value: int64(1)}},
		{Limit: 1, Where: &store.ViewCond{Op: store.ViewEq, Column: 2, Value: "x"}},
		{Limit: 1, Where: &store.ViewCond{Op: store.ViewEq, Column: 1, Value: []string{"x"}}},
		{Limit: 1, Where: &store.ViewCond{Op: store.ViewNot}},
		{Limit: 1, Order: []store.ViewOrder{{Column: 1}}},
		{Limit: 1, Order: []store.ViewOrder{{Column: 0}}, After: &store.ViewCursor{EntityID: "a"}},
		{Limit: 1, Order: []store.ViewOrder{{Column: 0}}, After: &store.ViewCursor{Values: []any{int64(1)}, EntityID: "a"}},
	}
	for i, q := range badQueries {
		if err := CheckQuery(def, q); err == nil {
			t.Errorf("CheckQuery accepted bad query %d: %+v", i, q)
		}
	}
	good := store.ViewQuery{Limit: 1, Where: &store.ViewCond{Op: store.ViewEq, Column: 1, Value: "x"}, Order: []store.ViewOrder{{Column: 0}}, After: &store.ViewCursor{Values: []any{"m"}, EntityID: "a"}}
	if err := CheckQuery(def, good); err != nil {
		t.Errorf("CheckQuery refused a good query: %v", err)
	}
}
