package main

import (
	"bytes"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statefun-go/statefun/bench/report"
)

func TestParseGoBench(t *testing.T) {
	t.Parallel()
	out := `goos: linux
pkg: github.com/statefun-go/statefun/runtime
BenchmarkCommands/postgres/10000-entities-2         	  100000	     40000 ns/op	     25000 cmds/s	        33.0 events/batch
BenchmarkIdleEntityMemory-2   	       1	15000000000 ns/op	       512.5 bytes/entity
PASS
`
	got := parseGoBench([]byte(out))
	if len(got) != 2 {
		t.Fatalf("parsed %d results, want 2: %+v", len(got), got)
	}
	if g := got[0]; g.Name != "BenchmarkCommands/postgres/10000-entities" || g.Package != "github.com/statefun-go/statefun/runtime" ||
		g.Iterations != 100000 || g.Metrics["cmds/s"] != 25000 || g.Metrics["events/batch"] != 33 {
		t.Errorf("first result %+v", g)
	}
	if g := got[1]; g.Name != "BenchmarkIdleEntityMemory" || g.Metrics["bytes/entity"] != 512.5 {
		t.Errorf("second result %+v", g)
	}
}

func TestParseSS(t *testing.T) {
	t.Parallel()
	out := "0      0      127.0.0.1:41154 127.0.0.1:5432 users:((\"shoppingcart\",pid=9083,fd=3))\n" +
		"\t bbr wscale:10,10 bytes_sent:834 bytes_received:1883 segs_out:9 segs_in:8 data_segs_out:6 data_segs_in:4 lastsnd:408\n" +
		"0      0      127.0.0.1:41156 127.0.0.1:5432 users:((\"psql\",pid=90831,fd=3))\n" +
		"\t bbr bytes_sent:1 bytes_received:1 data_segs_out:100 data_segs_in:100\n" +
		"0      0      127.0.0.1:41158 127.0.0.1:5432 users:((\"shoppingcart\",pid=9083,fd=4))\n" +
		"\t bbr bytes_sent:166 bytes_received:117 data_segs_out:4 data_segs_in:6\n"
	got := parseSS(out, 9083)
	want := socketStats{conns: 2, segsOut: 10, segsIn: 10, bytesSent: 1000, bytesReceived: 2000}
	if got != want {
		t.Errorf("parseSS = %+v, want %+v", got, want)
	}
}

// TestAnalyseProfile profiles a busy loop and finds it.
func TestAnalyseProfile(t *testing.T) {
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		t.Skipf("CPU profiling unavailable: %v", err)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x += spin(1000)
	}
	pprof.StopCPUProfile()
	p, err := analyseProfile(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if p.CPUSeconds <= 0 || len(p.Components) == 0 || len(p.Kinds) == 0 {
		t.Fatalf("profile %+v", p)
	}
	found := false
	for _, f := range p.TopCum {
		if strings.HasSuffix(f.Name, ".spin") {
			found = true
		}
	}
	if !found {
		t.Errorf("spin is not among the top functions: %+v (x=%d)", p.TopCum, x)
	}
}

//go:noinline
func spin(n int) int {
	s := 0
	for i := range n {
		s += i * i
	}
	return s
}

// TestShardOfMatchesTheRuntime pins the copy of the runtime's shard map
// to values of runtime/internal/cluster.ShardOf, which this package
// cannot import.
func TestShardOfMatchesTheRuntime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		id            string
		shards, shard int
	}{
		{"cart-00000", 1024, 661}, {"cart-00001", 1024, 226}, {"cart-09999", 1024, 905}, {"probe-7", 1024, 532},
		{"cart-00000", 10000, 7861}, {"cart-00001", 10000, 9650}, {"cart-09999", 10000, 6249}, {"probe-7", 10000, 4836},
	} {
		if got := cartShard(c.id, c.shards); got != c.shard {
			t.Errorf("cartShard(%q, %d) = %d, want %d", c.id, c.shards, got, c.shard)
		}
	}
}

func TestProbeIDsCoverEveryShard(t *testing.T) {
	t.Parallel()
	shards := []int{0, 7, 100, 661, 1023}
	ids := probeIDs(shards, 50, 1024)
	if len(ids) != len(shards) {
		t.Fatalf("%d probes for %d shards: %v", len(ids), len(shards), ids)
	}
	seen := map[int]bool{}
	for _, id := range ids {
		s := cartShard(id, 1024)
		if !slices.Contains(shards, s) || seen[s] {
			t.Errorf("probe %s is in shard %d: not asked for, or twice", id, s)
		}
		seen[s] = true
	}
}

func TestMergeKeepsTheSavedRun(t *testing.T) {
	t.Parallel()
	saved := &report.Results{
		Cells:    []report.Cell{{System: report.Noop}},
		Commands: []report.Command{{What: "build shoppingcart", Line: "old"}, {What: "start noop", Line: "noop"}},
		Cluster:  &report.ClusterRun{Nodes: 2},
		HTTP:     &report.HTTPRun{Revision: "saved"},
	}
	part := &report.Results{
		Commands: []report.Command{{What: "build shoppingcart", Line: "new"}, {What: "start statefun-3-nodes-1", Line: "node"}},
		Cluster:  &report.ClusterRun{Nodes: 3},
	}
	got := merge(saved, part, "cluster")
	if len(got.Cells) != 1 || got.Cluster.Nodes != 3 || got.HTTP == nil || got.HTTP.Revision != "saved" {
		t.Errorf("merged cells %v, cluster %+v, HTTP %+v: want the saved cells and HTTP part, and the new cluster", got.Cells, got.Cluster, got.HTTP)
	}
	want := []report.Command{{What: "build shoppingcart", Line: "new"}, {What: "start noop", Line: "noop"}, {What: "start statefun-3-nodes-1", Line: "node"}}
	if !slices.Equal(got.Commands, want) {
		t.Errorf("merged commands %v, want %v", got.Commands, want)
	}
}

func TestMergeHTTPKeepsTheSavedCluster(t *testing.T) {
	t.Parallel()
	saved := &report.Results{
		Cells:    []report.Cell{{System: report.Noop}},
		Commands: []report.Command{{What: "start noop", Line: "noop"}},
		Cluster:  &report.ClusterRun{Nodes: 3},
		HTTP:     &report.HTTPRun{Revision: "old"},
	}
	part := &report.Results{
		Commands: []report.Command{{What: "start noop", Line: "noop again"}, {What: "start noop-connect", Line: "connect"}},
		HTTP:     &report.HTTPRun{Revision: "new", Cells: []report.Cell{{System: report.NoopConnect, Protocol: report.JSONH2C}}},
	}
	got := merge(saved, part, "http")
	if len(got.Cells) != 1 || got.Cluster == nil || got.Cluster.Nodes != 3 || got.HTTP.Revision != "new" || len(got.HTTP.Cells) != 1 {
		t.Errorf("merged cells %v, cluster %+v, HTTP %+v: want the saved cells and cluster, and the new HTTP part", got.Cells, got.Cluster, got.HTTP)
	}
	want := []report.Command{{What: "start noop", Line: "noop again"}, {What: "start noop-connect", Line: "connect"}}
	if !slices.Equal(got.Commands, want) {
		t.Errorf("merged commands %v, want %v", got.Commands, want)
	}
}
