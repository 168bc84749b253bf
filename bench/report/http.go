package report

import (
	"fmt"
	"slices"
	"strings"
)

// HTTPCell returns a cell of the HTTP/JSON part, or nil.
func (r *Results) HTTPCell(system, protocol, workload string, concurrency int) *Cell {
	if r.HTTP == nil {
		return nil
	}
	for i := range r.HTTP.Cells {
		c := &r.HTTP.Cells[i]
		if c.System == system && c.Protocol == protocol && c.Workload == workload && c.Concurrency == concurrency {
			return c
		}
	}
	return nil
}

// httpTop is the highest concurrency of the HTTP/JSON cells, where their
// targets are judged.
func (r *Results) httpTop() int {
	top := 0
	if r.HTTP != nil {
		for _, c := range r.HTTP.Cells {
			top = max(top, c.Concurrency)
		}
	}
	return top
}

// httpConcurrencies are the concurrencies of the HTTP/JSON cells, in
// increasing order.
func (r *Results) httpConcurrencies() []int {
	var cs []int
	if r.HTTP != nil {
		for _, c := range r.HTTP.Cells {
			if !slices.Contains(cs, c.Concurrency) {
				cs = append(cs, c.Concurrency)
			}
		}
	}
	slices.Sort(cs)
	return cs
}

// noopFor is the no-op server a protocol's cells are compared with.
func noopFor(protocol string) string {
	if protocol == GRPC {
		return Noop
	}
	return NoopConnect
}

// excess is statefun's server CPU per call over a protocol beyond its
// no-op server's, in microseconds.
type excess struct {
	protocol       string
	statefun, noop float64
	cells          []*Cell
}

func (e excess) over() float64 { return e.statefun - e.noop }

// excessOf computes statefun's excess over a protocol's no-op server in
// the HTTP/JSON part; ok is false without both cells.
func excessOf(r *Results, protocol, workload string, c int) (excess, bool) {
	sf, noop := r.HTTPCell(StatefunPostgres, protocol, workload, c), r.HTTPCell(noopFor(protocol), protocol, workload, c)
	if serverMicros(sf) == 0 || serverMicros(noop) == 0 {
		return excess{}, false
	}
	return excess{protocol: protocol, statefun: serverMicros(sf), noop: serverMicros(noop), cells: []*Cell{sf, noop}}, true
}

// httpJudgement is the HTTP/JSON target of a workload: statefun's server
// CPU per call over each JSON protocol may exceed the no-op Connect
// server's by no more than its gRPC calls exceed no-op gRPC's.
type httpJudgement struct {
	grpc excess
	json []excess // the JSON protocols measured, in display order
	met  bool
}

// worst is the JSON protocol with the largest excess.
func (j httpJudgement) worst() excess {
	return slices.MaxFunc(j.json, func(a, b excess) int {
		switch {
		case a.over() < b.over():
			return -1
		case a.over() > b.over():
			return 1
		}
		return 0
	})
}

func judgeHTTP(r *Results, workload string, c int) (httpJudgement, bool) {
	g, ok := excessOf(r, GRPC, workload, c)
	if !ok {
		return httpJudgement{}, false
	}
	j := httpJudgement{grpc: g, met: true}
	for _, p := range HTTPProtocols {
		e, ok := excessOf(r, p, workload, c)
		if !ok {
			continue
		}
		j.json = append(j.json, e)
		j.met = j.met && e.over() <= g.over()
	}
	return j, len(j.json) > 0
}

// httpTargets judges issue 13's targets: for writes and for reads, the
// server CPU a JSON call costs statefun beyond the no-op Connect server,
// against what a gRPC call costs it beyond no-op gRPC.
func httpTargets(r *Results) []Target {
	if r.HTTP == nil {
		return nil
	}
	c := r.httpTop()
	var ts []Target
	for _, wl := range []string{Write, Read} {
		t := Target{
			Goal: fmt.Sprintf("HTTP/JSON: statefun's server CPU per %s over Connect JSON beyond the no-op Connect server's per call, "+
				"against its excess over gRPC beyond no-op gRPC's (concurrency %d)", singular(wl), c),
			Want: "no more than over gRPC",
		}
		if j, ok := judgeHTTP(r, wl, c); ok {
			var parts []string
			for _, e := range j.json {
				parts = append(parts, fmt.Sprintf("%s %+.0f µs (%.0f vs %.0f)", protocolShort(e.protocol), e.over(), e.statefun, e.noop))
				t.Cells = append(t.Cells, e.cells...)
			}
			t.Cells = append(t.Cells, j.grpc.cells...)
			t.Got = fmt.Sprintf("%s; gRPC %+.0f µs (%.0f vs %.0f)", strings.Join(parts, ", "), j.grpc.over(), j.grpc.statefun, j.grpc.noop)
			t.Met = boolPtr(j.met)
		}
		ts = append(ts, t)
	}
	return ts
}

func protocolTitle(p string) string {
	switch p {
	case GRPC:
		return "gRPC"
	case JSONHTTP1:
		return "Connect JSON, HTTP/1.1"
	case JSONH2C:
		return "Connect JSON, HTTP/2 (h2c)"
	}
	return p
}

func protocolShort(p string) string {
	switch p {
	case GRPC:
		return "gRPC"
	case JSONHTTP1:
		return "HTTP/1.1"
	case JSONH2C:
		return "h2c"
	}
	return p
}

func writeHTTP(w *writer, r *Results) {
	hr := r.HTTP
	if hr == nil {
		return
	}
	top := r.httpTop()
	w.p("## HTTP/JSON")
	when := "by the same run"
	if hr.Started.Before(r.Started) || hr.Started.After(r.Started.Add(r.WallTime)) {
		when = fmt.Sprintf("by a run of its own (`go run ./bench -only http`) on %s, merged into these results", hr.Started.Format("2006-01-02 15:04 MST"))
	}
	w.p("Measured %s, in %s of wall time, at revision `%s`. Load average (1, 5, 15 min) at its start: %s; at its end: %s.%s",
		when, hr.WallTime, hr.Revision, hr.LoadStart, hr.LoadEnd, loadNote(hr.LoadStart, hr.LoadEnd, r.Machine.Cores))
	w.p("The statefun server's HTTP port (`--http-listen`) serves every entity method with the Connect protocol: "+
		"`POST /shop.cart.v1.ShoppingCartService/AddItem` with `Content-Type: application/json` and the request as JSON, the reply as JSON. "+
		"It speaks HTTP/1.1 and HTTP/2, without TLS as HTTP/2 with prior knowledge (h2c), on the same port. These cells call the shopping cart "+
		"server built above (Postgres store, a fresh process, every cart written once first) that way, and, as the floor, "+
		"*no-op Connect* (`bench/cmd/noopconnect`): connect-go handlers for the same service, built with `connect.NewUnaryHandler`, "+
		"that return at once (`GetCart` the same fixed 4-line cart as no-op gRPC), served over HTTP/1.1 and h2c by `net/http` as statefun's port is. "+
		"The load is the closed loop above (%s carts, uniform popularity, %v unmeasured then %v measured per cell) with a JSON client "+
		"(`load.ConnectClient`): over HTTP/1.1 each of %d clients keeps as many connections as it has requests in flight "+
		"(HTTP/1.1 carries one at a time), over h2c each of %d connections multiplexes them, as the gRPC connections do. "+
		"It writes the requests' JSON by hand and reads the replies without decoding them, where the gRPC client decodes its replies: "+
		"the load generator's CPU per request is not comparable across protocols, the servers' is. "+
		"At concurrency %d statefun and no-op gRPC are measured over gRPC too, interleaved with these cells, so that the comparison "+
		"below is between cells measured on the same machine at the same time. CPU is counted as for the cells above.",
		count(float64(r.Settings.Carts)), r.Settings.Ramp, r.Settings.Duration, hr.Conns, hr.Conns, top)
	for _, u := range hr.Unavailable {
		w.p("**Not measured: %s over %s.** %s", systemTitle(u.System), protocolTitle(u.Protocol), u.Reason)
	}

	marked := false
	w.row("Workload", "c", "Protocol", "System", "req/s", "p50", "p99", "server µs/req", "Postgres µs/req", "load gen µs/req", "kernel µs/req",
		"CPU cores: server / Postgres / load gen / kernel / other")
	w.row("---", "---:", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---")
	for _, wl := range []string{Write, Read} {
		for _, c := range r.httpConcurrencies() {
			for _, p := range append([]string{GRPC}, HTTPProtocols...) {
				for _, s := range []string{noopFor(p), StatefunPostgres} {
					cell := r.HTTPCell(s, p, wl, c)
					if cell == nil {
						continue
					}
					m := mark(cell)
					marked = marked || m != ""
					k := costOf(cell)
					w.row(workloadTitle(wl), fmt.Sprint(c), protocolTitle(p), systemTitle(s), count(cell.Load.Throughput)+m,
						millis(cell.Load.All.P50), millis(cell.Load.All.P99), fmt.Sprintf("%.0f", k.server), fmt.Sprintf("%.0f", k.postgres),
						fmt.Sprintf("%.0f", k.load), fmt.Sprintf("%.0f", k.kernel), cpuSplit(cell.CPU))
				}
			}
		}
	}
	w.nl()
	if marked {
		w.p("† Other processes took more than %.2f cores during this cell: it measured a shared machine, compare it with care.", disturbedCores)
	}
	writeHTTPExcess(w, r, top)
}

// writeHTTPExcess shows the targets' arithmetic and says what a missed
// one means.
func writeHTTPExcess(w *writer, r *Results, top int) {
	var js []httpJudgement
	var wls []string
	for _, wl := range []string{Write, Read} {
		if j, ok := judgeHTTP(r, wl, top); ok {
			js = append(js, j)
			wls = append(wls, wl)
		}
	}
	if len(js) == 0 {
		return
	}
	w.p("### Server CPU per call beyond the no-op servers")
	w.p("The target of issue 13: the server CPU statefun spends on a call over Connect JSON may exceed the no-op Connect server's by no more than "+
		"the CPU it spends on the same call over gRPC exceeds no-op gRPC's. Each no-op server is the cost of its protocol's stack alone, "+
		"so each excess is what statefun adds to a call: over gRPC the call's own work (the runtime, the journal, the Postgres client for a write); "+
		"over JSON the same work plus whatever the HTTP port does beyond what a connect-go handler does. At concurrency %d, server µs per call:", top)
	w.row("Workload", "Protocol", "statefun", "its no-op server", "statefun's excess", "judged")
	w.row("---", "---", "---:", "---:", "---:", "---")
	for i, j := range js {
		w.row(workloadTitle(wls[i]), protocolTitle(GRPC), fmt.Sprintf("%.0f", j.grpc.statefun), fmt.Sprintf("%.0f", j.grpc.noop),
			fmt.Sprintf("%+.0f", j.grpc.over()), "the allowance")
		for _, e := range j.json {
			verdict := "within"
			if e.over() > j.grpc.over() {
				verdict = fmt.Sprintf("**%.0f µs beyond**", e.over()-j.grpc.over())
			}
			w.row(workloadTitle(wls[i]), protocolTitle(e.protocol), fmt.Sprintf("%.0f", e.statefun), fmt.Sprintf("%.0f", e.noop),
				fmt.Sprintf("%+.0f", e.over()), verdict)
		}
	}
	w.nl()
	for i, j := range js {
		wl := wls[i]
		e := j.worst()
		if j.met {
			w.p("**JSON %s are within the target.** The largest excess over JSON, %s's %.0f µs, is no more than gRPC's %.0f µs: "+
				"statefun's HTTP port adds no more to a %s than a connect-go server's does.", workloadPlural(wl), protocolShort(e.protocol), e.over(),
				j.grpc.over(), singular(wl))
			continue
		}
		w.p("**JSON %s miss the target by %.0f µs of server CPU per %s.** Over %s a %s costs the statefun server %.0f µs, %.0f more than "+
			"no-op Connect's %.0f, against %.0f more than no-op gRPC over gRPC (%.0f against %.0f). The difference, %.0f µs, is what "+
			"statefun's HTTP port spends on a %s beyond what a connect-go handler spends on it.",
			workloadPlural(wl), e.over()-j.grpc.over(), singular(wl), protocolTitle(e.protocol), singular(wl), e.statefun, e.over(), e.noop,
			j.grpc.over(), j.grpc.statefun, j.grpc.noop, e.over()-j.grpc.over(), singular(wl))
	}
}
