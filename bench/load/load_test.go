package load_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/noop"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counting is the no-op server, counting the carts each method saw.
type counting struct {
	noop.Server
	mu     sync.Mutex
	reads  map[string]int
	writes map[string]int
}

func (c *counting) AddItem(ctx context.Context, req *cartv1.AddItemRequest) (*emptypb.Empty, error) {
	c.mu.Lock()
	c.writes[req.GetCartId()]++
	c.mu.Unlock()
	return c.Server.AddItem(ctx, req)
}

func (c *counting) GetCart(ctx context.Context, req *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	c.mu.Lock()
	c.reads[req.GetCartId()]++
	c.mu.Unlock()
	return c.Server.GetCart(ctx, req)
}

func serve(t *testing.T) (*counting, []cartv1.ShoppingCartServiceClient) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	impl := &counting{reads: map[string]int{}, writes: map[string]int{}}
	cartv1.RegisterShoppingCartServiceServer(srv, impl)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	return impl, []cartv1.ShoppingCartServiceClient{cartv1.NewShoppingCartServiceClient(conn)}
}

func TestVisitTouchesEveryCartOnce(t *testing.T) {
	t.Parallel()
	impl, clients := serve(t)
	n, err := load.Visit(context.Background(), clients, 500, 8, true)
	if err != nil || n != 500 {
		t.Fatalf("Visit = %d, %v; want 500, nil", n, err)
	}
	if len(impl.writes) != 500 {
		t.Fatalf("%d carts written, want 500", len(impl.writes))
	}
	for id, k := range impl.writes {
		if k != 1 {
			t.Fatalf("cart %s written %d times", id, k)
		}
	}
}

func TestRunMixAndSkew(t *testing.T) {
	t.Parallel()
	impl, clients := serve(t)
	var started, ended bool
	res, err := load.Run(context.Background(), load.Config{
		Clients: clients, Concurrency: 4, Carts: 1000, ReadFraction: 0.9, Zipf: 1.1,
		Ramp: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		OnStart: func() { started = true }, OnEnd: func() { ended = true },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !started || !ended {
		t.Error("OnStart or OnEnd was not called")
	}
	if res.Requests == 0 || res.Errors != 0 || res.Sent < res.Requests {
		t.Fatalf("result %+v", res)
	}
	if res.Reads.Count+res.Writes.Count != res.Requests {
		t.Errorf("%d reads + %d writes != %d requests", res.Reads.Count, res.Writes.Count, res.Requests)
	}
	if share := float64(res.Reads.Count) / float64(res.Requests); share < 0.8 || share > 0.97 {
		t.Errorf("read share %.2f, want about 0.9", share)
	}
	l := res.All
	if l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("latency quantiles out of order: %+v", l)
	}
	// With s = 1.1 the hottest cart takes about a sixth of the requests;
	// uniform it would take a thousandth.
	impl.mu.Lock()
	hot := impl.reads[load.CartID(0)] + impl.writes[load.CartID(0)]
	impl.mu.Unlock()
	if float64(hot) < 0.05*float64(res.Sent) {
		t.Errorf("hottest cart got %d of %d requests, want a large share", hot, res.Sent)
	}
}

// leaving answers every call UNAVAILABLE, as a node shutting down does,
// and records the idempotency keys it was sent.
type leaving struct {
	noop.Server
	mu   sync.Mutex
	keys map[string]int
}

func (l *leaving) AddItem(ctx context.Context, _ *cartv1.AddItemRequest) (*emptypb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	l.mu.Lock()
	for _, k := range md.Get("idempotency-key") {
		l.keys[k]++
	}
	l.mu.Unlock()
	return nil, status.Error(codes.Unavailable, "shutting down")
}

func TestRunRetriesOnAnotherClient(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	down := &leaving{keys: map[string]int{}}
	cartv1.RegisterShoppingCartServiceServer(srv, down)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	up, clients := serve(t)
	clients = append([]cartv1.ShoppingCartServiceClient{cartv1.NewShoppingCartServiceClient(conn)}, clients...)

	stop := make(chan struct{})
	time.AfterFunc(300*time.Millisecond, func() { close(stop) })
	res, err := load.Run(context.Background(), load.Config{
		Clients: clients, Concurrency: 4, Carts: 100, Retry: true, Stop: stop,
		Ramp: 50 * time.Millisecond, Duration: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("result %+v: every request should succeed on the second client", res)
	}
	if res.Window > 10*time.Second {
		t.Errorf("window %v: Stop should end it, not Duration", res.Window)
	}
	// Workers 0 and 2 start on the leaving server: each of their requests
	// is retried once, with the key it was first sent with.
	if res.Retries == 0 {
		t.Error("no retries counted")
	}
	down.mu.Lock()
	defer down.mu.Unlock()
	if len(down.keys) == 0 {
		t.Fatal("writes carried no idempotency key")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for k, n := range down.keys {
		if n != 1 {
			t.Errorf("key %s sent %d times to the leaving server, want once", k, n)
		}
	}
	if len(up.writes) == 0 {
		t.Error("no write reached the serving server")
	}
}

func TestRunRoutes(t *testing.T) {
	t.Parallel()
	even, evenClients := serve(t)
	odd, oddClients := serve(t)
	clients := []cartv1.ShoppingCartServiceClient{evenClients[0], oddClients[0]}
	_, err := load.Run(context.Background(), load.Config{
		Clients: clients, Concurrency: 4, Carts: 100, ReadFraction: 0.5,
		Route:    func(cart, _ int) int { return cart % 2 },
		Duration: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		srv  *counting
		want int
	}{{even, 0}, {odd, 1}} {
		c.srv.mu.Lock()
		for _, m := range []map[string]int{c.srv.reads, c.srv.writes} {
			for id := range m {
				var n int
				if _, err := fmt.Sscanf(id, "cart-%d", &n); err != nil || n%2 != c.want {
					t.Errorf("cart %s reached the server for carts %% 2 == %d", id, c.want)
				}
			}
		}
		c.srv.mu.Unlock()
	}
}
