package reliability

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	statefun "github.com/statefun-go/statefun/runtime"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/wellknown"
)

// The in-process tests host testdata entities with these handlers, written
// as a user would, when a fault is easier to inject inside the process
// than around it (a store that stops answering) or when the entity they
// need is not in an example binary (Profile, whose state is a Struct).

type cartHandler struct{}

func (cartHandler) AddItem(ctx *cart.ShoppingCartContext, _ *cart.Cart, req *cart.AddItemRequest) (*emptypb.Empty, error) {
	if req.GetQuantity() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "quantity must be positive")
	}
	ctx.Emit(&cart.ItemAdded{Sku: req.GetSku(), Quantity: req.GetQuantity()})
	return &emptypb.Empty{}, nil
}

func (cartHandler) RemoveItem(ctx *cart.ShoppingCartContext, _ *cart.Cart, req *cart.RemoveItemRequest) (*emptypb.Empty, error) {
	ctx.Emit(&cart.ItemRemoved{Sku: req.GetSku()})
	return &emptypb.Empty{}, nil
}

func (cartHandler) Checkout(ctx *cart.ShoppingCartContext, _ *cart.Cart, _ *cart.CheckoutRequest) (*emptypb.Empty, error) {
	ctx.Emit(&cart.CheckedOut{})
	return &emptypb.Empty{}, nil
}

func (cartHandler) GetCart(_ *cart.ShoppingCartReadContext, state *cart.Cart, _ *cart.GetCartRequest) (*cart.Cart, error) {
	return state, nil
}

func (cartHandler) OnItemAdded(state *cart.Cart, e *cart.ItemAdded) {
	state.Items = append(state.Items, &cart.Cart_Item{Sku: e.GetSku(), Quantity: e.GetQuantity()})
}

func (cartHandler) OnItemRemoved(*cart.Cart, *cart.ItemRemoved) {}

func (cartHandler) OnCheckedOut(*cart.Cart, *cart.CheckedOut) {}

// profileHandler keeps whatever attributes it is given as the state.
type profileHandler struct{}

func (profileHandler) Put(ctx *wellknown.ProfileContext, _ *structpb.Struct, req *wellknown.PutRequest) (*structpb.Struct, error) {
	next := req.GetAttributes()
	if next == nil {
		next = &structpb.Struct{}
	}
	ctx.SetState(next)
	return next, nil
}

func (profileHandler) Get(_ *wellknown.ProfileReadContext, state *structpb.Struct, _ *wellknown.GetRequest) (*structpb.Struct, error) {
	return state, nil
}

func newInProcess(t *testing.T, opts ...statefun.Option) *statefun.Runtime {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartHandler{})}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}
