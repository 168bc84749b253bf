// Command scaleload measures statefun with a million stored carts: `make
// bench-scale` runs it from the repository root, then renders
// BENCHMARKS.md. It
//
//  1. writes the data set into Postgres (package bench/scale): carts with
//     100 ItemAdded events each, every other one with a snapshot, in the
//     store's own schema, by COPY; a database that holds the data set
//     already is reused, and an interrupted load resumes;
//  2. builds the shopping cart server (go build ./examples/shoppingcart)
//     and runs it on that database with its default settings;
//  3. reads every cart once (GetCart, a closed loop of gRPC calls), timing
//     cold loads one at a time on a sample and at -concurrency on the
//     rest, and samples the server's RSS from /proc;
//  4. waits for the server to passivate every cart (its idle timeout),
//     then stops it;
//  5. measures, in this process, the heap of a cart's state and of a
//     runtime holding -in-process carts;
//
// and writes bench/results/scale.json, which `go run ./bench` renders
// into BENCHMARKS.md's "Memory and recovery at scale".
//
// Usage (from the repository root):
//
//	go run ./bench/cmd/scaleload                       # 1M carts: the load 18 minutes once (then reused), the measurement 31
//	go run ./bench/cmd/scaleload -entities 100000 -schema small   # a quicker look, in a schema of its own
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/statefun-go/statefun/bench/report"
	"github.com/statefun-go/statefun/bench/scale"
)

type options struct {
	databaseURL     string
	schema          string
	entities        int
	events          int
	streams         int
	reset           bool
	loadOnly        bool
	concurrency     int
	sample          int
	passivationWait time.Duration
	inProcess       int
	out             string
}

// serverIdleTimeout is the server's default passivation timeout
// (statefun.WithPassivation), which the shopping cart's annotation keeps.
const serverIdleTimeout = 10 * time.Minute

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("scaleload: ")
	var o options
	flag.StringVar(&o.databaseURL, "database-url", envOr("STATEFUN_SCALE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/statefun_scale?sslmode=disable"),
		"Postgres database for the data set, created if missing; it keeps the data set between runs ($STATEFUN_SCALE_DATABASE_URL)")
	flag.StringVar(&o.schema, "schema", "statefun", "store schema of the data set (the server's --database-schema)")
	flag.IntVar(&o.entities, "entities", 1_000_000, "carts to load and measure")
	flag.IntVar(&o.events, "events", 100, "ItemAdded events per cart")
	flag.IntVar(&o.streams, "streams", 2, "parallel COPY streams of the load")
	flag.BoolVar(&o.reset, "reset", false, "drop a data set of other parameters in -schema instead of refusing")
	flag.BoolVar(&o.loadOnly, "load-only", false, "load the data set and stop")
	flag.IntVar(&o.concurrency, "concurrency", 16, "calls in flight in the passes over every cart")
	flag.IntVar(&o.sample, "sample", 2000, "carts of each kind whose cold load is timed one call at a time")
	flag.DurationVar(&o.passivationWait, "passivation-wait", serverIdleTimeout*3/2, "how long to wait for the server to passivate every cart")
	flag.IntVar(&o.inProcess, "in-process", 100_000, "carts loaded into a runtime in this process for the MemStats figure (0 to skip)")
	flag.StringVar(&o.out, "out", filepath.Join("bench", "results", "scale.json"), "results file")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(o options) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root (make bench-scale does)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := createDatabase(ctx, o.databaseURL); err != nil {
		return err
	}
	d := scale.Dataset{Entities: o.entities, EventsPerEntity: o.events}
	loaded, err := scale.Load(ctx, o.databaseURL, d, scale.LoadOptions{Streams: o.streams, Reset: o.reset, Schema: o.schema, Logf: log.Printf})
	if err != nil {
		return fmt.Errorf("load the data set: %w", err)
	}
	if loaded.Reused {
		log.Printf("the database holds the data set already (loaded in %v)", loaded.Took.Round(time.Second))
	} else {
		log.Printf("data set loaded in %v", loaded.Took.Round(time.Second))
	}
	if o.loadOnly {
		return nil
	}

	tmp, err := os.MkdirTemp("", "statefun-scale-")
	if err != nil {
		return err
	}
	bin := filepath.Join(tmp, "shoppingcart")
	log.Printf("go build -o %s ./examples/shoppingcart", bin)
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/shoppingcart").CombinedOutput(); err != nil {
		return fmt.Errorf("build the server: %w\n%s", err, out)
	}

	res := &report.Scale{
		Started: time.Now().UTC(),
		Command: strings.TrimSpace("go run ./bench/cmd/scaleload " + strings.Join(os.Args[1:], " ")),
		Machine: machine(ctx, o.databaseURL),
		Dataset: report.ScaleDataset{
			Entities: o.entities, EventsPerEntity: o.events, SchemaVersion: loaded.SchemaVersion,
			Reused: loaded.Reused, LoadTime: loaded.Took, EventsBytes: loaded.EventsBytes, SnapshotsBytes: loaded.SnapshotsBytes,
		},
	}
	serverLog := filepath.Join(tmp, "server.log")
	err = scale.Run(ctx, scale.RunConfig{
		Server: bin, DatabaseURL: o.databaseURL, Schema: o.schema, Dataset: d,
		Concurrency: o.concurrency, Sample: o.sample, PassivationWait: o.passivationWait, IdleTimeout: serverIdleTimeout,
		LogFile: serverLog, Logf: log.Printf,
	}, res)
	if err != nil {
		return fmt.Errorf("%w (server log: %s)", err, serverLog)
	}
	res.Machine.LoadEnd = loadAverage()

	res.Memory.StateHeapBytes, res.Dataset.StateProtoBytes, res.Dataset.StateLines, err = scale.StateHeap(d)
	if err != nil {
		return err
	}
	if o.inProcess > 0 {
		log.Printf("in process: loading %d carts into a runtime here", o.inProcess)
		res.Memory.InProcess, err = scale.InProcess(ctx, o.databaseURL, o.schema, d, o.inProcess, o.concurrency)
		if err != nil {
			return err
		}
		log.Printf("in process: %.0f bytes of heap per cached cart", res.Memory.InProcess.HeapPerEntity)
	}
	res.WallTime = time.Since(res.Started).Round(time.Second)
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s; go run ./bench -render-only renders it into BENCHMARKS.md", o.out)
	_ = os.RemoveAll(tmp)
	return nil
}

// createDatabase creates the URL's database when it does not exist,
// through the server's maintenance database.
func createDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return err
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	log.Printf("creating database %s", name)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

func machine(ctx context.Context, url string) report.ScaleMachine {
	m := report.ScaleMachine{Cores: runtime.NumCPU(), CPU: cpuModel(), MemoryBytes: memTotal(), LoadStart: loadAverage()}
	if out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty", "--abbrev=12").Output(); err == nil {
		m.Revision = strings.TrimSpace(string(out))
	}
	if conn, err := pgx.Connect(ctx, url); err == nil {
		var v string
		if conn.QueryRow(ctx, "SHOW server_version").Scan(&v) == nil {
			m.Postgres = "PostgreSQL " + v
		}
		_ = conn.Close(ctx)
	}
	return m
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memTotal() int64 {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			var kib int64
			_, _ = fmt.Sscan(f[1], &kib)
			return kib << 10
		}
	}
	return 0
}

func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
