package load_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/noop"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// recorder is a Connect server that keeps the requests it decoded and the
// HTTP version they came over; AddItem of cart "missing" fails.
type recorder struct {
	mu     sync.Mutex
	adds   []*cartv1.AddItemRequest
	gets   []string
	protos map[int]int
}

func (r *recorder) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(cartv1.ShoppingCartService_AddItem_FullMethodName, connect.NewUnaryHandler(cartv1.ShoppingCartService_AddItem_FullMethodName,
		func(_ context.Context, req *connect.Request[cartv1.AddItemRequest]) (*connect.Response[emptypb.Empty], error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.adds = append(r.adds, req.Msg)
			if req.Msg.GetCartId() == "missing" {
				return nil, connect.NewError(connect.CodeNotFound, errors.New("no such cart"))
			}
			return connect.NewResponse(&emptypb.Empty{}), nil
		}))
	mux.Handle(cartv1.ShoppingCartService_GetCart_FullMethodName, noop.ConnectHandler())
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.protos[req.ProtoMajor]++
		if req.URL.Path == cartv1.ShoppingCartService_GetCart_FullMethodName {
			r.gets = append(r.gets, req.Header.Get("Connect-Protocol-Version"))
		}
		r.mu.Unlock()
		mux.ServeHTTP(w, req)
	})
}

// serveConnect starts a Connect server over HTTP/1.1, and h2c if asked,
// and returns its URL and a count of the connections it accepted.
func serveConnect(t *testing.T, h http.Handler, h2c bool) (string, *atomic.Int64) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(h2c)
	srv.Config.Protocols = &p
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, &conns
}

func TestConnectClient(t *testing.T) {
	for _, version := range []int{load.HTTP1, load.HTTP2} {
		rec := &recorder{protos: map[int]int{}}
		url, _ := serveConnect(t, rec.handler(), true)
		c, err := load.NewConnectClient(url, version)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Encoded by hand, and (an ID JSON must escape) by protojson.
		for _, id := range []string{"cart-00042", `odd "cart" é`} {
			if _, err := c.AddItem(ctx, &cartv1.AddItemRequest{CartId: id, Sku: "sku-3", Quantity: 7}); err != nil {
				t.Errorf("HTTP/%d: AddItem(%q): %v", version, id, err)
			}
		}
		if _, err := c.GetCart(ctx, &cartv1.GetCartRequest{CartId: "cart-00042"}); err != nil {
			t.Errorf("HTTP/%d: GetCart: %v", version, err)
		}
		_, err = c.AddItem(ctx, &cartv1.AddItemRequest{CartId: "missing", Sku: "sku-0", Quantity: 1})
		var ce *load.ConnectError
		if !errors.As(err, &ce) || ce.Code != "not_found" || ce.Status != http.StatusNotFound || ce.Message != "no such cart" {
			t.Errorf("HTTP/%d: AddItem of a missing cart: %v, want a not_found ConnectError", version, err)
		}
		_, err = c.RemoveItem(ctx, &cartv1.RemoveItemRequest{CartId: "cart-00042", Sku: "sku-0"})
		if !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
			t.Errorf("HTTP/%d: RemoveItem, which the server lacks: %v, want a 404", version, err)
		}
		cancel()
		c.Close()

		rec.mu.Lock()
		if len(rec.adds) != 3 || rec.adds[0].GetCartId() != "cart-00042" || rec.adds[0].GetSku() != "sku-3" || rec.adds[0].GetQuantity() != 7 ||
			rec.adds[1].GetCartId() != `odd "cart" é` || rec.adds[1].GetQuantity() != 7 {
			t.Errorf("HTTP/%d: the server decoded %v", version, rec.adds)
		}
		if len(rec.gets) != 1 || rec.gets[0] != "1" {
			t.Errorf("HTTP/%d: GetCart calls with Connect-Protocol-Version %q, want one with 1", version, rec.gets)
		}
		if rec.protos[version] != 5 {
			t.Errorf("HTTP/%d: requests by HTTP version %v, want all 5 over %d", version, rec.protos, version)
		}
		rec.mu.Unlock()
	}
}

// TestConnectClientH2CRefused: a server that does not speak h2c fails an
// HTTP/2 client's calls, so that the bench reports the cell as not
// possible instead of measuring HTTP/1.1 under the HTTP/2 name.
func TestConnectClientH2CRefused(t *testing.T) {
	url, _ := serveConnect(t, noop.ConnectHandler(), false)
	c, err := load.NewConnectClient(url, load.HTTP2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.GetCart(ctx, &cartv1.GetCartRequest{CartId: "cart-00001"}); err == nil {
		t.Error("GetCart over h2c from an HTTP/1.1-only server succeeded")
	}
}

// TestRunOverConnect runs the load over Connect clients, and checks that
// they keep their connections. Over HTTP/2, one per client once the client
// has one (requests that start together before it has one may each dial);
// over HTTP/1.1 about one per worker (a few more: a worker's next request
// may start dialling before its connection is back in the pool, and the
// dial's connection then joins the pool), never one per request.
func TestRunOverConnect(t *testing.T) {
	for _, version := range []int{load.HTTP1, load.HTTP2} {
		url, conns := serveConnect(t, noop.ConnectHandler(), true)
		var clients []cartv1.ShoppingCartServiceClient
		for range 2 {
			c, err := load.NewConnectClient(url, version)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.GetCart(context.Background(), &cartv1.GetCartRequest{CartId: "first"}); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
		}
		res, err := load.Run(context.Background(), load.Config{
			Clients: clients, Concurrency: 8, Carts: 100, ReadFraction: 0.5,
			Ramp: 50 * time.Millisecond, Duration: 200 * time.Millisecond, Seed: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors > 0 || res.Reads.Count == 0 || res.Writes.Count == 0 {
			t.Errorf("HTTP/%d: %d reads, %d writes, %d errors (first: %s)", version, res.Reads.Count, res.Writes.Count, res.Errors, res.FirstError)
		}
		if want := map[int]int64{load.HTTP1: 16, load.HTTP2: 2}[version]; conns.Load() > want {
			t.Errorf("HTTP/%d: %d connections for %d requests, want at most %d", version, conns.Load(), res.Sent, want)
		}
	}
}
