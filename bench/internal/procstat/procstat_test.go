package procstat

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseAndSum(t *testing.T) {
	t.Parallel()
	text := `# HELP statefun_cluster_forwards_total Calls forwarded.
# TYPE statefun_cluster_forwards_total counter
statefun_cluster_forwards_total 1234
statefun_entity_loads_total{entity_type="shopping-cart"} 7
statefun_entity_loads_total{entity_type="other type"} 3
statefun_journal_commit_seconds_total 1.5e+01
`
	m, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"statefun_cluster_forwards_total":       1234,
		"statefun_entity_loads_total":           10,
		"statefun_journal_commit_seconds_total": 15,
	} {
		if got := m.Sum(name); got != want {
			t.Errorf("Sum(%s) = %v, want %v", name, got, want)
		}
	}
	if got := m[`statefun_entity_loads_total{entity_type="other type"}`]; got != 3 {
		t.Errorf("one series = %v, want 3", got)
	}
	if !m.Has("statefun_entity_loads_total") || m.Has("statefun_entity") {
		t.Error("Has is wrong about a metric's name")
	}
}

func TestProcessCPUOfThisProcess(t *testing.T) {
	t.Parallel()
	// Spend CPU until a tick (10 ms) of it is counted, or give up.
	deadline := time.Now().Add(5 * time.Second)
	var sink uint64
	for ProcessCPU(os.Getpid()) == 0 && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			sink += uint64(i) * sink
		}
	}
	_ = sink
	if got := ProcessCPU(os.Getpid()); got <= 0 {
		t.Errorf("ProcessCPU(self) = %v, want more than 0", got)
	}
	if got := ProcessCPU(0); got != 0 {
		t.Errorf("ProcessCPU(0) = %v, want 0", got)
	}
}
