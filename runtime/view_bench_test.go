package statefun_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	view "github.com/statefun-go/statefun/testdata/view"
)

// viewClock is a commitClock that also reports when each view row's
// write completed: the moment the underlying UpdateViewRows returned,
// from which on a query finds the row.
type viewClock struct {
	*commitClock
	written chan arrival
}

func (c *viewClock) UpdateViewRows(ctx context.Context, def store.ViewDef, rows []store.ViewRow) error {
	if err := c.commitClock.UpdateViewRows(ctx, def, rows); err != nil {
		return err
	}
	now := time.Now()
	for _, r := range rows {
		select {
		case c.written <- arrival{commitKey{r.EntityID, r.Seq}, now}:
		case <-ctx.Done():
			return nil // the write is done; only its report is lost
		}
	}
	return nil
}

// BenchmarkViewLag measures, at idle, the time from the completion of
// the commit that made an event durable (the store's Commit returned) to
// the completion of the write of the view row it changed (the store's
// UpdateViewRows returned), from when on a query finds it. The view is
// order_summaries, built by an updater. Each row is then queried through
// the generated client, untimed, to check that it is visible. As with
// BenchmarkConsumerLag, a negative min-ms is a bug to report.
func BenchmarkViewLag(b *testing.B) {
	const orders = 100
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		b.Run(kind, func(b *testing.B) {
			inner := benchStores()[kind](b)
			defer inner.Close()
			st := &viewClock{
				commitClock: &commitClock{Store: inner, committed: map[commitKey]time.Time{}},
				written:     make(chan arrival, 2*orders),
			}
			// Quiet: a log line would split the benchmark's result line.
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(st),
				statefun.WithViews(view.NewOrderSummaries(summaries{})), statefun.WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			defer closeBenchRuntime(rt)
			ctx := context.Background()
			conn := rt.ClientConn()
			client, summaryViews := view.NewOrderEntityClient(conn), view.NewOrderSummariesViewClient(conn)
			for i := range orders {
				if _, err := client.Place(ctx, &view.PlaceRequest{OrderId: fmt.Sprint("lag-", i), CustomerId: "ada"}); err != nil {
					b.Fatal(err)
				}
			}
			for range orders {
				if _, err := receiveWrite(st.written); err != nil {
					b.Fatal(err)
				}
			}
			lags := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				id, sku := fmt.Sprint("lag-", i%orders), fmt.Sprint("sku-", i)
				if _, err := client.AddItem(ctx, &view.AddItemRequest{OrderId: id, Sku: sku, Quantity: 1, PriceCents: 100}); err != nil {
					b.Fatal(err)
				}
				got, err := receiveWrite(st.written)
				if err != nil {
					b.Fatal(err)
				}
				committed, ok := st.at(got.event)
				if !ok || got.event.id != id {
					b.Fatalf("the view wrote the row of %s at seq %d; want %s's, at the seq of a completed commit", got.event.id, got.event.seq, id)
				}
				lags = append(lags, got.at.Sub(committed))

				b.StopTimer()
				resp, err := summaryViews.FindOrdersWithSku(ctx, &view.FindOrdersWithSkuRequest{Sku: sku})
				if err != nil {
					b.Fatal(err)
				}
				if s := resp.GetSummaries(); len(s) != 1 || s[0].GetOrderId() != id {
					b.Fatalf("orders with %s once the row was written: %v, want %s", sku, s, id)
				}
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(lags)
			if lags[0] < 0 {
				b.Logf("BUG: a view row was written %v before the commit of its event completed", -lags[0])
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lags[0]), "min-ms")
			b.ReportMetric(ms(lags[len(lags)/2]), "p50-ms")
			b.ReportMetric(ms(lags[len(lags)*99/100]), "p99-ms")
			b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
		})
	}
}

func receiveWrite(written <-chan arrival) (arrival, error) {
	select {
	case got := <-written:
		return got, nil
	case <-time.After(5 * time.Second):
		return arrival{}, fmt.Errorf("no view row was written within 5 s of its event's commit")
	}
}

func closeBenchRuntime(rt *statefun.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = rt.Close(ctx)
}

// BenchmarkViewUpdates measures how fast a view's updater works through
// a backlog: 20,000 events (STATEFUN_BENCH_VIEW_EVENTS changes it) of
// 2,000 orders are written with the view absent, then a runtime with the
// order_summaries view starts, and the time to its being built (ready)
// gives events/s. Each further iteration drops the view and starts over.
func BenchmarkViewUpdates(b *testing.B) {
	events := 20_000
	if v := os.Getenv("STATEFUN_BENCH_VIEW_EVENTS"); v != "" {
		if _, err := fmt.Sscan(v, &events); err != nil || events < 10 {
			b.Fatalf("STATEFUN_BENCH_VIEW_EVENTS=%q: want a number of events, at least 10", v)
		}
	}
	const perOrder = 10 // a Place, then 9 AddItems
	orders := events / perOrder
	events = orders * perOrder
	for _, kind := range []string{"postgres", "embedded"} {
		b.Run(kind, func(b *testing.B) {
			st := benchStores()[kind](b)
			defer st.Close()
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			writeOrderBacklog(b, st, quiet, orders, perOrder)

			ctx := context.Background()
			var building time.Duration
			for i := range b.N {
				if i > 0 {
					b.StopTimer()
					rebuildFromScratch(b, st)
					b.StartTimer()
				}
				start := time.Now()
				rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(st),
					statefun.WithViews(view.NewOrderSummaries(summaries{})), statefun.WithLogger(quiet))
				if err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(10 * time.Minute)
				for !summaryStats(rt).Ready {
					if time.Now().After(deadline) {
						b.Fatalf("the view was not built within 10 minutes: %+v", summaryStats(rt))
					}
					time.Sleep(time.Millisecond)
				}
				building += time.Since(start)
				b.StopTimer()
				if s := summaryStats(rt); s.Updated != uint64(events) {
					b.Fatalf("the view was built with %d rows written, want one per event: %d", s.Updated, events)
				}
				resp, err := view.NewOrderSummariesViewClient(rt.ClientConn()).FindOrdersWithSku(ctx, &view.FindOrdersWithSkuRequest{Sku: "sku-1"})
				if err != nil {
					b.Fatal(err)
				}
				if got := len(resp.GetSummaries()); got != min(orders, 100) {
					b.Fatalf("orders with sku-1 once the view was built: %d, want %d", got, min(orders, 100))
				}
				closeBenchRuntime(rt)
				b.StartTimer()
			}
			b.ReportMetric(float64(events*b.N)/building.Seconds(), "events/s")
		})
	}
}

// writeOrderBacklog writes orders orders of perOrder events each through
// commands from 64 callers, on a runtime without views.
func writeOrderBacklog(b *testing.B, st store.Store, log *slog.Logger, orders, perOrder int) {
	rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(st), statefun.WithLogger(log))
	if err != nil {
		b.Fatal(err)
	}
	defer closeBenchRuntime(rt)
	client := view.NewOrderEntityClient(rt.ClientConn())
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := next.Add(1) - 1; n < int64(orders); n = next.Add(1) - 1 {
				id := fmt.Sprintf("order-%06d", n)
				if _, err := client.Place(ctx, &view.PlaceRequest{OrderId: id, CustomerId: fmt.Sprint("customer-", n%100)}); err != nil {
					b.Error(err)
					return
				}
				for j := 1; j < perOrder; j++ {
					// Every order holds sku-1, and other SKUs spread
					// over 1,000.
					sku := "sku-1"
					if j > 1 {
						sku = fmt.Sprint("sku-", 2+(int(n)*perOrder+j)%1000)
					}
					if _, err := client.AddItem(ctx, &view.AddItemRequest{OrderId: id, Sku: sku, Quantity: 1, PriceCents: 100}); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// rebuildFromScratch drops every version of order_summaries and rewinds
// its updater to the first event, so that the next runtime builds the
// view again from the whole backlog.
func rebuildFromScratch(b *testing.B, st store.Store) {
	ctx := context.Background()
	versions, err := st.ViewVersions(ctx, "order_summaries")
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range versions {
		if err := st.DropView(ctx, v.Def); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.SaveConsumerPosition(ctx, "statefun.view.order_summaries.v2", "order", ""); err != nil {
		b.Fatal(err)
	}
}
