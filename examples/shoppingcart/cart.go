package main

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// Cart implements the ShoppingCart entity. Command handlers decide and emit
// events; the On methods apply events to the state.
type Cart struct {
	// IdleTimeout, when positive, empties a cart that nobody changed for
	// that long before checkout: every change schedules (and so pushes
	// back) the cart's "expire" timer, and checkout cancels it.
	IdleTimeout time.Duration
}

var _ cartv1.ShoppingCartHandler = Cart{}

// expireTimer names the cart's idle timer: one per cart, replaced by each
// change.
const expireTimer = "expire"

// touch pushes back the cart's expiry after a change.
func (c Cart) touch(ctx *cartv1.ShoppingCartContext) {
	if c.IdleTimeout > 0 {
		ctx.ScheduleCallAfter(expireTimer, c.IdleTimeout, cartv1.ShoppingCartExpireCartCall(&cartv1.ExpireCartRequest{CartId: ctx.EntityID()}))
	}
}

// AddItem adds a positive quantity of a product to an open cart.
func (c Cart) AddItem(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, req *cartv1.AddItemRequest) (*emptypb.Empty, error) {
	if err := checkOpen(cart); err != nil {
		return nil, err
	}
	if req.GetSku() == "" {
		return nil, status.Error(codes.InvalidArgument, "sku is required")
	}
	if req.GetQuantity() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "quantity must be positive, got %d", req.GetQuantity())
	}
	ctx.Emit(&cartv1.ItemAdded{Sku: req.GetSku(), Quantity: req.GetQuantity()})
	c.touch(ctx)
	return &emptypb.Empty{}, nil
}

// RemoveItem removes a product that is in the cart.
func (c Cart) RemoveItem(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, req *cartv1.RemoveItemRequest) (*emptypb.Empty, error) {
	if err := checkOpen(cart); err != nil {
		return nil, err
	}
	if findItem(cart, req.GetSku()) < 0 {
		return nil, status.Errorf(codes.NotFound, "sku %q is not in the cart", req.GetSku())
	}
	ctx.Emit(&cartv1.ItemRemoved{Sku: req.GetSku()})
	c.touch(ctx)
	return &emptypb.Empty{}, nil
}

// Checkout closes a cart that has items.
func (Cart) Checkout(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, _ *cartv1.CheckoutRequest) (*emptypb.Empty, error) {
	if err := checkOpen(cart); err != nil {
		return nil, err
	}
	if len(cart.GetItems()) == 0 {
		return nil, status.Error(codes.FailedPrecondition, "cannot check out an empty cart")
	}
	ctx.Emit(&cartv1.CheckedOut{At: timestamppb.Now()})
	ctx.CancelTimer(expireTimer)
	return &emptypb.Empty{}, nil
}

// ExpireCart empties an open cart. The idle timer calls it; a cart
// checked out or emptied meanwhile is left alone, so a repeated delivery
// changes nothing.
func (Cart) ExpireCart(ctx *cartv1.ShoppingCartContext, cart *cartv1.Cart, _ *cartv1.ExpireCartRequest) (*emptypb.Empty, error) {
	if cart.GetCheckedOutAt() == nil && len(cart.GetItems()) > 0 {
		ctx.Emit(&cartv1.CartExpired{})
	}
	return &emptypb.Empty{}, nil
}

// GetCart returns the cart.
func (Cart) GetCart(_ *cartv1.ShoppingCartReadContext, cart *cartv1.Cart, _ *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	return cart, nil
}

// OnItemAdded adds to the line of the product, or adds a line.
func (Cart) OnItemAdded(cart *cartv1.Cart, e *cartv1.ItemAdded) {
	if i := findItem(cart, e.GetSku()); i >= 0 {
		cart.Items[i].Quantity += e.GetQuantity()
		return
	}
	cart.Items = append(cart.Items, &cartv1.LineItem{Sku: e.GetSku(), Quantity: e.GetQuantity()})
}

// OnItemRemoved drops the line of the product.
func (Cart) OnItemRemoved(cart *cartv1.Cart, e *cartv1.ItemRemoved) {
	if i := findItem(cart, e.GetSku()); i >= 0 {
		cart.Items = append(cart.Items[:i], cart.Items[i+1:]...)
	}
}

// OnCartExpired empties the cart.
func (Cart) OnCartExpired(cart *cartv1.Cart, _ *cartv1.CartExpired) {
	cart.Items = nil
}

// OnCheckedOut records when the cart was closed.
func (Cart) OnCheckedOut(cart *cartv1.Cart, e *cartv1.CheckedOut) {
	cart.CheckedOutAt = e.GetAt()
}

func checkOpen(cart *cartv1.Cart) error {
	if cart.GetCheckedOutAt() != nil {
		return status.Error(codes.FailedPrecondition, "cart is checked out; start a new cart")
	}
	return nil
}

func findItem(cart *cartv1.Cart, sku string) int {
	for i, it := range cart.GetItems() {
		if it.GetSku() == sku {
			return i
		}
	}
	return -1
}
