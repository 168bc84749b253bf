package statefun

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/runtime/internal/cluster"
	"github.com/statefun-go/statefun/runtime/store"
)

// ClusterConfig makes a runtime one node of a cluster: several runtimes
// (processes) on one database, each serving the entities of the shards it
// holds the leases of, and forwarding requests for the others to their
// owners. The store must implement store.Cluster (Postgres does; the
// embedded store does not).
type ClusterConfig struct {
	// Address is where the other nodes reach this node's gRPC port; it
	// also names the node, so a restarted node takes its shards back.
	Address string
	// Shards is the number of shards; fixed when the first node starts.
	// Default 1024.
	Shards int
	// LeaseTTL is how long a dead node's shards wait before another node
	// takes them over. Default 5s.
	LeaseTTL time.Duration
	// DialOptions are used to reach the other nodes; the default is a
	// plaintext connection.
	DialOptions []grpc.DialOption
}

// DefaultShards is the shard count of a cluster whose first node did not
// set one.
const DefaultShards = 1024

// WithCluster makes the runtime a node of a cluster; see ClusterConfig.
func WithCluster(c ClusterConfig) Option {
	return optionFunc(func(cfg *config) { cfg.cluster = &c })
}

// forwardedHeader marks a request one node forwarded to another: the
// receiver serves it or refuses it, and never forwards it again.
const forwardedHeader = "statefun-forwarded-by"

// routeTimeout bounds how long a request without a deadline waits for
// its shard to get an owner (a failover, a handoff).
const routeTimeout = 30 * time.Second

// clusterNode is the runtime's side of cluster membership.
type clusterNode struct {
	node     *cluster.Node
	cfg      ClusterConfig
	inflight []atomic.Int64 // requests running here, per shard

	peersMu sync.Mutex
	peers   map[string]*grpc.ClientConn

	forwards, forwardRetries atomic.Uint64
	tracer                   trace.Tracer // nil unless tracing
	sec                      *security

	cancel context.CancelFunc
	done   chan struct{}

	leaveOnce sync.Once
	leaveErr  error
	leaving   atomic.Bool
	stopView  context.CancelFunc
	viewDone  chan struct{}
}

func (r *Runtime) startCluster(ctx context.Context, c ClusterConfig) error {
	cs, ok := r.store.(store.Cluster)
	if !ok {
		return fmt.Errorf("a cluster needs a store that several processes share, such as Postgres; %T is single-node", r.store)
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	// Forwarded calls carry their caller in a token signed with the
	// cluster's secret: without it, a node could not tell another node's
	// call from an outsider's posing as one.
	if err := r.sec.useClusterSecret(ctx, cs); err != nil {
		return err
	}
	if len(c.DialOptions) == 0 {
		c.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cn := &clusterNode{cfg: c, peers: map[string]*grpc.ClientConn{}, inflight: make([]atomic.Int64, c.Shards), done: make(chan struct{}), tracer: r.tracer, sec: r.sec}
	node, err := cluster.New(cluster.Config{
		ID: c.Address, Address: c.Address, Shards: c.Shards, LeaseTTL: c.LeaseTTL,
		Store: cs, Log: r.log.With("node", c.Address),
		Drain: cn.drain,
		Changed: func() {
			if r.consumers != nil {
				r.consumers.clusterChanged()
			}
		},
	})
	if err != nil {
		return err
	}
	cn.node = node
	if err := node.Join(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	cn.cancel = cancel
	go func() {
		defer close(cn.done)
		node.Run(runCtx)
	}()
	r.cluster = cn
	r.writerNode = c.Address
	return nil
}

// drain waits until no request of shard runs here: the node has stopped
// serving it, so none starts, and those running have their commits
// durable when they end.
func (cn *clusterNode) drain(ctx context.Context, shard int) {
	for cn.inflight[shard].Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// leave hands every shard off and leaves the cluster; requests arriving
// meanwhile are forwarded to the new owners.
func (cn *clusterNode) leave(ctx context.Context) error {
	cn.leaveOnce.Do(func() { cn.leaveErr = cn.handOffAll(ctx) })
	return cn.leaveErr
}

func (cn *clusterNode) handOffAll(ctx context.Context) error {
	cn.leaving.Store(true)
	cn.cancel()
	<-cn.done
	alone := len(cn.others()) == 0
	// Leave the membership first and give the other nodes a heartbeat to
	// see it: they then wait for this node's shards, and take each one
	// moments after it is released. Meanwhile this node serves them.
	if err := cn.node.Deregister(ctx); err != nil {
		return fmt.Errorf("leave the cluster: %w", err)
	}
	if !alone {
		select {
		case <-time.After(cn.node.Renew() + 100*time.Millisecond):
		case <-ctx.Done():
		}
	}
	err := cn.node.Leave(ctx)
	// Calls that still reach this node are forwarded to the new owners.
	viewCtx, stop := context.WithCancel(context.Background())
	cn.stopView = stop
	cn.viewDone = make(chan struct{})
	go func() {
		defer close(cn.viewDone)
		for {
			select {
			case <-viewCtx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			vctx, cancel := context.WithTimeout(viewCtx, time.Second)
			_ = cn.node.View(vctx)
			cancel()
		}
	}()
	return err
}

// others returns the other live nodes, as last seen.
func (cn *clusterNode) others() []string {
	var out []string
	for _, m := range cn.node.Members() {
		if m != cn.node.ID() {
			out = append(out, m)
		}
	}
	return out
}

// close stops the cluster node for good.
func (cn *clusterNode) close(ctx context.Context) error {
	err := cn.leave(ctx)
	if cn.stopView != nil {
		cn.stopView()
		<-cn.viewDone
	}
	cn.peersMu.Lock()
	for _, c := range cn.peers {
		_ = c.Close()
	}
	cn.peers = map[string]*grpc.ClientConn{}
	cn.peersMu.Unlock()
	return err
}

func (cn *clusterNode) peer(address string) (*grpc.ClientConn, error) {
	cn.peersMu.Lock()
	defer cn.peersMu.Unlock()
	if c, ok := cn.peers[address]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(address, cn.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	cn.peers[address] = c
	return c, nil
}

// errMoved is what a node answers for a shard it does not serve, and what
// a commit gets when its lease was lost: nothing was run or stored, so the
// request may go to the shard's owner.
func errMoved(shard int) error {
	st := status.New(codes.Unavailable, fmt.Sprintf("shard %d is not served by this node (it moved, or is moving, to another node); retry the call", shard))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "SHARD_MOVED", Domain: "statefun"}); err == nil {
		st = d
	}
	return st.Err()
}

func isMoved(err error) bool {
	if err == nil {
		return false
	}
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "SHARD_MOVED" && info.GetDomain() == "statefun" {
			return true
		}
	}
	return false
}

// UnaryServerInterceptor keeps each request where a clustered runtime
// finds it to forward the call to the node that owns the entity.
//
// Deprecated: it checks no access rules and establishes no caller, so a
// forwarded call acts for an anonymous caller. Use the runtime's own
// Runtime.UnaryServerInterceptor and Runtime.StreamServerInterceptor.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor { return keepRequest }

// UnaryServerInterceptor must be among the interceptors of a gRPC server
// that serves the runtime's services (Runtime.RegisterServices): it
// establishes each call's caller, checks the method's access rules
// (statefun.v1.access) and rate limits, and keeps the request for
// forwarding within a cluster. statefun.Main's server installs it.
func (r *Runtime) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return chainUnary(r.sec.unaryInterceptor, keepRequest)
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls
// (a view's streaming queries).
func (r *Runtime) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return r.sec.streamInterceptor
}

// requestKey carries a call's request message in its context, for
// forwarding: the server's interceptor and the in-process connection put
// it there.
type requestKey struct{}

func withRequest(ctx context.Context, req any) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

// routed runs a call of entity id where its shard is served: here, when
// this node holds the shard's lease, or at its owner, one hop away. A
// shard without an owner (a failover, a handoff) is waited for within
// the call's deadline.
func routed[S, R proto.Message](ctx context.Context, h *Host[S], id string, readOnly bool, local func(shard int, epoch int64) (R, error)) (R, error) {
	var zero R
	cn := h.rt.cluster
	shard := cluster.ShardOf(h.cfg.Type, id, cn.node.Shards())
	forwarded := len(metadata.ValueFromIncomingContext(ctx, forwardedHeader)) > 0
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, routeTimeout)
		defer cancel()
	}
	for {
		// Counted before the check, so that a drain that starts after the
		// check waits for this call.
		cn.inflight[shard].Add(1)
		epoch, serving := cn.node.Serving(shard)
		if serving {
			reply, err := local(shard, epoch)
			cn.inflight[shard].Add(-1)
			if !isMoved(err) {
				return reply, err
			}
			// The lease was lost under the call; nothing was stored.
		} else {
			cn.inflight[shard].Add(-1)
		}
		if forwarded {
			// The forwarding node has a stale view: the call did not run
			// here, so it may be routed again.
			return zero, errMoved(shard)
		}
		if cn.node.Lapsed(shard) {
			// This node's heartbeats are failing: the database does not
			// answer it. Waiting would only end at the deadline.
			return zero, status.Errorf(codes.Unavailable, "this node could not renew its lease of shard %d in time: the database does not answer it; retry the call (on another node)", shard)
		}
		owner := cn.node.Owner(shard)
		if owner != "" && owner != cn.node.ID() {
			reply, err, retry := forward[R](ctx, cn, owner, readOnly)
			if !retry {
				return reply, err
			}
			cn.forwardRetries.Add(1)
		} else if cn.leaving.Load() && len(cn.others()) == 0 {
			// The last node is stopping: no one will take the shard.
			return zero, status.Error(codes.Unavailable, "server is shutting down; retry on another instance")
		}
		cn.node.Refresh()
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return zero, status.Errorf(codes.Unavailable, "no node served shard %d of %s/%s before the deadline (a node failed or is handing it off); retry the call", shard, h.cfg.Type, id)
			}
			return zero, status.FromContextError(ctx.Err()).Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// forward sends the call to the node that owns its shard. retry says the
// call was not run there (the owner moved on, or could not be reached
// before the call was sent), so it may be routed again.
func forward[R proto.Message](ctx context.Context, cn *clusterNode, owner string, readOnly bool) (R, error, bool) {
	var zero R
	req, ok := ctx.Value(requestKey{}).(proto.Message)
	method, _ := grpc.Method(ctx)
	if !ok || method == "" {
		return zero, status.Error(codes.Internal, "cannot forward this call: its request is not in its context; call entities through the server or Runtime.ClientConn"), false
	}
	conn, err := cn.peer(owner)
	if err != nil {
		return zero, status.Errorf(codes.Unavailable, "reach node %s: %v", owner, err), true
	}
	wasReady := conn.GetState() == connectivity.Ready
	// The owner acts for the caller this node established (the token's
	// claims, another service, nobody in particular, or this service
	// itself), and checks the method's access again with it.
	token, err := cn.sec.mintForward(ctx, method, cn.node.ID())
	if err != nil {
		return zero, status.Errorf(codes.Internal, "forward the call to node %s: %v", owner, err), false
	}
	md := metadata.Pairs(forwardedHeader, cn.node.ID(), internalTokenHeader, token)
	keyed := false
	if key := metadata.ValueFromIncomingContext(ctx, IdempotencyKeyHeader); len(key) == 1 {
		md.Set(IdempotencyKeyHeader, key[0])
		keyed = true
	}
	if subject := metadata.ValueFromIncomingContext(ctx, SubjectHeader); len(subject) == 1 {
		// The owner reads a subscribed method's entity from it (SubjectKey).
		md.Set(SubjectHeader, subject[0])
	}
	if fired := metadata.ValueFromIncomingContext(ctx, timerHeader); len(fired) == 1 {
		// The target of a timer learns so wherever it runs (TimerOf).
		md.Set(timerHeader, fired[0])
	}
	cn.forwards.Add(1)
	var span trace.Span
	if cn.tracer != nil {
		// The owner's server span is a child of this one: its request
		// span finds the traceparent in the metadata.
		ctx, span = cn.tracer.Start(ctx, "statefun.forward", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			rpcAttributes(method, attrServerAddr.String(owner))...))
		propagator.Inject(ctx, mdCarrier(md))
	}
	reply := zero.ProtoReflect().New().Interface().(R)
	err = conn.Invoke(metadata.NewOutgoingContext(ctx, md), method, req, reply)
	if span != nil {
		span.SetAttributes(attrGRPCCode.Int64(int64(status.Code(err))))
		endSpan(span, status.Code(err), err)
	}
	switch {
	case err == nil:
		return reply, nil, false
	case isMoved(err):
		return zero, err, true
	case status.Code(err) == codes.Unavailable && ctx.Err() == nil && (!wasReady || readOnly || keyed):
		// The connection was not up, so the call most likely never left;
		// or running it twice is harmless: a read, or a command whose
		// idempotency key makes a second run return the first answer.
		// A command without a key cut mid-way on a ready connection may
		// have run: its caller gets the error and decides.
		return zero, err, true
	}
	return zero, err, false
}
