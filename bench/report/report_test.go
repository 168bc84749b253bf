package report_test

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/pgproxy"
	"github.com/statefun-go/statefun/bench/report"
)

// sample returns results in which statefun is 6x the baseline and 70% of
// no-op gRPC for writes, and 12x and 95% for reads.
func sample() *report.Results {
	r := &report.Results{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Machine: report.Machine{CPU: "Test CPU", Cores: 2, Postgres: "PostgreSQL 15"},
		Settings: report.Settings{Carts: 10000, Zipf: 1.1, Concurrencies: []int{1, 64}, Duration: 3 * time.Second,
			ProxyDelay: 500 * time.Microsecond},
		GoBench: []report.GoBench{
			{Name: "BenchmarkCommands/postgres/10000-entities", Metrics: map[string]float64{"cmds/s": 25000}},
			{Name: "BenchmarkCommands/postgres/hot-entity", Metrics: map[string]float64{"cmds/s": 4000}},
			{Name: "BenchmarkCommandTracing/off", Metrics: map[string]float64{"ns/op": 10000, "allocs/op": 36, "B/op": 2300}},
			{Name: "BenchmarkCommandTracing/on-sampled-none", Metrics: map[string]float64{"ns/op": 12000, "allocs/op": 51, "B/op": 3900}},
			{Name: "BenchmarkCommandTracing/on-sampled-all", Metrics: map[string]float64{"ns/op": 33000, "allocs/op": 68, "B/op": 9000}},
		},
	}
	throughput := map[string]map[string]float64{
		report.Write: {report.Noop: 10000, report.Baseline: 1000, report.StatefunPostgres: 7000, report.StatefunEmbedded: 6000},
		report.Read:  {report.Noop: 10000, report.Baseline: 800, report.StatefunPostgres: 9500, report.StatefunEmbedded: 9600},
		report.Mix:   {report.Noop: 10000, report.Baseline: 900, report.StatefunPostgres: 9000, report.StatefunEmbedded: 9000},
	}
	for _, pop := range []string{report.Uniform, report.Zipf} {
		for _, wl := range report.Workloads {
			for _, c := range r.Settings.Concurrencies {
				for _, s := range report.Systems {
					cell := report.Cell{System: s, Workload: wl, Popularity: pop, Concurrency: c,
						Load: load.Result{Requests: 3000, Throughput: throughput[wl][s], All: load.Latency{P50: 1e6, P99: 3e6}}}
					if s == report.Baseline || s == report.StatefunPostgres {
						segs := map[string]int64{report.Baseline: 12000, report.StatefunPostgres: 100}[s]
						cell.DB = &report.DBWork{ClientSegments: segs}
					}
					r.Cells = append(r.Cells, cell)
				}
			}
		}
	}
	r.Cells = append(r.Cells, report.Cell{System: report.Baseline, Workload: report.Write, Popularity: report.Uniform, Concurrency: 64,
		ProxyDelay: 500 * time.Microsecond, Load: load.Result{Requests: 100, Throughput: 100},
		DB: &report.DBWork{ClientSegments: 400, Proxy: &pgproxy.Stats{RoundTrips: 400, Statements: 400, DelayedChunks: 800, DelayNanos: 800 * 520000}}})
	return r
}

func TestTargets(t *testing.T) {
	t.Parallel()
	got := map[string]string{}
	for _, tg := range report.Targets(sample()) {
		got[tg.Goal] = tg.Status()
	}
	for goal, want := range map[string]string{
		"Durable writes at concurrency 64, statefun on Postgres vs the stateless baseline":                            "**met**",
		"Durable writes at concurrency 64, statefun on Postgres vs no-op gRPC":                                        "**met**",
		"Reads at concurrency 64, statefun on Postgres vs the stateless baseline":                                     "**met**",
		"Reads at concurrency 64, statefun on Postgres vs no-op gRPC":                                                 "**met**",
		"p99 latency of reads at concurrency 64, statefun on Postgres vs no-op gRPC":                                  "**met**",
		"Round trips to Postgres per write at concurrency 64, baseline vs statefun":                                   "**met**",
		"In process: single-event commands from 64 callers on one hot entity, Postgres":                               "**not met**",
		"In process: heap per idle entity beyond its state, 1,000,000 entities":                                       "n/a",
		"In process: single-event commands from 64 callers over 10,000 entities, Postgres":                            "**met**",
		"Durable writes at concurrency 64, statefun on Postgres vs the stateless baseline (Zipf popularity, s = 1.1)": "**met**",
	} {
		if got[goal] != want {
			t.Errorf("%q: %q, want %q", goal, got[goal], want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	md, err := report.Markdown(sample(), "bench/results/throughput.svg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Benchmarks", "Test CPU, **2 cores, shared by the load generator", "![Throughput", "(bench/results/throughput.svg)",
		"| uniform | 64 | statefun, Postgres store | 7,000 |", "## With Postgres across a network", "500µs in each direction",
		"### Tracing overhead", "| off (the default: no provider, or the no-op one) | 10,000 | 36 | 2,300 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	t.Parallel()
	svg := report.Chart(sample())
	dec := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("not well-formed XML: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// 6 panels x 2 concurrencies x 4 systems, the proxied panel's 1 bar,
	// the background and 4 legend swatches.
	if want := 6*2*4 + 1 + 1 + 4; rects != want {
		t.Errorf("%d rects, want %d", rects, want)
	}
}

// withCluster adds cluster results in which a forwarded write costs 2x a
// local one (2.5x against one node), failover takes up to 7 s and the
// rolling restart failed nothing.
func withCluster(r *report.Results) *report.Results {
	cell := func(system, wl string, cores float64, forwarded int64, p99 int64) report.Cell {
		return report.Cell{System: system, Workload: wl, Popularity: report.Uniform, Concurrency: 64,
			Load: load.Result{Requests: 15000, Throughput: 5000, All: load.Latency{P50: 1e6, P99: p99}},
			CPU:  report.CPU{Server: cores}, Cluster: &report.ClusterWork{Calls: 15000 + forwarded, Forwards: forwarded}}
	}
	r.Cluster = &report.ClusterRun{
		Started: r.Started, Nodes: 3, Shards: 1024, LeaseTTL: 5 * time.Second,
		Cells: []report.Cell{
			cell(report.OneNode, report.Write, 0.5, 0, 10e6), cell(report.ThreeNodesToOwner, report.Write, 0.6, 0, 12e6), cell(report.ThreeNodes, report.Write, 1.0, 10000, 15e6),
			cell(report.OneNode, report.Read, 0.2, 0, 2e6), cell(report.ThreeNodesToOwner, report.Read, 0.2, 0, 2e6), cell(report.ThreeNodes, report.Read, 0.25, 10000, 5e6),
		},
		Upkeep: []report.LeaseUpkeep{{System: report.ThreeNodes, Nodes: 3, Shards: 1024, Window: 10 * time.Second,
			Work: report.ClusterWork{Renewals: 24}, Transactions: 172, LeaseRowsRead: 24 * 3072, LeaseRowsUpdated: 24 * 341}},
		Failover: []report.FailoverTrial{{Node: "n1", Served: 4 * time.Second}, {Node: "n2", Served: 5 * time.Second}, {Node: "n3", Served: 7 * time.Second}},
		Rolling:  &report.RollingRestart{Workload: report.Write, Concurrency: 16, During: load.Result{Requests: 7000, Retries: 700}},
	}
	return r
}

func TestClusterTargets(t *testing.T) {
	t.Parallel()
	got := map[string]report.Target{}
	for _, tg := range report.Targets(withCluster(sample())) {
		got[tg.Goal] = tg
	}
	for goal, want := range map[string]struct{ status, got string }{
		"Cluster: CPU of a forwarded write against a local one (3 nodes, concurrency 64)": {"**not met**",
			"2x (240 vs 120 µs of server CPU); 2.5x against one node's (250 vs 100 µs)"},
		"Cluster: CPU of a forwarded read against a local one (3 nodes, concurrency 64)": {"**met**",
			"1.4x (55 vs 40 µs of server CPU); 1.4x against one node's (55 vs 40 µs)"},
		"Cluster: p99 of writes, 3 nodes with 2 calls in 3 forwarded vs 1 node (concurrency 64)":                 {"**met**", "1.5x (15.0 ms vs 10.0 ms)"},
		"Cluster: p99 of reads, 3 nodes with 2 calls in 3 forwarded vs 1 node (concurrency 64)":                  {"**not met**", "2.5x (5.00 ms vs 2.00 ms)"},
		"Cluster: after kill -9 of a node, until every shard of it serves again (max of 3 trials; lease TTL 5s)": {"**not met**", "7.00 s max, 5.00 s p50"},
		"Cluster: failed requests during a rolling restart of the 3 nodes under load":                            {"**met**", "0 of 7,000 (700 retried on another node)"},
		"Cluster: lease upkeep on Postgres, idle 3-node cluster":                                                 {"reported", "2.40 statements/s per node, 0.0070 per shard (1024 shards)"},
	} {
		tg, ok := got[goal]
		if !ok {
			t.Errorf("no target %q", goal)
			continue
		}
		if tg.Status() != want.status || tg.Got != want.got {
			t.Errorf("%q: %s, %q; want %s, %q", goal, tg.Status(), tg.Got, want.status, want.got)
		}
	}
}

func TestMarkdownCluster(t *testing.T) {
	t.Parallel()
	md, err := report.Markdown(withCluster(sample()), "bench/results/throughput.svg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## Cluster", "### What a forwarded call costs", "| Writes | 64 | 120 | 120 | 240 | 2x | 100, 250, 2.5x | 1.5x (15.0 ms vs 10.0 ms) |",
		"**A forwarded write costs 2x a local one at concurrency 64, not 1.6x.**",
		"### Failover after kill -9", "5.00 s at the median and 7.00 s at most over 3 trials, **beyond** the target",
		"### Rolling restart under load", "No request failed", "### Lease upkeep", "| lease statements, all nodes | 240 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}
