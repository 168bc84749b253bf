package main

// simulationMutants break the cluster's membership and leases
// (runtime/internal/cluster) for the simulation (TestSimulation, three
// seeds) to catch: safety (no shard served by two nodes, none served by
// a node that could not write it), balance and settling in bounded time,
// bounded movement, failover within TTL and a heartbeat.
var simulationMutants = []mutant{
	{
		name: "cluster: renewals serve to expiry, without the margin",
		file: "runtime/internal/cluster/node.go",
		old:  `		h.until = sent.Add(n.cfg.LeaseTTL - n.cfg.Margin)`,
		new:  `		h.until = sent.Add(n.cfg.LeaseTTL)`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: a renewal counts from its answer, not its sending",
		file: "runtime/internal/cluster/node.go",
		old:  `		h.until = sent.Add(n.cfg.LeaseTTL - n.cfg.Margin)`,
		new:  `		h.until = n.cfg.Now().Add(n.cfg.LeaseTTL - n.cfg.Margin)`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: handoff releases before it drains",
		file: "runtime/internal/cluster/node.go",
		old: `	start := n.cfg.Now()
	n.mu.Lock()`,
		new: `	start := n.cfg.Now()
	if err := n.cfg.Store.Release(ctx, n.cfg.ID, shards); err != nil {
		return err
	}
	n.mu.Lock()`,
		pkg: "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: a shard is served while it drains",
		file: "runtime/internal/cluster/node.go",
		old:  `		n.drained[s] = true`,
		new:  `		_ = s`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: Leave releases without handing off",
		file: "runtime/internal/cluster/node.go",
		old: `	if len(shards) > 0 {
		err = n.handoff(ctx, shards)
	}`,
		new: ``,
		pkg: "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: handoff waits for expiry instead of releasing",
		file: "runtime/internal/cluster/node.go",
		old:  `	if err := n.cfg.Store.Release(ctx, n.cfg.ID, shards); err != nil {`,
		new:  `	if err := error(nil); err != nil {`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: a heartbeat hands off more than MaxMoves",
		file: "runtime/internal/cluster/node.go",
		old:  `	if len(handoff) > n.cfg.MaxMoves {`,
		new:  `	if false {`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: a lost lease stays in memory",
		file: "runtime/internal/cluster/node.go",
		old: `		if !kept[s] {
			delete(n.held, s)`,
		new: `		if !kept[s] && false {
			delete(n.held, s)`,
		pkg: "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: a dead node is noticed late",
		file: "runtime/internal/cluster/node.go",
		old:  `node.Age < n.cfg.LeaseTTL ||`,
		new:  `node.Age < 3*n.cfg.LeaseTTL ||`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: live nodes flap dead and back",
		file: "runtime/internal/cluster/node.go",
		old:  `node.Age < n.cfg.LeaseTTL ||`,
		new:  `node.Age < 3*n.cfg.LeaseTTL/10 ||`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: no quick retry while shards are still to take",
		file: "runtime/internal/cluster/node.go",
		old: `			return true
		}
	}
	return false`,
		new: `			return false
		}
	}
	return false`,
		pkg: "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: Assign lets loads differ by more than one",
		file: "runtime/internal/cluster/assign.go",
		old:  `load[i] > base || (load[i] == base && extra == 0)`,
		new:  `load[i] > base`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
	{
		name: "cluster: Assign reshuffles on every change of membership",
		file: "runtime/internal/cluster/assign.go",
		old:  `		hashes[i] = nodeHash(n)`,
		new:  `		hashes[i] = nodeHash(n) ^ uint64(len(nodes))`,
		pkg:  "./runtime/internal/cluster/", run: "TestSimulation$",
	},
}

func init() { mutants = append(mutants, simulationMutants...) }
