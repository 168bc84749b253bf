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
