package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/report"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// bench is one run: its binaries, databases, processes and results.
type bench struct {
	o       options
	tmp     string // binaries, logs, the embedded store; removed at the end
	repo    string
	bins    map[string]string
	admin   *pgx.Conn
	dbHost  string
	dbPort  int
	started time.Time

	// databases are the ones this run created, by system.
	databases map[string]string

	mu       sync.Mutex
	procs    map[*process]struct{}
	seq      int
	res      *report.Results
	commands map[string]bool
	// problems is where problem records: the run's list, or the cluster
	// part's while it runs.
	problems *[]string
}

// The schemas the systems keep their tables in, inside their databases.
const (
	baselineSchema = "baseline"
	statefunSchema = "statefun"
)

func newBench(ctx context.Context, o options) (*bench, error) {
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "statefun-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{
		o: o, tmp: tmp, repo: repo, started: time.Now(),
		bins: map[string]string{}, databases: map[string]string{},
		procs: map[*process]struct{}{}, commands: map[string]bool{},
		res: &report.Results{Started: time.Now().UTC()},
	}
	b.problems = &b.res.Problems
	if err := b.setup(ctx); err != nil {
		return nil, errors.Join(err, b.cleanup(true))
	}
	return b, nil
}

func (b *bench) setup(ctx context.Context) error {
	// The machine's load before this run adds any.
	b.res.Machine = machine(ctx)
	cfg, err := pgx.ParseConfig(b.o.databaseURL)
	if err != nil {
		return fmt.Errorf("-database-url: %w", err)
	}
	b.dbHost, b.dbPort = cfg.Host, int(cfg.Port)
	b.admin, err = pgx.Connect(ctx, b.o.databaseURL)
	if err != nil {
		return fmt.Errorf("connect to Postgres (make bench starts the local cluster; else set -database-url): %w", err)
	}
	b.res.Machine.Postgres, b.res.Machine.PostgresConf = postgresInfo(ctx, b.admin)

	log.Printf("building the systems into %s", b.tmp)
	full := b.o.only == ""
	builds := map[string]string{"shoppingcart": "./examples/shoppingcart"}
	if full || b.httpOnly() {
		builds["noopserver"] = "./bench/cmd/noopserver"
	}
	if full {
		builds["baselineserver"] = "./bench/cmd/baselineserver"
		builds["pgproxy"] = "./bench/cmd/pgproxy"
	}
	if (full && !b.o.skipHTTP) || b.httpOnly() {
		builds["noopconnect"] = "./bench/cmd/noopconnect"
	}
	for name, pkg := range builds {
		bin := filepath.Join(b.tmp, name)
		if err := b.runCommand(ctx, "build "+name, "go", "build", "-o", bin, pkg); err != nil {
			return err
		}
		b.bins[name] = bin
	}
	if !b.o.skipProfile && full {
		if err := b.buildProfiled(ctx); err != nil {
			return err
		}
	}

	// A database per system that uses Postgres: its pg_stat_database row
	// then counts that system's work and nothing else's.
	var systems []string
	if full {
		systems = append(systems, report.Baseline)
	}
	if full || b.httpOnly() || b.o.only == "go" {
		// The Go benchmarks' schemas go into this database too.
		systems = append(systems, report.StatefunPostgres)
	}
	if (full && !b.o.skipCluster) || b.clusterOnly() {
		systems = append(systems, report.OneNode, report.ThreeNodes)
	}
	for _, sys := range systems {
		name := fmt.Sprintf("statefun_bench_%d_%s", os.Getpid(), strings.ReplaceAll(sys, "-", "_"))
		if _, err := b.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s (the -database-url role must be allowed to): %w", name, err)
		}
		b.databases[sys] = name
	}
	if _, ok := b.databases[report.Baseline]; ok {
		if err := b.runCommand(ctx, "create the baseline's table", b.bins["baselineserver"], "migrate",
			"--database-url", b.dbURL(report.Baseline, ""), "--database-schema", baselineSchema); err != nil {
			return err
		}
	}
	// Migrating before the server starts keeps the catalog writes of
	// CREATE TABLE out of the first workload's database counters.
	for _, sys := range []string{report.StatefunPostgres, report.OneNode, report.ThreeNodes} {
		if _, ok := b.databases[sys]; !ok {
			continue
		}
		what := "create statefun's tables"
		if sys != report.StatefunPostgres {
			what += " for " + sys
		}
		if err := b.runCommand(ctx, what, b.bins["shoppingcart"], "migrate",
			"--database-url", b.dbURL(sys, ""), "--database-schema", statefunSchema, "--log-level", "warn"); err != nil {
			return err
		}
	}
	return nil
}

// clusterOnly says whether this run measures the cluster and nothing else.
func (b *bench) clusterOnly() bool { return b.o.only == "cluster" }

// httpOnly says whether this run measures the HTTP/JSON cells and nothing
// else.
func (b *bench) httpOnly() bool { return b.o.only == "http" }

// dbURL is the URL of a system's database, through hostPort when it is
// not empty (the proxy).
func (b *bench) dbURL(system, hostPort string) string {
	u, err := url.Parse(b.o.databaseURL)
	if err != nil {
		panic(err) // parsed by pgx.ParseConfig already
	}
	u.Path = "/" + b.databases[system]
	if hostPort != "" {
		u.Host = hostPort
	}
	q := u.Query()
	q.Set("sslmode", "disable") // the proxy follows the protocol in clear
	u.RawQuery = q.Encode()
	return u.String()
}

// run measures everything and returns the results.
func (b *bench) run(ctx context.Context) (*report.Results, error) {
	o := b.o
	b.res.Settings = report.Settings{
		Carts: o.carts, Zipf: o.zipf, Concurrencies: o.concurrencies, Ramp: o.ramp, Duration: o.duration,
		ClientConns: o.conns, BaselinePool: o.baselinePool, ProxyDelay: o.proxyDelay, WarmupWorkers: o.warmupWorkers,
	}
	if b.o.only != "" {
		part := map[string]func(context.Context) error{"cluster": b.runCluster, "http": b.runHTTP, "go": func(ctx context.Context) error {
			b.runGoBenchmarks(ctx)
			return nil
		}}[b.o.only]
		if err := part(ctx); err != nil {
			return nil, err
		}
		b.res.Machine.LoadEnd = loadAverage()
		b.res.WallTime = time.Since(b.started).Round(time.Second)
		return b.res, ctx.Err()
	}
	for _, wl := range report.Workloads {
		if err := b.runWorkload(ctx, wl); err != nil {
			return nil, err
		}
	}
	if !o.skipProxy {
		if err := b.runProxied(ctx); err != nil {
			return nil, err
		}
	}
	if !o.skipProfile {
		if err := b.runProfile(ctx); err != nil {
			return nil, err
		}
	}
	if !o.skipHTTP {
		if err := b.runHTTP(ctx); err != nil {
			return nil, err
		}
	}
	if !o.skipCluster {
		if err := b.runCluster(ctx); err != nil {
			return nil, err
		}
	}
	if !o.skipGoBench {
		b.runGoBenchmarks(ctx)
	}
	b.res.Machine.LoadEnd = loadAverage()
	b.res.WallTime = time.Since(b.started).Round(time.Second)
	return b.res, ctx.Err()
}

// runWorkload starts a fresh process of every system, warms each up, then
// measures every popularity and concurrency, interleaving the systems.
func (b *bench) runWorkload(ctx context.Context, wl string) error {
	log.Printf("workload %s: starting the systems", wl)
	var systems []*system
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	// The DB-backed systems go first, so that the others' warm-ups pass
	// part of the wait for the database counters to settle.
	for _, name := range []string{report.Baseline, report.StatefunPostgres, report.Noop, report.StatefunEmbedded} {
		s, err := b.startSystemWith(ctx, name, startOptions{})
		if err != nil {
			return err
		}
		systems = append(systems, s)
		if err := b.warm(ctx, s, wl == report.Write); err != nil {
			return err
		}
	}
	if err := b.settleDB(ctx, systems); err != nil {
		return err
	}
	byName := map[string]*system{}
	for _, s := range systems {
		byName[s.name] = s
	}
	readFraction := map[string]float64{report.Write: 0, report.Read: 1, report.Mix: 0.9}[wl]
	for _, pop := range []string{report.Uniform, report.Zipf} {
		for _, c := range b.o.concurrencies {
			for _, name := range report.Systems {
				if err := b.cell(ctx, byName[name], wl, pop, c, readFraction); err != nil {
					return err
				}
			}
		}
	}
	for _, s := range systems {
		if err := b.stopSystem(ctx, s, wl); err != nil {
			return err
		}
	}
	return nil
}

// statsIdleFlush is how long an idle Postgres backend may keep its
// statistics before reporting them (PGSTAT_IDLE_INTERVAL, 10 s), plus a
// margin. Backends that are busy report at most once a second, so
// pg_stat_database is only exact once every backend has been idle this
// long, or has exited.
const statsIdleFlush = 11 * time.Second

// settleDB waits until the warm-up's database work has reached
// pg_stat_database, then records each DB-backed system's counters as the
// starting point of its workload. From here until the process exits, the
// system serves only measured cells (ramps included).
func (b *bench) settleDB(ctx context.Context, systems []*system) error {
	var last time.Time
	for _, s := range systems {
		if s.db != "" && s.warmedAt.After(last) {
			last = s.warmedAt
		}
	}
	if last.IsZero() {
		return nil
	}
	if wait := time.Until(last.Add(statsIdleFlush)); wait > 0 {
		log.Printf("  waiting %v for Postgres to report the warm-up's statistics", wait.Round(100*time.Millisecond))
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
	}
	for _, s := range systems {
		if s.db == "" {
			continue
		}
		before, err := readDBCounters(ctx, b.admin, s.db)
		if err != nil {
			return err
		}
		s.before, s.sent, s.writes = before, 0, 0
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runProxied repeats the write workload (uniform carts) with each
// DB-backed system reaching Postgres through its own delaying proxy, and
// the read workload, where a networked database is what a stateless
// service pays per read.
func (b *bench) runProxied(ctx context.Context) error {
	log.Printf("writes and reads with %v added each way between the systems and Postgres", b.o.proxyDelay)
	var systems []*system
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	for _, name := range []string{report.Baseline, report.StatefunPostgres} {
		s, err := b.startSystemWith(ctx, name, startOptions{proxied: true})
		if err != nil {
			return err
		}
		systems = append(systems, s)
		// Carts exist from the write workload; reading each loads it.
		if err := b.warm(ctx, s, false); err != nil {
			return err
		}
	}
	for _, wl := range []string{report.Write, report.Read} {
		for _, c := range b.o.concurrencies {
			for _, s := range systems {
				if err := b.cell(ctx, s, wl, report.Uniform, c, map[string]float64{report.Write: 0, report.Read: 1}[wl]); err != nil {
					return err
				}
			}
		}
	}
	for _, s := range systems {
		// The proxy counts each cell exactly; no database totals needed.
		if err := b.stopSystem(ctx, s, ""); err != nil {
			return err
		}
	}
	return nil
}

// warm sends one request to every cart.
func (b *bench) warm(ctx context.Context, s *system, write bool) error {
	start := time.Now()
	n, err := load.Visit(ctx, s.clients, b.o.carts, b.o.warmupWorkers, write)
	s.sent += n
	if write {
		s.writes += n
	}
	if err != nil {
		return fmt.Errorf("%s: %w (%s)", s.name, err, s.logs())
	}
	s.warmedAt = time.Now()
	log.Printf("  %s warmed up: %d carts in %v", s.name, n, time.Since(start).Round(time.Millisecond))
	return nil
}

// cell measures one system at one workload, popularity and concurrency.
func (b *bench) cell(ctx context.Context, s *system, wl, pop string, c int, readFraction float64) error {
	cell, err := b.measure(ctx, s, wl, pop, c, readFraction)
	if err != nil {
		return err
	}
	b.res.Cells = append(b.res.Cells, cell)
	return nil
}

// measure measures one system at one workload, popularity and
// concurrency, and logs the result.
func (b *bench) measure(ctx context.Context, s *system, wl, pop string, c int, readFraction float64) (report.Cell, error) {
	cfg := load.Config{
		Clients: s.clientsFor(c), Concurrency: c, Carts: b.o.carts, ReadFraction: readFraction,
		Ramp: b.o.ramp, Duration: b.o.duration, Seed: uint64(c), Route: s.route,
	}
	if s.route != nil {
		cfg.Clients = s.clients
	}
	if pop == report.Zipf {
		cfg.Zipf = b.o.zipf
	}
	var first, last sample
	cfg.OnStart = func() { first = b.takeSample(ctx, s) }
	cfg.OnEnd = func() { last = b.takeSample(ctx, s) }
	res, err := load.Run(ctx, cfg)
	if err != nil {
		return report.Cell{}, fmt.Errorf("%s %s %s c=%d: %w", s.name, wl, pop, c, err)
	}
	s.sent += res.Sent
	s.writes += int64(float64(res.Sent) * (1 - readFraction))
	cell := report.Cell{
		System: s.name, Workload: wl, Popularity: pop, Concurrency: c, Protocol: s.protocol, ProxyDelay: s.delay,
		Load: res, CPU: cellCPU(first, last),
	}
	if s.db != "" {
		cell.DB = cellDB(first, last)
	}
	cell.Journal = cellJournal(first, last)
	if s.clustered {
		cell.Cluster = cellCluster(first, last)
	}
	name := s.name
	if s.protocol != "" {
		name += " " + s.protocol
	}
	line := fmt.Sprintf("  %-8s %-7s c=%-3d %-18s %8.0f req/s  p50 %7s  p99 %7s", wl, pop, c, name,
		res.Throughput, time.Duration(res.All.P50).Round(time.Microsecond), time.Duration(res.All.P99).Round(time.Microsecond))
	if cell.DB != nil && res.Requests > 0 {
		line += fmt.Sprintf("  %.2f segs/req", float64(cell.DB.ClientSegments)/float64(res.Requests))
		if cell.DB.Proxy != nil {
			line += fmt.Sprintf(" (%.2f round trips/req)", float64(cell.DB.Proxy.RoundTrips)/float64(res.Requests))
		}
	}
	if s.clustered {
		line += fmt.Sprintf("  %.0f%% forwarded", 100*cell.Cluster.ForwardedShare())
	}
	if res.Errors > 0 {
		line += fmt.Sprintf("  %d ERRORS: %s", res.Errors, res.FirstError)
		b.problem("%s %s %s c=%d: %d errors, the first: %s", s.name, wl, pop, c, res.Errors, res.FirstError)
	}
	log.Print(line)
	return cell, nil
}

// problem records a failure that does not stop the run.
func (b *bench) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Print("problem: ", msg)
	b.mu.Lock()
	*b.problems = append(*b.problems, msg)
	b.mu.Unlock()
}

// system is one running system under test: one server process, or the
// nodes of a cluster.
type system struct {
	name    string
	nodes   []*node
	proxy   *process
	delay   time.Duration
	conns   []*grpc.ClientConn
	clients []cartv1.ShoppingCartServiceClient
	// db is the system's database ("" for none); dbPort the port its
	// connections to Postgres go to (the proxy's, if any).
	db         string
	dbPort     int
	proxyStats string
	// clustered: a system of the cluster benchmarks, whose cells record
	// the nodes' cluster counters.
	clustered bool
	// route, if set, picks the client of each request (load.Config.Route).
	route func(cart, worker int) int
	// protocol is how clients reach the system in the HTTP/JSON part
	// (report.Cell.Protocol); "" elsewhere.
	protocol string
	// connectURL is the base URL of the system's Connect (HTTP/JSON)
	// endpoint, "" if it has none.
	connectURL string
	// Requests answered over the process's life (for its database
	// counters, which are read when it has exited).
	sent, writes int64
	before       dbCounters
	warmedAt     time.Time
}

// clientsFor returns the connections a load of concurrency c uses.
func (s *system) clientsFor(c int) []cartv1.ShoppingCartServiceClient {
	return s.clients[:min(c, len(s.clients))]
}

// logs names the log files of the system's processes.
func (s *system) logs() string {
	var paths []string
	for _, n := range s.nodes {
		paths = append(paths, n.proc.logPath)
	}
	return "log: " + strings.Join(paths, ", ")
}

// node is one server process of a system, with what it takes to start it
// again on the same addresses.
type node struct {
	name     string
	addr     string // gRPC
	httpAddr string // a statefun server's /metrics and /healthz; "" for others
	env      []string
	bin      string
	args     []string
	proc     *process
}

// metricsURL is a statefun server's Prometheus endpoint, "" for others.
func (n *node) metricsURL() string {
	if n.httpAddr == "" {
		return ""
	}
	return "http://" + n.httpAddr + "/metrics"
}

// startNode starts a node's process.
func (b *bench) startNode(n *node) error {
	p, err := b.start(n.name, n.env, n.bin, n.args...)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

func (s *system) close() {
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// startOptions vary how a system is started.
type startOptions struct {
	// proxied: reach Postgres through a delaying proxy of its own.
	proxied bool
	// pprof: serve net/http/pprof here (statefun: the profiling build).
	pprof string
}

// startSystemWith starts a system's process (and its proxy when proxied)
// and waits until it answers.
func (b *bench) startSystemWith(ctx context.Context, name string, so startOptions) (*system, error) {
	s := &system{name: name, db: b.databases[name], dbPort: b.dbPort}
	hostPort := ""
	if so.proxied {
		s.delay = b.o.proxyDelay
		listen, stats := freeAddr(), freeAddr()
		p, err := b.start("pgproxy-"+name, nil, b.bins["pgproxy"], "--listen", listen,
			"--upstream", net.JoinHostPort(b.dbHost, strconv.Itoa(b.dbPort)), "--delay", b.o.proxyDelay.String(), "--stats-listen", stats)
		if err != nil {
			return nil, err
		}
		s.proxy, s.proxyStats, hostPort = p, "http://"+stats+"/stats", listen
		if err := waitFor(ctx, func() error { _, err := proxyStats(ctx, s.proxyStats); return err }); err != nil {
			return nil, fmt.Errorf("the proxy did not start: %w (log: %s)", err, p.logPath)
		}
		_, port, _ := net.SplitHostPort(listen)
		s.dbPort, _ = strconv.Atoi(port)
	}
	addr := freeAddr()
	var args []string
	var bin, httpAddr string
	switch name {
	case report.Noop:
		bin, args = b.bins["noopserver"], []string{"--listen", addr}
		if so.pprof != "" {
			args = append(args, "--pprof-listen", so.pprof)
		}
	case report.Baseline:
		bin, args = b.bins["baselineserver"], []string{"serve", "--listen", addr, "--database-url", b.dbURL(name, hostPort),
			"--database-schema", baselineSchema, "--pool-size", strconv.Itoa(b.o.baselinePool)}
	case report.StatefunPostgres, report.StatefunEmbedded:
		// The HTTP listener serves /metrics, read at the edges of each
		// window for the journal's counters; it is idle in between.
		httpAddr = freeAddr()
		s.connectURL = "http://" + httpAddr
		bin, args = b.bins["shoppingcart"], []string{"serve", "--listen", addr, "--http-listen", httpAddr}
		if name == report.StatefunPostgres {
			args = append(args, "--database-url", b.dbURL(name, hostPort), "--database-schema", statefunSchema)
		} else {
			args = append(args, "--data-dir", filepath.Join(b.tmp, "embedded"))
		}
		args = append(args, "--log-level", "warn")
	}
	var env []string
	procName := name
	if so.pprof != "" {
		procName = name + "-profiled"
		if name == report.StatefunPostgres {
			bin, env = b.bins["shoppingcart-pprof"], []string{"STATEFUN_BENCH_PPROF=" + so.pprof}
		}
	}
	n := &node{name: procName, addr: addr, httpAddr: httpAddr, env: env, bin: bin, args: args}
	if err := b.startNode(n); err != nil {
		return nil, err
	}
	s.nodes = []*node{n}
	for range min(b.o.conns, 64) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, conn)
		s.clients = append(s.clients, cartv1.NewShoppingCartServiceClient(conn))
	}
	err := waitFor(ctx, func() error {
		if n.proc.done() {
			return fmt.Errorf("%s exited at start", name)
		}
		_, err := s.clients[0].GetCart(ctx, &cartv1.GetCartRequest{CartId: "ready"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s did not start: %w (log: %s)", name, err, n.proc.logPath)
	}
	return s, nil
}

// stopSystem stops a system's processes and, for a DB-backed one serving
// workload wl, records its database counters (wl "" records nothing).
func (b *bench) stopSystem(ctx context.Context, s *system, wl string) error {
	s.close()
	for _, n := range s.nodes {
		if err := n.proc.stop(); err != nil {
			b.problem("%s did not stop cleanly: %v", n.name, err)
		}
	}
	if s.proxy != nil {
		if err := s.proxy.stop(); err != nil {
			b.problem("the proxy of %s did not stop cleanly: %v", s.name, err)
		}
	}
	if s.db == "" || wl == "" {
		return nil
	}
	after, err := settledDBCounters(ctx, b.admin, s.db)
	if err != nil {
		return err
	}
	d := after.minus(s.before)
	b.res.Groups = append(b.res.Groups, report.Group{
		System: s.name, Workload: wl, ProxyDelay: s.delay, Requests: s.sent, Writes: s.writes,
		XactCommit: d.xactCommit, XactRollback: d.xactRollback, TupInserted: d.tupInserted, TupUpdated: d.tupUpdated,
		TupDeleted: d.tupDeleted, TupFetched: d.tupFetched, TupReturned: d.tupReturned, BlksHit: d.blksHit, BlksRead: d.blksRead,
	})
	return nil
}

// cleanup stops every process still running, drops the databases and
// removes the temporary directory, or only its embedded store when
// keepLogs is set.
func (b *bench) cleanup(keepLogs bool) error {
	var errs []error
	b.mu.Lock()
	procs := make([]*process, 0, len(b.procs))
	for p := range b.procs {
		procs = append(procs, p)
	}
	b.mu.Unlock()
	for _, p := range procs {
		if err := p.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", p.name, err))
		}
	}
	if b.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, db := range b.databases {
			if _, err := b.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Errorf("drop database %s: %w", db, err))
			}
		}
		_ = b.admin.Close(ctx)
	}
	if keepLogs {
		_ = os.RemoveAll(filepath.Join(b.tmp, "embedded"))
		log.Printf("the servers' logs are in %s", b.tmp)
	} else if err := os.RemoveAll(b.tmp); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runCommand runs a command to completion, recording it.
func (b *bench) runCommand(ctx context.Context, what, name string, args ...string) error {
	_, err := b.commandOutput(ctx, what, name, args...)
	return err
}

// commandOutput runs a command to completion, recording it, and returns
// its output.
func (b *bench) commandOutput(ctx context.Context, what, name string, args ...string) (string, error) {
	b.record(what, name, args)
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %s %s: %w\n%s", what, name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// record keeps a command line for the report, once per purpose. The
// temporary directory and the process-specific database names read as
// placeholders, so that the report is the same from run to run.
func (b *bench) record(what, name string, args []string) {
	line := strings.Join(append([]string{name}, args...), " ")
	line = strings.ReplaceAll(line, b.tmp, "$TMP")
	for _, db := range b.databases {
		line = strings.ReplaceAll(line, db, strings.Replace(db, strconv.Itoa(os.Getpid()), "$PID", 1))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.commands[what] {
		return
	}
	b.commands[what] = true
	b.res.Commands = append(b.res.Commands, report.Command{What: what, Line: line})
}

// freeAddr returns a loopback address with a port free at the time of
// asking. Another process could take it before it is used; on a machine
// running a benchmark that is unlikely enough.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor retries f until it succeeds, for 30 s.
func waitFor(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
