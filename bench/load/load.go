// Package load drives a ShoppingCartService over gRPC with a closed-loop
// load: a fixed number of workers, each sending its next request as soon as
// the previous one is answered. Concurrency is therefore the number of
// requests in flight, and throughput is what the system under test, on this
// machine, can sustain at that concurrency; latency includes any queueing
// in the server but never in the generator.
//
// Every request addresses one of a fixed set of carts, chosen uniformly or
// from a Zipf distribution (a few hot carts take most requests). A write is
// AddItem of one of four SKUs, quantity 1; a read is GetCart.
package load

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// SKUs is how many different products writes add; a cart settles at this
// many lines.
const SKUs = 4

// Config is one measurement.
type Config struct {
	// Clients are the connections to the system; worker i uses
	// Clients[i%len(Clients)], unless Route chooses.
	Clients []cartv1.ShoppingCartServiceClient
	// Route, if set, returns the index of the client that worker sends
	// its request for cart through: a client that knows where each cart
	// lives.
	Route       func(cart, worker int) int
	Concurrency int
	Carts       int
	// ReadFraction is the share of requests that are GetCart; the rest
	// are AddItem.
	ReadFraction float64
	// Zipf is the exponent s of the cart popularity: 0 for uniform, > 1
	// for a Zipf distribution (cart k drawn with weight (k+1)^-s).
	Zipf float64
	// Ramp runs before the measured window and is not counted: it lets
	// connections, goroutines, caches and the database's group commit
	// settle at this concurrency.
	Ramp     time.Duration
	Duration time.Duration
	// Stop, if set, ends the measured window when it is closed, instead
	// of Duration: for a window as long as something else takes.
	Stop <-chan struct{}
	// Timeout bounds each request, retries included; a request that has
	// not succeeded by then is an error.
	Timeout time.Duration
	// Retry sends a request that was answered UNAVAILABLE again to the
	// next client, with the same idempotency key for a write.
	Retry bool
	Seed  uint64
	// OnStart and OnEnd run at the edges of the measured window, while the
	// load runs, so that counters they read (of the server, the database,
	// the CPU) cover the requests counted.
	OnStart, OnEnd func()
}

// Latency summarises a set of request latencies, in nanoseconds.
type Latency struct {
	Count int64 `json:"count"`
	Mean  int64 `json:"mean_ns"`
	P50   int64 `json:"p50_ns"`
	P90   int64 `json:"p90_ns"`
	P99   int64 `json:"p99_ns"`
	P999  int64 `json:"p999_ns"`
	Max   int64 `json:"max_ns"`
}

// Result is what one measurement saw.
type Result struct {
	// Requests completed successfully within the measured window, and
	// the window's length.
	Requests   int64         `json:"requests"`
	Window     time.Duration `json:"window_ns"`
	Throughput float64       `json:"throughput"` // Requests per second
	Errors     int64         `json:"errors"`
	FirstError string        `json:"first_error,omitempty"`
	// Retries counts the attempts beyond each request's first (Retry),
	// in the measured window.
	Retries int64 `json:"retries,omitempty"`
	// Sent counts every request answered, ramp included: the denominator
	// for counters that cannot be read at the window's edges.
	Sent   int64   `json:"sent"`
	All    Latency `json:"latency"`
	Reads  Latency `json:"read_latency"`
	Writes Latency `json:"write_latency"`
}

// CartID names cart i.
func CartID(i int) string { return fmt.Sprintf("cart-%05d", i) }

// Run runs one measurement.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Concurrency < 1 || cfg.Carts < 1 || len(cfg.Clients) == 0 {
		return Result{}, fmt.Errorf("load: need concurrency, carts and clients (got %d, %d, %d)", cfg.Concurrency, cfg.Carts, len(cfg.Clients))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	ids := cartIDs(cfg.Carts)
	// phase: 0 ramp, 1 measuring, 2 stopping. A request counts if it
	// completes while measuring.
	var phase atomic.Int32
	var sent, errs, retries atomic.Int64
	var firstErr atomic.Pointer[string]
	workers := make([]*worker, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(cfg, uint64(i))
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for phase.Load() < 2 && ctx.Err() == nil {
				cart := w.cart()
				read := w.rng.Float64() < cfg.ReadFraction
				client := i
				if cfg.Route != nil {
					client = cfg.Route(cart, i)
				}
				start := time.Now()
				attempts, err := w.request(ctx, cfg, client, ids[cart], read)
				took := time.Since(start)
				sent.Add(1)
				if phase.Load() != 1 {
					continue
				}
				retries.Add(int64(attempts - 1))
				if err != nil {
					if errs.Add(1) == 1 {
						msg := err.Error()
						firstErr.Store(&msg)
					}
					continue
				}
				if read {
					w.reads = append(w.reads, took.Nanoseconds())
				} else {
					w.writes = append(w.writes, took.Nanoseconds())
				}
			}
		}()
	}
	stop := func() {
		phase.Store(2)
		wg.Wait()
	}
	if !sleep(ctx, cfg.Ramp) {
		stop()
		return Result{}, ctx.Err()
	}
	if cfg.OnStart != nil {
		cfg.OnStart()
	}
	phase.Store(1)
	start := time.Now()
	ok := true
	if cfg.Stop != nil {
		select {
		case <-cfg.Stop:
		case <-ctx.Done():
			ok = false
		}
	} else {
		ok = sleep(ctx, cfg.Duration)
	}
	phase.Store(2)
	window := time.Since(start)
	if cfg.OnEnd != nil {
		cfg.OnEnd()
	}
	stop()
	if !ok {
		return Result{}, ctx.Err()
	}

	var reads, writes []int64
	for _, w := range workers {
		reads = append(reads, w.reads...)
		writes = append(writes, w.writes...)
	}
	all := append(slices.Clone(reads), writes...)
	res := Result{
		Requests: int64(len(all)),
		Window:   window,
		Errors:   errs.Load(),
		Retries:  retries.Load(),
		Sent:     sent.Load(),
		All:      summarise(all),
		Reads:    summarise(reads),
		Writes:   summarise(writes),
	}
	res.Throughput = float64(res.Requests) / window.Seconds()
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	return res, nil
}

// Visit sends one request to every cart (AddItem when write, else
// GetCart) from concurrency workers, and returns how many it sent. It is
// the warm-up: afterwards every cart exists and, in statefun, is in memory.
func Visit(ctx context.Context, clients []cartv1.ShoppingCartServiceClient, carts, concurrency int, write bool) (int64, error) {
	ids := cartIDs(carts)
	var next, sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for i := range concurrency {
		w := newWorker(Config{Timeout: 30 * time.Second, Carts: carts}, uint64(i))
		client := clients[i%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= int64(carts) || ctx.Err() != nil {
					return
				}
				if err := w.call(ctx, client, ids[n], !write); err != nil {
					errs <- fmt.Errorf("warm-up of %s: %w", ids[n], err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return sent.Load(), <-errs
}

func cartIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = CartID(i)
	}
	return ids
}

// worker is one closed loop: its own random source (so that workers need
// no lock) and its own latency record.
type worker struct {
	rng     *rand.Rand
	seed    uint64
	n       uint64
	keys    uint64 // idempotency keys used
	zipf    *rand.Zipf
	carts   int
	timeout time.Duration
	skus    [SKUs]string
	reads   []int64
	writes  []int64
}

func newWorker(cfg Config, n uint64) *worker {
	w := &worker{
		rng:     rand.New(rand.NewPCG(cfg.Seed, n+1)),
		seed:    cfg.Seed,
		n:       n,
		carts:   cfg.Carts,
		timeout: cfg.Timeout,
		reads:   make([]int64, 0, 1<<14),
		writes:  make([]int64, 0, 1<<14),
	}
	for i := range w.skus {
		w.skus[i] = fmt.Sprintf("sku-%d", i)
	}
	if cfg.Zipf > 1 {
		w.zipf = rand.NewZipf(w.rng, cfg.Zipf, 1, uint64(cfg.Carts-1))
	}
	return w
}

func (w *worker) cart() int {
	if w.zipf != nil {
		return int(w.zipf.Uint64())
	}
	return w.rng.IntN(w.carts)
}

// retryPause is how long a retrying worker waits after every client
// refused a request once, before it goes round them again.
const retryPause = 10 * time.Millisecond

// request sends one request through client i or, with cfg.Retry,
// through the next ones after each UNAVAILABLE answer. It returns the
// number of attempts.
func (w *worker) request(ctx context.Context, cfg Config, i int, id string, read bool) (int, error) {
	if !cfg.Retry {
		return 1, w.call(ctx, cfg.Clients[i%len(cfg.Clients)], id, read)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if !read {
		// One key for every attempt: a write that ran on a node that
		// then failed to answer runs once.
		w.keys++
		key := fmt.Sprintf("load-%d-%d-%d", w.seed, w.n, w.keys)
		ctx = metadata.AppendToOutgoingContext(ctx, "idempotency-key", key)
	}
	for attempt := 0; ; attempt++ {
		err := w.call(ctx, cfg.Clients[(i+attempt)%len(cfg.Clients)], id, read)
		if err == nil || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return attempt + 1, err
		}
		if (attempt+1)%len(cfg.Clients) == 0 && !sleep(ctx, retryPause) {
			return attempt + 1, err
		}
	}
}

func (w *worker) call(ctx context.Context, client cartv1.ShoppingCartServiceClient, id string, read bool) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if read {
		_, err := client.GetCart(ctx, &cartv1.GetCartRequest{CartId: id})
		return err
	}
	_, err := client.AddItem(ctx, &cartv1.AddItemRequest{CartId: id, Sku: w.skus[w.rng.IntN(SKUs)], Quantity: 1})
	return err
}

func summarise(ns []int64) Latency {
	if len(ns) == 0 {
		return Latency{}
	}
	slices.Sort(ns)
	var sum int64
	for _, v := range ns {
		sum += v
	}
	at := func(q float64) int64 {
		i := int(q * float64(len(ns)))
		if i >= len(ns) {
			i = len(ns) - 1
		}
		return ns[i]
	}
	return Latency{
		Count: int64(len(ns)),
		Mean:  sum / int64(len(ns)),
		P50:   at(0.50),
		P90:   at(0.90),
		P99:   at(0.99),
		P999:  at(0.999),
		Max:   ns[len(ns)-1],
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
