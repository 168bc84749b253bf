package viewquery

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/statefun-go/statefun/runtime/store"
)

// Shorthands for the expected store conditions: the columns' indexes are
// those of the query's own Columns, which the table binds against.
func cmpc(op store.ViewOp, col int, v any) store.ViewCond {
	return store.ViewCond{Op: op, Column: col, Value: v}
}
func and(args ...store.ViewCond) store.ViewCond {
	return store.ViewCond{Op: store.ViewAnd, Args: args}
}
func or(args ...store.ViewCond) store.ViewCond { return store.ViewCond{Op: store.ViewOr, Args: args} }
func not(arg store.ViewCond) store.ViewCond {
	return store.ViewCond{Op: store.ViewNot, Args: []store.ViewCond{arg}}
}

func col(name string, kind store.ViewKind) store.ViewColumn {
	return store.ViewColumn{Name: name, Kind: kind}
}
func repeated(name string, kind store.ViewKind) store.ViewColumn {
	return store.ViewColumn{Name: name, Kind: kind, Repeated: true}
}

// TestCompileAndBind compiles each construct of the language and binds it
// to a request against the query's own columns: the store query that
// comes out is what the query means.
func TestCompileAndBind(t *testing.T) {
	t.Parallel()
	var (
		eq = store.ViewEq
		ne = store.ViewNe
		lt = store.ViewLt
		le = store.ViewLe
		gt = store.ViewGt
		ge = store.ViewGe
	)
	cases := []struct {
		name    string
		view    string // "carts" when empty
		src     string
		req     string // the request, in text format
		columns []store.ViewColumn
		where   *store.ViewCond
		order   []store.ViewOrder
	}{
		{name: "all rows", src: "SELECT * FROM carts"},
		{
			name:    "keywords in any case",
			src:     "select * From carts wHeRe customer_id = 'c1'",
			columns: []store.ViewColumn{col("customer_id", store.ViewString)},
			where:   ptr(cmpc(eq, 0, "c1")),
		},
		{
			name:    "quote in a string",
			src:     "SELECT * FROM carts WHERE customer_id = 'O''Brien'''",
			columns: []store.ViewColumn{col("customer_id", store.ViewString)},
			where:   ptr(cmpc(eq, 0, "O'Brien'")),
		},
		{
			name:    "empty string",
			src:     "SELECT * FROM carts WHERE customer_id != ''",
			columns: []store.ViewColumn{col("customer_id", store.ViewString)},
			where:   ptr(cmpc(ne, 0, "")),
		},
		{
			name:    "view name with dashes and dots",
			view:    "carts-by.customer_2",
			src:     "SELECT * FROM carts-by.customer_2 WHERE quantity = 1",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where:   ptr(cmpc(eq, 0, int64(1))),
		},
		{
			name:    "every operator",
			src:     "SELECT * FROM carts WHERE quantity = 1 AND quantity != 2 AND quantity <> 3 AND quantity < 4 AND quantity <= 5 AND quantity > 6 AND quantity >= 7",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where: ptr(and(cmpc(eq, 0, int64(1)), cmpc(ne, 0, int64(2)), cmpc(ne, 0, int64(3)),
				cmpc(lt, 0, int64(4)), cmpc(le, 0, int64(5)), cmpc(gt, 0, int64(6)), cmpc(ge, 0, int64(7)))),
		},
		{
			name:    "operators without spaces",
			src:     "SELECT * FROM carts WHERE quantity>=-3 AND total_cents<>0",
			columns: []store.ViewColumn{col("quantity", store.ViewInt), col("total_cents", store.ViewInt)},
			where:   ptr(and(cmpc(ge, 0, int64(-3)), cmpc(ne, 1, int64(0)))),
		},
		{
			name: "integers of every width",
			src:  "SELECT * FROM carts WHERE total_cents > -9223372036854775808 AND lines >= 2 AND delta < 0 AND checksum = 4294967295",
			columns: []store.ViewColumn{col("total_cents", store.ViewInt), col("lines", store.ViewInt),
				col("delta", store.ViewInt), col("checksum", store.ViewInt)},
			where: ptr(and(cmpc(gt, 0, int64(math.MinInt64)), cmpc(ge, 1, int64(2)), cmpc(lt, 2, int64(0)), cmpc(eq, 3, int64(4294967295)))),
		},
		{
			name:    "enum by value name and by number",
			src:     "SELECT * FROM carts WHERE status = 'STATUS_OPEN' OR status = 2",
			columns: []store.ViewColumn{col("status", store.ViewInt)},
			where:   ptr(or(cmpc(eq, 0, int64(1)), cmpc(eq, 0, int64(2)))),
		},
		{
			name:    "double with integer, decimal and exponent literals",
			src:     "SELECT * FROM carts WHERE price > 3 AND price <= 1.5 AND price < 2e3 AND price > -1.5E-2",
			columns: []store.ViewColumn{col("price", store.ViewFloat)},
			where:   ptr(and(cmpc(gt, 0, 3.0), cmpc(le, 0, 1.5), cmpc(lt, 0, 2000.0), cmpc(gt, 0, -0.015))),
		},
		{
			name:    "float literal rounded to the float field's precision",
			src:     "SELECT * FROM carts WHERE weight = 0.1",
			columns: []store.ViewColumn{col("weight", store.ViewFloat)},
			where:   ptr(cmpc(eq, 0, float64(float32(0.1)))),
		},
		{
			name:    "bools",
			src:     "SELECT * FROM carts WHERE gift = true OR gift != FALSE",
			columns: []store.ViewColumn{col("gift", store.ViewBool)},
			where:   ptr(or(cmpc(eq, 0, true), cmpc(ne, 0, false))),
		},
		{
			name:    "nested messages",
			src:     "SELECT * FROM carts WHERE address.city = 'Paris' AND address . geo.lat > 1.5",
			columns: []store.ViewColumn{col("address.city", store.ViewString), col("address.geo.lat", store.ViewFloat)},
			where:   ptr(and(cmpc(eq, 0, "Paris"), cmpc(gt, 1, 1.5))),
		},
		{
			name: "repeated fields",
			src:  "SELECT * FROM carts WHERE items.sku = 'a' AND labels = 'x' AND past_statuses = 'STATUS_CLOSED' AND items.tags = 't'",
			columns: []store.ViewColumn{repeated("items.sku", store.ViewString), repeated("labels", store.ViewString),
				repeated("past_statuses", store.ViewInt), repeated("items.tags", store.ViewString)},
			where: ptr(and(cmpc(eq, 0, "a"), cmpc(eq, 1, "x"), cmpc(eq, 2, int64(2)), cmpc(eq, 3, "t"))),
		},
		{
			name:    "string parameter",
			src:     "SELECT * FROM carts WHERE customer_id = :customer_id",
			req:     `customer_id: "c9"`,
			columns: []store.ViewColumn{col("customer_id", store.ViewString)},
			where:   ptr(cmpc(eq, 0, "c9")),
		},
		{
			name:    "parameter in a nested request message",
			src:     "SELECT * FROM carts WHERE address.city = :filter.city AND status = :filter.status",
			req:     `filter { city: "Oslo" status: STATUS_CLOSED }`,
			columns: []store.ViewColumn{col("address.city", store.ViewString), col("status", store.ViewInt)},
			where:   ptr(and(cmpc(eq, 0, "Oslo"), cmpc(eq, 1, int64(2)))),
		},
		{
			name:    "parameter in an unset request message",
			src:     "SELECT * FROM carts WHERE address.city = :filter.city",
			columns: []store.ViewColumn{col("address.city", store.ViewString)},
			where:   ptr(cmpc(eq, 0, "")),
		},
		{
			name:    "enum parameters: the same enum, or an integer",
			src:     "SELECT * FROM carts WHERE status = :status OR status > :page_size OR status < :count",
			req:     `status: STATUS_OPEN page_size: 7 count: 4000000000`,
			columns: []store.ViewColumn{col("status", store.ViewInt)},
			where:   ptr(or(cmpc(eq, 0, int64(1)), cmpc(gt, 0, int64(7)), cmpc(lt, 0, int64(4000000000)))),
		},
		{
			name:    "timestamp and duration parameters",
			src:     "SELECT * FROM carts WHERE created_at >= :since AND ttl < :max_ttl AND seen_at > :since",
			req:     `since { seconds: 5 nanos: 7 } max_ttl { seconds: -2 nanos: -500 }`,
			columns: []store.ViewColumn{col("created_at", store.ViewInt), col("ttl", store.ViewInt), repeated("seen_at", store.ViewInt)},
			where:   ptr(and(cmpc(ge, 0, int64(5_000_000_007)), cmpc(lt, 1, int64(-2_000_000_500)), cmpc(gt, 2, int64(5_000_000_007)))),
		},
		{
			name:    "unset timestamp parameter binds 0",
			src:     "SELECT * FROM carts WHERE created_at >= :since",
			columns: []store.ViewColumn{col("created_at", store.ViewInt)},
			where:   ptr(cmpc(ge, 0, int64(0))),
		},
		{
			name:    "bytes, bool and integer parameters",
			src:     "SELECT * FROM carts WHERE digest = :digest AND gift = :gift AND total_cents >= :min_total AND lines < :count",
			req:     `digest: "\x01\x02" gift: true min_total: -5 count: 9`,
			columns: []store.ViewColumn{col("digest", store.ViewBytes), col("gift", store.ViewBool), col("total_cents", store.ViewInt), col("lines", store.ViewInt)},
			where:   ptr(and(cmpc(eq, 0, []byte{1, 2}), cmpc(eq, 1, true), cmpc(ge, 2, int64(-5)), cmpc(lt, 3, int64(9)))),
		},
		{
			name:    "float parameters, rounded for a float field",
			src:     "SELECT * FROM carts WHERE weight > :min_price AND price > :min_weight",
			req:     `min_price: 0.1 min_weight: 0.25`,
			columns: []store.ViewColumn{col("weight", store.ViewFloat), col("price", store.ViewFloat)},
			where:   ptr(and(cmpc(gt, 0, float64(float32(0.1))), cmpc(gt, 1, 0.25))),
		},
		{
			name:    "AND binds tighter than OR",
			src:     "SELECT * FROM carts WHERE quantity = 1 OR quantity = 2 AND quantity = 3",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where:   ptr(or(cmpc(eq, 0, int64(1)), and(cmpc(eq, 0, int64(2)), cmpc(eq, 0, int64(3))))),
		},
		{
			name:    "AND binds tighter than OR on the left too",
			src:     "SELECT * FROM carts WHERE quantity = 1 AND quantity = 2 OR quantity = 3",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where:   ptr(or(and(cmpc(eq, 0, int64(1)), cmpc(eq, 0, int64(2))), cmpc(eq, 0, int64(3)))),
		},
		{
			name:    "parentheses override precedence",
			src:     "SELECT * FROM carts WHERE (quantity = 1 OR quantity = 2) AND quantity = 3",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where:   ptr(and(or(cmpc(eq, 0, int64(1)), cmpc(eq, 0, int64(2))), cmpc(eq, 0, int64(3)))),
		},
		{
			name:    "redundant parentheses",
			src:     "SELECT * FROM carts WHERE ((quantity = 1))",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where:   ptr(cmpc(eq, 0, int64(1))),
		},
		{
			name:    "NOT binds tighter than AND",
			src:     "SELECT * FROM carts WHERE NOT gift = true AND quantity > 1",
			columns: []store.ViewColumn{col("gift", store.ViewBool), col("quantity", store.ViewInt)},
			where:   ptr(and(not(cmpc(eq, 0, true)), cmpc(gt, 1, int64(1)))),
		},
		{
			name:    "NOT of parentheses, and NOT NOT",
			src:     "SELECT * FROM carts WHERE not (gift = true OR quantity > 1) OR NOT NOT quantity = 0",
			columns: []store.ViewColumn{col("gift", store.ViewBool), col("quantity", store.ViewInt)},
			where:   ptr(or(not(or(cmpc(eq, 0, true), cmpc(gt, 1, int64(1)))), not(not(cmpc(eq, 1, int64(0)))))),
		},
		{
			name:    "fields named like keywords",
			src:     "SELECT * FROM carts WHERE NOT not = true AND order = 'x' ORDER BY order DESC LIMIT 3",
			columns: []store.ViewColumn{col("not", store.ViewBool), col("order", store.ViewString)},
			where:   ptr(and(not(cmpc(eq, 0, true)), cmpc(eq, 1, "x"))),
			order:   []store.ViewOrder{{Column: 1, Desc: true}},
		},
		{
			name:    "ORDER BY several fields",
			src:     "SELECT * FROM carts ORDER BY status ASC, created_at DESC, address.city",
			columns: []store.ViewColumn{col("status", store.ViewInt), col("created_at", store.ViewInt), col("address.city", store.ViewString)},
			order:   []store.ViewOrder{{Column: 0}, {Column: 1, Desc: true}, {Column: 2}},
		},
		{
			name:    "a column once, in the order of first use",
			src:     "SELECT * FROM carts WHERE quantity > 1 AND customer_id = 'c' AND quantity < 5 ORDER BY customer_id, gift",
			columns: []store.ViewColumn{col("quantity", store.ViewInt), col("customer_id", store.ViewString), col("gift", store.ViewBool)},
			where:   ptr(and(cmpc(gt, 0, int64(1)), cmpc(eq, 1, "c"), cmpc(lt, 0, int64(5)))),
			order:   []store.ViewOrder{{Column: 1}, {Column: 2}},
		},
		{
			name:    "white space of every kind",
			src:     "\n\tSELECT\r\n*\fFROM\vcarts\n  WHERE quantity\n=\n1\n",
			columns: []store.ViewColumn{col("quantity", store.ViewInt)},
			where:   ptr(cmpc(eq, 0, int64(1))),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			view := tc.view
			if view == "" {
				view = "carts"
			}
			q, err := Compile(tc.src, view, rowDesc(t), reqDesc(t))
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.src, err)
			}
			if diff := cmp.Diff(tc.columns, q.Columns); diff != "" {
				t.Errorf("Columns (-want +got):\n%s", diff)
			}
			def := store.ViewDef{Name: view, Version: 1, EntityType: "cart", Columns: q.Columns}
			got, err := q.Bind(def, newMessage(t, reqDesc(t), tc.req), 10, nil)
			if err != nil {
				t.Fatalf("Bind: %v", err)
			}
			want := store.ViewQuery{Where: tc.where, Order: tc.order, Limit: 10}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Bind (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
