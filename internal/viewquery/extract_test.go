package viewquery

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/statefun-go/statefun/runtime/store"
)

var extractColumns = []store.ViewColumn{
	col("customer_id", store.ViewString),
	col("status", store.ViewInt),
	col("quantity", store.ViewInt),
	col("total_cents", store.ViewInt),
	col("lines", store.ViewInt),
	col("checksum", store.ViewInt),
	col("weight", store.ViewFloat),
	col("price", store.ViewFloat),
	col("gift", store.ViewBool),
	col("digest", store.ViewBytes),
	col("created_at", store.ViewInt),
	col("ttl", store.ViewInt),
	col("address.city", store.ViewString),
	col("address.geo.lat", store.ViewFloat),
	repeated("items.sku", store.ViewString),
	repeated("items.quantity", store.ViewInt),
	repeated("items.tags", store.ViewString),
	repeated("labels", store.ViewString),
	repeated("seen_at", store.ViewInt),
	repeated("past_statuses", store.ViewInt),
}

func TestExtract(t *testing.T) {
	t.Parallel()
	row := newMessage(t, rowDesc(t), `
		customer_id: "c1" status: STATUS_CLOSED quantity: -3 total_cents: 9000000000
		lines: 4294967295 checksum: 4294967295 weight: 0.1 price: 2.5 gift: true digest: "\x00\xff"
		created_at { seconds: 1700000000 nanos: 5 } ttl { seconds: -90 nanos: -1 }
		address { city: "Paris" }
		items { sku: "a" quantity: 2 tags: "t1" tags: "t2" }
		items { sku: "b" }
		items { tags: "t3" }
		labels: "x" labels: "y"
		seen_at { seconds: 1 } seen_at { nanos: 2 }
		past_statuses: STATUS_OPEN past_statuses: 7
	`)
	want := []any{
		"c1",
		int64(2),
		int64(-3),
		int64(9000000000),
		int64(4294967295),
		int64(4294967295),
		float64(float32(0.1)),
		2.5,
		true,
		[]byte{0, 0xff},
		int64(1700000000_000000005),
		int64(-90_000000001),
		"Paris",
		0.0, // address.geo is unset
		[]string{"a", "b", ""},
		[]int64{2, 0, 0},
		[]string{"t1", "t2", "t3"},
		[]string{"x", "y"},
		[]int64{1_000_000_000, 2},
		[]int64{1, 7},
	}
	if diff := cmp.Diff(want, Extract(extractColumns, row)); diff != "" {
		t.Errorf("Extract (-want +got):\n%s", diff)
	}
}

// TestExtractEmptyRow: an empty row has the zero value of every column,
// and an empty, non-nil slice for every repeated one, so that stores
// never meet a nil where they expect a value.
func TestExtractEmptyRow(t *testing.T) {
	t.Parallel()
	want := []any{
		"", int64(0), int64(0), int64(0), int64(0), int64(0), 0.0, 0.0, false, []byte{}, int64(0), int64(0), "", 0.0,
		[]string{}, []int64{}, []string{}, []string{}, []int64{}, []int64{},
	}
	if diff := cmp.Diff(want, Extract(extractColumns, newMessage(t, rowDesc(t), ""))); diff != "" {
		t.Errorf("Extract (-want +got):\n%s", diff)
	}
}

// TestExtractUnknownColumn: a column that is not the row's (Compile
// never makes one) gives the column's zero value rather than a panic in
// the view updater.
func TestExtractUnknownColumn(t *testing.T) {
	t.Parallel()
	columns := []store.ViewColumn{
		col("nope", store.ViewString),
		col("customer_id", store.ViewInt), // the field is a string
		repeated("address.nope", store.ViewFloat),
		col("customer_id.x", store.ViewString),
	}
	got := Extract(columns, newMessage(t, rowDesc(t), `customer_id: "c1"`))
	want := []any{"", int64(0), []float64{}, ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Extract (-want +got):\n%s", diff)
	}
}

// TestExtractBytesAreCopies: a row's column values outlive the message
// they came from, which the runtime reuses.
func TestExtractBytesAreCopies(t *testing.T) {
	t.Parallel()
	row := newMessage(t, rowDesc(t), `digest: "ab"`)
	got := Extract([]store.ViewColumn{col("digest", store.ViewBytes)}, row)
	row.Get(rowDesc(t).Fields().ByName("digest")).Bytes()[0] = 'z'
	if string(got[0].([]byte)) != "ab" {
		t.Errorf("Extract shares the row's bytes: %q after the row changed", got[0])
	}
}

// TestNanos: times past what int64 nanoseconds hold saturate, so they
// still sort after (before) every time that fits, instead of wrapping.
func TestNanos(t *testing.T) {
	t.Parallel()
	maxTime := time.Unix(0, math.MaxInt64)
	cases := []struct {
		sec, ns int64
		want    int64
	}{
		{0, 0, 0},
		{1, 5, 1_000_000_005},
		{-1, -5, -1_000_000_005},
		{maxTime.Unix(), int64(maxTime.Nanosecond()), math.MaxInt64},
		{maxTime.Unix(), int64(maxTime.Nanosecond()) + 1, math.MaxInt64},
		{maxTime.Unix() + 1, 0, math.MaxInt64},
		{math.MaxInt64, 999_999_999, math.MaxInt64},
		{-maxTime.Unix(), -999_999_999, math.MinInt64},
		{math.MinInt64, 0, math.MinInt64},
		{253402300799, 999_999_999, math.MaxInt64}, // 9999-12-31, the largest valid Timestamp
	}
	for _, tc := range cases {
		if got := nanos(tc.sec, tc.ns); got != tc.want {
			t.Errorf("nanos(%d, %d) = %d, want %d", tc.sec, tc.ns, got, tc.want)
		}
	}
}
