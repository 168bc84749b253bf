package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/statefun-go/statefun/bench/internal/procstat"
	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/report"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// The cluster benchmarks run the shopping cart server on Postgres as one
// node and as a cluster of clusterSize nodes, each on a database of its
// own, on this machine: the same cores, so the cluster can only cost, and
// these cells measure what. Load is spread round-robin over the nodes, so
// that about (n-1)/n of the requests reach a node that does not own the
// cart and are forwarded.
const clusterSize = 3

// upkeepWindow is how long the idle clusters' database work is counted:
// a dozen heartbeats a node at the default lease TTL.
const upkeepWindow = 15 * time.Second

// rollingConcurrency is the load during the rolling restart: enough to
// keep every node busy, while leaving some of two shared cores to the
// node that restarts.
const rollingConcurrency = 16

// runCluster measures the cluster: its idle lease upkeep, one node against
// three under the write and read workloads, failover after kill -9, and a
// rolling restart under load.
func (b *bench) runCluster(ctx context.Context) error {
	cr := &report.ClusterRun{
		Started: time.Now().UTC(), Revision: b.res.Machine.Revision, LoadStart: loadAverage(),
		Nodes: clusterSize, LeaseTTL: b.o.leaseTTL,
	}
	b.res.Cluster = cr
	b.mu.Lock()
	b.problems = &cr.Problems
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.problems = &b.res.Problems
		b.mu.Unlock()
	}()
	log.Printf("cluster: one node, and %d nodes on one database", clusterSize)
	var systems []*system
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	for _, sc := range []struct {
		name  string
		nodes int
	}{{report.OneNode, 1}, {report.ThreeNodes, clusterSize}} {
		s, err := b.startCluster(ctx, sc.name, sc.nodes)
		if err != nil {
			return err
		}
		systems = append(systems, s)
	}
	one, three := systems[0], systems[1]
	shards, err := b.clusterShards(ctx, three)
	if err != nil {
		return err
	}
	cr.Shards = shards
	for _, s := range systems {
		took, err := b.waitShards(ctx, s.nodes, balanced(shards))
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		s.warmedAt = time.Now()
		log.Printf("  %s: shards spread over its %d nodes %v after they started", s.name, len(s.nodes), took.Round(100*time.Millisecond))
	}
	out, err := b.commandOutput(ctx, "list the cluster's nodes and shards", b.bins["shoppingcart"], "cluster",
		"--database-url", b.dbURL(report.ThreeNodes, ""), "--database-schema", statefunSchema)
	if err != nil {
		return err
	}
	cr.Listing = strings.TrimSpace(out)

	if cr.Upkeep, err = b.leaseUpkeep(ctx, systems); err != nil {
		return err
	}

	// The warm-up creates every cart; the read cells find them in memory.
	for _, s := range systems {
		if err := b.warm(ctx, s, true); err != nil {
			return err
		}
	}
	// The same cluster, reached by a client that sends each call to the
	// node that owns its cart: what the cluster costs without forwarding.
	toOwner, err := b.routedToOwners(ctx, three, shards)
	if err != nil {
		return err
	}
	for _, wl := range []string{report.Write, report.Read} {
		readFraction := map[string]float64{report.Write: 0, report.Read: 1}[wl]
		for _, c := range b.o.concurrencies {
			for _, s := range []*system{one, toOwner, three} {
				cell, err := b.measure(ctx, s, wl, report.Uniform, c, readFraction)
				if err != nil {
					return err
				}
				cr.Cells = append(cr.Cells, cell)
			}
		}
	}
	if err := b.stopSystem(ctx, one, ""); err != nil {
		return err
	}

	log.Printf("  failover after kill -9, %d trials", b.o.failoverTrials)
	for i := range b.o.failoverTrials {
		t, err := b.failover(ctx, three, three.nodes[i%len(three.nodes)], shards)
		if err != nil {
			return err
		}
		cr.Failover = append(cr.Failover, t)
	}
	rolling, err := b.rollingRestart(ctx, three, shards)
	if err != nil {
		return err
	}
	cr.Rolling = rolling
	if err := b.stopSystem(ctx, three, ""); err != nil {
		return err
	}
	cr.LoadEnd = loadAverage()
	cr.WallTime = time.Since(cr.Started).Round(time.Second)
	return nil
}

// startCluster starts the nodes of a cluster on the system's database,
// all at once, and connects to each: b.o.conns connections a node, in
// round-robin order, so that the load's workers spread over the nodes.
func (b *bench) startCluster(ctx context.Context, name string, nodes int) (*system, error) {
	s := &system{name: name, db: b.databases[name], dbPort: b.dbPort, clustered: true}
	for i := range nodes {
		n := &node{name: fmt.Sprintf("%s-%d", name, i+1), addr: freeAddr(), httpAddr: freeAddr(), bin: b.bins["shoppingcart"]}
		n.args = []string{"serve", "--listen", n.addr, "--http-listen", n.httpAddr,
			"--database-url", b.dbURL(name, ""), "--database-schema", statefunSchema,
			"--lease-ttl", b.o.leaseTTL.String(), "--log-level", "warn"}
		if err := b.startNode(n); err != nil {
			return nil, err
		}
		s.nodes = append(s.nodes, n)
	}
	for range min(b.o.conns, 64) {
		for _, n := range s.nodes {
			conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return nil, err
			}
			s.conns = append(s.conns, conn)
			s.clients = append(s.clients, cartv1.NewShoppingCartServiceClient(conn))
		}
	}
	for i, n := range s.nodes {
		err := waitFor(ctx, func() error {
			if n.proc.done() {
				return fmt.Errorf("%s exited at start", n.name)
			}
			_, err := s.clients[i].GetCart(ctx, &cartv1.GetCartRequest{CartId: "ready"})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s did not start: %w (log: %s)", n.name, err, n.proc.logPath)
		}
	}
	return s, nil
}

// routedToOwners returns the cluster s as a system whose load sends each
// cart to the node that holds the lease of its shard now.
func (b *bench) routedToOwners(ctx context.Context, s *system, shards int) (*system, error) {
	conn, err := pgx.Connect(ctx, b.dbURL(s.name, ""))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, _ := conn.Query(ctx, "SELECT shard, owner FROM "+pgx.Identifier{statefunSchema, "shard_leases"}.Sanitize()+" WHERE expires > now()")
	type lease struct {
		Shard int
		Owner string
	}
	leases, err := pgx.CollectRows(rows, pgx.RowToStructByPos[lease])
	if err != nil {
		return nil, fmt.Errorf("read the leases of %s: %w", s.name, err)
	}
	nodeOf := map[string]int{}
	for i, n := range s.nodes {
		nodeOf[n.addr] = i
	}
	ownerOfShard := make([]int, shards)
	for _, l := range leases {
		i, ok := nodeOf[l.Owner]
		if !ok {
			return nil, fmt.Errorf("shard %d of %s is held by %q, not one of its nodes", l.Shard, s.name, l.Owner)
		}
		ownerOfShard[l.Shard] = i
	}
	owner := make([]int, b.o.carts)
	for c := range owner {
		owner[c] = ownerOfShard[cartShard(cartID(c), shards)]
	}
	routed := *s
	routed.name = report.ThreeNodesToOwner
	nodes, perNode := len(s.nodes), len(s.clients)/len(s.nodes)
	// Clients are in round-robin order: client j reaches node j % nodes.
	routed.route = func(cart, worker int) int { return owner[cart] + nodes*(worker%perNode) }
	return &routed, nil
}

// clusterShards reads the shard count the cluster's first node recorded.
func (b *bench) clusterShards(ctx context.Context, s *system) (int, error) {
	conn, err := pgx.Connect(ctx, b.dbURL(s.name, ""))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, "SELECT shards FROM "+pgx.Identifier{statefunSchema, "cluster_config"}.Sanitize()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read the shard count of %s: %w", s.name, err)
	}
	return n, nil
}

// balanced says whether the nodes hold every shard, within one of each
// other.
func balanced(shards int) func([]int) bool {
	return func(held []int) bool {
		sum := 0
		for _, h := range held {
			sum += h
		}
		return len(held) > 0 && sum == shards && slices.Max(held)-slices.Min(held) <= 1
	}
}

// allHeld says whether the nodes hold every shard between them.
func allHeld(shards int) func([]int) bool {
	return func(held []int) bool {
		sum := 0
		for _, h := range held {
			sum += h
		}
		return sum == shards
	}
}

// settleTimeout bounds the wait for a cluster's shards to settle.
const settleTimeout = time.Minute

// waitShards polls the nodes' statefun_cluster_shards_owned until ok
// holds, and returns how long that took.
func (b *bench) waitShards(ctx context.Context, nodes []*node, ok func([]int) bool) (time.Duration, error) {
	start := time.Now()
	var last []int
	for {
		c, err := readCounters(ctx, nodes)
		if err == nil {
			if ok(c.shards) {
				return time.Since(start), nil
			}
			last = c.shards
		}
		if time.Since(start) > settleTimeout {
			if err != nil {
				return 0, fmt.Errorf("the nodes' shards did not settle within %v: %w", settleTimeout, err)
			}
			return 0, fmt.Errorf("the nodes' shards did not settle within %v (last seen: %v)", settleTimeout, last)
		}
		if !sleepCtx(ctx, 25*time.Millisecond) {
			return 0, ctx.Err()
		}
	}
}

// upkeepSample is what an idle cluster has done so far.
type upkeepSample struct {
	at                      time.Time
	work                    report.ClusterWork
	xacts                   int64
	leaseRead, leaseUpdated int64
	nodeRead, nodeUpdated   int64
	postgresCPU, serverCPU  float64
}

// leaseUpkeep counts the database work of idle clusters over
// upkeepWindow, all in one window: the nodes' own counts of their
// heartbeats, and each database's count of its transactions and of the
// rows of the lease and node tables. The database's counters are exact
// only once its backends have reported, so it first waits until the
// clusters have been settled for as long as an idle backend may hold its
// counts back.
func (b *bench) leaseUpkeep(ctx context.Context, systems []*system) ([]report.LeaseUpkeep, error) {
	var last time.Time
	for _, s := range systems {
		if s.warmedAt.After(last) {
			last = s.warmedAt
		}
	}
	if wait := time.Until(last.Add(statsIdleFlush)); wait > 0 {
		log.Printf("  waiting %v for Postgres to report the clusters' start-up", wait.Round(100*time.Millisecond))
		if !sleepCtx(ctx, wait) {
			return nil, ctx.Err()
		}
	}
	conns := make([]*pgx.Conn, len(systems))
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	for i, s := range systems {
		c, err := pgx.Connect(ctx, b.dbURL(s.name, ""))
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	first := make([]upkeepSample, len(systems))
	for i, s := range systems {
		smp, err := b.upkeepSample(ctx, s, conns[i])
		if err != nil {
			return nil, err
		}
		first[i] = smp
	}
	if !sleepCtx(ctx, upkeepWindow) {
		return nil, ctx.Err()
	}
	var ups []report.LeaseUpkeep
	for i, s := range systems {
		end, err := b.upkeepSample(ctx, s, conns[i])
		if err != nil {
			return nil, err
		}
		a := first[i]
		up := report.LeaseUpkeep{
			System: s.name, Nodes: len(s.nodes), Window: end.at.Sub(a.at),
			Work: end.work.Minus(a.work),
			// The first read of the counters is a transaction of this
			// database too; the last one is not counted yet when it reads.
			Transactions:     end.xacts - a.xacts - 1,
			LeaseRowsRead:    end.leaseRead - a.leaseRead,
			LeaseRowsUpdated: end.leaseUpdated - a.leaseUpdated,
			NodeRowsRead:     end.nodeRead - a.nodeRead,
			NodeRowsUpdated:  end.nodeUpdated - a.nodeUpdated,
			PostgresCPU:      end.postgresCPU - a.postgresCPU,
			ServerCPU:        end.serverCPU - a.serverCPU,
		}
		if up.Shards, err = b.clusterShards(ctx, s); err != nil {
			return nil, err
		}
		beats := float64(max(up.Work.Renewals, 1))
		log.Printf("  %s idle: %.2f heartbeats/s a node, %.1f transactions/s in its database, %.0f lease rows read and %.0f updated per heartbeat",
			s.name, float64(up.Work.Renewals)/float64(len(s.nodes))/up.Window.Seconds(), float64(up.Transactions)/up.Window.Seconds(),
			float64(up.LeaseRowsRead)/beats, float64(up.LeaseRowsUpdated)/beats)
		if moved := up.Work.Acquired + up.Work.HandedOff; moved > 0 {
			b.problem("%s moved %d shards while idle: its lease statements were more than three a heartbeat", s.name, moved)
		}
		ups = append(ups, up)
	}
	return ups, nil
}

func (b *bench) upkeepSample(ctx context.Context, s *system, conn *pgx.Conn) (upkeepSample, error) {
	smp := upkeepSample{at: time.Now()}
	c, err := readCounters(ctx, s.nodes)
	if err != nil {
		return smp, err
	}
	smp.work = c.cluster
	for _, n := range s.nodes {
		smp.serverCPU += procstat.ProcessCPU(n.proc.pid())
	}
	smp.postgresCPU = b.backendCPU(s.db)
	// One statement, one transaction of this database.
	err = conn.QueryRow(ctx, `SELECT
		(SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()),
		coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)) FILTER (WHERE relname = 'shard_leases'), 0)::bigint,
		coalesce(sum(n_tup_upd) FILTER (WHERE relname = 'shard_leases'), 0)::bigint,
		coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)) FILTER (WHERE relname = 'cluster_nodes'), 0)::bigint,
		coalesce(sum(n_tup_upd) FILTER (WHERE relname = 'cluster_nodes'), 0)::bigint
		FROM pg_stat_user_tables WHERE schemaname = $1`, statefunSchema).Scan(
		&smp.xacts, &smp.leaseRead, &smp.leaseUpdated, &smp.nodeRead, &smp.nodeUpdated)
	if err != nil {
		return smp, fmt.Errorf("read the statistics of %s's database: %w", s.name, err)
	}
	return smp, nil
}

// failover kills one node of a settled cluster with SIGKILL and measures
// how long its shards go unserved: until the live nodes hold them all
// (their statefun_cluster_shards_owned), and until a call for an entity
// of each of its shards, sent to the live nodes right after the kill, is
// answered. Then it starts the node again and waits for the shards to
// spread back.
func (b *bench) failover(ctx context.Context, s *system, victim *node, shards int) (report.FailoverTrial, error) {
	t := report.FailoverTrial{Node: victim.name}
	conn, err := pgx.Connect(ctx, b.dbURL(s.name, ""))
	if err != nil {
		return t, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	leases := pgx.Identifier{statefunSchema, "shard_leases"}.Sanitize()
	rows, _ := conn.Query(ctx, "SELECT shard FROM "+leases+" WHERE owner = $1 AND expires > now() ORDER BY shard", victim.addr)
	held, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return t, fmt.Errorf("read the shards of %s: %w", victim.name, err)
	}
	t.Shards = len(held)
	probes := probeIDs(held, b.o.carts, shards)
	t.Probes = len(probes)

	var live []*node
	var liveClients, victimClients []cartv1.ShoppingCartServiceClient
	for i, c := range s.clients {
		if s.nodes[i%len(s.nodes)] == victim {
			victimClients = append(victimClients, c)
		} else {
			liveClients = append(liveClients, c)
		}
	}
	for _, n := range s.nodes {
		if n != victim {
			live = append(live, n)
		}
	}
	// The victim must serve every probe itself: that checks this
	// package's copy of the shard map against the server's.
	before, err := readCounters(ctx, []*node{victim})
	if err != nil {
		return t, err
	}
	for _, id := range probes {
		if _, err := victimClients[0].GetCart(ctx, &cartv1.GetCartRequest{CartId: id}); err != nil {
			return t, fmt.Errorf("probe %s at %s before the kill: %w", id, victim.name, err)
		}
	}
	after, err := readCounters(ctx, []*node{victim})
	if err != nil {
		return t, err
	}
	if f := after.cluster.Forwards - before.cluster.Forwards; f > 0 {
		b.problem("%s forwarded %d of %d probes for its own shards: the benchmark's copy of the shard map (cartShard) differs from the server's, so the failover probes miss some of its shards", victim.name, f, len(probes))
	}

	if err := victim.proc.kill(); err != nil {
		return t, err
	}
	killed := time.Now()
	// The database's clock at the kill, give or take the query's time.
	var dbKilled time.Time
	if err := conn.QueryRow(ctx, "SELECT now()").Scan(&dbKilled); err != nil {
		return t, err
	}
	dbKilled = dbKilled.Add(-time.Since(killed))
	served := make(chan probeResult, len(probes))
	for i, id := range probes {
		go func() { served <- probe(ctx, liveClients, i, id, killed) }()
	}
	if _, err := b.waitShards(ctx, live, allHeld(shards)); err != nil {
		return t, fmt.Errorf("after killing %s: %w", victim.name, err)
	}
	t.Owned = time.Since(killed)
	// The killed node's leases run out at its last heartbeat plus the
	// TTL (one statement sets both). Read only now: a heartbeat it had
	// sent before it died may have committed after the kill.
	var heartbeat time.Time
	nodes := pgx.Identifier{statefunSchema, "cluster_nodes"}.Sanitize()
	if err := conn.QueryRow(ctx, "SELECT heartbeat FROM "+nodes+" WHERE id = $1", victim.addr).Scan(&heartbeat); err != nil {
		return t, fmt.Errorf("read the last heartbeat of %s: %w", victim.name, err)
	}
	t.LeaseLeft = heartbeat.Add(b.o.leaseTTL).Sub(dbKilled)
	for range probes {
		r := <-served
		if r.err != nil {
			t.ProbeErrors++
			if t.ProbeErrors == 1 {
				b.problem("a failover probe was not answered: %v", r.err)
			}
			continue
		}
		t.Served = max(t.Served, r.took)
	}

	restarted := time.Now()
	if err := b.startNode(victim); err != nil {
		return t, err
	}
	if err := waitHealthy(ctx, victim); err != nil {
		return t, err
	}
	if _, err := b.waitShards(ctx, s.nodes, balanced(shards)); err != nil {
		return t, fmt.Errorf("after restarting %s: %w", victim.name, err)
	}
	t.Rebalanced = time.Since(restarted)
	log.Printf("  killed %s (%d shards, leases %v from running out): all shards held after %v, every probe answered after %v; restarted, balanced after %v",
		victim.name, t.Shards, t.LeaseLeft.Round(time.Millisecond), t.Owned.Round(time.Millisecond), t.Served.Round(time.Millisecond), t.Rebalanced.Round(time.Millisecond))
	return t, nil
}

type probeResult struct {
	took time.Duration
	err  error
}

// probe reads a cart through the live nodes until it is answered: the
// node it reaches waits for the shard's new owner within the call's
// deadline; a node that answers UNAVAILABLE is left for the next one.
func probe(ctx context.Context, clients []cartv1.ShoppingCartServiceClient, i int, id string, since time.Time) probeResult {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		_, err := clients[(i+attempt)%len(clients)].GetCart(ctx, &cartv1.GetCartRequest{CartId: id})
		if err == nil {
			return probeResult{took: time.Since(since)}
		}
		if ctx.Err() != nil {
			return probeResult{err: fmt.Errorf("cart %s: %w", id, err)}
		}
		sleepCtx(ctx, 20*time.Millisecond)
	}
}

// probeIDs returns an entity for each of the shards: the first cart of
// the shard, or a cart that does not exist yet where no cart falls in it.
func probeIDs(shards []int, carts, total int) []string {
	want := map[int]bool{}
	for _, s := range shards {
		want[s] = true
	}
	var ids []string
	for i := range carts {
		id := cartID(i)
		if s := cartShard(id, total); want[s] {
			ids = append(ids, id)
			delete(want, s)
		}
	}
	for i := 0; len(want) > 0 && i < 100*total; i++ {
		id := fmt.Sprintf("probe-%d", i)
		if s := cartShard(id, total); want[s] {
			ids = append(ids, id)
			delete(want, s)
		}
	}
	return ids
}

// cartID names cart i as package load does.
func cartID(i int) string { return fmt.Sprintf("cart-%05d", i) }

// cartShard maps a cart to its shard as the runtime maps an entity
// (runtime/internal/cluster.ShardOf, which this package cannot import):
// FNV-1a (64-bit) over the entity type, a zero byte and the ID, modulo
// the shard count. The map is part of the stored format and never
// changes; the failover trials check this copy against a server before
// they rely on it.
func cartShard(id string, shards int) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(cartv1.ShoppingCartEntityType))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(id))
	return int(h.Sum64() % uint64(shards))
}

// waitHealthy waits until a statefun node's /healthz answers.
func waitHealthy(ctx context.Context, n *node) error {
	err := waitFor(ctx, func() error {
		if n.proc.done() {
			return fmt.Errorf("%s exited at start", n.name)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/healthz", nil)
		if err != nil {
			return err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return errors.New(res.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s did not come back: %w (log: %s)", n.name, err, n.proc.logPath)
	}
	return nil
}

// rollingRestart restarts every node in turn under a write load from
// clients that retry on another node, as a client of a cluster with
// several addresses would: SIGTERM, wait for the node to exit (it hands
// its shards off first), start it again on the same addresses, wait until
// the shards are spread evenly, next. The same load runs first without a
// restart, for comparison.
func (b *bench) rollingRestart(ctx context.Context, s *system, shards int) (*report.RollingRestart, error) {
	log.Printf("  rolling restart under writes at concurrency %d, clients retrying on another node", rollingConcurrency)
	rr := &report.RollingRestart{Workload: report.Write, Concurrency: rollingConcurrency}
	cfg := load.Config{
		Clients: s.clients, Concurrency: rollingConcurrency, Carts: b.o.carts, Ramp: b.o.ramp, Duration: b.o.duration,
		Retry: true, Seed: 7,
	}
	var err error
	if rr.Steady, err = load.Run(ctx, cfg); err != nil {
		return nil, err
	}
	started, stop := make(chan struct{}), make(chan struct{})
	cfg.Stop, cfg.Seed = stop, 8
	cfg.OnStart = func() { close(started) }
	restarts := make(chan error, 1)
	go func() {
		defer close(stop)
		select {
		case <-started:
		case <-ctx.Done():
			restarts <- ctx.Err()
			return
		}
		for _, n := range s.nodes {
			step, err := b.restartNode(ctx, s, n, shards)
			if err != nil {
				restarts <- err
				return
			}
			rr.Steps = append(rr.Steps, step)
		}
		// Some load after the last move, so that the window ends on a
		// settled cluster.
		sleepCtx(ctx, time.Second)
		restarts <- nil
	}()
	rr.During, err = load.Run(ctx, cfg)
	if rerr := <-restarts; rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, err
	}
	d := rr.During
	log.Printf("  rolling restart: %d requests in %v, %d failed, %d retried; p99 %v (steady %v)", d.Requests, d.Window.Round(time.Millisecond),
		d.Errors, d.Retries, time.Duration(d.All.P99).Round(time.Microsecond), time.Duration(rr.Steady.All.P99).Round(time.Microsecond))
	if d.Errors > 0 {
		b.problem("rolling restart: %d requests failed after retries, the first: %s", d.Errors, d.FirstError)
	}
	return rr, nil
}

// restartNode stops a node with SIGTERM, starts it again and waits for
// the cluster to rebalance.
func (b *bench) restartNode(ctx context.Context, s *system, n *node, shards int) (report.RestartStep, error) {
	step := report.RestartStep{Node: n.name}
	start := time.Now()
	if err := n.proc.stop(); err != nil {
		b.problem("%s did not stop cleanly on SIGTERM: %v", n.name, err)
	}
	step.Stopped = time.Since(start)
	start = time.Now()
	if err := b.startNode(n); err != nil {
		return step, err
	}
	if err := waitHealthy(ctx, n); err != nil {
		return step, err
	}
	step.Serving = time.Since(start)
	if _, err := b.waitShards(ctx, s.nodes, balanced(shards)); err != nil {
		return step, fmt.Errorf("after restarting %s: %w", n.name, err)
	}
	step.Balanced = time.Since(start)
	log.Printf("    %s: stopped %v after SIGTERM, serving %v after the restart, balanced after %v", n.name,
		step.Stopped.Round(time.Millisecond), step.Serving.Round(time.Millisecond), step.Balanced.Round(time.Millisecond))
	return step, nil
}
