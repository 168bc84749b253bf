package statefun_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/runtime/store/postgres"
	"github.com/statefun-go/statefun/testdata/consumer"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

func benchDatabaseURL() string {
	if url := os.Getenv("STATEFUN_TEST_DATABASE_URL"); url != "" {
		return url
	}
	return "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
}

// benchStores opens each store kind fresh for a benchmark.
func benchStores() map[string]func(b *testing.B) store.Store {
	return map[string]func(b *testing.B) store.Store{
		"memory": func(*testing.B) store.Store { return memory.New() },
		"embedded": func(b *testing.B) store.Store {
			st, err := embedded.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return st
		},
		"postgres": func(b *testing.B) store.Store {
			schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
			st, err := postgres.Open(context.Background(), benchDatabaseURL(), postgres.WithSchema(schema))
			if err != nil {
				b.Fatalf("open Postgres (start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): %v", err)
			}
			b.Cleanup(func() { dropSchema(benchDatabaseURL(), schema) })
			return st
		},
	}
}

// BenchmarkCommands measures durable single-event commands (each reply
// waits for its commit) from 64 concurrent callers, spread over 10,000
// entities or aimed at one hot entity.
func BenchmarkCommands(b *testing.B) {
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		for _, spread := range []struct {
			name     string
			entities int
		}{{"10000-entities", 10000}, {"hot-entity", 1}} {
			// The server's default first, under the plain name; a tuned
			// setting is reported beside it, never instead of it.
			settings := []struct {
				suffix      string
				concurrency int
			}{{"", 0}}
			if kind == "postgres" {
				settings = append(settings, struct {
					suffix      string
					concurrency int
				}{"/commit-concurrency-4", 4})
			}
			for _, setting := range settings {
				b.Run(kind+"/"+spread.name+setting.suffix, func(b *testing.B) {
					st := benchStores()[kind](b)
					defer st.Close()
					opts := []statefun.Option{statefun.WithStore(st)}
					if setting.concurrency > 0 {
						opts = append(opts, statefun.WithCommitConcurrency(setting.concurrency))
					}
					benchCommands(b, spread.entities, opts...)
				})
			}
		}
	}
}

// benchCommands runs BenchmarkCommands' load on a runtime with opts.
func benchCommands(b *testing.B, entities int, opts ...statefun.Option) {
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close(context.Background())
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("cart-%d", i)
	}
	// Steady state: every entity is in memory before timing
	// starts, as on a server that has been up for a while.
	// (Loading is measured by BenchmarkRecovery.)
	for _, id := range ids {
		if _, err := carts.GetCart(context.Background(), &cart.GetCartRequest{CartId: id}); err != nil {
			b.Fatal(err)
		}
	}
	const callers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ResetTimer()
	cpuBefore := processCPU(b)
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				if err := add(ctx, carts, ids[int(n)%len(ids)], "sku", 1); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpuBefore
	b.StopTimer()
	js := rt.Stats().Journal
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
	// The CPU the whole process spent per command: the callers, the
	// runtime, the journal writer, the garbage collector and the store's
	// client (with Postgres, not the database server's). Unlike ns/op it
	// does not fall when the work spreads over more cores, nor rise when
	// the commands wait on the database.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/cmd")
	if js.Batches > 0 {
		b.ReportMetric(float64(js.Records)/float64(js.Batches), "events/batch")
		b.ReportMetric(float64(js.CommitDuration.Microseconds())/float64(js.Batches), "µs/commit")
	}
}

// processCPU is the CPU time, user and system, the process has used so
// far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDurableWrite is BenchmarkCommands' load over 10,000 entities
// on the memory store (the runtime's own cost) and on Postgres (with its
// client's), with allocations reported: allocs/op and B/op are per
// durable write, and cpu-µs/cmd is the process's CPU per write (PERFORMANCE.md,
// "Server CPU per durable write", tracks both).
func BenchmarkDurableWrite(b *testing.B) {
	for _, kind := range []string{"memory", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			st := benchStores()[kind](b)
			defer st.Close()
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			b.ReportAllocs()
			benchCommands(b, 10000, statefun.WithStore(st), statefun.WithLogger(quiet))
		})
	}
}

// BenchmarkCommandTracing is BenchmarkCommands on the memory store (so
// that the runtime's own cost shows, not the store's) with tracing off
// (the default no-op provider), on with a sampler that records nothing,
// and on recording every span into an exporter that discards them. Run it
// with -benchmem: with tracing off a command must allocate no more than
// without tracing support at all (BENCHMARKS.md, "Tracing overhead").
func BenchmarkCommandTracing(b *testing.B) {
	for _, c := range []struct {
		name string
		tp   func() *sdktrace.TracerProvider
	}{
		{"off", nil},
		{"on-sampled-none", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		}},
		{"on-sampled-all", func() *sdktrace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardSpans{}))
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			opts := []statefun.Option{statefun.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
			if c.tp != nil {
				tp := c.tp()
				defer func() { _ = tp.Shutdown(context.Background()) }()
				opts = append(opts, statefun.WithTracerProvider(tp))
			}
			benchCommands(b, 10000, opts...)
		})
	}
}

// discardSpans is an exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// BenchmarkIdleEntityMemory loads many entities with a small state and
// reports the heap they hold, per entity, beyond the state itself.
func BenchmarkIdleEntityMemory(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("STATEFUN_BENCH_ENTITIES"); v != "" {
		_, _ = fmt.Sscan(v, &n)
	}
	for i := 0; i < b.N; i++ {
		rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithMaxEntities(2*n))
		if err != nil {
			b.Fatal(err)
		}
		carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
		ctx := context.Background()
		ids := make([]string, n)
		for j := range ids {
			ids[j] = fmt.Sprintf("cart-%07d", j)
		}
		before := heapInUse()
		var wg sync.WaitGroup
		const workers = 8
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := w; j < n; j += workers {
					if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: ids[j]}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		after := heapInUse()
		// The state of a never-written cart is an empty Cart message.
		stateBytes := float64(emptyCartSize())
		perEntity := float64(after-before)/float64(n) - stateBytes
		b.ReportMetric(perEntity, "bytes/entity")
		b.ReportMetric(stateBytes, "state-bytes")
		runtime.KeepAlive(ids)
		_ = rt.Close(ctx)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func emptyCartSize() uint64 {
	const k = 10000
	before := heapInUse()
	keep := make([]*cart.Cart, k)
	for i := range keep {
		keep[i] = new(cart.Cart)
	}
	after := heapInUse()
	runtime.KeepAlive(keep)
	return (after - before) / k
}

// BenchmarkRecovery loads an entity with 100,000 events and no snapshot.
func BenchmarkRecovery(b *testing.B) {
	const events = 100_000
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		b.Run(kind, func(b *testing.B) {
			st := benchStores()[kind](b)
			defer st.Close()
			ctx := context.Background()
			ref := store.Ref{Type: cart.ShoppingCartEntityType, ID: "long"}
			var seq int64
			for seq < events {
				var batch store.Batch
				for i := 0; i < 5000 && seq < events; i++ {
					seq++
					batch.Events = append(batch.Events, store.Event{Entity: ref, Seq: seq, EventType: "ItemAdded", Payload: itemAddedPayload})
				}
				if err := st.Commit(ctx, &batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st))
				if err != nil {
					b.Fatal(err)
				}
				got, err := cart.NewShoppingCartEntityClient(rt.ClientConn()).GetCart(ctx, &cart.GetCartRequest{CartId: "long"})
				if err != nil {
					b.Fatal(err)
				}
				if q := got.GetItems()[0].GetQuantity(); q != events {
					b.Fatalf("quantity %d, want %d", q, events)
				}
				_ = rt.Close(ctx)
			}
			b.ReportMetric(float64(events*b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

var itemAddedPayload = func() []byte {
	b, err := proto.Marshal(&cart.ItemAdded{Sku: "sku-1", Quantity: 1})
	if err != nil {
		panic(err)
	}
	return b
}()

func dropSchema(url, schema string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}

// commitClock is a store that records when each event's commit completed:
// the moment the underlying Commit returned.
type commitClock struct {
	store.Store
	mu        sync.Mutex
	committed map[commitKey]time.Time
}

type commitKey struct {
	id  string
	seq int64
}

func (c *commitClock) Commit(ctx context.Context, b *store.Batch) error {
	if err := c.Store.Commit(ctx, b); err != nil {
		return err
	}
	now := time.Now()
	c.mu.Lock()
	for _, e := range b.Events {
		c.committed[commitKey{e.Entity.ID, e.Seq}] = now
	}
	c.mu.Unlock()
	return nil
}

func (c *commitClock) at(k commitKey) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.committed[k]
	return t, ok
}

// lagProbe is a cart-audit consumer that reports when each event arrives.
type lagProbe struct{ arrived chan arrival }

type arrival struct {
	event commitKey
	at    time.Time
}

func (p *lagProbe) OnItemAdded(ctx *consumer.CartAuditContext, _ *cart.ItemAdded) error {
	p.arrived <- arrival{commitKey{ctx.EntityID(), ctx.Seq()}, time.Now()}
	return nil
}

func (p *lagProbe) OnCheckedOut(*consumer.CartAuditContext, *cart.CheckedOut) error { return nil }

// BenchmarkConsumerLag measures, at idle, the time from the completion of
// the commit that made an event durable (the store's Commit returned) to
// the consumer's handler receiving the event. It reports min-ms too: a
// negative lag would mean a consumer saw an event before its commit
// completed, which is a bug to report, not a figure to round up.
func BenchmarkConsumerLag(b *testing.B) {
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		b.Run(kind, func(b *testing.B) {
			inner := benchStores()[kind](b)
			defer inner.Close()
			st := &commitClock{Store: inner, committed: map[commitKey]time.Time{}}
			probe := &lagProbe{arrived: make(chan arrival, 1)}
			// Quiet: a log line would split the benchmark's result line.
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})},
				statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(probe)), statefun.WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = rt.Close(ctx)
			}()
			carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
			ctx := context.Background()
			lags := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := add(ctx, carts, fmt.Sprint("lag-", i%100), "sku", 1); err != nil {
					b.Fatal(err)
				}
				select {
				case got := <-probe.arrived:
					committed, ok := st.at(got.event)
					if !ok {
						b.Fatalf("the consumer received %s/%d, which no completed commit wrote", got.event.id, got.event.seq)
					}
					lags = append(lags, got.at.Sub(committed))
				case <-time.After(5 * time.Second):
					b.Fatal("the consumer did not receive the event within 5 s")
				}
			}
			b.StopTimer()
			slices.Sort(lags)
			if lags[0] < 0 {
				b.Logf("BUG: an event reached the consumer %v before its commit completed", -lags[0])
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lags[0]), "min-ms")
			b.ReportMetric(ms(lags[len(lags)/2]), "p50-ms")
			b.ReportMetric(ms(lags[len(lags)*99/100]), "p99-ms")
			b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
		})
	}
}
