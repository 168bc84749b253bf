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
