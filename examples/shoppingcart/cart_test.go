package main

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func newCarts(t *testing.T) *cartv1.ShoppingCartEntityClient {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{cartv1.NewShoppingCart(Cart{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return cartv1.NewShoppingCartEntityClient(rt.ClientConn())
}

func TestCartRules(t *testing.T) {
	ctx := context.Background()
	carts := newCarts(t)
	mustOK := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	wantCode := func(err error, code codes.Code) {
		t.Helper()
		if status.Code(err) != code {
			t.Fatalf("got %v, want %v", err, code)
		}
	}
	errOf := func(_ any, err error) error { return err }
	wantCode(errOf(carts.Checkout(ctx, &cartv1.CheckoutRequest{CartId: "c"})), codes.FailedPrecondition)
	wantCode(errOf(carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 0})), codes.InvalidArgument)
	wantCode(errOf(carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Quantity: 1})), codes.InvalidArgument)
	mustOK(carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 2}))
	mustOK(carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Sku: "pear", Quantity: 1}))
	mustOK(carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 3}))
	wantCode(errOf(carts.RemoveItem(ctx, &cartv1.RemoveItemRequest{CartId: "c", Sku: "kiwi"})), codes.NotFound)
	mustOK(carts.RemoveItem(ctx, &cartv1.RemoveItemRequest{CartId: "c", Sku: "pear"}))
	mustOK(carts.Checkout(ctx, &cartv1.CheckoutRequest{CartId: "c"}))
	wantCode(errOf(carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Sku: "fig", Quantity: 1})), codes.FailedPrecondition)

	got, err := carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetItems()) != 1 || got.GetItems()[0].GetSku() != "apple" || got.GetItems()[0].GetQuantity() != 5 || got.GetCheckedOutAt() == nil {
		t.Errorf("cart = %v, want 5 apples, checked out", got)
	}
}
