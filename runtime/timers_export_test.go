package statefun

import (
	"strings"

	"github.com/statefun-go/statefun/runtime/store"
)

// EncodeCallForTest encodes c as a stored timer's or sent call's payload,
// for tests that write timers straight into a store.
func EncodeCallForTest(c *Call) []byte {
	b, err := encodeCall(c, nil)
	if err != nil {
		panic(err)
	}
	return b
}

// TimerMetricsForTest returns the values of the statefun_timers_* metrics
// that r's server would export, by name.
func TimerMetricsForTest(r *Runtime) map[string]float64 {
	m := newMetrics()
	m.register(r)
	families, err := m.registry.Gather()
	if err != nil {
		panic(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "statefun_timers_") {
			got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return got
}

// WorkflowMetricsForTest returns the values of the statefun_workflow*
// metrics that r's server would export, by name and labels
// ("statefun_workflow_steps_total{errand,done}").
func WorkflowMetricsForTest(r *Runtime) map[string]float64 {
	m := newMetrics()
	m.register(r)
	families, err := m.registry.Gather()
	if err != nil {
		panic(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "statefun_workflow") {
			continue
		}
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			v := mt.GetCounter().GetValue()
			if mt.GetGauge() != nil {
				v = mt.GetGauge().GetValue()
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return got
}

// TimerCallKeyForTest returns the idempotency key every delivery of t
// carries.
func TimerCallKeyForTest(t store.Timer) string { return timerCallKey(t) }
