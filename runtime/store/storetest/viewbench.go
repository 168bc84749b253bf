package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// BenchView is the view the query benchmarks (BenchViewQueries) load, the shape of an orders view: a
// customer column of 10,000 values (about 100 rows each at 1,000,000
// rows), an order total spread over 0 to 10,000,000 cents, a status of 4
// values and 3 SKUs out of 1,000 per row.
var BenchView = store.ViewDef{Name: "bench_orders", Version: 1, EntityType: "order", Columns: []store.ViewColumn{
	{Name: "customer_id", Kind: store.ViewString},
	{Name: "total_cents", Kind: store.ViewInt},
	{Name: "status", Kind: store.ViewInt},
	{Name: "skus", Kind: store.ViewString, Repeated: true},
}}

const (
	benchViewCustomer, benchViewTotal = 0, 1
	benchViewMaxTotal                 = 10_000_000
	// benchViewRangeWidth selects 1% of the rows, whatever their number.
	benchViewRangeWidth = benchViewMaxTotal / 100
	benchViewBatch      = 5000
	benchViewCallers    = 16
)

// benchViewRows is the number of rows to load: 1,000,000, or
// STATEFUN_BENCH_VIEW_ROWS for a quick check.
func benchViewRows(b *testing.B) int {
	n := 1_000_000
	if v := os.Getenv("STATEFUN_BENCH_VIEW_ROWS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			b.Fatalf("STATEFUN_BENCH_VIEW_ROWS=%q: want a positive number of rows", v)
		}
	}
	return n
}

// benchViewRow is row i of n, written at seq.
func benchViewRow(r *rand.Rand, payload []byte, i, n int, seq int64) store.ViewRow {
	customers := max(1, min(10_000, n/100))
	return store.ViewRow{
		EntityID: fmt.Sprintf("order-%07d", i), Seq: seq, Row: payload,
		Columns: []any{
			fmt.Sprintf("customer-%05d", i%customers),
			r.Int64N(benchViewMaxTotal),
			1 + r.Int64N(4),
			[]string{fmt.Sprintf("sku-%04d", r.IntN(1000)), fmt.Sprintf("sku-%04d", r.IntN(1000)), fmt.Sprintf("sku-%04d", r.IntN(1000))},
		},
	}
}

// ViewBenchStage is a change a store makes to a loaded view before the
// queries run again under the stage's name: Postgres's VACUUM (ANALYZE),
// as autovacuum would have run it by then.
type ViewBenchStage struct {
	// Suffix names the queries' second run ("-analyzed").
	Suffix  string
	Prepare func(b *testing.B)
}

// BenchViewQueries is the query benchmark every store with views runs:
// it creates BenchView in s, loads it with 1,000,000 rows
// (STATEFUN_BENCH_VIEW_ROWS lowers it) and queries it from 16 concurrent
// callers, an equality on the customer (LIMIT 100) and a range of totals
// ordered by total, descending (LIMIT 50), checking every row. load
// reports the rows written per second, in batches of 5,000, as the
// store-level view update throughput. Run it with a duration, such as
// -benchtime 5s: the load runs once when it takes longer than that (at a
// small size it runs again, replacing every row: compare figures at the
// default size). After each stage, the queries run again.
func BenchViewQueries(b *testing.B, s store.Views, stages ...ViewBenchStage) {
	def := BenchView
	if err := s.EnsureView(context.Background(), def); err != nil {
		b.Fatal(err)
	}
	n := benchViewRows(b)
	loaded := false
	b.Run("load", func(b *testing.B) {
		start := time.Now()
		benchViewLoad(b, s, def, n, b.N)
		b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "rows/s")
		loaded = true
	})
	if !loaded { // the load was filtered out; the queries need its rows
		benchViewLoad(b, s, def, n, 1)
	}
	b.Run("equality", func(b *testing.B) { benchViewEquality(b, s, def, n) })
	b.Run("range", func(b *testing.B) { benchViewRange(b, s, def) })
	for _, st := range stages {
		st.Prepare(b)
		b.Run("equality"+st.Suffix, func(b *testing.B) { benchViewEquality(b, s, def, n) })
		b.Run("range"+st.Suffix, func(b *testing.B) { benchViewRange(b, s, def) })
	}
}

// benchViewLoad writes the n rows in batches, rounds times over, each
// time at a newer seq, so that every round after the first replaces
// every row.
func benchViewLoad(b *testing.B, s store.Views, def store.ViewDef, n, rounds int) {
	ctx := context.Background()
	payload := make([]byte, 100)
	for round := range rounds {
		r := rand.New(rand.NewPCG(1, 2))
		batch := make([]store.ViewRow, 0, benchViewBatch)
		for i := range n {
			batch = append(batch, benchViewRow(r, payload, i, n, int64(round+1)))
			if len(batch) == benchViewBatch || i == n-1 {
				if err := s.UpdateViewRows(ctx, def, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	}
}

// benchViewEquality queries the rows of a random customer: about 100
// at 1,000,000 rows.
func benchViewEquality(b *testing.B, s store.Views, def store.ViewDef, n int) {
	customers := max(1, min(10_000, n/100))
	benchViewQueries(b, s, def, 1, func(r *rand.Rand) (store.ViewQuery, func(store.ViewRow) error) {
		customer := fmt.Sprintf("customer-%05d", r.IntN(customers))
		q := store.ViewQuery{Where: &store.ViewCond{Op: store.ViewEq, Column: benchViewCustomer, Value: customer}, Limit: 100}
		return q, func(row store.ViewRow) error {
			if got := fmt.Sprintf("%s", row.Columns[benchViewCustomer]); got != customer {
				return fmt.Errorf("customer = %q answered with a row of %q", customer, got)
			}
			return nil
		}
	})
}

// benchViewRange queries the largest totals in a random 1% of the range.
func benchViewRange(b *testing.B, s store.Views, def store.ViewDef) {
	benchViewQueries(b, s, def, 0, func(r *rand.Rand) (store.ViewQuery, func(store.ViewRow) error) {
		lo := r.Int64N(benchViewMaxTotal - benchViewRangeWidth)
		hi := lo + benchViewRangeWidth
		q := store.ViewQuery{
			Where: &store.ViewCond{Op: store.ViewAnd, Args: []store.ViewCond{
				{Op: store.ViewGe, Column: benchViewTotal, Value: lo},
				{Op: store.ViewLt, Column: benchViewTotal, Value: hi},
			}},
			Order: []store.ViewOrder{{Column: benchViewTotal, Desc: true}},
			Limit: 50,
		}
		prev := hi
		return q, func(row store.ViewRow) error {
			total, _ := row.Columns[benchViewTotal].(int64)
			if total < lo || total >= hi || total > prev {
				return fmt.Errorf("total in [%d, %d) descending answered with %d after %d", lo, hi, total, prev)
			}
			prev = total
			return nil
		}
	})
}

// benchViewQueries runs b.N queries from benchViewCallers goroutines,
// checking every row against its query and that each answers with
// minRows rows at least (every customer has a row; a range may have
// none at a small size), and reports queries/s, the
// median and 99th percentile latency and the rows per query.
func benchViewQueries(b *testing.B, s store.Views, def store.ViewDef, minRows int, next func(*rand.Rand) (store.ViewQuery, func(store.ViewRow) error)) {
	ctx := context.Background()
	var (
		issued    atomic.Int64
		rowsTotal atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		wg        sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for c := range benchViewCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), uint64(b.N)))
			var mine []time.Duration
			for issued.Add(1) <= int64(b.N) {
				q, check := next(r)
				t0 := time.Now()
				got := 0
				err := s.QueryView(ctx, def, q, func(row store.ViewRow) error {
					got++
					return check(row)
				})
				mine = append(mine, time.Since(t0))
				if err == nil && got < minRows {
					err = fmt.Errorf("%+v answered with %d rows, want at least %d: is the view loaded?", q.Where, got, minRows)
				}
				if err != nil {
					b.Error(err)
					return
				}
				rowsTotal.Add(int64(got))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "queries/s")
	b.ReportMetric(ms(latencies[len(latencies)/2]), "p50-ms")
	b.ReportMetric(ms(latencies[len(latencies)*99/100]), "p99-ms")
	b.ReportMetric(float64(rowsTotal.Load())/float64(len(latencies)), "rows/query")
}
