package reliability

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// The suite's clusters run with short leases, so that a failover takes
// about two seconds rather than five; the shard count is the default.
const (
	clusterLeaseTTL = 2 * time.Second
	clusterShards   = statefun.DefaultShards
)

// A cluster client's call: it tries the nodes it knows, one after
// another, until one answers or the call's deadline passes, and each
// attempt gets a bound of its own so that a node that does not answer
// costs one attempt, not the call.
const (
	clusterCallDeadline = 25 * time.Second
	clusterAttemptLimit = 8 * time.Second
)

// long runs the scenarios that make test leaves out to keep its time
// down; make reliability sets it.
var long = flag.Bool("long", false, "also run the reliability suite's longer scenarios (make reliability sets it)")

// clusterWait bounds every wait for the cluster to settle: a failover
// takes a lease TTL and a heartbeat; far more means it is stuck.
const clusterWait = 20 * time.Second

// clusterNode is one node of a test cluster. Its addresses outlive its
// processes: the gRPC address is the node's ID, so a restarted node is the
// same node and takes its leases back. Its database connections go
// through a proxy of its own, so that one node can be cut from Postgres
// while the others keep it.
type clusterNode struct {
	name               string
	grpcAddr, httpAddr string
	proxy              *Proxy
	flags              []string

	mu  sync.Mutex
	srv *server // the running process; nil while the node is down
}

// testCluster is a set of server processes on one Postgres schema, and a
// client that spreads calls over all of them.
type testCluster struct {
	schema string
	st     *postgres.Store
	conn   *clusterConn
	// carts is the client applications use: any node, retried on
	// another with the same idempotency key.
	carts cartv1.ShoppingCartServiceClient

	mu    sync.Mutex
	nodes []*clusterNode
}

// newTestCluster starts n nodes on a fresh schema, one after another (a
// start that fails fails the test, which only the test's goroutine may
// do), and waits until they share the shards evenly.
func newTestCluster(t *testing.T, prefix string, n int) *testCluster {
	t.Helper()
	c := &testCluster{schema: newSchema(t, prefix), conn: newClusterConn()}
	t.Cleanup(c.conn.close)
	c.carts = cartv1.NewShoppingCartServiceClient(c.conn)
	for range n {
		c.addNode(t)
	}
	c.st = openPostgres(t, c.schema)
	c.waitShards(t, time.Now(), "the first nodes share the shards", balanced(c.all()...))
	return c
}

// addNode starts a new node and tells the client about it.
func (c *testCluster) addNode(t *testing.T) {
	t.Helper()
	proxy, err := NewProxy(databaseAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	c.mu.Lock()
	n := &clusterNode{name: fmt.Sprintf("n%d", len(c.nodes)+1), grpcAddr: stableAddr(t), httpAddr: stableAddr(t), proxy: proxy}
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	n.flags = []string{
		"--database-url", urlVia(t, proxy.Addr()), "--database-schema", c.schema,
		"--lease-ttl", clusterLeaseTTL.String(), "--shards", strconv.Itoa(clusterShards),
	}
	n.start(t)
	c.conn.add(n)
}

// all returns the cluster's nodes, running or not.
func (c *testCluster) all() []*clusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*clusterNode(nil), c.nodes...)
}

// except returns the cluster's nodes but n.
func (c *testCluster) except(n *clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, m := range c.all() {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

// start runs the node's process on its addresses.
func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	srv := startServer(t, serverConfig{flags: n.flags, grpcAddr: n.grpcAddr, httpAddr: n.httpAddr})
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

func (n *clusterNode) server() *server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// down takes the node's process out, returning it.
func (n *clusterNode) down() *server {
	n.mu.Lock()
	defer n.mu.Unlock()
	srv := n.srv
	n.srv = nil
	return srv
}

// kill is kill -9 of the node's process.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	if srv := n.down(); srv != nil {
		srv.kill()
		srv.checkNoRaces(t)
	}
}

// term stops the node's process with SIGTERM and checks that it exits 0.
func (n *clusterNode) term(t *testing.T) {
	t.Helper()
	if srv := n.down(); srv != nil {
		if err := srv.term(); err != nil {
			t.Errorf("node %s: SIGTERM: %v\n%s", n.name, err, srv.log)
		}
		srv.checkNoRaces(t)
	}
}

// stopAll stops every running node with SIGTERM at once, as at the end of
// a scenario: each exits 0 with every change stored.
func (c *testCluster) stopAll(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var stopped []*server
	for _, n := range c.all() {
		srv := n.down()
		if srv == nil {
			continue
		}
		stopped = append(stopped, srv)
		wg.Go(func() {
			if err := srv.term(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %s: SIGTERM: %w\n%s", n.name, err, srv.log))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
	for _, srv := range stopped {
		srv.checkNoRaces(t)
	}
}

// stableAddr returns a free address to listen on below the ephemeral port
// range, so that while a killed node is down its port is not handed to
// some outgoing connection and its restart can listen there again.
func stableAddr(t testing.TB) string {
	t.Helper()
	stableAddrs.Lock()
	defer stableAddrs.Unlock()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		if stableAddrs.used[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = l.Close()
		stableAddrs.used[port] = true
		return l.Addr().String()
	}
	t.Fatal("no free port between 20000 and 32000")
	return ""
}

var stableAddrs = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// metrics scrapes the node's /metrics, keeping the samples without labels.
func (n *clusterNode) metrics(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics of %s: %s", n.name, res.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// metricSum returns a metric of every running node among nodes, summed.
func metricSum(t *testing.T, name string, nodes ...*clusterNode) float64 {
	t.Helper()
	sum := 0.0
	for _, n := range nodes {
		if n.server() == nil {
			continue
		}
		m, err := n.metrics(t.Context())
		if err != nil {
			t.Fatalf("node %s: %v", n.name, err)
		}
		sum += m[name]
	}
	return sum
}

// shardSpread is how many shards each node holds, by its own /metrics; a
// node that is down or does not answer holds none.
type shardSpread map[*clusterNode]int

func (s shardSpread) String() string {
	var parts []string
	for n, k := range s {
		parts = append(parts, fmt.Sprintf("%s=%d", n.name, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// shardGoal is a state of the cluster to wait for: the nodes hold every
// shard between them, and, if balanced, each holds its share (loads differ
// by at most one shard).
type shardGoal struct {
	nodes    []*clusterNode
	balanced bool
}

func served(nodes ...*clusterNode) shardGoal   { return shardGoal{nodes: nodes} }
func balanced(nodes ...*clusterNode) shardGoal { return shardGoal{nodes: nodes, balanced: true} }

func (g shardGoal) met(s shardSpread) bool {
	sum, low := 0, clusterShards/len(g.nodes)
	for _, n := range g.nodes {
		sum += s[n]
		if g.balanced && (s[n] < low || s[n] > low+1) {
			return false
		}
	}
	return sum == clusterShards
}

// waitShards polls the goal's nodes' statefun_cluster_shards_owned, all at
// once (a node that does not answer, paused or down, holds none), until
// the goal is met, and returns the time since since; it fails the test
// after clusterWait.
func (c *testCluster) waitShards(t *testing.T, since time.Time, what string, goal shardGoal) time.Duration {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		spread := shardSpread{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range goal.nodes {
			if n.server() == nil {
				continue
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
				defer cancel()
				if m, err := n.metrics(ctx); err == nil {
					mu.Lock()
					spread[n] = int(m["statefun_cluster_shards_owned"])
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if goal.met(spread) {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; shards held: %v", what, clusterWait, spread)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// deliverHeld ends a Stall the way a short partition ends for TCP: the
// bytes held meanwhile are delivered, late, on the same connections.
// Restore cuts them instead, as after a partition long enough that both
// ends gave up.
func (p *Proxy) deliverHeld() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// leases reads the shard leases from the database.
func (c *testCluster) leases(t *testing.T) []store.Lease {
	t.Helper()
	leases, err := c.st.Leases(t.Context())
	if err != nil {
		t.Fatalf("read the shard leases: %v", err)
	}
	if len(leases) != clusterShards {
		t.Fatalf("the database holds %d leases, want %d", len(leases), clusterShards)
	}
	return leases
}

// takeovers is how many times a node took a shard's lease: every
// Acquire raises the shard's epoch, so the sum of the epochs counts them.
// The difference over a scenario is the shards it moved.
func (c *testCluster) takeovers(t *testing.T) int64 {
	t.Helper()
	var sum int64
	for _, l := range c.leases(t) {
		sum += l.Epoch
	}
	return sum
}

// listing runs the binary's cluster command and returns the shards it
// lists for each node, and the count of shards without a live lease.
func (c *testCluster) listing(t *testing.T) (held map[string]int, free int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hangLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, serverBinary(t), "cluster", "--database-url", databaseURL(), "--database-schema", c.schema)
	cmd.Env = filteredEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cluster: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "NODE") {
		t.Fatalf("cluster printed no table:\n%s", out)
	}
	held = map[string]int{}
	for _, line := range lines[1 : len(lines)-1] {
		fields := strings.Fields(line)
		k, err := strconv.Atoi(fields[len(fields)-1])
		if err != nil {
			t.Fatalf("cluster: %q does not end in a shard count:\n%s", line, out)
		}
		held[fields[0]] = k
	}
	var total int
	if _, err := fmt.Sscanf(lines[len(lines)-1], "%d shards, %d without a live lease", &total, &free); err != nil || total != clusterShards {
		t.Fatalf("cluster: last line %q; want \"%d shards, N without a live lease\"", lines[len(lines)-1], clusterShards)
	}
	return held, free
}

// shardOf is runtime/internal/cluster.ShardOf, which this package cannot
// import. The map is part of the stored format (SCALING.md, "Shards") and
// never changes; TestClusterCutFromDatabase would fail if this copy
// disagreed, because it predicts from it which calls the cut node refuses.
func shardOf(entityType, id string) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(entityType))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(id))
	return int(h.Sum64() % uint64(clusterShards))
}

// clusterConn is what a gRPC client with several addresses does: each
// call goes to one node, picked at random, and a call that failed because
// that node is shutting down, unreachable or not serving is retried on
// the next node within the call's deadline, with the same idempotency
// key, so that a retry of a command that did run returns its first
// answer instead of running it again.
type clusterConn struct {
	mu       sync.Mutex
	nodes    []*clusterNode
	conns    map[*clusterNode]*grpc.ClientConn
	calls    int
	attempts []clusterAttempt
}

// clusterAttempt is one attempt of a call, at one node.
type clusterAttempt struct {
	node       *clusterNode
	start, end time.Time
	code       codes.Code
	msg        string // the error's message
	sku        string // of an AddItem
}

func newClusterConn() *clusterConn {
	return &clusterConn{conns: map[*clusterNode]*grpc.ClientConn{}}
}

// add makes the client use n too, as a client learns of a new address.
func (c *clusterConn) add(n *clusterNode) {
	// Reconnect quickly: a restarted node is back within a second or two,
	// and gRPC's default backoff would leave it unused for longer.
	conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		panic(err) // only a malformed target fails here
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, n)
	c.conns[n] = conn
}

func (c *clusterConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// clusterRetryable says whether a failed attempt is worth sending to
// another node: the node is down, shutting down, cut off or not serving
// the shard (UNAVAILABLE), the entity was reset (ABORTED), or the attempt
// ran out of its own time. The idempotency key makes each retry safe.
func clusterRetryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Invoke implements grpc.ClientConnInterface.
func (c *clusterConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if len(metadata.ValueFromOutgoingContext(ctx, statefun.IdempotencyKeyHeader)) == 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, statefun.IdempotencyKeyHeader, crand.Text())
	}
	ctx, cancel := context.WithTimeout(ctx, clusterCallDeadline)
	defer cancel()
	sku := ""
	if req, ok := args.(*cartv1.AddItemRequest); ok {
		sku = req.GetSku()
	}
	c.mu.Lock()
	c.calls++
	nodes := append([]*clusterNode(nil), c.nodes...)
	c.mu.Unlock()
	first := rand.IntN(len(nodes))
	pause := 5 * time.Millisecond
	for i := 0; ; i++ {
		n := nodes[(first+i)%len(nodes)]
		c.mu.Lock()
		conn := c.conns[n]
		c.mu.Unlock()
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, clusterAttemptLimit)
		a := clusterAttempt{node: n, start: time.Now(), sku: sku}
		err := conn.Invoke(attemptCtx, method, args, reply, opts...)
		cancelAttempt()
		a.end, a.code, a.msg = time.Now(), status.Code(err), status.Convert(err).Message()
		c.mu.Lock()
		c.attempts = append(c.attempts, a)
		c.mu.Unlock()
		if err == nil || ctx.Err() != nil || !clusterRetryable(status.Code(err)) {
			return err
		}
		// Every node once at once, then with a growing pause: a
		// failover takes a lease TTL, and hammering does not shorten it.
		if (i+1)%len(nodes) == 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(pause):
			}
			pause = min(2*pause, 250*time.Millisecond)
		}
	}
}

// NewStream implements grpc.ClientConnInterface; the cart has no streams.
func (c *clusterConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "the suite's cluster client makes unary calls only")
}

// attemptsWhere returns the attempts for which keep is true.
func (c *clusterConn) attemptsWhere(keep func(clusterAttempt) bool) []clusterAttempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []clusterAttempt
	for _, a := range c.attempts {
		if keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// retries is how many attempts were not a call's first.
func (c *clusterConn) retries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.attempts) - c.calls
}
