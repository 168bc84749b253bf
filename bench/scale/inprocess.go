package scale

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/statefun-go/statefun/bench/report"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// StateHeap measures the heap one cart's state takes once loaded: half
// the carts decoded from their snapshot, half replayed from their events,
// as a load does. It also returns the mean encoded size and line count.
func StateHeap(d Dataset) (heapBytes, protoBytes, lines float64, err error) {
	const n = 20000
	before := liveHeap()
	carts := make([]*cartv1.Cart, n)
	for i := range carts {
		if HasSnapshot(i) {
			payload, err := EncodeSnapshot(State(i, d.EventsPerEntity))
			if err != nil {
				return 0, 0, 0, err
			}
			c := &cartv1.Cart{}
			if err := proto.Unmarshal(payload, c); err != nil {
				return 0, 0, 0, err
			}
			carts[i] = c
			continue
		}
		carts[i] = State(i, d.EventsPerEntity)
	}
	after := liveHeap()
	var size, count int
	for _, c := range carts {
		size += proto.Size(c)
		count += len(c.GetItems())
	}
	runtime.KeepAlive(carts)
	return float64(after-before) / n, float64(size) / n, float64(count) / n, nil
}

// InProcess loads n carts of the data set (half with a snapshot) into a
// runtime in this process, on the same store, and measures the live heap
// per cached cart with runtime.MemStats: the figure of the runtime's own
// Go benchmark, here with real histories and carts.
func InProcess(ctx context.Context, url, schema string, d Dataset, n, concurrency int) (*report.InProcessMemory, error) {
	st, err := postgres.Open(ctx, url, postgres.WithSchema(schema), postgres.WithoutMigrate())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := statefun.New([]*statefun.Entity{cartv1.NewShoppingCart(cartHandler{})}, statefun.WithStore(st), statefun.WithLogger(quiet))
	if err != nil {
		return nil, err
	}
	defer func() { _ = rt.Close(context.WithoutCancel(ctx)) }()
	carts := cartv1.NewShoppingCartServiceClient(rt.ClientConn())
	n = min(n, d.Entities)
	before := liveHeap()
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += concurrency {
				if _, err := carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: CartID(i)}); err != nil {
					errs <- fmt.Errorf("in process: get cart %s: %w", CartID(i), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	after := liveHeap()
	if got := rt.Stats().Entities[0].Cached; got != n {
		return nil, fmt.Errorf("in process: %d carts cached after reading %d", got, n)
	}
	return &report.InProcessMemory{Entities: n, HeapPerEntity: float64(after-before) / float64(n)}, nil
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// cartHandler is the shopping cart example's entity (examples/shoppingcart
// is a main package, so it cannot be imported): the same decisions and
// the same state changes.
type cartHandler struct{}

func (cartHandler) AddItem(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, req *cartv1.AddItemRequest) (*emptypb.Empty, error) {
	switch {
	case cart.GetCheckedOutAt() != nil:
		return nil, status.Error(codes.FailedPrecondition, "cart is checked out; start a new cart")
	case req.GetSku() == "":
		return nil, status.Error(codes.InvalidArgument, "sku is required")
	case req.GetQuantity() <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "quantity must be positive, got %d", req.GetQuantity())
	}
	ctx.Emit(&cartv1.ItemAdded{Sku: req.GetSku(), Quantity: req.GetQuantity()})
	return &emptypb.Empty{}, nil
}

func (cartHandler) RemoveItem(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, req *cartv1.RemoveItemRequest) (*emptypb.Empty, error) {
	if cart.GetCheckedOutAt() != nil {
		return nil, status.Error(codes.FailedPrecondition, "cart is checked out; start a new cart")
	}
	for _, it := range cart.GetItems() {
		if it.GetSku() == req.GetSku() {
			ctx.Emit(&cartv1.ItemRemoved{Sku: req.GetSku()})
			return &emptypb.Empty{}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "sku %q is not in the cart", req.GetSku())
}

func (cartHandler) Checkout(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, _ *cartv1.CheckoutRequest) (*emptypb.Empty, error) {
	switch {
	case cart.GetCheckedOutAt() != nil:
		return nil, status.Error(codes.FailedPrecondition, "cart is checked out; start a new cart")
	case len(cart.GetItems()) == 0:
		return nil, status.Error(codes.FailedPrecondition, "cannot check out an empty cart")
	}
	ctx.Emit(&cartv1.CheckedOut{At: timestamppb.Now()})
	return &emptypb.Empty{}, nil
}

// ExpireCart empties an open cart, as the example's idle timer does.
func (cartHandler) ExpireCart(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, _ *cartv1.ExpireCartRequest) (*emptypb.Empty, error) {
	if cart.GetCheckedOutAt() == nil && len(cart.GetItems()) > 0 {
		ctx.Emit(&cartv1.CartExpired{})
	}
	return &emptypb.Empty{}, nil
}

func (cartHandler) OnCartExpired(cart *cartv1.Cart, _ *cartv1.CartExpired) { cart.Items = nil }

func (cartHandler) GetCart(_ *cartv1.ShoppingCartReadContext, cart *cartv1.Cart, _ *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	return cart, nil
}

func (cartHandler) OnItemAdded(cart *cartv1.Cart, e *cartv1.ItemAdded) { Apply(cart, e) }

func (cartHandler) OnItemRemoved(cart *cartv1.Cart, e *cartv1.ItemRemoved) {
	for i, it := range cart.GetItems() {
		if it.GetSku() == e.GetSku() {
			cart.Items = append(cart.Items[:i], cart.Items[i+1:]...)
			return
		}
	}
}

func (cartHandler) OnCheckedOut(cart *cartv1.Cart, e *cartv1.CheckedOut) {
	cart.CheckedOutAt = e.GetAt()
}
