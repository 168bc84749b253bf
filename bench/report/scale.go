package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/statefun-go/statefun/bench/load"
)

// Scale is a run of the "memory and recovery at scale" benchmark
// (bench/cmd/scaleload, `make bench-scale`): the shopping cart server on a
// database holding many carts with long histories. It is saved apart from
// Results (bench/results/scale.json), because it takes much longer than
// the rest and runs on its own; rendering reads both.
type Scale struct {
	Started  time.Time     `json:"started"`
	WallTime time.Duration `json:"wall_time_ns"`
	// Command is the command line that measured it.
	Command string       `json:"command"`
	Machine ScaleMachine `json:"machine"`
	Dataset ScaleDataset `json:"dataset"`
	// Verified counts the carts whose GetCart answer was compared with
	// the state computed from their generated events, and found equal.
	Verified int `json:"verified_carts"`
	// Phases are the passes of reads, in the order run.
	Phases      []ScalePhase     `json:"phases"`
	Memory      ScaleMemory      `json:"memory"`
	Passivation ScalePassivation `json:"passivation"`
	// Shutdown is how long the server took to exit after SIGTERM.
	Shutdown time.Duration `json:"shutdown_ns"`
	Problems []string      `json:"problems,omitempty"`
}

// ScaleMachine is the machine, and how busy it was during the run.
type ScaleMachine struct {
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
	GoVersion   string `json:"go_version"`
	Postgres    string `json:"postgres"`
	Revision    string `json:"revision"`
	// Load averages (1, 5, 15 min) at the start and the end of the
	// measurement, and the mean and peak of the 1-minute load sampled
	// during it.
	LoadStart string  `json:"load_start"`
	LoadEnd   string  `json:"load_end"`
	LoadMean  float64 `json:"load_mean"`
	LoadPeak  float64 `json:"load_peak"`
}

// ScaleDataset is the data set the server ran on.
type ScaleDataset struct {
	Entities        int `json:"entities"`
	EventsPerEntity int `json:"events_per_entity"`
	// WithSnapshot counts the carts with a snapshot (at their last event).
	WithSnapshot int `json:"with_snapshot"`
	// SchemaVersion is the store's migration version the rows were
	// written under.
	SchemaVersion int `json:"schema_version"`
	// Reused is true when the run found the data set loaded already;
	// LoadTime is then the time its load took back then.
	Reused   bool          `json:"reused"`
	LoadTime time.Duration `json:"load_time_ns"`
	// Sizes on disk, indexes included.
	EventsBytes    int64 `json:"events_bytes"`
	SnapshotsBytes int64 `json:"snapshots_bytes"`
	// StateProtoBytes is the mean encoded size of a cart's state, and
	// StateLines its mean number of lines.
	StateProtoBytes float64 `json:"state_proto_bytes"`
	StateLines      float64 `json:"state_lines"`
}

// ScalePhase is one pass of GetCart calls over carts not yet in memory:
// each call loads its cart.
type ScalePhase struct {
	Name        string `json:"name"`
	Snapshot    bool   `json:"snapshot"`
	Concurrency int    `json:"concurrency"`
	Entities    int    `json:"entities"`
	// EventsReplayed are the events the loads applied; History the
	// events of the carts' histories, replayed or covered by a snapshot.
	EventsReplayed int64         `json:"events_replayed"`
	History        int64         `json:"history"`
	Wall           time.Duration `json:"wall_ns"`
	Errors         int64         `json:"errors"`
	FirstError     string        `json:"first_error,omitempty"`
	// Client is the latency the client saw; Server the server's own
	// request histogram for GetCart over the phase (bucket bounds).
	Client load.Latency     `json:"client"`
	Server *HistogramSpread `json:"server,omitempty"`
}

// HistogramSpread summarises a histogram's change over a phase by the
// upper bounds of the buckets that hold its quantiles.
type HistogramSpread struct {
	Count int64         `json:"count"`
	P50   time.Duration `json:"p50_le_ns"`
	P99   time.Duration `json:"p99_le_ns"`
}

// ScaleMemory is the server's memory, empty and with every cart cached.
type ScaleMemory struct {
	// Resident set sizes of the server process (VmRSS).
	RSSEmpty            int64 `json:"rss_empty"`
	RSSAllCached        int64 `json:"rss_all_cached"`
	RSSPeak             int64 `json:"rss_peak"`
	RSSAfterPassivation int64 `json:"rss_after_passivation"`
	// Cached is the server's statefun_entities_cached with all loaded.
	Cached int64 `json:"cached"`
	// The server's Go heap then, from its /metrics.
	HeapAlloc int64 `json:"heap_alloc"`
	HeapInuse int64 `json:"heap_inuse"`
	NextGC    int64 `json:"next_gc"`
	GoSys     int64 `json:"go_sys"`
	// StateHeapBytes is the heap one cart's state takes (measured apart,
	// decoding and replaying carts as a load does).
	StateHeapBytes float64 `json:"state_heap_bytes"`
	// InProcess is the same measure in this process, with runtime.MemStats.
	InProcess *InProcessMemory `json:"in_process,omitempty"`
}

// InProcessMemory is the heap held per cached cart by a runtime in the
// benchmark's own process, on the same store, after a forced GC.
type InProcessMemory struct {
	Entities int `json:"entities"`
	// HeapPerEntity is the live heap per cached cart, state included.
	HeapPerEntity float64 `json:"heap_per_entity"`
}

// OverheadPerEntity is the RSS a cached cart costs beyond its state.
func (m ScaleMemory) OverheadPerEntity() (float64, bool) {
	if m.Cached <= 0 || m.RSSAllCached == 0 {
		return 0, false
	}
	return float64(m.RSSAllCached-m.RSSEmpty)/float64(m.Cached) - m.StateHeapBytes, true
}

// ScalePassivation is what happened once the reads stopped.
type ScalePassivation struct {
	// IdleTimeout is the server's passivation timeout.
	IdleTimeout time.Duration `json:"idle_timeout_ns"`
	Completed   bool          `json:"completed"`
	Waited      time.Duration `json:"waited_ns"`
	// SinceLastRead runs from the last read to an empty cache; Sweep from
	// the first eviction seen to an empty cache.
	SinceLastRead time.Duration `json:"since_last_read_ns"`
	Sweep         time.Duration `json:"sweep_ns"`
	Evicted       int64         `json:"evicted"`
}

// ReadScale reads a saved scale run; it returns nil, nil when there is
// none.
func ReadScale(file string) (*Scale, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s Scale
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", file, err)
	}
	return &s, nil
}

// scaleTargets judges issue 13's targets for memory and recovery at
// scale.
func scaleTargets(s *Scale) []Target {
	var ts []Target
	t := Target{Goal: "Cold load of a cart with a snapshot, p99, one call at a time (client-observed)", Want: "≤ 5 ms"}
	if p := s.phase(true, 1); p != nil && p.Client.Count > 0 {
		t.Got = millis(p.Client.P99)
		if p.Server != nil {
			t.Got += fmt.Sprintf(" (server's histogram: ≤ %s)", millis(int64(p.Server.P99)))
		}
		t.Met = boolPtr(p.Client.P99 <= int64(5*time.Millisecond))
	}
	ts = append(ts, t)
	t = Target{Goal: fmt.Sprintf("Server RSS per cached cart beyond the cart's own state, %s carts", count(float64(s.Memory.Cached))), Want: "≤ 1 KiB"}
	if v, ok := s.Memory.OverheadPerEntity(); ok {
		t.Got = fmt.Sprintf("%s bytes", count(v))
		if s.allCached() {
			t.Met = boolPtr(v <= 1024)
		} else {
			// Carts passivated during the passes left garbage behind that
			// the RSS still holds: the figure is not one cart's cost.
			t.Got += fmt.Sprintf(", but only %s of %s carts were still cached: not a per-cart cost (see below)", count(float64(s.Memory.Cached)), count(float64(s.Dataset.Entities)))
		}
	}
	ts = append(ts, t)
	t = Target{Goal: "The same in process: live heap per cached cart beyond its state (runtime.MemStats after GC)", Want: "≤ 1 KiB"}
	if ip := s.Memory.InProcess; ip != nil {
		v := ip.HeapPerEntity - s.Memory.StateHeapBytes
		t.Got = fmt.Sprintf("%s bytes (%s carts)", count(v), count(float64(ip.Entities)))
		t.Met = boolPtr(v <= 1024)
	}
	ts = append(ts, t)
	for _, snap := range []bool{true, false} {
		t = Target{Goal: "Recovery rate over every cart " + map[bool]string{true: "with a snapshot", false: "without a snapshot"}[snap], Want: "a figure"}
		if p := s.phase(snap, 0); p != nil && p.Wall > 0 {
			t.Got = fmt.Sprintf("%s carts/s, %s events of history/s, %s events replayed/s (concurrency %d)",
				count(float64(p.Entities)/p.Wall.Seconds()), count(float64(p.History)/p.Wall.Seconds()),
				count(float64(p.EventsReplayed)/p.Wall.Seconds()), p.Concurrency)
		}
		ts = append(ts, t)
	}
	t = Target{Goal: "Passivating every cached cart", Want: "a figure"}
	if p := s.Passivation; p.Completed {
		t.Got = fmt.Sprintf("%s after the last read (idle timeout %s); the sweep itself %s", span(p.SinceLastRead), p.IdleTimeout, span(p.Sweep))
	}
	ts = append(ts, t)
	return ts
}

// allCached says whether every measured cart was in memory at once.
func (s *Scale) allCached() bool { return s.Memory.Cached >= int64(s.Dataset.Entities) }

// passesTook is the wall time of every pass together.
func (s *Scale) passesTook() time.Duration {
	var d time.Duration
	for _, p := range s.Phases {
		d += p.Wall
	}
	return d
}

// phase is the phase over carts with or without a snapshot, at
// concurrency 1 (the latency sample) or above it (concurrency 0).
func (s *Scale) phase(snapshot bool, concurrency int) *ScalePhase {
	for i := range s.Phases {
		p := &s.Phases[i]
		if p.Snapshot == snapshot && (p.Concurrency == concurrency || concurrency == 0 && p.Concurrency > 1) {
			return p
		}
	}
	return nil
}

// span formats a duration in milliseconds below a second, else seconds.
func span(d time.Duration) string {
	if d < time.Second {
		return millis(int64(d))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func mib(b int64) string { return fmt.Sprintf("%s MiB", count(float64(b)/(1<<20))) }

// writeScale renders the section of the scale run.
func writeScale(w *writer, s *Scale) {
	if s == nil {
		return
	}
	d, m := s.Dataset, s.Memory
	w.p("## Memory and recovery at scale")
	w.p("Measured by `make bench-scale` (`%s`, source in [bench/scale/](bench/scale/)) on %s, in %s of wall time; not part of `make bench`. "+
		"Raw results: [bench/results/scale.json](bench/results/scale.json). The shopping cart server (`go build ./examples/shoppingcart`, default settings) "+
		"runs on a Postgres database holding %s carts with %d `ItemAdded` events each (%s events); every other cart also has a snapshot at its last event, "+
		"as the server writes one every 100 events.",
		s.Command, s.Started.Format("2006-01-02 15:04 MST"), s.WallTime, count(float64(d.Entities)), d.EventsPerEntity,
		count(float64(d.Entities)*float64(d.EventsPerEntity)))
	w.row("Target (issue 13)", "Wanted", "Measured", "")
	w.row("---", "---", "---", "---")
	for _, t := range scaleTargets(s) {
		got := t.Got
		if got == "" {
			got = "not measured"
		}
		w.row(t.Goal, t.Want, got, t.Status())
	}
	w.nl()
	mc := s.Machine
	w.p("**Machine load during the run:** the 1-minute load average was %.1f on average and %.1f at its peak, on %d cores (at the start %s, at the end %s). "+
		"Other work shared the machine%s, so latencies and rates are those of a contended machine.",
		mc.LoadMean, mc.LoadPeak, mc.Cores, mc.LoadStart, mc.LoadEnd,
		map[bool]string{true: " heavily (more than twice as many runnable tasks as cores)", false: ""}[mc.LoadMean > 2*float64(mc.Cores)])

	load := fmt.Sprintf("written by the benchmark in %s", span(d.LoadTime))
	if d.Reused {
		load = fmt.Sprintf("found loaded by an earlier run (which took %s to write it)", span(d.LoadTime))
	}
	w.p("**The data set** is written straight into the store's tables, created by the store's own migration (version %d), by COPY in 2 streams "+
		"with the events table's indexes built afterwards from the migration's definitions; rows are those the runtime commits (protobuf payloads, "+
		"the feed's transaction ID and sequence from the table's defaults) and snapshots those it saves. It was %s. On disk: events %s, snapshots %s, indexes included. "+
		"A cart holds %.1f lines on average (%.0f bytes encoded; %.0f bytes of heap once loaded). Before measuring, two probe carts (one with a snapshot) are read "+
		"and compared with the state their generated events make, and one more event is appended to each through `AddItem`; every %dth cart of every pass is compared too "+
		"(%s carts compared, none differed).",
		d.SchemaVersion, load, mib(d.EventsBytes), mib(d.SnapshotsBytes), d.StateLines, d.StateProtoBytes, m.StateHeapBytes, 100, count(float64(s.Verified)))

	w.p("**Cold loads.** Each pass calls `GetCart` once for each of its carts, none of which is in memory: first a sample of each kind one call at a time " +
		"(the latency of a load alone), then every other cart at the concurrency shown, from a closed loop of gRPC calls over 4 connections. " +
		"The server has no metric of loads alone; its request histogram for `GetCart` (`statefun_request_duration_seconds`) covers exactly these calls, " +
		"each a load, and gives the upper bounds of the buckets holding the quantiles. Spans (`statefun.load`, with the events replayed) exist when tracing is on, which is not the default.")
	w.row("Pass", "c", "carts", "wall", "carts/s", "events of history/s", "events replayed/s", "client p50", "client p90", "client p99", "server p50", "server p99", "errors")
	w.row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	for _, p := range s.Phases {
		sp50, sp99 := "-", "-"
		if p.Server != nil {
			sp50, sp99 = "≤ "+millis(int64(p.Server.P50)), "≤ "+millis(int64(p.Server.P99))
		}
		secs := p.Wall.Seconds()
		w.row(p.Name, fmt.Sprint(p.Concurrency), count(float64(p.Entities)), span(p.Wall), count(float64(p.Entities)/secs),
			count(float64(p.History)/secs), count(float64(p.EventsReplayed)/secs), millis(p.Client.P50), millis(p.Client.P90), millis(p.Client.P99), sp50, sp99, fmt.Sprint(p.Errors))
	}
	w.nl()

	w.p("**Memory** is the server process's resident set (VmRSS from `/proc/<pid>/status`), and its Go heap from its `/metrics`:")
	w.row("", "")
	w.row("---", "---:")
	w.row("RSS, started and connected, nothing loaded", mib(m.RSSEmpty))
	w.row(fmt.Sprintf("RSS, %s carts cached", count(float64(m.Cached))), mib(m.RSSAllCached))
	w.row("RSS, peak during the run", mib(m.RSSPeak))
	if m.RSSAfterPassivation > 0 {
		w.row("RSS, 2 s after every cart was passivated", mib(m.RSSAfterPassivation))
	}
	w.row("Go heap with all cached: allocated / in use / next GC target / obtained from the OS", fmt.Sprintf("%s / %s / %s / %s", mib(m.HeapAlloc), mib(m.HeapInuse), mib(m.NextGC), mib(m.GoSys)))
	if m.Cached > 0 {
		per := float64(m.RSSAllCached-m.RSSEmpty) / float64(m.Cached)
		w.row("RSS growth per cached cart", fmt.Sprintf("%s bytes", count(per)))
		w.row("… of which the cart's own state (heap of a loaded cart, measured apart)", fmt.Sprintf("%s bytes", count(m.StateHeapBytes)))
		w.row("… the rest: the runtime's overhead per cart, as the target counts it", fmt.Sprintf("%s bytes", count(per-m.StateHeapBytes)))
		if ip := m.InProcess; ip != nil {
			w.row(fmt.Sprintf("In process (runtime.MemStats after GC, %s carts): live heap per cached cart, state included", count(float64(ip.Entities))), fmt.Sprintf("%s bytes", count(ip.HeapPerEntity)))
			w.row("… beyond the state", fmt.Sprintf("%s bytes", count(ip.HeapPerEntity-m.StateHeapBytes)))
		}
	}
	w.nl()
	if !s.allCached() {
		w.p("**Not every cart was in memory at once.** The passes took %s, longer than the server's idle timeout (%s): it passivated the carts read first "+
			"while the last were being read, so only %s of %s were cached when they ended. The RSS then still holds much of the memory of the carts "+
			"passivated (garbage not yet collected, or collected but not returned to the OS), so the RSS growth divided by the carts cached overstates what a cart costs, "+
			"and the target is not judged on it; the in-process figure, live heap after a forced GC, is the per-cart cost. With the server's settings as they are "+
			"(the timeout has no flag), a machine that reads every cart within the timeout, or a client that touches loaded carts again while the passes run, "+
			"would measure it.", span(s.passesTook()), s.Passivation.IdleTimeout, count(float64(m.Cached)), count(float64(s.Dataset.Entities)))
	}
	if m.Cached > 0 && m.HeapAlloc > 0 {
		w.p("The RSS figure is larger than the in-process one because it counts what the live heap does not: Go's garbage collector lets the heap grow to "+
			"its next target (%s, GOGC=100: about twice the heap live after the last collection) before collecting, and memory freed is returned to the OS "+
			"only slowly; so RSS per cart carries garbage and headroom in proportion to the state as well as to the runtime's own structures. "+
			"The live-heap figure is the one that scales with the carts; a server with a memory limit (GOMEMLIMIT) keeps RSS closer to it.", mib(m.NextGC))
	}
	p := s.Passivation
	w.p("**Passivation.** The server passivates an entity idle for its passivation timeout (%s by default; `passivation_timeout` in the entity's annotation overrides it), "+
		"checking each entity type at a quarter of it, and evicts the least recently used beyond `WithMaxEntities` (default 1,000,000). "+
		"There is no user-facing way to passivate on demand or to set the timeout from the command line or the environment: the binary has no flag for either, "+
		"so the benchmark waits for the default timeout.", p.IdleTimeout)
	if p.Completed {
		w.p("Every cart was passivated %s after the last read; the sweep, from the first eviction seen to an empty cache (metrics read every 0.5 s), took %s, "+
			"for %s carts.", span(p.SinceLastRead), span(p.Sweep), count(float64(p.Evicted)))
	} else {
		w.p("Not every cart was passivated within the %s the benchmark waited (%s of %s were).", span(p.Waited), count(float64(p.Evicted)), count(float64(m.Cached)))
	}
	w.p("The server then stopped %s after SIGTERM.", span(s.Shutdown))
	if len(s.Problems) > 0 {
		w.p("Problems during the scale run:")
		for _, pr := range s.Problems {
			w.line("- %s", pr)
		}
		w.nl()
	}
}
