package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// Config configures a Node.
type Config struct {
	// ID names the node in the database; Address is where peers reach
	// its gRPC port. The server uses the advertised address for both, so
	// that a restarted node is the same node and takes its leases back.
	ID, Address string
	// Shards is the cluster's shard count; the first node records it,
	// and a node configured otherwise refuses to start.
	Shards int
	// LeaseTTL is how long a lease lasts without renewal: the time a
	// dead node's shards wait before another node takes them.
	LeaseTTL time.Duration
	// Margin is how long before its lease expires, by its own clock, a
	// node stops serving a shard. It covers the clocks of the node and the
	// database running at different rates: a node whose clock runs slower
	// than the database's by less than Margin/LeaseTTL never serves a
	// shard another node has taken. Default LeaseTTL/4.
	Margin time.Duration
	// Renew is the time between heartbeats. Default LeaseTTL/4.
	Renew time.Duration
	// MaxMoves bounds the shards a node hands off per heartbeat, so that
	// a membership change moves shards in waves, not all at once.
	// Default 128.
	MaxMoves int
	// Store is the database the cluster coordinates through.
	Store store.Cluster
	// Now is the node's monotonic clock; time.Now by default. The
	// simulation gives each node a clock of its own.
	Now func() time.Time
	// Drain, called before a shard is handed off, stops intake for the
	// shard and returns once its work in flight is finished, or ctx ends.
	Drain func(ctx context.Context, shard int)
	// Changed, if set, is called after a heartbeat changed the shards the
	// node holds.
	Changed func()
	Log     *slog.Logger

	// assign computes the assignment from the live nodes: Assign, or, in
	// the simulation, a memo of it that its hundreds of nodes share.
	assign func(nodes []string, shards int) []string
}

// Node is this process's member of the cluster.
type Node struct {
	cfg Config

	mu      sync.RWMutex
	held    map[int]holding // shards whose lease this node holds
	leases  []store.Lease   // every lease, as last read: where to forward
	members []string        // live nodes, as last read
	target  map[int]bool    // shards the assignment gives this node
	drained map[int]bool    // shards being handed off: not served

	// refresh is signalled to make the next heartbeat come at once.
	refresh chan struct{}
	Stats   Stats
}

// holding is a lease this node holds.
type holding struct {
	epoch int64
	// until is when the node stops serving the shard, by its own clock:
	// the time the renewal was sent, plus the TTL, less the margin.
	until time.Time
}

// Stats are cumulative counters, for metrics.
type Stats struct {
	Renewals, RenewalFailures, Acquired, Lost, HandedOff atomic.Uint64
	HandoffNanos                                         atomic.Int64
}

// New returns a node; Join makes it a member.
func New(cfg Config) (*Node, error) {
	if cfg.ID == "" || cfg.Address == "" {
		return nil, errors.New("cluster: a node needs an ID and an address")
	}
	if cfg.Shards < 1 {
		return nil, fmt.Errorf("cluster: shard count %d: use at least 1", cfg.Shards)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Margin <= 0 {
		cfg.Margin = cfg.LeaseTTL / 4
	}
	if cfg.Renew <= 0 {
		cfg.Renew = cfg.LeaseTTL / 4
	}
	if cfg.MaxMoves <= 0 {
		cfg.MaxMoves = 128
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Drain == nil {
		cfg.Drain = func(context.Context, int) {}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.assign == nil {
		cfg.assign = Assign
	}
	return &Node{
		cfg: cfg, held: map[int]holding{}, target: map[int]bool{}, drained: map[int]bool{},
		refresh: make(chan struct{}, 1),
	}, nil
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Shards returns the cluster's shard count.
func (n *Node) Shards() int { return n.cfg.Shards }

// Join records the shard count (or checks it against the recorded one)
// and takes a first heartbeat.
func (n *Node) Join(ctx context.Context) error {
	got, err := n.cfg.Store.InitShards(ctx, n.cfg.Shards)
	if err != nil {
		return fmt.Errorf("record the cluster's shard count: %w", err)
	}
	if got != n.cfg.Shards {
		return fmt.Errorf("this node is configured with %d shards, but the cluster in this database has %d; start it with --shards %d (the count is fixed when the first node starts)", n.cfg.Shards, got, got)
	}
	return n.Tick(ctx)
}

// Run renews the node's leases and follows membership until ctx ends.
// Between heartbeats it waits Renew, or less while it is still to take
// shards the assignment gives it.
func (n *Node) Run(ctx context.Context) {
	for {
		wait := n.cfg.Renew
		if n.pending() {
			wait = min(wait, 100*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.refresh:
			t.Stop()
		case <-t.C:
		}
		tctx, cancel := context.WithTimeout(ctx, n.cfg.Renew)
		if err := n.Tick(tctx); err != nil && ctx.Err() == nil {
			n.cfg.Log.Warn("cluster heartbeat failed; shards are served until their leases run out", "error", err)
		}
		cancel()
	}
}

// Refresh asks for a heartbeat now: a request found no owner for a shard.
func (n *Node) Refresh() {
	select {
	case n.refresh <- struct{}{}:
	default:
	}
}

// pending says whether the assignment gives this node shards it does not
// hold yet.
func (n *Node) pending() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for s := range n.target {
		if _, ok := n.held[s]; !ok {
			return true
		}
	}
	return false
}

// Tick is one heartbeat: renew the leases held, read membership and
// leases, hand off the shards that belong elsewhere now and take those
// that belong here and are free.
func (n *Node) Tick(ctx context.Context) error {
	sent := n.cfg.Now()
	me := store.Node{ID: n.cfg.ID, Address: n.cfg.Address}
	renewed, err := n.cfg.Store.Heartbeat(ctx, me, n.cfg.LeaseTTL)
	if err != nil {
		n.Stats.RenewalFailures.Add(1)
		return fmt.Errorf("renew leases: %w", err)
	}
	n.Stats.Renewals.Add(1)
	changed, strays := n.renewed(sent, renewed)

	nodes, err := n.cfg.Store.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("read the cluster's nodes: %w", err)
	}
	leases, err := n.cfg.Store.Leases(ctx)
	if err != nil {
		return fmt.Errorf("read the cluster's leases: %w", err)
	}
	var live []string
	for _, node := range nodes {
		// A node is alive while its heartbeat is younger than a lease:
		// one that stopped renewing has lost its leases by then.
		if node.Age < n.cfg.LeaseTTL || node.ID == n.cfg.ID {
			live = append(live, node.ID)
		}
	}
	owners := n.cfg.assign(live, n.cfg.Shards)
	target := map[int]bool{}
	for s, o := range owners {
		if o == n.cfg.ID {
			target[s] = true
		}
	}
	n.mu.Lock()
	n.leases, n.members, n.target = leases, live, target
	var handoff []int
	for s := range n.held {
		if !target[s] {
			handoff = append(handoff, s)
		}
	}
	n.mu.Unlock()
	// Leases a previous run of this node held: those the assignment gives
	// it are taken back below, with a new epoch; the others are released,
	// or they would be renewed forever with no one serving them.
	var release []int
	for _, s := range strays {
		if !target[s] {
			release = append(release, s)
		}
	}
	if len(release) > 0 {
		if err := n.cfg.Store.Release(ctx, n.cfg.ID, release); err != nil {
			return fmt.Errorf("release %d leases of a previous run: %w", len(release), err)
		}
		n.mu.Lock()
		for _, s := range release {
			n.setLease(store.Lease{Shard: s})
		}
		n.mu.Unlock()
	}

	// Hand off first, a bounded wave at a time, so that the new owners
	// can take the shards on their next heartbeat.
	slices.Sort(handoff)
	if len(handoff) > n.cfg.MaxMoves {
		handoff = handoff[:n.cfg.MaxMoves]
	}
	if len(handoff) > 0 {
		if err := n.handoff(ctx, handoff); err != nil {
			return err
		}
		changed = true
	}

	var want []int
	n.mu.RLock()
	for _, l := range leases {
		if _, mine := n.held[l.Shard]; mine || !target[l.Shard] {
			continue
		}
		// Free, lapsed, or ours from before a restart: take it. A shard
		// another live node still holds is left to its handoff.
		if l.Owner == "" || l.Owner == n.cfg.ID || l.Remaining < 0 {
			want = append(want, l.Shard)
		}
	}
	n.mu.RUnlock()
	if len(want) > 0 {
		sent := n.cfg.Now()
		got, err := n.cfg.Store.Acquire(ctx, n.cfg.ID, want, n.cfg.LeaseTTL)
		if err != nil {
			return fmt.Errorf("acquire leases: %w", err)
		}
		n.mu.Lock()
		for _, l := range got {
			n.held[l.Shard] = holding{epoch: l.Epoch, until: sent.Add(n.cfg.LeaseTTL - n.cfg.Margin)}
			delete(n.drained, l.Shard)
			n.setLease(l)
		}
		n.mu.Unlock()
		n.Stats.Acquired.Add(uint64(len(got)))
		if len(got) > 0 {
			changed = true
		}
	}
	if changed && n.cfg.Changed != nil {
		n.cfg.Changed()
	}
	return nil
}

// renewed records the leases a heartbeat renewed; a lease held before and
// not renewed is lost (another node took it after it lapsed). It returns
// the strays: leases the database says this node holds at an epoch this
// process did not take, left by a previous run of the node.
func (n *Node) renewed(sent time.Time, renewed []store.Lease) (changed bool, strays []int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kept := make(map[int]bool, len(renewed))
	for _, l := range renewed {
		h, ok := n.held[l.Shard]
		if !ok || h.epoch != l.Epoch {
			strays = append(strays, l.Shard)
			continue
		}
		kept[l.Shard] = true
		h.until = sent.Add(n.cfg.LeaseTTL - n.cfg.Margin)
		n.held[l.Shard] = h
	}
	for s := range n.held {
		if !kept[s] {
			delete(n.held, s)
			n.Stats.Lost.Add(1)
			changed = true
		}
	}
	return changed, strays
}

// handoff drains shards, then releases their leases at once.
func (n *Node) handoff(ctx context.Context, shards []int) error {
	start := n.cfg.Now()
	n.mu.Lock()
	for _, s := range shards {
		n.drained[s] = true
	}
	n.mu.Unlock()
	for _, s := range shards {
		n.cfg.Drain(ctx, s)
	}
	n.mu.Lock()
	for _, s := range shards {
		delete(n.held, s)
	}
	n.mu.Unlock()
	if err := n.cfg.Store.Release(ctx, n.cfg.ID, shards); err != nil {
		// Not served any more; the leases lapse on their own.
		return fmt.Errorf("release %d leases: %w", len(shards), err)
	}
	n.mu.Lock()
	for _, s := range shards {
		delete(n.drained, s)
		n.setLease(store.Lease{Shard: s})
	}
	n.mu.Unlock()
	n.Stats.HandedOff.Add(uint64(len(shards)))
	n.Stats.HandoffNanos.Add(int64(n.cfg.Now().Sub(start)))
	return nil
}

// setLease updates the routing view of one shard. Called with n.mu held.
func (n *Node) setLease(l store.Lease) {
	if l.Shard < len(n.leases) {
		n.leases[l.Shard] = l
	}
}

// Deregister removes the node from the cluster's members, keeping its
// leases: the other nodes compute an assignment without it and wait for
// its shards, which Leave then hands off. Stop Run first, or the next
// heartbeat registers the node again.
func (n *Node) Deregister(ctx context.Context) error {
	return n.cfg.Store.Leave(ctx, n.cfg.ID)
}

// View reads the leases, for routing, without a heartbeat: a node that
// left keeps forwarding the calls that still reach it.
func (n *Node) View(ctx context.Context) error {
	leases, err := n.cfg.Store.Leases(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.leases = leases
	n.mu.Unlock()
	return nil
}

// Renew returns the time between heartbeats.
func (n *Node) Renew() time.Duration { return n.cfg.Renew }

// Leave hands off every shard and leaves the cluster: a graceful stop.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	shards := make([]int, 0, len(n.held))
	for s := range n.held {
		shards = append(shards, s)
	}
	n.target = map[int]bool{}
	n.mu.Unlock()
	slices.Sort(shards)
	var err error
	if len(shards) > 0 {
		err = n.handoff(ctx, shards)
	}
	return errors.Join(err, n.cfg.Store.Leave(ctx, n.cfg.ID))
}

// Serving returns the epoch of this node's lease of shard, if the node may
// serve the shard now: it holds the lease, is not handing it off, and is
// within the lease's time by its own clock.
func (n *Node) Serving(shard int) (int64, bool) {
	n.mu.RLock()
	h, ok := n.held[shard]
	drained := n.drained[shard]
	n.mu.RUnlock()
	if !ok || drained || !n.cfg.Now().Before(h.until) {
		return 0, false
	}
	return h.epoch, true
}

// Lapsed says whether this node holds shard's lease but may no longer
// serve it because the lease ran out by its own clock (its heartbeats are
// failing), as opposed to a shard it is handing off.
func (n *Node) Lapsed(shard int) bool {
	n.mu.RLock()
	h, ok := n.held[shard]
	drained := n.drained[shard]
	n.mu.RUnlock()
	return ok && !drained && !n.cfg.Now().Before(h.until)
}

// Owner returns the node that holds shard's lease by the last view of the
// leases, or "" when none does (or its lease lapsed).
func (n *Node) Owner(shard int) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if shard >= len(n.leases) {
		return ""
	}
	l := n.leases[shard]
	if l.Owner == "" {
		return ""
	}
	return l.Owner
}

// Held returns how many shards the node serves now.
func (n *Node) Held() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.held)
}

// Members returns the live nodes, as last read.
func (n *Node) Members() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return slices.Clone(n.members)
}
