package report

import (
	"fmt"
	"slices"
	"time"

	"github.com/statefun-go/statefun/bench/load"
)

// The scale the lease upkeep is projected to, beyond what one machine can
// run: the largest cluster SCALING.md plans for.
const (
	projectedNodes  = 100
	projectedShards = 10000
)

// ClusterCell returns a cell of the cluster benchmarks, or nil.
func (r *Results) ClusterCell(system, workload string, concurrency int) *Cell {
	if r.Cluster == nil {
		return nil
	}
	for i := range r.Cluster.Cells {
		c := &r.Cluster.Cells[i]
		if c.System == system && c.Workload == workload && c.Concurrency == concurrency {
			return c
		}
	}
	return nil
}

// clusterTop is the highest concurrency of the cluster cells, where their
// targets are judged.
func (r *Results) clusterTop() int {
	top := 0
	if r.Cluster != nil {
		for _, c := range r.Cluster.Cells {
			top = max(top, c.Concurrency)
		}
	}
	return top
}

// serverMicros is the server CPU per request of a cell, all its nodes
// together, in microseconds.
func serverMicros(c *Cell) float64 {
	if c == nil || c.Load.Throughput == 0 {
		return 0
	}
	return c.CPU.Server / c.Load.Throughput * 1e6
}

// forwardCost is what a forwarded call costs against a local one, in
// server CPU.
type forwardCost struct {
	// In the cluster: local is a call that reached its owner, hop what
	// forwarding adds, from the cells with the calls sent to their
	// owners and spread round-robin.
	local, hop, forwarded float64
	// Against one node: every call of one node is local, and the
	// round-robin cell's whole extra CPU is charged to its forwarded
	// calls.
	oneLocal, oneForwarded float64
	share                  float64 // forwarded in the round-robin cell
}

func (f forwardCost) ratio() float64    { return f.forwarded / f.local }
func (f forwardCost) oneRatio() float64 { return f.oneForwarded / f.oneLocal }

// costOfForwarding solves c = L + f·H for the two cells of the cluster:
// c is the server CPU per call and f the share forwarded. ok is false
// without the cells or when their shares do not differ.
func costOfForwarding(r *Results, workload string, c int) (forwardCost, bool) {
	one, owner, rr := r.ClusterCell(OneNode, workload, c), r.ClusterCell(ThreeNodesToOwner, workload, c), r.ClusterCell(ThreeNodes, workload, c)
	if one == nil || owner == nil || rr == nil || serverMicros(one) == 0 || serverMicros(owner) == 0 {
		return forwardCost{}, false
	}
	fo, fr := owner.Cluster.ForwardedShare(), rr.Cluster.ForwardedShare()
	if fr-fo < 0.1 {
		return forwardCost{}, false
	}
	var k forwardCost
	k.share = fr
	k.hop = (serverMicros(rr) - serverMicros(owner)) / (fr - fo)
	k.local = serverMicros(owner) - fo*k.hop
	k.forwarded = k.local + k.hop
	k.oneLocal = serverMicros(one)
	k.oneForwarded = k.oneLocal + (serverMicros(rr)-k.oneLocal)/fr
	return k, true
}

// failoverSummary is the failover trials' p50 and max.
type failoverSummary struct {
	servedP50, servedMax, ownedMax time.Duration
	trials, errors                 int
}

func summariseFailover(trials []FailoverTrial) failoverSummary {
	var s failoverSummary
	var served []time.Duration
	for _, t := range trials {
		served = append(served, t.Served)
		s.ownedMax = max(s.ownedMax, t.Owned)
		s.errors += t.ProbeErrors
	}
	if len(served) == 0 {
		return s
	}
	slices.Sort(served)
	s.trials = len(served)
	s.servedP50, s.servedMax = served[(len(served)-1)/2], served[len(served)-1]
	return s
}

// upkeepRates are an idle cluster's lease work per second.
type upkeepRates struct {
	heartbeatsPerNode, statementsPerNode, statementsPerShard float64
	transactions, other                                      float64
	rowsReadPerBeat, rowsUpdatedPerBeat                      float64
	postgresCores                                            float64
}

// leaseStatementsPerHeartbeat are the renewal (the node's heartbeat and
// all its leases), the read of the nodes and the read of the leases.
const leaseStatementsPerHeartbeat = 3

func ratesOf(u LeaseUpkeep) (upkeepRates, bool) {
	secs := u.Window.Seconds()
	if secs <= 0 || u.Nodes == 0 || u.Work.Renewals == 0 || u.Shards == 0 {
		return upkeepRates{}, false
	}
	statements := float64(leaseStatementsPerHeartbeat*u.Work.Renewals+u.Work.RenewalFailures) / secs
	beats := float64(u.Work.Renewals)
	return upkeepRates{
		heartbeatsPerNode:  float64(u.Work.Renewals) / float64(u.Nodes) / secs,
		statementsPerNode:  statements / float64(u.Nodes),
		statementsPerShard: statements / float64(u.Shards),
		transactions:       float64(u.Transactions) / secs,
		other:              float64(u.Transactions)/secs - statements,
		rowsReadPerBeat:    float64(u.LeaseRowsRead) / beats,
		rowsUpdatedPerBeat: float64(u.LeaseRowsUpdated) / beats,
		postgresCores:      u.PostgresCPU / secs,
	}, true
}

// upkeepOf returns the upkeep of the larger cluster, or of any.
func (r *Results) upkeepOf(nodes int) *LeaseUpkeep {
	if r.Cluster == nil {
		return nil
	}
	for i := range r.Cluster.Upkeep {
		if r.Cluster.Upkeep[i].Nodes == nodes {
			return &r.Cluster.Upkeep[i]
		}
	}
	return nil
}

// projection is the lease upkeep of a larger cluster, computed from the
// measured rates: every node heartbeats at the same rate whatever the
// cluster's size, each heartbeat is three statements, renews the node's
// own leases and reads the lease table's rows a fixed number of times.
type projection struct {
	nodes, shards                                int
	statements, statementsPerNode, perShard      float64
	rowsUpdated, rowsRead, nodeRowsRead, rowsOut float64
}

func project(u upkeepRates, measuredShards, nodes, shards int) projection {
	beats := u.heartbeatsPerNode * float64(nodes)
	readPerShard := u.rowsReadPerBeat / float64(measuredShards)
	return projection{
		nodes: nodes, shards: shards,
		statements:        leaseStatementsPerHeartbeat * beats,
		statementsPerNode: leaseStatementsPerHeartbeat * u.heartbeatsPerNode,
		perShard:          leaseStatementsPerHeartbeat * beats / float64(shards),
		rowsUpdated:       u.heartbeatsPerNode * float64(shards),
		rowsRead:          beats * readPerShard * float64(shards),
		nodeRowsRead:      beats * float64(nodes),
		rowsOut:           beats * float64(shards),
	}
}

// clusterTargets judges the cluster's targets.
func clusterTargets(r *Results) []Target {
	cr := r.Cluster
	if cr == nil {
		return nil
	}
	c := r.clusterTop()
	var ts []Target
	for _, wl := range []string{Write, Read} {
		t := Target{Goal: fmt.Sprintf("Cluster: CPU of a forwarded %s against a local one (3 nodes, concurrency %d)", singular(wl), c), Want: "≤ 1.6x",
			Cells: []*Cell{r.ClusterCell(OneNode, wl, c), r.ClusterCell(ThreeNodesToOwner, wl, c), r.ClusterCell(ThreeNodes, wl, c)}}
		if k, ok := costOfForwarding(r, wl, c); ok {
			t.Got = fmt.Sprintf("%s (%.0f vs %.0f µs of server CPU); %s against one node's (%.0f vs %.0f µs)",
				times(k.ratio()), k.forwarded, k.local, times(k.oneRatio()), k.oneForwarded, k.oneLocal)
			t.Met = boolPtr(k.ratio() <= 1.6)
		}
		ts = append(ts, t)
	}
	for _, wl := range []string{Write, Read} {
		one, rr := r.ClusterCell(OneNode, wl, c), r.ClusterCell(ThreeNodes, wl, c)
		t := Target{Goal: fmt.Sprintf("Cluster: p99 of %s, 3 nodes with 2 calls in 3 forwarded vs 1 node (concurrency %d)", workloadPlural(wl), c), Want: "≤ 2x",
			Cells: []*Cell{one, rr}}
		if one != nil && rr != nil && one.Load.All.P99 > 0 {
			x := float64(rr.Load.All.P99) / float64(one.Load.All.P99)
			t.Got = fmt.Sprintf("%s (%s vs %s)", times(x), millis(rr.Load.All.P99), millis(one.Load.All.P99))
			t.Met = boolPtr(x <= 2)
		}
		ts = append(ts, t)
	}
	{
		t := Target{Goal: fmt.Sprintf("Cluster: throughput, 3 nodes (2 calls in 3 forwarded) vs 1 node on the same %d cores (concurrency %d)", r.Machine.Cores, c), Want: "a figure"}
		var parts []string
		for _, wl := range []string{Write, Read} {
			one, rr := r.ClusterCell(OneNode, wl, c), r.ClusterCell(ThreeNodes, wl, c)
			if one != nil && rr != nil && one.Load.Throughput > 0 {
				parts = append(parts, fmt.Sprintf("%s %s (%s vs %s req/s)", workloadPlural(wl), pct(rr.Load.Throughput/one.Load.Throughput),
					count(rr.Load.Throughput), count(one.Load.Throughput)))
				t.Cells = append(t.Cells, one, rr)
			}
		}
		t.Got = joinAnd(parts)
		ts = append(ts, t)
	}
	{
		limit := cr.LeaseTTL + time.Second
		t := Target{Goal: fmt.Sprintf("Cluster: after kill -9 of a node, until every shard of it serves again (max of %d trials; lease TTL %v)", len(cr.Failover), cr.LeaseTTL),
			Want: fmt.Sprintf("≤ %v (TTL + 1 s)", limit)}
		if s := summariseFailover(cr.Failover); s.trials > 0 {
			t.Got = fmt.Sprintf("%s max, %s p50", seconds(s.servedMax), seconds(s.servedP50))
			if s.errors > 0 {
				t.Got += fmt.Sprintf("; %d probes never answered", s.errors)
			}
			t.Met = boolPtr(s.servedMax <= limit && s.errors == 0)
		}
		ts = append(ts, t)
	}
	{
		t := Target{Goal: "Cluster: failed requests during a rolling restart of the 3 nodes under load", Want: "0"}
		u := Target{Goal: "Cluster: p99 during the rolling restart", Want: "a figure"}
		if rr := cr.Rolling; rr != nil {
			d := rr.During
			t.Got = fmt.Sprintf("%s of %s (%s retried on another node)", count(float64(d.Errors)), count(float64(d.Requests+d.Errors)), count(float64(d.Retries)))
			t.Met = boolPtr(d.Errors == 0)
			u.Got = fmt.Sprintf("%s (%s before it, same load)", millis(d.All.P99), millis(rr.Steady.All.P99))
		}
		ts = append(ts, t, u)
	}
	{
		t := Target{Goal: fmt.Sprintf("Cluster: lease upkeep on Postgres, idle %d-node cluster", cr.Nodes), Want: "a figure"}
		if u := r.upkeepOf(cr.Nodes); u != nil {
			if k, ok := ratesOf(*u); ok {
				t.Got = fmt.Sprintf("%.2f statements/s per node, %.4f per shard (%d shards)", k.statementsPerNode, k.statementsPerShard, u.Shards)
			}
		}
		p := Target{Goal: fmt.Sprintf("Cluster: lease upkeep at %d nodes and %s shards (computed)", projectedNodes, count(projectedShards)), Want: "a figure"}
		if u := r.upkeepOf(cr.Nodes); u != nil {
			if k, ok := ratesOf(*u); ok {
				pr := project(k, u.Shards, projectedNodes, projectedShards)
				p.Got = fmt.Sprintf("%s statements/s (%.2f per node, %.3f per shard); %s lease rows read and %s updated per second",
					count(pr.statements), pr.statementsPerNode, pr.perShard, rows(pr.rowsRead), rows(pr.rowsUpdated))
			}
		}
		ts = append(ts, t, p)
	}
	return ts
}

func writeCluster(w *writer, r *Results) {
	cr := r.Cluster
	if cr == nil {
		return
	}
	c := r.clusterTop()
	w.p("## Cluster")
	when := "by the same run"
	if cr.Started.Before(r.Started) || cr.Started.After(r.Started.Add(r.WallTime)) {
		when = fmt.Sprintf("by a run of its own (`go run ./bench -only cluster`) on %s, merged into these results", cr.Started.Format("2006-01-02 15:04 MST"))
	}
	w.p("Measured %s, in %s of wall time, at revision `%s`. Load average (1, 5, 15 min) at its start: %s; at its end: %s.%s",
		when, cr.WallTime, cr.Revision, cr.LoadStart, cr.LoadEnd, loadNote(cr.LoadStart, cr.LoadEnd, r.Machine.Cores))
	w.p("The shopping cart server, as built above, runs as one node and as a cluster of %d nodes, each system on a Postgres database of its own, "+
		"with the servers' default cluster settings: %s shards, lease TTL %v (a heartbeat every TTL/4). Every node is on this machine, on the same %d cores, "+
		"so the cluster cannot be faster than one node: these cells measure what it costs. The load is the one above (a closed loop of *c* workers, "+
		"%d connections per node, %s carts, uniform popularity only), %v unmeasured then %v measured per cell, in three ways: one node; "+
		"the three nodes with each call sent to the node that owns its cart (the bench computes the cart's shard as the runtime does and reads the leases; "+
		"nothing is forwarded); and the three nodes with the calls spread round-robin, so that two in three reach a node that does not own the cart "+
		"and are forwarded one hop. \"Forwarded\" is counted by the nodes (`statefun_cluster_forwards_total` less `_forward_retries_total`, "+
		"over the calls they served). CPU is summed over all the nodes' processes.",
		cr.Nodes, count(float64(cr.Shards)), cr.LeaseTTL, r.Machine.Cores, r.Settings.ClientConns, count(float64(r.Settings.Carts)), r.Settings.Ramp, r.Settings.Duration)
	if cr.Listing != "" {
		w.line("The cluster after it settled (`shoppingcart cluster`):")
		w.nl()
		w.line("```")
		w.line("%s", cr.Listing)
		w.line("```")
		w.nl()
	}

	w.p("### One node and three")
	marked := false
	w.row("Workload", "c", "System", "req/s", "p50", "p99", "forwarded", "server µs/req", "Postgres µs/req", "CPU cores: server / Postgres / load gen / kernel / other")
	w.row("---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---")
	for _, wl := range []string{Write, Read} {
		for _, conc := range r.Settings.Concurrencies {
			for _, s := range ClusterSystems {
				cell := r.ClusterCell(s, wl, conc)
				if cell == nil {
					continue
				}
				m := mark(cell)
				marked = marked || m != ""
				k := costOf(cell)
				w.row(workloadTitle(wl), fmt.Sprint(conc), systemTitle(s), count(cell.Load.Throughput)+m, millis(cell.Load.All.P50), millis(cell.Load.All.P99),
					pct(cell.Cluster.ForwardedShare()), fmt.Sprintf("%.0f", k.server), fmt.Sprintf("%.0f", k.postgres), cpuSplit(cell.CPU))
			}
		}
	}
	w.nl()
	if marked {
		w.p("† Other processes took more than %.2f cores during this cell: it measured a shared machine, compare it with care.", disturbedCores)
	}

	writeForwarding(w, r, c)
	writeFailover(w, r)
	writeRolling(w, r)
	writeUpkeep(w, r)
}

func writeForwarding(w *writer, r *Results, top int) {
	w.p("### What a forwarded call costs")
	w.p("A call that reaches the node owning its cart runs there; any other node sends it on over gRPC to the owner, which runs it as it runs a local call. " +
		"So a forwarded call costs a local call plus the hop: one more gRPC call received (by the owner) and one made (by the forwarding node). " +
		"With *f* the share of calls forwarded and *c* the server CPU per call (all nodes together), *c = L + f·H*, *L* being the CPU of a local call " +
		"and *H* that of the hop. The two cells of the same cluster (calls sent to their owners, *f* ≈ 0; round-robin, *f* ≈ ⅔) give " +
		"*H = (c_rr − c_owner) / (f_rr − f_owner)* and *L = c_owner − f_owner·H*; a forwarded call costs *L + H*, judged against *L*. " +
		"Against one node, whose calls are all local (*L₁ = c₁*), the same reasoning gives *c₁ + (c_rr − c₁) / f_rr*: that charges forwarding with " +
		"everything else the cluster costs too (three processes sharing the calls, each with a third of them per connection and per journal batch), " +
		"so it is shown beside it as an upper bound. Server CPU only: a hop does no database work.")
	w.row("Workload", "c", "local call, µs", "hop, µs", "forwarded call, µs", "forwarded / local", "against one node: local, forwarded, ratio", "p99: 3 nodes round-robin / 1 node")
	w.row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	for _, wl := range []string{Write, Read} {
		for _, c := range r.Settings.Concurrencies {
			k, ok := costOfForwarding(r, wl, c)
			if !ok {
				continue
			}
			p99 := "-"
			if one, rr := r.ClusterCell(OneNode, wl, c), r.ClusterCell(ThreeNodes, wl, c); one.Load.All.P99 > 0 {
				p99 = fmt.Sprintf("%s (%s vs %s)", times(float64(rr.Load.All.P99)/float64(one.Load.All.P99)), millis(rr.Load.All.P99), millis(one.Load.All.P99))
			}
			w.row(workloadTitle(wl), fmt.Sprint(c), fmt.Sprintf("%.0f", k.local), fmt.Sprintf("%.0f", k.hop), fmt.Sprintf("%.0f", k.forwarded),
				times(k.ratio()), fmt.Sprintf("%.0f, %.0f, %s", k.oneLocal, k.oneForwarded, times(k.oneRatio())), p99)
		}
	}
	w.nl()
	writeForwardingVerdict(w, r, top)
}

// writeForwardingVerdict explains the forwarding targets from the cells.
func writeForwardingVerdict(w *writer, r *Results, top int) {
	for _, wl := range []string{Write, Read} {
		k, ok := costOfForwarding(r, wl, top)
		if !ok || k.ratio() <= 1.6 {
			continue
		}
		text := fmt.Sprintf("**A forwarded %s costs %s a local one at concurrency %d, not 1.6x.** The hop took %.0f µs of server CPU, "+
			"against %.0f µs for the whole local %s; 1.6x needs it under %.0f µs. ",
			singular(wl), times(k.ratio()), top, k.hop, k.local, singular(wl), 0.6*k.local)
		if cn := costOf(r.Cell(Noop, wl, Uniform, top, false)); cn.server > 0 {
			floor := cn.server + cn.load
			text += fmt.Sprintf("A hop is a whole gRPC call on each side, and by the no-op cells above a gRPC server spends %.0f µs on a call and its client "+
				"(the load generator, a gRPC client as the forwarding node is) %.0f µs: %.0f µs together, %s of a local %s, before any work of statefun's. ",
				cn.server, cn.load, floor, pct(floor/k.local), singular(wl))
			if floor > 0.6*k.local {
				text += "So no gRPC hop can meet the target for this call on this machine. "
			}
			if k.hop > 1.5*floor {
				text += fmt.Sprintf("The measured hop is %s that; this run takes no profile of a cluster node, so the rest is not attributed here. ", times(k.hop/floor))
			}
		}
		if one := r.ClusterCell(OneNode, wl, top); one != nil && k.local > serverMicros(one) {
			text += fmt.Sprintf("Part of it is the rate: even a local call costs more in the cluster than on one node (%.0f against %.0f µs), because each process "+
				"serves a third of the calls, so fewer of them share each socket read and write, each HTTP/2 frame and each journal batch, and three Go "+
				"runtimes collect garbage and schedule. ", k.local, serverMicros(one))
		}
		text += "A hop cheaper than a gRPC call needs a leaner transport between nodes (calls batched per peer connection); clients that send " +
			"each call to its owner, as the owner-routed cells do, forward nothing in the steady state."
		w.p("%s", text)
	}
	for _, wl := range []string{Write, Read} {
		one, rr := r.ClusterCell(OneNode, wl, top), r.ClusterCell(ThreeNodes, wl, top)
		if one == nil || rr == nil || one.Load.All.P99 == 0 || rr.Load.Throughput == 0 || rr.Load.All.P99 <= 2*one.Load.All.P99 {
			continue
		}
		w.p("**The p99 of %s is %s one node's at concurrency %d, not 2x or less.** The load is a closed loop of %d workers, so a request's latency "+
			"is the time the others' requests keep the cores: the throughput fell to %s of one node's (%s the CPU per call on the same cores), "+
			"and the latency rose by about its inverse (p50 %s, p99 %s). On cores of its own a node would not queue behind its peers' work; here the p99 follows the CPU.",
			workloadPlural(wl), times(float64(rr.Load.All.P99)/float64(one.Load.All.P99)), top, top, pct(rr.Load.Throughput/one.Load.Throughput),
			times(serverMicros(rr)/max(serverMicros(one), 1)), times(float64(rr.Load.All.P50)/float64(max(one.Load.All.P50, 1))),
			times(float64(rr.Load.All.P99)/float64(one.Load.All.P99)))
	}
}

func writeFailover(w *writer, r *Results) {
	cr := r.Cluster
	if len(cr.Failover) == 0 {
		return
	}
	w.p("### Failover after kill -9")
	w.p("With the %d nodes settled and no load, one node is killed with SIGKILL (a different one each trial, in turn). Right after the kill the bench sends, "+
		"through the live nodes, one read of an entity in each of the killed node's shards (an existing cart where one falls in the shard); "+
		"each call waits at the node it reached until the shard has a live owner, then is answered. \"Served again\" is when the last of them was answered; "+
		"\"held\" is when the live nodes' `statefun_cluster_shards_owned` added up to all %s shards. \"Lease left\" is how long the killed node's leases "+
		"still had to run when it died (the TTL less the age of its last heartbeat, read from the database); nobody may take a shard before that. "+
		"Then the node is started again on the same address and the bench waits until the shards are spread evenly again.",
		cr.Nodes, count(float64(cr.Shards)))
	w.row("Trial", "Node killed", "Its shards", "Lease left", "All shards held", "Served again", "After the leases ran out", "Probes unanswered", "Even again after restart")
	w.row("---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	for i, t := range cr.Failover {
		w.row(fmt.Sprint(i+1), t.Node, fmt.Sprint(t.Shards), seconds(t.LeaseLeft), seconds(t.Owned), seconds(t.Served), seconds(t.Served-t.LeaseLeft),
			fmt.Sprint(t.ProbeErrors), seconds(t.Rebalanced))
	}
	w.nl()
	s := summariseFailover(cr.Failover)
	limit := cr.LeaseTTL + time.Second
	verdict := "within"
	if s.servedMax > limit || s.errors > 0 {
		verdict = "**beyond**"
	}
	after := make([]time.Duration, 0, len(cr.Failover))
	for _, t := range cr.Failover {
		after = append(after, t.Served-t.LeaseLeft)
	}
	w.p("Every shard of the killed node served again after %s at the median and %s at most over %d trials, %s the target of TTL + 1 s = %s. "+
		"The time is the lease's remaining life at the kill, which the TTL bounds (the last heartbeat was up to TTL/4 = %s before it), "+
		"plus the time for a live node to see the lease lapsed and take the shard: %s to %s here. A node looks at every heartbeat, and at once "+
		"when a call is waiting for a shard without a live owner (each such call asks its node for a heartbeat).",
		seconds(s.servedP50), seconds(s.servedMax), s.trials, verdict, seconds(limit), seconds(cr.LeaseTTL/4),
		seconds(slices.Min(after)), seconds(slices.Max(after)))
}

func writeRolling(w *writer, r *Results) {
	rr := r.Cluster.Rolling
	if rr == nil {
		return
	}
	w.p("### Rolling restart under load")
	w.p("%s at concurrency %d over the %d nodes (workers spread round-robin over their connections), from clients that behave as a gRPC client given "+
		"several addresses would: each write carries an idempotency key (header `idempotency-key`), and a call answered UNAVAILABLE "+
		"(the node is shutting down or cannot be reached) is sent again, with the same key, through the next connection, another node, "+
		"until it succeeds or 10 s have passed; a request not answered by then is a failed request. Meanwhile each node in turn gets SIGTERM "+
		"(it hands its shards to the others, then stops taking calls and exits), is started again on the same address, and the next one "+
		"goes once the shards are spread evenly again. The same load ran for %v just before, without restarts. Latency is from a request's first "+
		"attempt to its answer.", workloadTitle(rr.Workload), rr.Concurrency, r.Cluster.Nodes, r.Settings.Duration)
	w.row("Window", "Length", "Requests", "Failed", "Retried on another node", "req/s", "p50", "p99", "max")
	w.row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	for _, x := range []struct {
		name string
		res  load.Result
	}{{"steady, before", rr.Steady}, {"rolling restart", rr.During}} {
		l := x.res
		w.row(x.name, seconds(l.Window), count(float64(l.Requests)), count(float64(l.Errors)), count(float64(l.Retries)), count(l.Throughput),
			millis(l.All.P50), millis(l.All.P99), millis(l.All.Max))
	}
	w.nl()
	w.row("Node", "SIGTERM to exit", "Restart to serving", "Restart to shards even")
	w.row("---", "---:", "---:", "---:")
	for _, s := range rr.Steps {
		w.row(s.Node, seconds(s.Stopped), seconds(s.Serving), seconds(s.Balanced))
	}
	w.nl()
	if rr.During.Errors == 0 {
		w.p("No request failed: every call a stopping node could no longer take was answered by another node within the deadline. " +
			"(That a write retried with its key ran once is the reliability suite's to check, with a ledger; see RELIABILITY.md.)")
	} else {
		w.p("**%s requests failed** after their retries; the first error: `%s`.", count(float64(rr.During.Errors)), rr.During.FirstError)
	}
}

func writeUpkeep(w *writer, r *Results) {
	cr := r.Cluster
	if len(cr.Upkeep) == 0 {
		return
	}
	w.p("### Lease upkeep")
	w.p("Both clusters idle (no requests) for %v, after waiting for Postgres to report their start-up. Lease statements come from the nodes' own "+
		"counters: each heartbeat (`statefun_cluster_lease_renewals_total`) is three statements, the renewal (the node's heartbeat and all its leases, "+
		"one statement), the read of the nodes and the read of the leases; acquiring and releasing leases add one each when shards move "+
		"(none moved in the window: `_leases_acquired_total` and `_handoffs_total` stayed put). The database's own counts are beside them: "+
		"its transactions (`pg_stat_database`; a statement outside a transaction is one) and the rows of the lease table read and updated "+
		"(`pg_stat_user_tables`). `pg_stat_statements` would count statements by their text, but it needs Postgres restarted to load it.",
		cr.Upkeep[0].Window.Round(time.Second))
	w.row("Cluster", "Shards", "Heartbeats/s a node", "Lease statements/s a node", "… per shard", "DB transactions/s", "… of which not leases",
		"Lease rows read per heartbeat", "… updated per heartbeat", "Postgres CPU (its backends)")
	w.row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	for _, u := range cr.Upkeep {
		k, ok := ratesOf(u)
		if !ok {
			continue
		}
		w.row(nodesTitle(u.Nodes), count(float64(u.Shards)), fmt.Sprintf("%.2f", k.heartbeatsPerNode), fmt.Sprintf("%.2f", k.statementsPerNode),
			fmt.Sprintf("%.4f", k.statementsPerShard), fmt.Sprintf("%.1f", k.transactions), fmt.Sprintf("%.1f", k.other),
			count(k.rowsReadPerBeat), count(k.rowsUpdatedPerBeat), fmt.Sprintf("%.3f cores", k.postgresCores))
	}
	w.nl()
	u := r.upkeepOf(cr.Nodes)
	if u == nil {
		return
	}
	k, ok := ratesOf(*u)
	if !ok {
		return
	}
	w.p("The transactions that are not lease statements (%.1f/s in the %d-node cluster) are the other work of an idle cluster: the sent-call "+
		"dispatcher reads its feed every 100 ms when idle (`consumerPoll`, `runtime/consumer.go`), on the one node that runs it. "+
		"A heartbeat reads about %.1f lease rows per shard (%s of %s): the renewal finds the node's leases by scanning the lease table twice "+
		"(the table has no index on the owner: once to lock them, once in the update's join) and the lease read returns every row; "+
		"it updates the node's own leases only (%s).",
		k.other, u.Nodes, k.rowsReadPerBeat/float64(u.Shards), count(k.rowsReadPerBeat), count(float64(u.Shards)), count(k.rowsUpdatedPerBeat))
	pr := project(k, u.Shards, projectedNodes, projectedShards)
	w.p("**At %d nodes and %s shards**, computed from these rates (the cluster simulation's own figures, `TestLeaseUpkeepFigures` in "+
		"`runtime/internal/cluster/sim_test.go`, are not in this tree): every node heartbeats at the same rate whatever the cluster's size "+
		"(%.2f/s), each heartbeat is three statements, renews the node's own leases (%s shards / %d nodes = %s rows) and reads %.1f rows per shard of the lease table.",
		projectedNodes, count(projectedShards), k.heartbeatsPerNode, count(projectedShards), projectedNodes, count(float64(projectedShards)/projectedNodes),
		k.rowsReadPerBeat/float64(u.Shards))
	w.row("At "+fmt.Sprint(projectedNodes)+" nodes, "+count(projectedShards)+" shards", "Per second", "Formula")
	w.row("---", "---:", "---")
	w.row("lease statements, all nodes", count(pr.statements), fmt.Sprintf("3 × %.2f heartbeats/s × %d nodes", k.heartbeatsPerNode, projectedNodes))
	w.row("… per node", fmt.Sprintf("%.2f", pr.statementsPerNode), "3 × heartbeats/s")
	w.row("… per shard", fmt.Sprintf("%.4f", pr.perShard), "all nodes' statements / shards")
	w.row("lease rows updated", rows(pr.rowsUpdated), "shards × heartbeats/s (each lease renewed by its owner's heartbeat)")
	w.row("lease rows read", rows(pr.rowsRead), fmt.Sprintf("%.1f × shards × heartbeats/s × nodes", k.rowsReadPerBeat/float64(u.Shards)))
	w.row("lease rows sent to the nodes", rows(pr.rowsOut), "shards × heartbeats/s × nodes (every node reads every lease)")
	w.row("node rows read", rows(pr.nodeRowsRead), "nodes × heartbeats/s × nodes")
	w.nl()
	w.p("The statements stay few (%s/s); the rows do not: every node reads every lease at every heartbeat, so the rows read grow with nodes × shards, "+
		"%s/s at that scale against %s/s measured here. An index on the lease table's owner would cut the renewal's part to the node's own leases; "+
		"reading only the leases that changed since the last heartbeat (an epoch or expiry watermark) would cut the rest.",
		count(pr.statements), rows(pr.rowsRead), rows(k.rowsReadPerBeat*k.heartbeatsPerNode*float64(u.Nodes)))
}

// loadNote warns when the machine was busy at the start or the end of
// the part.
func loadNote(start, end string, cores int) string {
	var high float64
	for _, l := range []string{start, end} {
		var one float64
		if _, err := fmt.Sscan(l, &one); err == nil {
			high = max(high, one)
		}
	}
	if cores == 0 || high < 0.5*float64(cores) {
		return ""
	}
	return fmt.Sprintf(" **The machine was busy with other work** (a 1-minute load of up to %.1f on %d cores): the \"other\" CPU column shows how much "+
		"it took from each cell, cells where it took much are marked †, and the figures are noisier than on a quiet machine.", high, cores)
}

func nodesTitle(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

func singular(wl string) string {
	return map[string]string{Write: "write", Read: "read"}[wl]
}

func workloadPlural(wl string) string {
	return map[string]string{Write: "writes", Read: "reads", Mix: "a 90/10 mix"}[wl]
}

// seconds formats a duration in seconds with 2 decimals.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// rows formats a row count, in millions from a million.
func rows(v float64) string {
	if v >= 1e6 {
		return fmt.Sprintf("%.1f million", v/1e6)
	}
	return count(v)
}

func joinAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	out := parts[0]
	for _, p := range parts[1 : len(parts)-1] {
		out += ", " + p
	}
	return out + " and " + parts[len(parts)-1]
}
