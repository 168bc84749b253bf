package statefun_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// lateCart records, for every timer delivery it gets, how late it came.
type lateCart struct {
	cartEntity
	mu   sync.Mutex
	late []time.Duration
	at   []time.Time
	all  chan struct{} // closed when want deliveries have come
	want int
}

func (c *lateCart) AddItem(ctx *cart.ShoppingCartContext, state *cart.Cart, req *cart.AddItemRequest) (*emptypb.Empty, error) {
	if fired, ok := statefun.TimerOf(ctx.Context()); ok && fired.Attempt == 1 {
		now := time.Now()
		c.mu.Lock()
		c.late = append(c.late, now.Sub(fired.Due))
		c.at = append(c.at, now)
		if len(c.late) == c.want {
			close(c.all)
		}
		c.mu.Unlock()
	}
	if req.GetSku() == "schedule" {
		ctx.ScheduleCallAfter("t", 50*time.Millisecond, cart.ShoppingCartAddItemCall(&cart.AddItemRequest{CartId: ctx.EntityID(), Sku: "fired", Quantity: 1}))
		return &emptypb.Empty{}, nil
	}
	return c.cartEntity.AddItem(ctx, state, req)
}

// writeTimers stores n timers straight into st, due at due, each calling
// AddItem on its own cart: what n commands would have scheduled.
func writeTimers(b *testing.B, st store.Store, n int, due time.Time) {
	b.Helper()
	const batch = 10_000
	for start := 0; start < n; start += batch {
		var changes []store.TimerChange
		for i := start; i < min(start+batch, n); i++ {
			id := fmt.Sprintf("cart-%07d", i)
			call := cart.ShoppingCartAddItemCall(&cart.AddItemRequest{CartId: id, Sku: "fired", Quantity: 1})
			changes = append(changes, store.TimerChange{Timer: store.Timer{
				Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: id}, Name: "t", ID: int64(i + 1),
				Due: due, Call: statefun.EncodeCallForTest(call),
			}})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := st.Commit(ctx, &store.Batch{Timers: changes})
		cancel()
		if err != nil {
			b.Fatalf("write timers: %v", err)
		}
	}
}

// BenchmarkTimers measures timers on Postgres, in process: how fast due
// timers fire (each delivery a durable command on its own, cached cart),
// how late a timer fires on an idle runtime, and what a million pending
// timers cost the runtime's memory.
func BenchmarkTimers(b *testing.B) {
	b.Run("postgres/firing", func(b *testing.B) {
		const n = 20_000
		for range b.N {
			st := benchStores()["postgres"](b)
			entity := &lateCart{all: make(chan struct{}), want: n}
			rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(entity)}, statefun.WithStore(st))
			if err != nil {
				b.Fatal(err)
			}
			carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
			for i := range n {
				// Cached, as the carts of a running shop are.
				if _, err := carts.GetCart(context.Background(), &cart.GetCartRequest{CartId: fmt.Sprintf("cart-%07d", i)}); err != nil {
					b.Fatal(err)
				}
			}
			writeTimers(b, st, n, time.Now())
			// The loop finds them within its idle check (5s); the rate is
			// taken from the first delivery to the last.
			select {
			case <-entity.all:
			case <-time.After(5 * time.Minute):
				b.Fatalf("%d of %d timers fired in 5 minutes", len(entity.at), n)
			}
			span := entity.at[n-1].Sub(entity.at[0])
			b.ReportMetric(float64(n-1)/span.Seconds(), "timers/s")
			closeWithin(b, rt, 30*time.Second)
			_ = st.Close()
		}
	})
	b.Run("postgres/lateness-idle", func(b *testing.B) {
		const n = 200
		for range b.N {
			st := benchStores()["postgres"](b)
			entity := &lateCart{all: make(chan struct{}), want: n}
			rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(entity)}, statefun.WithStore(st))
			if err != nil {
				b.Fatal(err)
			}
			carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
			for i := range n {
				// One timer at a time, 50ms out, 20ms apart: the runtime
				// is idle but for them.
				if _, err := carts.AddItem(context.Background(), &cart.AddItemRequest{CartId: fmt.Sprintf("cart-%d", i), Sku: "schedule", Quantity: 1}); err != nil {
					b.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			select {
			case <-entity.all:
			case <-time.After(time.Minute):
				b.Fatalf("%d of %d timers fired in a minute", len(entity.late), n)
			}
			late := slices.Clone(entity.late)
			slices.Sort(late)
			b.ReportMetric(float64(late[n/2].Microseconds())/1000, "p50-late-ms")
			b.ReportMetric(float64(late[n*99/100].Microseconds())/1000, "p99-late-ms")
			closeWithin(b, rt, 30*time.Second)
			_ = st.Close()
		}
	})
	b.Run("postgres/pending-memory", func(b *testing.B) {
		n := 1_000_000
		if v := os.Getenv("STATEFUN_BENCH_TIMERS"); v != "" {
			_, _ = fmt.Sscan(v, &n)
		}
		for range b.N {
			st := benchStores()["postgres"](b)
			writeTimers(b, st, n, time.Now().Add(time.Hour))
			before := heapInUse()
			rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(&lateCart{all: make(chan struct{})})}, statefun.WithStore(st))
			if err != nil {
				b.Fatal(err)
			}
			// The loop has looked for due timers and for the next due
			// one by now.
			time.Sleep(time.Second)
			after := heapInUse()
			// What the runtime holds with n timers pending: its whole
			// heap growth, divided by n. Negative is "less than before
			// it started": the GC freed more than the runtime took.
			grew := float64(int64(after) - int64(before))
			b.ReportMetric(grew/float64(n), "heap-bytes/pending-timer")
			b.ReportMetric(grew/(1<<20), "runtime-heap-MiB")
			runtime.KeepAlive(rt)
			closeWithin(b, rt, 30*time.Second)
			_ = st.Close()
		}
	})
}
