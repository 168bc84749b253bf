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

// The systems of the cluster benchmarks: the shopping cart server on
// Postgres as one node, and as a cluster of three on one database, which
// the load reaches in two ways: each call sent to the node that owns its
// cart (nothing forwarded), or spread round-robin over the nodes (two
// calls in three forwarded).
const (
	OneNode           = "statefun-1-node"
	ThreeNodesToOwner = "statefun-3-nodes-to-owner"
	ThreeNodes        = "statefun-3-nodes"
)

// ClusterSystems lists them in display order.
var ClusterSystems = []string{OneNode, ThreeNodesToOwner, ThreeNodes}

// NoopConnect is the floor of the HTTP/JSON cells: the shopping cart's API
// served by connect-go handlers that return at once.
const NoopConnect = "noop-connect"

// The protocols of the HTTP/JSON part's cells: Connect unary JSON over
// HTTP/1.1 and over HTTP/2 without TLS (h2c), and gRPC for reference.
const (
	GRPC      = "grpc"
	JSONHTTP1 = "json-http1"
	JSONH2C   = "json-h2c"
)

// HTTPProtocols lists the HTTP/JSON protocols in display order.
var HTTPProtocols = []string{JSONHTTP1, JSONH2C}

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
	// GoBenchStarted is when the Go benchmarks started: within the run,
	// or later when they ran alone (-only go) and were merged in.
	GoBenchStarted time.Time `json:"go_benchmarks_started,omitzero"`
	// Cluster is the cluster benchmarks, which may come from a run of
	// their own (go run ./bench -only cluster) merged into these results.
	Cluster *ClusterRun `json:"cluster,omitempty"`
	// HTTP is the HTTP/JSON cells, which may come from a run of their own
	// (go run ./bench -only http) merged into these results.
	HTTP *HTTPRun `json:"http,omitempty"`
	// Scale is the scale run (bench/cmd/scaleload), saved in a file of
	// its own (scale.json) and attached before rendering.
	Scale *Scale `json:"-"`
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
	// Protocol is how the load reached the system in the HTTP/JSON part
	// (GRPC, JSONHTTP1 or JSONH2C); "" elsewhere, where it is gRPC.
	Protocol string `json:"protocol,omitempty"`
	// ProxyDelay is the delay added each way between the system and
	// Postgres; 0 when it talks to Postgres directly.
	ProxyDelay time.Duration `json:"proxy_delay_ns"`
	Load       load.Result   `json:"load"`
	DB         *DBWork       `json:"db,omitempty"`
	CPU        CPU           `json:"cpu"`
	// Journal is what statefun's journal writer did in the window, from
	// the server's /metrics.
	Journal *Journal `json:"journal,omitempty"`
	// Cluster is what the nodes of a cluster did in the window, from
	// their /metrics (the cluster benchmarks only).
	Cluster *ClusterWork `json:"cluster,omitempty"`
}

// ClusterWork sums the cluster counters of a system's nodes over a window.
type ClusterWork struct {
	Nodes int `json:"nodes"`
	// Calls are the calls the nodes served (statefun_request_duration_seconds):
	// a forwarded call counts at both nodes.
	Calls int64 `json:"calls"`
	// Forwards counts calls sent on to the owner of their shard, retries
	// included; ForwardRetries the retries (the owner had moved).
	Forwards       int64 `json:"forwards"`
	ForwardRetries int64 `json:"forward_retries"`
	Renewals       int64 `json:"lease_renewals"`
	// RenewalFailures are heartbeats that failed (one statement each).
	RenewalFailures int64   `json:"lease_renewal_failures"`
	Acquired        int64   `json:"leases_acquired"`
	HandedOff       int64   `json:"handoffs"`
	HandoffSeconds  float64 `json:"handoff_seconds"`
}

// Minus is the work from b to w.
func (w ClusterWork) Minus(b ClusterWork) ClusterWork {
	return ClusterWork{
		Nodes: w.Nodes, Calls: w.Calls - b.Calls, Forwards: w.Forwards - b.Forwards, ForwardRetries: w.ForwardRetries - b.ForwardRetries,
		Renewals: w.Renewals - b.Renewals, RenewalFailures: w.RenewalFailures - b.RenewalFailures,
		Acquired: w.Acquired - b.Acquired, HandedOff: w.HandedOff - b.HandedOff, HandoffSeconds: w.HandoffSeconds - b.HandoffSeconds,
	}
}

// Forwarded is the number of requests forwarded once or more.
func (w *ClusterWork) Forwarded() int64 {
	if w == nil {
		return 0
	}
	return w.Forwards - w.ForwardRetries
}

// ForwardedShare is the share of the clients' requests that were
// forwarded, from counters read together: the windows of the load and of
// the counters differ by the time it takes to read them.
func (w *ClusterWork) ForwardedShare() float64 {
	if w == nil || w.Calls-w.Forwarded() <= 0 {
		return 0
	}
	return float64(w.Forwarded()) / float64(w.Calls-w.Forwarded())
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

// ClusterRun is what the cluster benchmarks measured. It says when it
// ran and how loaded the machine was, because it may have run apart from
// the rest of the results.
type ClusterRun struct {
	Started   time.Time     `json:"started"`
	WallTime  time.Duration `json:"wall_time_ns"`
	Revision  string        `json:"revision"`
	LoadStart string        `json:"load_average_start"`
	LoadEnd   string        `json:"load_average_end"`
	// Nodes is the size of the cluster; Shards and LeaseTTL are the
	// servers' (default) settings.
	Nodes    int           `json:"nodes"`
	Shards   int           `json:"shards"`
	LeaseTTL time.Duration `json:"lease_ttl_ns"`
	// Listing is the output of the server's cluster command once the
	// cluster had settled.
	Listing string `json:"listing"`
	// Cells are the same workloads on one node and on the cluster
	// (ClusterSystems).
	Cells    []Cell          `json:"cells"`
	Upkeep   []LeaseUpkeep   `json:"lease_upkeep"`
	Failover []FailoverTrial `json:"failover"`
	Rolling  *RollingRestart `json:"rolling_restart,omitempty"`
	// Problems are this part's failures that did not stop it.
	Problems []string `json:"problems,omitempty"`
}

// HTTPRun is what the HTTP/JSON cells measured: statefun (Postgres
// store) and the no-op Connect server called with Connect unary JSON over
// HTTP/1.1 and h2c, and, at the top concurrency, statefun and no-op gRPC
// over gRPC, measured with them for reference. It says when it ran and how
// loaded the machine was, because it may have run apart from the rest of
// the results.
type HTTPRun struct {
	Started   time.Time     `json:"started"`
	WallTime  time.Duration `json:"wall_time_ns"`
	Revision  string        `json:"revision"`
	LoadStart string        `json:"load_average_start"`
	LoadEnd   string        `json:"load_average_end"`
	// Conns is the number of connections (HTTP/2 and gRPC) or clients
	// (HTTP/1.1, each as many connections as it has requests in flight)
	// the load spread over.
	Conns int    `json:"conns"`
	Cells []Cell `json:"cells"`
	// Unavailable are the protocols a system could not be called with,
	// and why: their cells were not measured.
	Unavailable []Unavailable `json:"unavailable,omitempty"`
	// Problems are this part's failures that did not stop it.
	Problems []string `json:"problems,omitempty"`
}

// Unavailable is a protocol a system could not be called with.
type Unavailable struct {
	System   string `json:"system"`
	Protocol string `json:"protocol"`
	Reason   string `json:"reason"`
}

// LeaseUpkeep is the database work of an idle cluster: no requests, only
// the nodes' heartbeats, over Window.
type LeaseUpkeep struct {
	System string        `json:"system"`
	Nodes  int           `json:"nodes"`
	Shards int           `json:"shards"`
	Window time.Duration `json:"window_ns"`
	// Work is the nodes' own count, from their /metrics.
	Work ClusterWork `json:"work"`
	// Transactions are every transaction of the cluster's database
	// (pg_stat_database), less the benchmark's own reads of the counters.
	Transactions int64 `json:"transactions"`
	// Rows of the lease and node tables read (sequential and index
	// fetches) and updated, from pg_stat_user_tables.
	LeaseRowsRead    int64 `json:"lease_rows_read"`
	LeaseRowsUpdated int64 `json:"lease_rows_updated"`
	NodeRowsRead     int64 `json:"node_rows_read"`
	NodeRowsUpdated  int64 `json:"node_rows_updated"`
	// CPU seconds of the database's backends and of the nodes.
	PostgresCPU float64 `json:"postgres_cpu_seconds"`
	ServerCPU   float64 `json:"server_cpu_seconds"`
}

// FailoverTrial is one kill -9 of a node of a settled cluster.
type FailoverTrial struct {
	Node   string `json:"node"`   // the node killed
	Shards int    `json:"shards"` // the shards it held
	// LeaseLeft is how long the killed node's leases had to run when it
	// died: the TTL less the age of its last heartbeat.
	LeaseLeft time.Duration `json:"lease_left_ns"`
	// Owned is the time from the kill until the live nodes held every
	// shard; Served until the last probe answered: one call for an
	// entity of each of the killed node's shards, sent to the live nodes
	// right after the kill.
	Owned       time.Duration `json:"owned_ns"`
	Served      time.Duration `json:"served_ns"`
	Probes      int           `json:"probes"`
	ProbeErrors int           `json:"probe_errors"`
	// Rebalanced is the time from restarting the node until the shards
	// were spread evenly again.
	Rebalanced time.Duration `json:"rebalanced_ns"`
}

// RollingRestart is a cluster under load while each node in turn gets
// SIGTERM and is started again, with clients that retry on another node.
type RollingRestart struct {
	Workload    string `json:"workload"`
	Concurrency int    `json:"concurrency"`
	// Steady is the same load just before, with no restart.
	Steady load.Result   `json:"steady"`
	During load.Result   `json:"during"`
	Steps  []RestartStep `json:"steps"`
	CPU    CPU           `json:"cpu"`
	Work   *ClusterWork  `json:"work,omitempty"`
}

// RestartStep is one node's restart.
type RestartStep struct {
	Node string `json:"node"`
	// Stopped is SIGTERM to exit (the node hands its shards off first),
	// Serving the restart until it answers, Balanced until the shards
	// are spread evenly again.
	Stopped  time.Duration `json:"stopped_ns"`
	Serving  time.Duration `json:"serving_ns"`
	Balanced time.Duration `json:"balanced_ns"`
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
