package report

import (
	"fmt"
	"slices"
	"strings"
)

// Target is one goal (of issue 5, or of the later issues that added the
// cluster and HTTP/JSON), judged on the results.
type Target struct {
	Goal string
	Want string
	Got  string
	// Met is nil when the run lacks the data to judge, or when the goal
	// asks only for a figure.
	Met *bool
	// Cells are the cells compared, if the target is judged on cells.
	Cells []*Cell
}

// Status is "met", "not met" or "n/a".
func (t Target) Status() string {
	switch {
	case t.Met == nil && t.Got == "":
		return "n/a"
	case t.Met == nil:
		return "reported"
	case *t.Met:
		return "**met**"
	}
	return "**not met**"
}

// Cell returns the cell of a system, or nil.
func (r *Results) Cell(system, workload, popularity string, concurrency int, proxied bool) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.System == system && c.Workload == workload && c.Popularity == popularity &&
			c.Concurrency == concurrency && (c.ProxyDelay > 0) == proxied {
			return c
		}
	}
	return nil
}

// TopConcurrency is the highest concurrency measured (64 by default),
// where the targets are judged.
func (r *Results) TopConcurrency() int {
	if len(r.Settings.Concurrencies) == 0 {
		return 0
	}
	return slices.Max(r.Settings.Concurrencies)
}

// RoundTripsPerRequest is the round trips to Postgres per request of a
// cell: the proxy's exact count when it was in the path, else the client's
// TCP data segments. ok is false without data.
func (c *Cell) RoundTripsPerRequest() (v float64, ok bool) {
	if c == nil || c.DB == nil || c.Load.Requests == 0 {
		return 0, false
	}
	if c.DB.Proxy != nil {
		return float64(c.DB.Proxy.RoundTrips) / float64(c.Load.Requests), true
	}
	return float64(c.DB.ClientSegments) / float64(c.Load.Requests), true
}

// GoBenchMetric returns a metric of a Go benchmark by name (without the
// -GOMAXPROCS suffix).
func (r *Results) GoBenchMetric(name, unit string) (float64, bool) {
	for _, g := range r.GoBench {
		if g.Name == name {
			v, ok := g.Metrics[unit]
			return v, ok
		}
	}
	return 0, false
}

func boolPtr(b bool) *bool { return &b }

// Targets judges every target on the results, at the top concurrency with
// uniform popularity (the skewed popularity is judged too, separately).
func Targets(r *Results) []Target {
	c := r.TopConcurrency()
	var ts []Target
	for _, pop := range []string{Uniform, Zipf} {
		suffix := ""
		if pop == Zipf {
			suffix = fmt.Sprintf(" (Zipf popularity, s = %.2g)", r.Settings.Zipf)
		}
		ratio := func(goal, want, workload, other string, min float64) {
			sf, o := r.Cell(StatefunPostgres, workload, pop, c, false), r.Cell(other, workload, pop, c, false)
			t := Target{Goal: goal + suffix, Want: want, Cells: []*Cell{sf, o}}
			if sf != nil && o != nil && o.Load.Throughput > 0 {
				x := sf.Load.Throughput / o.Load.Throughput
				t.Got = fmt.Sprintf("%s (%s vs %s req/s)", times(x), count(sf.Load.Throughput), count(o.Load.Throughput))
				if min < 1 {
					t.Got = fmt.Sprintf("%.0f%% (%s vs %s req/s)", 100*x, count(sf.Load.Throughput), count(o.Load.Throughput))
				}
				t.Met = boolPtr(x >= min)
			}
			ts = append(ts, t)
		}
		ratio(fmt.Sprintf("Durable writes at concurrency %d, statefun on Postgres vs the stateless baseline", c), "≥ 5x", Write, Baseline, 5)
		ratio(fmt.Sprintf("Durable writes at concurrency %d, statefun on Postgres vs no-op gRPC", c), "≥ 60%", Write, Noop, 0.6)
		ratio(fmt.Sprintf("Reads at concurrency %d, statefun on Postgres vs the stateless baseline", c), "≥ 10x", Read, Baseline, 10)
		ratio(fmt.Sprintf("Reads at concurrency %d, statefun on Postgres vs no-op gRPC", c), "≥ 90%", Read, Noop, 0.9)

		sfRead, noopRead := r.Cell(StatefunPostgres, Read, pop, c, false), r.Cell(Noop, Read, pop, c, false)
		t := Target{Goal: fmt.Sprintf("p99 latency of reads at concurrency %d, statefun on Postgres vs no-op gRPC", c) + suffix, Want: "≤ 2x",
			Cells: []*Cell{sfRead, noopRead}}
		if sf, o := sfRead, noopRead; sf != nil && o != nil && o.Load.All.P99 > 0 {
			x := float64(sf.Load.All.P99) / float64(o.Load.All.P99)
			t.Got = fmt.Sprintf("%s (%s vs %s)", times(x), millis(sf.Load.All.P99), millis(o.Load.All.P99))
			t.Met = boolPtr(x <= 2)
		}
		ts = append(ts, t)

		sf, bl := r.Cell(StatefunPostgres, Write, pop, c, false), r.Cell(Baseline, Write, pop, c, false)
		t = Target{Goal: fmt.Sprintf("Round trips to Postgres per write at concurrency %d, baseline vs statefun", c) + suffix, Want: "≥ 10x fewer",
			Cells: []*Cell{sf, bl}}
		if s, ok := sf.RoundTripsPerRequest(); ok && s > 0 {
			if b, ok := bl.RoundTripsPerRequest(); ok {
				x := b / s
				t.Got = fmt.Sprintf("%s fewer (%.3g vs %.3g per write)", times(x), s, b)
				t.Met = boolPtr(x >= 10)
			}
		}
		ts = append(ts, t)
	}

	gb := func(goal, want, name, unit string, ok func(float64) bool) {
		t := Target{Goal: goal, Want: want}
		if v, found := r.GoBenchMetric(name, unit); found {
			t.Got = fmt.Sprintf("%s %s", count(v), unit)
			if ok != nil {
				t.Met = boolPtr(ok(v))
			}
		}
		ts = append(ts, t)
	}
	gb("In process: single-event commands from 64 callers over 10,000 entities, Postgres", "≥ 20,000 commands/s",
		"BenchmarkCommands/postgres/10000-entities", "cmds/s", func(v float64) bool { return v >= 20000 })
	gb("In process: single-event commands from 64 callers on one hot entity, Postgres", "≥ 5,000 commands/s",
		"BenchmarkCommands/postgres/hot-entity", "cmds/s", func(v float64) bool { return v >= 5000 })
	// The same with a tuned setting, beside the default that is judged.
	gb("… the same over 10,000 entities with --commit-concurrency 4 (tuned; the default is 1)", "a figure",
		"BenchmarkCommands/postgres/10000-entities/commit-concurrency-4", "cmds/s", nil)
	gb("… the same on one hot entity with --commit-concurrency 4 (tuned)", "a figure",
		"BenchmarkCommands/postgres/hot-entity/commit-concurrency-4", "cmds/s", nil)
	gb("In process: heap per idle entity beyond its state, 1,000,000 entities", "< 1 KiB",
		"BenchmarkIdleEntityMemory", "bytes/entity", func(v float64) bool { return v < 1024 })
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		gb("In process: events replayed per second, one entity with 100,000 events, "+kind, "a figure",
			"BenchmarkRecovery/"+kind, "events/s", nil)
	}
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		gb("In process: consumer lag at idle (commit to delivery), p99, "+kind, "≤ 100 ms",
			"BenchmarkConsumerLag/"+kind, "p99-ms", func(v float64) bool { return v <= 100 })
	}
	for _, kind := range []string{"postgres", "embedded", "memory"} {
		gb("In process: view lag at idle (commit to the row's write, from when a query finds it), p99, "+kind, "≤ 100 ms",
			"BenchmarkViewLag/"+kind, "p99-ms", func(v float64) bool { return v <= 100 })
	}
	for _, kind := range []string{"postgres", "embedded"} {
		gb("In process: view update throughput, the updater working through a backlog of 20,000 events, "+kind, "a figure",
			"BenchmarkViewUpdates/"+kind, "events/s", nil)
		gb("In process: view rows written per second by the store, batches of 5,000, 1,000,000 rows, "+kind, "a figure",
			"BenchmarkViewQuery/"+kind+"/load", "rows/s", nil)
		// Postgres's rows are queried before and after ANALYZE: the
		// plain figures are the table as the runtime leaves it where
		// autovacuum is off; -analyzed, as autovacuum leaves it.
		queries := []struct{ name, what string }{
			{"equality", "equality on a column, LIMIT 100"},
			{"range", "range with ORDER BY and LIMIT 50"},
		}
		if kind == "postgres" {
			queries = append(queries, struct{ name, what string }{"equality-analyzed", "equality on a column, LIMIT 100, after ANALYZE"},
				struct{ name, what string }{"range-analyzed", "range with ORDER BY and LIMIT 50, after ANALYZE"})
		}
		for _, q := range queries {
			gb("In process: view queries from 16 callers at 1,000,000 rows, "+q.what+", "+kind, "a figure",
				"BenchmarkViewQuery/"+kind+"/"+q.name, "queries/s", nil)
			gb("… p99 latency of those queries", "a figure", "BenchmarkViewQuery/"+kind+"/"+q.name, "p99-ms", nil)
		}
	}
	for _, br := range []struct{ name, what string }{{"nats", "NATS JetStream (the machine's server)"}, {"kafka", "Kafka (franz-go's in-process kfake: the client's and statefun's cost, not a cluster's)"}} {
		gb("In process: events published per second from a backlog of 20,000, Postgres, "+br.what, "a figure",
			"BenchmarkEventing/"+br.name+"/publish", "events/s", nil)
		gb("In process: publish lag at idle (commit to a subscriber's receipt), p50, "+br.what, "a figure",
			"BenchmarkEventing/"+br.name+"/lag", "p50-ms", nil)
		gb("… p99", "a figure", "BenchmarkEventing/"+br.name+"/lag", "p99-ms", nil)
		gb("In process: broker messages turned into durable commands per second, 20,000 waiting, Postgres, "+br.what, "a figure",
			"BenchmarkEventing/"+br.name+"/consume", "msgs/s", nil)
	}
	gb("In process: timers fired per second, each a durable command on a cached entity, Postgres", "≥ 10,000 timers/s",
		"BenchmarkTimers/postgres/firing", "timers/s", func(v float64) bool { return v >= 10000 })
	gb("In process: timer lateness at idle (due to delivery), p99, Postgres", "≤ 50 ms",
		"BenchmarkTimers/postgres/lateness-idle", "p99-late-ms", func(v float64) bool { return v <= 50 })
	gb("In process: runtime heap with 1,000,000 pending timers, per timer, Postgres", "no memory per pending timer (< 1 byte)",
		"BenchmarkTimers/postgres/pending-memory", "heap-bytes/pending-timer", func(v float64) bool { return v < 1 })
	ts = append(ts, clusterTargets(r)...)
	return append(ts, httpTargets(r)...)
}

// times formats a ratio as "5.2x".
func times(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.0fx", x)
	}
	return fmt.Sprintf("%.2gx", x)
}

// count formats a number with thousands separators, without decimals
// above 100.
func count(v float64) string {
	if v < 100 {
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// millis formats nanoseconds as milliseconds with 2 significant digits or
// more.
func millis(ns int64) string {
	ms := float64(ns) / 1e6
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.3f ms", ms)
}
