package statefun_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	statefun "github.com/statefun-go/statefun/runtime"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// BenchmarkConnectJSON is the cost of a Connect JSON call in the HTTP
// port's handlers, without a network: writes (AddItem) and reads
// (GetCart) on the in-memory store. Two floors stand beside it, so that
// what the HTTP port adds can be told from what the runtime does:
// NoopConnect is connect-go's handler of the same messages with its own
// codecs, returning at once (the in-process bench/noop.ConnectHandler),
// and GRPCHandler is what the gRPC port runs once grpc-go has read a call
// (binary protobuf decoded into the generated handler, the interceptor
// chain, the entity, the reply encoded). AddItem - NoopConnect is the JSON
// path's excess over a no-op Connect server; GRPCHandler is the gRPC path's
// excess plus its protobuf coding.
func BenchmarkConnectJSON(b *testing.B) {
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close(b.Context()) })
	log := slog.New(slog.DiscardHandler)
	const carts = 1000
	addBodies, getBodies := make([]string, carts), make([]string, carts)
	addProto, getProto := make([][]byte, carts), make([][]byte, carts)
	for i := range carts {
		addBodies[i] = fmt.Sprintf(`{"cartId":"cart-%d","sku":"apple","quantity":1}`, i)
		getBodies[i] = fmt.Sprintf(`{"cartId":"cart-%d"}`, i)
		addProto[i], _ = proto.Marshal(&cart.AddItemRequest{CartId: fmt.Sprintf("cart-%d", i), Sku: "apple", Quantity: 1})
		getProto[i], _ = proto.Marshal(&cart.GetCartRequest{CartId: fmt.Sprintf("cart-%d", i)})
	}
	httpCalls := func(h http.Handler) func(b *testing.B, method string, bodies []string) {
		return func(b *testing.B, method string, bodies []string) {
			defer reportCPU(b)()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest(http.MethodPost, cartPath+method, strings.NewReader(bodies[i%carts]))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Connect-Protocol-Version", "1")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: HTTP %d %s", method, w.Code, w.Body)
				}
				_, _ = io.Copy(io.Discard, w.Body)
			}
		}
	}
	// Every cart is in memory before the first measured call, so that no
	// benchmark pays for the entities' first load.
	add := statefun.GRPCMethodForTest(rt, log, cartPath+"AddItem")
	for i := range carts {
		if _, err := add(b.Context(), nil, func(v any) error { return proto.Unmarshal(addProto[i], v.(proto.Message)) }); err != nil {
			b.Fatal(err)
		}
	}
	statefunCall := httpCalls(statefun.ConnectHandlerForTest(rt, log))
	b.Run("AddItem", func(b *testing.B) { statefunCall(b, "AddItem", addBodies) })
	b.Run("GetCart", func(b *testing.B) { statefunCall(b, "GetCart", getBodies) })

	// The same calls through the whole HTTP port: its mux, body limit
	// and dispatch to the native handlers.
	port, err := statefun.HTTPPortHandlerForTest(rt, log)
	if err != nil {
		b.Fatal(err)
	}
	portCall := httpCalls(port)
	b.Run("Port/AddItem", func(b *testing.B) { portCall(b, "AddItem", addBodies) })
	b.Run("Port/GetCart", func(b *testing.B) { portCall(b, "GetCart", getBodies) })

	noopCall := httpCalls(noopConnectHandler())
	b.Run("NoopConnect/AddItem", func(b *testing.B) { noopCall(b, "AddItem", addBodies) })
	b.Run("NoopConnect/GetCart", func(b *testing.B) { noopCall(b, "GetCart", getBodies) })

	grpcCall := func(b *testing.B, method string, bodies [][]byte) {
		handle := statefun.GRPCMethodForTest(rt, log, cartPath+method)
		md := metadata.Pairs("content-type", "application/grpc", "user-agent", "grpc-go")
		defer reportCPU(b)()
		for i := 0; b.Loop(); i++ {
			reply, err := handle(b.Context(), md, func(v any) error {
				return proto.Unmarshal(bodies[i%carts], v.(proto.Message))
			})
			if err != nil {
				b.Fatalf("%s: %v", method, err)
			}
			if _, err := proto.Marshal(reply.(proto.Message)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("GRPCHandler/AddItem", func(b *testing.B) { grpcCall(b, "AddItem", addProto) })
	b.Run("GRPCHandler/GetCart", func(b *testing.B) { grpcCall(b, "GetCart", getProto) })
}

// reportCPU reports allocations and the process's CPU time per call
// (cpu-µs/op), user and system, of every goroutine: a write's ns/op is
// mostly waiting for the journal's commit, and its CPU is spent on other
// goroutines too. Call the function it returns when the loop is done.
func reportCPU(b *testing.B) func() {
	b.ReportAllocs()
	start := processCPU(b)
	return func() {
		b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

// noopConnectHandler serves the cart's AddItem and GetCart with
// connect-go's handlers and codecs, doing no work: GetCart returns a
// one-line cart, the reply the benchmark's carts give.
func noopConnectHandler() http.Handler {
	reply := &cart.Cart{Items: []*cart.Cart_Item{{Sku: "apple", Quantity: 40}}}
	mux := http.NewServeMux()
	mux.Handle(cart.ShoppingCart_AddItem_FullMethodName, connect.NewUnaryHandler(cart.ShoppingCart_AddItem_FullMethodName,
		func(context.Context, *connect.Request[cart.AddItemRequest]) (*connect.Response[emptypb.Empty], error) {
			return connect.NewResponse(&emptypb.Empty{}), nil
		}))
	mux.Handle(cart.ShoppingCart_GetCart_FullMethodName, connect.NewUnaryHandler(cart.ShoppingCart_GetCart_FullMethodName,
		func(context.Context, *connect.Request[cart.GetCartRequest]) (*connect.Response[cart.Cart], error) {
			return connect.NewResponse(reply), nil
		}))
	return mux
}
