package report_test

import (
	"encoding/xml"
	"errors"
	"io"
	"slices"
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

// withHTTP adds HTTP/JSON results at concurrency 64, every cell at 10,000
// req/s, so that a server's µs per call is 100 times its cores. Over gRPC
// statefun's server costs 80 µs per write and 45 per read against no-op
// gRPC's 40 and 35: excesses of 40 and 10. Over Connect JSON the no-op
// Connect server costs 50 µs per write and 40 per read over HTTP/1.1, 45 and
// 38 over h2c; statefun's HTTP/1.1 costs are the arguments (in cores), its
// h2c costs 80 µs per write (+35) and 46 per read (+8), within the target.
// Without h2c, the h2c cells are missing and reported unavailable.
func withHTTP(r *report.Results, writeHTTP1, readHTTP1 float64, h2c bool) *report.Results {
	cores := map[string]map[string][2]float64{ // protocol, system: write and read cores
		report.GRPC:      {report.Noop: {0.4, 0.35}, report.StatefunPostgres: {0.8, 0.45}},
		report.JSONHTTP1: {report.NoopConnect: {0.5, 0.4}, report.StatefunPostgres: {writeHTTP1, readHTTP1}},
		report.JSONH2C:   {report.NoopConnect: {0.45, 0.38}, report.StatefunPostgres: {0.8, 0.46}},
	}
	r.HTTP = &report.HTTPRun{Started: r.Started, Revision: "abc", Conns: 4}
	if !h2c {
		delete(cores, report.JSONH2C)
		r.HTTP.Unavailable = []report.Unavailable{{System: report.StatefunPostgres, Protocol: report.JSONH2C, Reason: "The server answered over HTTP/1.1."}}
	}
	for _, p := range []string{report.GRPC, report.JSONHTTP1, report.JSONH2C} {
		for s, wr := range cores[p] {
			for i, wl := range []string{report.Write, report.Read} {
				r.HTTP.Cells = append(r.HTTP.Cells, report.Cell{System: s, Protocol: p, Workload: wl, Popularity: report.Uniform, Concurrency: 64,
					Load: load.Result{Requests: 30000, Throughput: 10000, All: load.Latency{P50: 2e6, P99: 8e6}},
					CPU:  report.CPU{Server: wr[i], Load: 0.5, SoftIRQ: 0.05, Machine: wr[i] + 0.55}})
			}
		}
	}
	return r
}

const (
	httpWriteGoal = "HTTP/JSON: statefun's server CPU per write over Connect JSON beyond the no-op Connect server's per call, " +
		"against its excess over gRPC beyond no-op gRPC's (concurrency 64)"
	httpReadGoal = "HTTP/JSON: statefun's server CPU per read over Connect JSON beyond the no-op Connect server's per call, " +
		"against its excess over gRPC beyond no-op gRPC's (concurrency 64)"
)

func TestHTTPTargets(t *testing.T) {
	t.Parallel()
	type want struct{ status, got string }
	for _, c := range []struct {
		name                  string
		writeHTTP1, readHTTP1 float64
		h2c                   bool
		write, read           want
	}{
		{
			name: "writes beyond over HTTP/1.1, reads within", writeHTTP1: 1.0, readHTTP1: 0.49, h2c: true,
			write: want{"**not met**", "HTTP/1.1 +50 µs (100 vs 50), h2c +35 µs (80 vs 45); gRPC +40 µs (80 vs 40)"},
			read:  want{"**met**", "HTTP/1.1 +9 µs (49 vs 40), h2c +8 µs (46 vs 38); gRPC +10 µs (45 vs 35)"},
		},
		{
			name: "writes within, reads beyond over HTTP/1.1", writeHTTP1: 0.85, readHTTP1: 0.6, h2c: true,
			write: want{"**met**", "HTTP/1.1 +35 µs (85 vs 50), h2c +35 µs (80 vs 45); gRPC +40 µs (80 vs 40)"},
			read:  want{"**not met**", "HTTP/1.1 +20 µs (60 vs 40), h2c +8 µs (46 vs 38); gRPC +10 µs (45 vs 35)"},
		},
		{
			name: "no h2c: judged on HTTP/1.1 alone", writeHTTP1: 0.85, readHTTP1: 0.6, h2c: false,
			write: want{"**met**", "HTTP/1.1 +35 µs (85 vs 50); gRPC +40 µs (80 vs 40)"},
			read:  want{"**not met**", "HTTP/1.1 +20 µs (60 vs 40); gRPC +10 µs (45 vs 35)"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := map[string]report.Target{}
			for _, tg := range report.Targets(withHTTP(sample(), c.writeHTTP1, c.readHTTP1, c.h2c)) {
				got[tg.Goal] = tg
			}
			for goal, want := range map[string]want{httpWriteGoal: c.write, httpReadGoal: c.read} {
				tg, ok := got[goal]
				if !ok {
					t.Errorf("no target %q", goal)
					continue
				}
				if tg.Status() != want.status || tg.Got != want.got {
					t.Errorf("%q: %s, %q; want %s, %q", goal, tg.Status(), tg.Got, want.status, want.got)
				}
			}
		})
	}
}

// TestHTTPTargetsNeedTheirCells: without the gRPC reference cells, or
// without any JSON cell, the targets are not judged; without the part,
// they are not listed.
func TestHTTPTargetsNeedTheirCells(t *testing.T) {
	t.Parallel()
	for name, drop := range map[string]func(report.Cell) bool{
		"no gRPC cells": func(c report.Cell) bool { return c.Protocol == report.GRPC },
		"no JSON cells": func(c report.Cell) bool { return c.Protocol != report.GRPC },
	} {
		r := withHTTP(sample(), 1.0, 0.49, true)
		r.HTTP.Cells = slices.DeleteFunc(r.HTTP.Cells, drop)
		for _, tg := range report.Targets(r) {
			if (tg.Goal == httpWriteGoal || tg.Goal == httpReadGoal) && tg.Status() != "n/a" {
				t.Errorf("%s: %q is %s (%q), want n/a", name, tg.Goal, tg.Status(), tg.Got)
			}
		}
	}
	for _, tg := range report.Targets(sample()) {
		if strings.HasPrefix(tg.Goal, "HTTP/JSON") {
			t.Errorf("target %q without HTTP/JSON results", tg.Goal)
		}
	}
}

func TestMarkdownHTTP(t *testing.T) {
	t.Parallel()
	md, err := report.Markdown(withHTTP(sample(), 1.0, 0.49, true), "bench/results/throughput.svg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"the HTTP/JSON targets of issue 13, explained under [HTTP/JSON](#httpjson)",
		"| " + httpWriteGoal + " | no more than over gRPC | HTTP/1.1 +50 µs (100 vs 50), h2c +35 µs (80 vs 45); gRPC +40 µs (80 vs 40) | **not met** |",
		"## HTTP/JSON", "Measured by the same run", "is measured apart, against a no-op Connect server: see [HTTP/JSON](#httpjson).",
		"| Workload | c | Protocol | System | req/s |",
		"| Writes | 64 | gRPC | no-op gRPC | 10,000 | 2.00 ms | 8.00 ms | 40 | 0 | 50 | 5 |",
		"| Writes | 64 | Connect JSON, HTTP/1.1 | no-op Connect | 10,000 | 2.00 ms | 8.00 ms | 50 | 0 | 50 | 5 |",
		"| Writes | 64 | Connect JSON, HTTP/1.1 | statefun, Postgres store | 10,000 | 2.00 ms | 8.00 ms | 100 | 0 | 50 | 5 |",
		"| Reads | 64 | Connect JSON, HTTP/2 (h2c) | statefun, Postgres store | 10,000 |",
		"### Server CPU per call beyond the no-op servers",
		"| Writes | gRPC | 80 | 40 | +40 | the allowance |",
		"| Writes | Connect JSON, HTTP/1.1 | 100 | 50 | +50 | **10 µs beyond** |",
		"| Writes | Connect JSON, HTTP/2 (h2c) | 80 | 45 | +35 | within |",
		"**JSON writes miss the target by 10 µs of server CPU per write.** Over Connect JSON, HTTP/1.1 a write costs the statefun server 100 µs, 50 more than no-op Connect's 50",
		"**JSON reads are within the target.** The largest excess over JSON, HTTP/1.1's 9 µs, is no more than gRPC's 10 µs",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(md, "Not measured") {
		t.Error("the report says a protocol was not measured; every one was")
	}

	md, err = report.Markdown(withHTTP(sample(), 0.85, 0.6, false), "bench/results/throughput.svg")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"**Not measured: statefun, Postgres store over Connect JSON, HTTP/2 (h2c).** The server answered over HTTP/1.1.",
		"**JSON writes are within the target.**", "**JSON reads miss the target by 10 µs of server CPU per read.**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report without h2c lacks %q", want)
		}
	}
	if strings.Contains(md, "HTTP/2 (h2c) | statefun") {
		t.Error("the report without h2c has an h2c row")
	}
}
