package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/bench/internal/procstat"
	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/report"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// RunConfig says what to measure.
type RunConfig struct {
	// Server is the shopping cart server binary.
	Server      string
	DatabaseURL string
	Schema      string
	Dataset     Dataset
	// Concurrency is that of the passes over all carts; the latency
	// samples run one call at a time.
	Concurrency int
	// Sample is the number of carts of each kind (with and without a
	// snapshot) whose cold load is timed one at a time.
	Sample int
	// PassivationWait bounds the wait for the server to passivate every
	// cart once the reads stop.
	PassivationWait time.Duration
	// IdleTimeout is the server's passivation timeout (its default: the
	// server has no flag for it), reported beside the wait.
	IdleTimeout time.Duration
	// LogFile receives the server's output.
	LogFile string
	Logf    func(format string, args ...any)
}

// verifyEvery is how often a pass compares a cart's answer with its
// expected state (every 100th cart: computing the state costs the driver
// CPU the server would otherwise have).
const verifyEvery = 100

// Run starts the server on the loaded data set and measures it: memory
// empty, cold loads one at a time and in passes over every cart, memory
// with all of them cached, then the passivation of all.
func Run(ctx context.Context, cfg RunConfig, out *report.Scale) error {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	srv, err := startServer(cfg, grpcAddr, httpAddr)
	if err != nil {
		return err
	}
	defer srv.kill()
	metricsURL := "http://" + httpAddr + "/metrics"
	if err := waitHealthy(ctx, "http://"+httpAddr+"/healthz", srv); err != nil {
		return err
	}
	// The empty server: started, connected to Postgres, nothing loaded.
	time.Sleep(2 * time.Second)
	out.Memory.RSSEmpty = rss(srv.pid())

	sampler := startSampler(srv.pid())
	defer sampler.stop()

	var conns []*grpc.ClientConn
	var clients []cartv1.ShoppingCartServiceClient
	for range 4 {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		conns = append(conns, cc)
		clients = append(clients, cartv1.NewShoppingCartServiceClient(cc))
	}

	if err := verifyProbes(ctx, clients[0], cfg.Dataset); err != nil {
		return err
	}
	out.Verified += 2
	logf("the server reads the probe carts as written and appends to them")

	d := cfg.Dataset
	sampled := map[int]bool{}
	var snapSample, fullSample []int
	step := max(1, d.Entities/max(1, cfg.Sample))
	for i := 0; i+1 < d.Entities && len(snapSample) < cfg.Sample; i += step {
		j := i - i%2 // an even cart has a snapshot, the next one none
		snapSample, fullSample = append(snapSample, j), append(fullSample, j+1)
		sampled[j], sampled[j+1] = true, true
	}
	var snapRest, fullRest []int
	for i := range d.Entities {
		if sampled[i] {
			continue
		}
		if HasSnapshot(i) {
			snapRest = append(snapRest, i)
		} else {
			fullRest = append(fullRest, i)
		}
	}
	out.Dataset.WithSnapshot = (d.Entities + 1) / 2

	var lastRead time.Time
	for _, p := range []struct {
		name        string
		ids         []int
		snapshot    bool
		concurrency int
	}{
		{"cold loads one at a time, with a snapshot", snapSample, true, 1},
		{"cold loads one at a time, without a snapshot", fullSample, false, 1},
		{"every other cart, with a snapshot", snapRest, true, cfg.Concurrency},
		{"every other cart, without a snapshot", fullRest, false, cfg.Concurrency},
	} {
		logf("%s: %d carts at concurrency %d", p.name, len(p.ids), p.concurrency)
		before, err := procstat.Scrape(ctx, metricsURL)
		if err != nil {
			return err
		}
		phase, err := readAll(ctx, clients, d, p.ids, p.concurrency)
		if err != nil {
			return err
		}
		lastRead = time.Now()
		after, err := procstat.Scrape(ctx, metricsURL)
		if err != nil {
			return err
		}
		phase.Name, phase.Snapshot = p.name, p.snapshot
		replayPer := int64(d.EventsPerEntity)
		if p.snapshot {
			replayPer = 0 // the snapshot is at the last event
		}
		phase.EventsReplayed = replayPer * int64(len(p.ids))
		phase.History = int64(d.EventsPerEntity) * int64(len(p.ids))
		phase.Server = getCartSpread(before, after)
		if loads := after.Sum("statefun_entity_loads_total") - before.Sum("statefun_entity_loads_total"); int(loads) != len(p.ids) {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: the server loaded %.0f carts for %d cold reads", p.name, loads, len(p.ids)))
		}
		out.Verified += (len(p.ids) + verifyEvery - 1) / verifyEvery
		if phase.Errors > 0 {
			out.Problems = append(out.Problems, fmt.Sprintf("%s: %d errors, the first: %s", p.name, phase.Errors, phase.FirstError))
		}
		logf("%s: %s, %.0f carts/s, client p50 %v p99 %v", p.name, phase.Wall.Round(time.Millisecond),
			float64(len(p.ids))/phase.Wall.Seconds(), time.Duration(phase.Client.P50), time.Duration(phase.Client.P99))
		out.Phases = append(out.Phases, phase)
	}

	// Every cart is in memory: let the last allocations settle, then read.
	time.Sleep(3 * time.Second)
	out.Memory.RSSAllCached = rss(srv.pid())
	m, err := procstat.Scrape(ctx, metricsURL)
	if err != nil {
		return err
	}
	out.Memory.Cached = int64(m.Sum("statefun_entities_cached"))
	out.Memory.HeapAlloc = int64(m.Sum("go_memstats_heap_alloc_bytes"))
	out.Memory.HeapInuse = int64(m.Sum("go_memstats_heap_inuse_bytes"))
	out.Memory.NextGC = int64(m.Sum("go_memstats_next_gc_bytes"))
	out.Memory.GoSys = int64(m.Sum("go_memstats_sys_bytes"))
	if out.Memory.Cached < int64(d.Entities) {
		out.Problems = append(out.Problems, fmt.Sprintf("only %d of %d carts were cached when the passes ended: the server passivated carts idle for its timeout (%v) before the last were read",
			out.Memory.Cached, d.Entities, cfg.IdleTimeout))
	}
	logf("passes done: %d cached, RSS %d MiB (empty %d MiB), heap in use %d MiB",
		out.Memory.Cached, out.Memory.RSSAllCached>>20, out.Memory.RSSEmpty>>20, out.Memory.HeapInuse>>20)

	// The server passivates an entity idle for its timeout; it has no
	// other way to be told to (no flag, no admin call), so wait for it.
	logf("waiting up to %v for the server to passivate every cart (idle timeout %v)", cfg.PassivationWait, cfg.IdleTimeout)
	out.Passivation.IdleTimeout = cfg.IdleTimeout
	waitStart := time.Now()
	var firstEviction time.Time
	full := out.Memory.Cached
	for time.Since(waitStart) < cfg.PassivationWait {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
		m, err := procstat.Scrape(ctx, metricsURL)
		if err != nil {
			return err
		}
		cached := int64(m.Sum("statefun_entities_cached"))
		if cached < full && firstEviction.IsZero() {
			firstEviction = time.Now()
			logf("passivation started: %d cached", cached)
		}
		if cached == 0 {
			now := time.Now()
			out.Passivation.Completed = true
			out.Passivation.SinceLastRead = now.Sub(lastRead)
			out.Passivation.Sweep = now.Sub(firstEviction)
			break
		}
		out.Passivation.Evicted = full - cached
	}
	out.Passivation.Waited = time.Since(waitStart)
	if out.Passivation.Completed {
		out.Passivation.Evicted = full
		time.Sleep(2 * time.Second)
		out.Memory.RSSAfterPassivation = rss(srv.pid())
		logf("every cart passivated %v after the last read (the sweep %v); RSS %d MiB",
			out.Passivation.SinceLastRead.Round(time.Millisecond), out.Passivation.Sweep.Round(time.Millisecond), out.Memory.RSSAfterPassivation>>20)
	} else {
		out.Problems = append(out.Problems, fmt.Sprintf("%d of %d carts were still cached after waiting %v for passivation", full-out.Passivation.Evicted, full, cfg.PassivationWait))
	}
	out.Memory.RSSPeak = sampler.stop()
	out.Machine.LoadMean, out.Machine.LoadPeak = sampler.loads()

	for _, cc := range conns {
		_ = cc.Close()
	}
	stopAt := time.Now()
	if err := srv.stop(); err != nil {
		return err
	}
	out.Shutdown = time.Since(stopAt)
	return nil
}

// verifyProbes checks that the server reads the loader's rows as its own
// history, from a snapshot and from events alone, and appends to them:
// each probe cart must hold its generated state (plus the line earlier
// runs added), and take one more event.
func verifyProbes(ctx context.Context, client cartv1.ShoppingCartServiceClient, d Dataset) error {
	const extra = "sku-probe"
	for _, i := range d.ProbeIDs() {
		id := CartID(i)
		got, err := client.GetCart(ctx, &cartv1.GetCartRequest{CartId: id})
		if err != nil {
			return fmt.Errorf("get probe cart %s: %w", id, err)
		}
		want := State(i, d.EventsPerEntity)
		added := int32(0)
		if n := len(got.GetItems()); n == len(want.GetItems())+1 && got.GetItems()[n-1].GetSku() == extra {
			added = got.GetItems()[n-1].GetQuantity()
			got.Items = got.Items[:n-1]
		}
		if !proto.Equal(got, want) {
			return fmt.Errorf("probe cart %s: the server answered %v, the loaded history makes %v: the rows are not written as the store writes them", id, got, want)
		}
		if _, err := client.AddItem(ctx, &cartv1.AddItemRequest{CartId: id, Sku: extra, Quantity: 1}); err != nil {
			return fmt.Errorf("append to probe cart %s: %w", id, err)
		}
		got, err = client.GetCart(ctx, &cartv1.GetCartRequest{CartId: id})
		if err != nil {
			return fmt.Errorf("get probe cart %s: %w", id, err)
		}
		if n := len(got.GetItems()); n == 0 || got.GetItems()[n-1].GetSku() != extra || got.GetItems()[n-1].GetQuantity() != added+1 {
			return fmt.Errorf("probe cart %s after AddItem: %v, want a line %s of %d", id, got, extra, added+1)
		}
	}
	return nil
}

// readAll calls GetCart once for every cart of ids, from a closed loop
// of concurrency workers, and compares every verifyEvery-th answer with
// the cart's expected state.
func readAll(ctx context.Context, clients []cartv1.ShoppingCartServiceClient, d Dataset, ids []int, concurrency int) (report.ScalePhase, error) {
	phase := report.ScalePhase{Concurrency: concurrency, Entities: len(ids)}
	var next, errs atomic.Int64
	var mu sync.Mutex
	var firstErr string
	var mismatch error
	lat := make([][]int64, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := clients[w%len(clients)]
			for ctx.Err() == nil {
				k := int(next.Add(1)) - 1
				if k >= len(ids) {
					return
				}
				i := ids[k]
				t := time.Now()
				cart, err := client.GetCart(ctx, &cartv1.GetCartRequest{CartId: CartID(i)})
				lat[w] = append(lat[w], int64(time.Since(t)))
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err.Error()
						mu.Unlock()
					}
					continue
				}
				if k%verifyEvery == 0 {
					if want := State(i, d.EventsPerEntity); !proto.Equal(cart, want) {
						mu.Lock()
						mismatch = fmt.Errorf("cart %s: the server answered %v, its history makes %v", CartID(i), cart, want)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	phase.Wall = time.Since(start)
	if err := ctx.Err(); err != nil {
		return phase, err
	}
	if mismatch != nil {
		return phase, mismatch
	}
	phase.Errors, phase.FirstError = errs.Load(), firstErr
	phase.Client = summarise(slices.Concat(lat...))
	return phase, nil
}

func summarise(ns []int64) load.Latency {
	if len(ns) == 0 {
		return load.Latency{}
	}
	slices.Sort(ns)
	var sum int64
	for _, v := range ns {
		sum += v
	}
	at := func(q float64) int64 { return ns[min(len(ns)-1, int(q*float64(len(ns))))] }
	return load.Latency{Count: int64(len(ns)), Mean: sum / int64(len(ns)), P50: at(0.5), P90: at(0.9), P99: at(0.99), P999: at(0.999), Max: ns[len(ns)-1]}
}

// server is the shopping cart server process.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func startServer(cfg RunConfig, grpcAddr, httpAddr string) (*server, error) {
	logFile, err := os.Create(cfg.LogFile)
	if err != nil {
		return nil, err
	}
	// Default settings but for the addresses and the database.
	cmd := exec.Command(cfg.Server, "--database-url", cfg.DatabaseURL, "--database-schema", cfg.Schema,
		"--listen", grpcAddr, "--http-listen", httpAddr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start the server: %w", err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits for the exit, up to a minute.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.err
	case <-time.After(time.Minute):
		s.kill()
		return errors.New("the server did not exit within a minute of SIGTERM and was killed")
	}
}

// kill ends the server if it still runs (after a failure).
func (s *server) kill() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func waitHealthy(ctx context.Context, url string, s *server) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			if s.err == nil {
				return errors.New("the server exited at start, with status 0 (see its log)")
			}
			return fmt.Errorf("the server exited at start (see its log): %w", s.err)
		default:
		}
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("the server was not healthy within 2 minutes")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rss is the resident set size of a process, from /proc/<pid>/status.
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

// sampler reads the server's RSS and the machine's 1-minute load once a
// second.
type sampler struct {
	done    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	peak    int64
	load    []float64
}

func startSampler(pid int) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			r, l := rss(pid), loadAverage1()
			s.mu.Lock()
			s.peak = max(s.peak, r)
			s.load = append(s.load, l)
			s.mu.Unlock()
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak RSS.
func (s *sampler) stop() int64 {
	s.stopped.Do(func() { close(s.done) })
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func (s *sampler) loads() (mean, peak float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.load) == 0 {
		return 0, 0
	}
	var sum float64
	for _, l := range s.load {
		sum += l
		peak = max(peak, l)
	}
	return sum / float64(len(s.load)), peak
}

func loadAverage1() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// getCartSpread is the server's request histogram for successful
// GetCart calls between two scrapes.
func getCartSpread(before, after procstat.Metrics) *report.HistogramSpread {
	const prefix = `statefun_request_duration_seconds_bucket{`
	type bucket struct {
		le    float64
		count float64
	}
	var buckets []bucket
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) || !strings.Contains(k, `method="/shop.cart.v1.ShoppingCartService/GetCart"`) || !strings.Contains(k, `code="OK"`) {
			continue
		}
		_, rest, ok := strings.Cut(k, `le="`)
		if !ok {
			continue
		}
		leText, _, _ := strings.Cut(rest, `"`)
		le, err := strconv.ParseFloat(leText, 64)
		if err != nil {
			continue
		}
		buckets = append(buckets, bucket{le, v - before[k]})
	}
	if len(buckets) == 0 {
		return nil
	}
	slices.SortFunc(buckets, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	total := buckets[len(buckets)-1].count // le="+Inf"
	if total <= 0 {
		return nil
	}
	at := func(q float64) time.Duration {
		for _, b := range buckets {
			if b.count >= q*total {
				return time.Duration(b.le * float64(time.Second))
			}
		}
		return 0
	}
	return &report.HistogramSpread{Count: int64(total), P50: at(0.5), P99: at(0.99)}
}
