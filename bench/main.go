// Command bench is statefun's benchmark suite: `make bench` runs it from
// the repository root. It measures four systems with one API (the
// shopping cart) on the same machine, the same Postgres and the same load,
// then writes BENCHMARKS.md, a chart and the raw results as JSON:
//
//   - noop: a gRPC server whose handlers return at once (the ceiling);
//   - baseline: a stateless gRPC server that reads and writes each cart's
//     row in Postgres per request (what statefun claims to beat);
//   - statefun-postgres and statefun-embedded: the shopping cart example
//     server, built as `go build ./examples/shoppingcart` builds it.
//
// Each system runs as its own process, built into a temporary directory;
// the load generator (package load) runs in this process. Every workload
// (writes, reads, a 90/10 mix) starts fresh server processes, warms them
// up by touching every cart once, then measures every popularity and
// concurrency with the systems interleaved cell by cell, so that a change
// in the machine's background load during the run hits all systems alike.
// Then the write workload is repeated with Postgres behind a proxy that
// adds 0.5 ms each way (package pgproxy), the statefun server is profiled
// under write load, the HTTP/JSON cells and the cluster are measured, and
// the runtime's own Go benchmarks run.
//
// The HTTP/JSON cells (http.go) call the statefun server's HTTP port and a
// no-op Connect server (bench/cmd/noopconnect, connect-go handlers that do
// nothing) with Connect unary JSON, over HTTP/1.1 and over h2c, writes
// and reads at every concurrency, with statefun and no-op gRPC measured
// over gRPC at the top concurrency alongside, for the comparison issue 13
// asks for: the server CPU a JSON call costs statefun beyond the no-op
// Connect server's against what a gRPC call costs it beyond no-op gRPC's.
// They take about two minutes and can run alone (-only http), their
// results merged into the saved ones.
//
// The cluster benchmarks (cluster.go) run the shopping cart server as one
// node and as three nodes on one database (each on a database of its
// own): the idle clusters' lease upkeep (the nodes' heartbeat counters,
// pg_stat_database and pg_stat_user_tables), then the write and read
// workloads at every concurrency on one node, on the three nodes with
// each call sent to its owner, and on the three nodes with the calls
// spread round-robin (two in three forwarded); then kill -9 of a node,
// several times (until its shards are held and served again), and a
// rolling restart under load with clients that retry on another node.
// They take about three minutes and can run alone (-only cluster), their
// results merged into the saved ones.
//
// Database work is counted three ways, each explained in the report:
// TCP segments on the systems' connections to Postgres per cell (ss -ti),
// exact protocol round trips and statements when the proxy is in the path,
// and pg_stat_database deltas per server process (each DB-backed system
// gets a database of its own, so the counters are its alone).
//
// Every process it starts is stopped, and the databases it creates are
// dropped, also when it is interrupted.
//
// Usage (from the repository root):
//
//	go run ./bench                    # everything, about 14 minutes
//	go run ./bench -duration 1s -skip-go-bench   # a quick look
//	go run ./bench -only cluster      # the cluster part alone (about 3 minutes), merged into bench/results/results.json
//	go run ./bench -only http         # the HTTP/JSON cells alone (about 2 minutes), merged likewise
//	go run ./bench -render-only       # rewrite BENCHMARKS.md and the chart from bench/results/results.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/statefun-go/statefun/bench/report"
)

// options are the command line.
type options struct {
	databaseURL   string
	carts         int
	zipf          float64
	concurrencies []int
	ramp          time.Duration
	duration      time.Duration
	conns         int
	baselinePool  int
	proxyDelay    time.Duration
	warmupWorkers int
	skipGoBench   bool
	skipProxy     bool
	skipProfile   bool
	skipCluster   bool
	skipHTTP      bool
	// only names the one part to run ("cluster" or "http"), whose
	// results are merged into the saved ones; "" runs everything.
	only           string
	leaseTTL       time.Duration
	failoverTrials int
	renderOnly     bool
	out            string
	resultsDir     string
}

func parseOptions() (options, error) {
	var o options
	var conc string
	flag.StringVar(&o.databaseURL, "database-url", envOr("STATEFUN_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"Postgres URL of a role that may create databases; the benchmark creates its own and drops them ($STATEFUN_BENCH_DATABASE_URL)")
	flag.IntVar(&o.carts, "carts", 10000, "number of carts the load spreads over")
	flag.Float64Var(&o.zipf, "zipf", 1.1, "exponent of the skewed popularity (cart k drawn with weight (k+1)^-s)")
	flag.StringVar(&conc, "concurrency", "1,16,64", "comma-separated concurrencies (requests in flight)")
	flag.DurationVar(&o.ramp, "ramp", 500*time.Millisecond, "unmeasured load before each cell's window")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured window of each cell")
	flag.IntVar(&o.conns, "conns", 4, "gRPC connections from the load generator to each system (fewer when the concurrency is lower)")
	flag.IntVar(&o.baselinePool, "baseline-pool", 16, "Postgres connections of the stateless baseline")
	flag.DurationVar(&o.proxyDelay, "proxy-delay", 500*time.Microsecond, "delay the proxy adds each way for the networked-database cells")
	flag.IntVar(&o.warmupWorkers, "warmup-workers", 64, "concurrency of the warm-up that touches every cart")
	flag.BoolVar(&o.skipGoBench, "skip-go-bench", false, "skip the runtime's Go benchmarks")
	flag.BoolVar(&o.skipProxy, "skip-proxy", false, "skip the cells with Postgres behind the delaying proxy")
	flag.BoolVar(&o.skipProfile, "skip-profile", false, "skip the CPU profile of the statefun server")
	flag.BoolVar(&o.skipCluster, "skip-cluster", false, "skip the cluster benchmarks")
	flag.BoolVar(&o.skipHTTP, "skip-http", false, "skip the HTTP/JSON cells")
	flag.StringVar(&o.only, "only", "", `run only this part and merge its results into the saved ones, then render: "cluster", "http" or "go" (the runtime's Go benchmarks)`)
	flag.DurationVar(&o.leaseTTL, "lease-ttl", 5*time.Second, "--lease-ttl of the cluster nodes (the server's default is 5s)")
	flag.IntVar(&o.failoverTrials, "failover-trials", 5, "kill -9 trials of the cluster")
	flag.BoolVar(&o.renderOnly, "render-only", false, "measure nothing: render the report from the saved results")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "report to write")
	flag.StringVar(&o.resultsDir, "results", filepath.Join("bench", "results"), "directory for results.json, the chart and the profile")
	flag.Parse()
	for _, f := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-concurrency %q: want positive integers separated by commas", conc)
		}
		o.concurrencies = append(o.concurrencies, n)
	}
	if o.only != "" && o.only != "cluster" && o.only != "http" && o.only != "go" {
		return o, fmt.Errorf(`-only %q: the parts that run alone are "cluster", "http" and "go"`, o.only)
	}
	if o.failoverTrials < 1 {
		return o, fmt.Errorf("-failover-trials %d: want at least 1", o.failoverTrials)
	}
	return o, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	o, err := parseOptions()
	if err != nil {
		log.Fatal(err)
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root (make bench does)")
	}
	resultsFile := filepath.Join(o.resultsDir, "results.json")
	if o.renderOnly {
		res, err := readResults(resultsFile)
		if err != nil {
			return err
		}
		return write(o, res)
	}

	// Interrupting stops the measurement; cleanup still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench(ctx, o)
	if err != nil {
		return err
	}
	res, runErr := b.run(ctx)
	// After a failure the servers' logs are kept for a look; after an
	// interrupt nothing is.
	if err := b.cleanup(runErr != nil && ctx.Err() == nil); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	if o.only != "" {
		saved, err := readResults(resultsFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			log.Printf("no saved results in %s: the report will hold the %s part alone", resultsFile, o.only)
		case err != nil:
			return err
		default:
			res = merge(saved, res, o.only)
			log.Printf("merged the %s part into the results saved in %s", o.only, resultsFile)
		}
	}
	if err := os.MkdirAll(o.resultsDir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(resultsFile, append(data, '\n'), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s", resultsFile)
	return write(o, res)
}

func readResults(file string) (*report.Results, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read saved results: %w", err)
	}
	var res report.Results
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("decode %s: %w", file, err)
	}
	return &res, nil
}

// merge puts one part of a run ("cluster", "http" or "go") into saved results:
// its results, and its command lines, each replacing the saved line for
// the same purpose. The rest of the saved run stays as it was measured.
func merge(saved, part *report.Results, only string) *report.Results {
	switch only {
	case "cluster":
		saved.Cluster = part.Cluster
	case "http":
		saved.HTTP = part.HTTP
	case "go":
		saved.GoBench, saved.GoBenchStarted = part.GoBench, part.GoBenchStarted
	}
	for _, c := range part.Commands {
		i := slices.IndexFunc(saved.Commands, func(s report.Command) bool { return s.What == c.What })
		if i < 0 {
			saved.Commands = append(saved.Commands, c)
			continue
		}
		saved.Commands[i] = c
	}
	return saved
}

// write renders the report and the chart next to each other's expected
// places: the report links the chart by a path relative to itself.
func write(o options, res *report.Results) error {
	// The scale run (make bench-scale) is saved apart, so that a run of
	// this command never erases it.
	scale, err := report.ReadScale(filepath.Join(o.resultsDir, "scale.json"))
	if err != nil {
		return err
	}
	res.Scale = scale
	chart := filepath.Join(o.resultsDir, "throughput.svg")
	if err := os.WriteFile(chart, []byte(report.Chart(res)), 0o644); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(o.out), chart)
	if err != nil {
		return err
	}
	md, err := report.Markdown(res, filepath.ToSlash(rel))
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s and %s", o.out, chart)
	return nil
}
