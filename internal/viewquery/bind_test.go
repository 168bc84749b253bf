package viewquery

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/statefun-go/statefun/runtime/store"
)

func compile(t *testing.T, src string) *Query {
	t.Helper()
	q, err := Compile(src, "carts", rowDesc(t), reqDesc(t))
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	return q
}

// TestBindMapsColumnsToTheDefinition: a view's columns are the union of
// its queries', so a query's columns sit anywhere in def.Columns; Bind
// must name them by their index there, in conditions and in Order.
func TestBindMapsColumnsToTheDefinition(t *testing.T) {
	t.Parallel()
	q := compile(t, "SELECT * FROM carts WHERE customer_id = :customer_id AND items.sku != 'x' ORDER BY created_at DESC, quantity")
	def := store.ViewDef{Name: "carts", Version: 3, EntityType: "cart", Columns: []store.ViewColumn{
		col("quantity", store.ViewInt),
		col("gift", store.ViewBool),
		repeated("items.sku", store.ViewString),
		col("created_at", store.ViewInt),
		col("customer_id", store.ViewString),
	}}
	after := &store.ViewCursor{Values: []any{int64(5), int64(2)}, EntityID: "cart-7"}
	got, err := q.Bind(def, newMessage(t, reqDesc(t), `customer_id: "c1"`), 25, after)
	if err != nil {
		t.Fatal(err)
	}
	want := store.ViewQuery{
		Where: ptr(and(cmpc(store.ViewEq, 4, "c1"), cmpc(store.ViewNe, 2, "x"))),
		Order: []store.ViewOrder{{Column: 3, Desc: true}, {Column: 0}},
		Limit: 25,
		After: after,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Bind (-want +got):\n%s", diff)
	}
	if got.After != after {
		t.Errorf("After is a copy of the cursor, want the cursor itself")
	}
}

// TestBindReadsEachRequest: a compiled query is bound many times; each
// binding reads its own request.
func TestBindReadsEachRequest(t *testing.T) {
	t.Parallel()
	q := compile(t, "SELECT * FROM carts WHERE customer_id = :customer_id")
	def := store.ViewDef{Name: "carts", Version: 1, Columns: q.Columns}
	for _, id := range []string{"a", "b"} {
		got, err := q.Bind(def, newMessage(t, reqDesc(t), `customer_id: "`+id+`"`), 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Where.Value != id {
			t.Errorf("bound %v, want %q", got.Where.Value, id)
		}
	}
}

func TestBindErrors(t *testing.T) {
	t.Parallel()
	q := compile(t, "SELECT * FROM carts WHERE customer_id = :customer_id ORDER BY quantity DESC")
	def := store.ViewDef{Name: "carts", Version: 2, Columns: []store.ViewColumn{
		col("customer_id", store.ViewString), col("quantity", store.ViewInt),
	}}
	req := newMessage(t, reqDesc(t), `customer_id: "c1"`)
	cases := []struct {
		name    string
		def     store.ViewDef
		req     protoreflect.Message
		limit   int
		after   *store.ViewCursor
		invalid bool // wraps ErrInvalidArgument
		msg     string
	}{
		{
			name:  "column missing from the stored version",
			def:   store.ViewDef{Name: "carts", Version: 2, Columns: def.Columns[:1]},
			req:   req,
			limit: 1,
			msg:   "view carts version 2 has no column quantity: that version was built for other queries; raise the view's version so that it is rebuilt with the columns of its queries",
		},
		{
			name:  "column of another kind",
			def:   store.ViewDef{Name: "carts", Version: 2, Columns: []store.ViewColumn{repeated("customer_id", store.ViewString), def.Columns[1]}},
			req:   req,
			limit: 1,
			msg:   "view carts version 2 stores column customer_id as repeated string, but the query needs string: the row message changed; raise the view's version",
		},
		{
			name:  "zero limit",
			def:   def,
			req:   req,
			limit: 0,
			msg:   "limit 0: a page holds at least 1 row",
		},
		{
			name:  "request of another type",
			def:   def,
			req:   newMessage(t, message(t, "OtherRequest"), `customer_id: "c1"`),
			limit: 1,
			msg:   "the request is a shop.v1.OtherRequest, but the query was compiled for shop.v1.ByCustomerRequest",
		},
		{
			name:  "no request",
			def:   def,
			limit: 1,
			msg:   "the query reads parameters from a shop.v1.ByCustomerRequest, and the request is nil",
		},
		{
			name:    "cursor of another length",
			def:     def,
			req:     req,
			limit:   1,
			after:   &store.ViewCursor{Values: []any{int64(1), "x"}, EntityID: "e"},
			invalid: true,
			msg:     "invalid argument: the cursor has 2 sort values, but the query sorts by 1; it belongs to another query",
		},
		{
			name:    "cursor value of another type",
			def:     def,
			req:     req,
			limit:   1,
			after:   &store.ViewCursor{Values: []any{"x"}, EntityID: "e"},
			invalid: true,
			msg:     "invalid argument: the cursor's value for quantity is string, want int64; it belongs to another query",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := q.Bind(tc.def, tc.req, tc.limit, tc.after)
			if err == nil {
				t.Fatal("Bind succeeded, want an error")
			}
			if err.Error() != tc.msg {
				t.Errorf("error:\n got %q\nwant %q", err, tc.msg)
			}
			if errors.Is(err, ErrInvalidArgument) != tc.invalid {
				t.Errorf("errors.Is(err, ErrInvalidArgument) = %v, want %v", !tc.invalid, tc.invalid)
			}
		})
	}
}

// TestBindWithoutParameters: a query that reads no parameter needs no
// request.
func TestBindWithoutParameters(t *testing.T) {
	t.Parallel()
	q := compile(t, "SELECT * FROM carts WHERE quantity > 1")
	got, err := q.Bind(store.ViewDef{Columns: q.Columns}, nil, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := store.ViewQuery{Where: ptr(cmpc(store.ViewGt, 0, int64(1))), Limit: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Bind (-want +got):\n%s", diff)
	}
}

func TestLimit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src, req string
		want     int
	}{
		{src: "SELECT * FROM carts", want: 0},
		{src: "SELECT * FROM carts LIMIT 7", want: 7},
		{src: "SELECT * FROM carts WHERE quantity = 1 ORDER BY quantity limit 2147483647", want: math.MaxInt32},
		{src: "SELECT * FROM carts LIMIT :page_size", req: "page_size: 30", want: 30},
		{src: "SELECT * FROM carts LIMIT :page_size", want: 0},
		{src: "SELECT * FROM carts LIMIT :count", req: "count: 4000000000", want: 4000000000},
		{src: "SELECT * FROM carts LIMIT :min_total", req: "min_total: 9223372036854775807", want: math.MaxInt},
	}
	for _, tc := range cases {
		q := compile(t, tc.src)
		got, err := q.Limit(newMessage(t, reqDesc(t), tc.req))
		if err != nil {
			t.Errorf("%s with {%s}: %v", tc.src, tc.req, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s with {%s}: Limit = %d, want %d", tc.src, tc.req, got, tc.want)
		}
	}
}

func TestLimitNegative(t *testing.T) {
	t.Parallel()
	q := compile(t, "SELECT * FROM carts LIMIT :page_size")
	_, err := q.Limit(newMessage(t, reqDesc(t), "page_size: -4"))
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "LIMIT :page_size is -4; a page size cannot be negative") {
		t.Fatalf("got %v, want an ErrInvalidArgument naming :page_size and -4", err)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	a := compile(t, "SELECT * FROM carts WHERE customer_id = :customer_id ORDER BY created_at")
	b := compile(t, "SELECT * FROM carts WHERE status = 'STATUS_OPEN' AND customer_id = 'x' AND items.sku = 'y'")
	c := compile(t, "SELECT * FROM carts")
	got := Merge(a, nil, c, b, a)
	want := []store.ViewColumn{
		col("customer_id", store.ViewString),
		col("created_at", store.ViewInt),
		col("status", store.ViewInt),
		repeated("items.sku", store.ViewString),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Merge (-want +got):\n%s", diff)
	}
	if got := Merge(); got != nil {
		t.Errorf("Merge() = %v, want nil", got)
	}
	// Merge must not hand out a query's own slice: the runtime may append
	// to a view's columns.
	merged := Merge(c, a)
	merged[0].Name = "changed"
	if a.Columns[0].Name != "customer_id" {
		t.Errorf("Merge returned the query's Columns slice")
	}
}
