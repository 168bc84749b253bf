// Package report holds what a benchmark run measured (Results, saved as
// JSON) and renders it: BENCHMARKS.md and an SVG chart. Rendering reads
// only Results, so a report can be regenerated from a saved run without
// measuring again (go run ./bench -render-only).
package report

import (
	"time"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/pgproxy"
)

// The systems measured, in the order they are shown.
const (
	Noop             = "noop"
	Baseline         = "baseline"
	StatefunPostgres = "statefun-postgres"
	StatefunEmbedded = "statefun-embedded"
)

// Systems lists the systems in display order.
var Systems = []string{Noop, Baseline, StatefunPostgres, StatefunEmbedded}

// The workloads, by their share of reads.
const (
	Write = "write" // AddItem only
	Read  = "read"  // GetCart only
	Mix   = "mix"   // 90% GetCart, 10% AddItem
)

// Workloads lists the workloads in display order.
var Workloads = []string{Write, Read, Mix}

// The cart popularities.
const (
	Uniform = "uniform"
	Zipf    = "zipf"
)

// Results is one run of the benchmark.
type Results struct {
	Started  time.Time     `json:"started"`
	WallTime time.Duration `json:"wall_time_ns"`
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	// Commands are the exact command lines run, in order of first use.
	Commands []Command `json:"commands"`
	Cells    []Cell    `json:"cells"`
	Groups   []Group   `json:"groups"`
	// Profiles are CPU profiles of servers under write load: statefun's
	// and, for comparison, no-op gRPC's.
	Profiles []Profile `json:"profiles,omitempty"`
	GoBench  []GoBench `json:"go_benchmarks"`
	// Problems are failures that did not stop the run (a Go benchmark
	// that did not build, a counter that could not be read).
	Problems []string `json:"problems,omitempty"`
}

// Machine describes where the run happened, read at run time.
type Machine struct {
	CPU          string            `json:"cpu"`
	Cores        int               `json:"cores"`
	MemoryBytes  int64             `json:"memory_bytes"`
	Kernel       string            `json:"kernel"`
	OS           string            `json:"os"`
	GoVersion    string            `json:"go_version"`
	Postgres     string            `json:"postgres"`
	PostgresConf map[string]string `json:"postgres_settings"`
	Revision     string            `json:"revision"`
	LoadStart    string            `json:"load_average_start"`
	LoadEnd      string            `json:"load_average_end"`
}

// Settings are the benchmark's parameters.
type Settings struct {
	Carts         int           `json:"carts"`
	Zipf          float64       `json:"zipf_s"`
	Concurrencies []int         `json:"concurrencies"`
	Ramp          time.Duration `json:"ramp_ns"`
	Duration      time.Duration `json:"duration_ns"`
	ClientConns   int           `json:"client_conns"`
	BaselinePool  int           `json:"baseline_pool"`
	ProxyDelay    time.Duration `json:"proxy_delay_ns"`
	WarmupWorkers int           `json:"warmup_workers"`
}

// Command is one command line the run executed.
type Command struct {
	What string `json:"what"`
	Line string `json:"line"`
}

// Cell is one measurement: a system under one workload, popularity and
// concurrency.
type Cell struct {
	System      string `json:"system"`
	Workload    string `json:"workload"`
	Popularity  string `json:"popularity"`
	Concurrency int    `json:"concurrency"`
	// ProxyDelay is the delay added each way between the system and
	// Postgres; 0 when it talks to Postgres directly.
	ProxyDelay time.Duration `json:"proxy_delay_ns"`
	Load       load.Result   `json:"load"`
	DB         *DBWork       `json:"db,omitempty"`
	CPU        CPU           `json:"cpu"`
	// Journal is what statefun's journal writer did in the window, from
	// the server's /metrics.
	Journal *Journal `json:"journal,omitempty"`
}

// Journal counts the group commits of a statefun server.
type Journal struct {
	Batches       int64   `json:"batches"`        // store transactions (group commits)
	Records       int64   `json:"records"`        // events written
	CommitSeconds float64 `json:"commit_seconds"` // time spent inside commits
	Loads         int64   `json:"loads"`          // entities loaded from the store
}

// DBWork is the traffic between a system and Postgres during a cell's
// measured window.
type DBWork struct {
	// From the kernel's counters of the system's TCP connections to
	// Postgres (ss -ti): each data segment the client sends starts a round
	// trip, because the client writes each request (a statement, or a
	// pipeline ending in Sync) in one write, and on loopback one write is
	// one segment.
	Connections    int   `json:"connections"`
	ClientSegments int64 `json:"client_segments"`
	ServerSegments int64 `json:"server_segments"`
	ClientBytes    int64 `json:"client_bytes"`
	ServerBytes    int64 `json:"server_bytes"`
	// Proxy holds the proxy's exact counts when the system talked to
	// Postgres through it.
	Proxy *pgproxy.Stats `json:"proxy,omitempty"`
}

// CPU is the processor time used during a cell's window, in cores (CPU
// seconds per second).
type CPU struct {
	Server   float64 `json:"server"`
	Postgres float64 `json:"postgres"`
	Load     float64 `json:"load_generator"`
	Proxy    float64 `json:"proxy"`
	// SoftIRQ is the kernel's packet processing (loopback TCP included),
	// which is charged to no process; Steal is time the hypervisor gave
	// to other guests.
	SoftIRQ float64 `json:"softirq"`
	Steal   float64 `json:"steal"`
	// Machine is all cores' busy time (from /proc/stat), the above
	// included; what it exceeds them by is other processes.
	Machine float64 `json:"machine"`
}

// Group is the database work of one system process, from pg_stat_database
// deltas of its own database taken before it started and after it
// exited (a backend's counters are flushed when it exits, so the deltas
// are exact). A process serves one workload: its warm-up and all its cells.
type Group struct {
	System     string        `json:"system"`
	Workload   string        `json:"workload"`
	ProxyDelay time.Duration `json:"proxy_delay_ns"`
	// Requests answered by the process, warm-up and ramps included.
	Requests     int64 `json:"requests"`
	Writes       int64 `json:"writes"`
	XactCommit   int64 `json:"xact_commit"`
	XactRollback int64 `json:"xact_rollback"`
	TupInserted  int64 `json:"tup_inserted"`
	TupUpdated   int64 `json:"tup_updated"`
	TupDeleted   int64 `json:"tup_deleted"`
	TupFetched   int64 `json:"tup_fetched"`
	TupReturned  int64 `json:"tup_returned"`
	BlksHit      int64 `json:"blks_hit"`
	BlksRead     int64 `json:"blks_read"`
}

// Profile is where a server spent its CPU during a profiled repeat of
// one cell.
type Profile struct {
	System     string        `json:"system"`
	Cell       string        `json:"cell"`
	Seconds    float64       `json:"seconds"` // wall time profiled
	CPUSeconds float64       `json:"cpu_seconds"`
	Throughput float64       `json:"throughput"`
	CPU        CPU           `json:"cpu"`
	Journal    *Journal      `json:"journal,omitempty"`
	File       string        `json:"file"`
	Components []Share       `json:"components"`
	Kinds      []Share       `json:"kinds"`
	TopFlat    []FuncProfile `json:"top_flat"`
	TopCum     []FuncProfile `json:"top_cum"`
}

// Share is part of a profile.
type Share struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Share   float64 `json:"share"`
}

// FuncProfile is one function's flat and cumulative time in a profile.
type FuncProfile struct {
	Name      string  `json:"name"`
	Flat      float64 `json:"flat_seconds"`
	FlatShare float64 `json:"flat_share"`
	Cum       float64 `json:"cum_seconds"`
	CumShare  float64 `json:"cum_share"`
}

// GoBench is one result line of the runtime's Go benchmarks.
type GoBench struct {
	Package    string             `json:"package"`
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"`
}
