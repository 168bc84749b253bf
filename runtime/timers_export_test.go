package statefun

import "strings"

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
