package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// The handlers' rules, unit-tested with the generated testkit: no server,
// no store. Every request addresses cart "c": a testkit holds one entity.

func TestAddItem(t *testing.T) {
	t.Parallel()
	tk := cartv1.NewShoppingCartTestKit(t, Cart{})
	tk.Given(&cartv1.ItemAdded{Sku: "apple", Quantity: 2})

	tk.AddItem(&cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 3}).
		WantEvents(&cartv1.ItemAdded{Sku: "apple", Quantity: 3})
	tk.AddItem(&cartv1.AddItemRequest{CartId: "c", Sku: "pear", Quantity: 1}).
		WantEvents(&cartv1.ItemAdded{Sku: "pear", Quantity: 1})
	tk.WantState(&cartv1.Cart{Items: []*cartv1.LineItem{
		{Sku: "apple", Quantity: 5},
		{Sku: "pear", Quantity: 1},
	}})
}

func TestAddItemRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		given []cartv1.ShoppingCartEvent
		req   *cartv1.AddItemRequest
		code  codes.Code
	}{
		{"zero quantity", nil, &cartv1.AddItemRequest{CartId: "c", Sku: "apple"}, codes.InvalidArgument},
		{"negative quantity", nil, &cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: -1}, codes.InvalidArgument},
		{"no sku", nil, &cartv1.AddItemRequest{CartId: "c", Quantity: 1}, codes.InvalidArgument},
		{
			"checked out",
			[]cartv1.ShoppingCartEvent{&cartv1.ItemAdded{Sku: "apple", Quantity: 1}, &cartv1.CheckedOut{At: timestamppb.Now()}},
			&cartv1.AddItemRequest{CartId: "c", Sku: "fig", Quantity: 1},
			codes.FailedPrecondition,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tk := cartv1.NewShoppingCartTestKit(t, Cart{})
			tk.Given(tt.given...)
			before := tk.State()
			tk.AddItem(tt.req).WantCode(tt.code)
			tk.WantState(before)
		})
	}
}

func TestRemoveItem(t *testing.T) {
	t.Parallel()
	tk := cartv1.NewShoppingCartTestKit(t, Cart{})
	tk.Given(
		&cartv1.ItemAdded{Sku: "apple", Quantity: 2},
		&cartv1.ItemAdded{Sku: "pear", Quantity: 1},
	)
	tk.RemoveItem(&cartv1.RemoveItemRequest{CartId: "c", Sku: "kiwi"}).WantCode(codes.NotFound)
	tk.RemoveItem(&cartv1.RemoveItemRequest{CartId: "c", Sku: "pear"}).
		WantEvents(&cartv1.ItemRemoved{Sku: "pear"})
	tk.WantState(&cartv1.Cart{Items: []*cartv1.LineItem{{Sku: "apple", Quantity: 2}}})
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	tk := cartv1.NewShoppingCartTestKit(t, Cart{})
	tk.Checkout(&cartv1.CheckoutRequest{CartId: "c"}).WantCode(codes.FailedPrecondition)

	tk.Given(&cartv1.ItemAdded{Sku: "apple", Quantity: 5})
	// CheckedOut carries the time of the checkout, so compare it by hand
	// rather than with WantEvents.
	res := tk.Checkout(&cartv1.CheckoutRequest{CartId: "c"})
	res.WantCode(codes.OK)
	events := res.Events()
	if len(events) != 1 {
		t.Fatalf("Checkout emitted %v, want one CheckedOut", events)
	}
	if e, ok := events[0].(*cartv1.CheckedOut); !ok || e.GetAt() == nil {
		t.Fatalf("Checkout emitted %v, want CheckedOut with a time", events[0])
	}
	tk.Checkout(&cartv1.CheckoutRequest{CartId: "c"}).WantCode(codes.FailedPrecondition)
	tk.RemoveItem(&cartv1.RemoveItemRequest{CartId: "c", Sku: "apple"}).WantCode(codes.FailedPrecondition)

	cart := tk.GetCart(&cartv1.GetCartRequest{CartId: "c"}).Reply()
	if len(cart.GetItems()) != 1 || cart.GetItems()[0].GetQuantity() != 5 || cart.GetCheckedOutAt() == nil {
		t.Errorf("cart = %v, want 5 apples, checked out", cart)
	}
}

// TestInProcess runs the entity the way the server does, in process on the
// in-memory store, through the typed client: the wiring, not the rules.
func TestInProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rt, err := statefun.New([]*statefun.Entity{cartv1.NewShoppingCart(Cart{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	carts := cartv1.NewShoppingCartEntityClient(rt.ClientConn())

	if _, err := carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	got, err := carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (&cartv1.Cart{Items: []*cartv1.LineItem{{Sku: "apple", Quantity: 2}}}); !proto.Equal(got, want) {
		t.Errorf("cart = %v, want %v", got, want)
	}
}

// TestIdleCartExpires: every change pushes back the cart's "expire" timer;
// when it fires the cart is emptied; checkout cancels it.
func TestIdleCartExpires(t *testing.T) {
	t.Parallel()
	tk := cartv1.NewShoppingCartTestKit(t, Cart{IdleTimeout: 30 * time.Minute})
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	tk.SetNow(now)
	tk.AddItem(&cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 2}).WantCode(codes.OK)
	tk.SetNow(now.Add(10 * time.Minute))
	tk.AddItem(&cartv1.AddItemRequest{CartId: "c", Sku: "pear", Quantity: 1}).WantCode(codes.OK)
	timers := tk.Timers()
	if len(timers) != 1 || timers[0].Name != "expire" || !timers[0].Due.Equal(now.Add(40*time.Minute)) ||
		timers[0].Method != cartv1.ShoppingCartService_ExpireCart_FullMethodName {
		t.Fatalf("timers after two changes: %+v, want expire at %v calling ExpireCart", timers, now.Add(40*time.Minute))
	}
	if err := tk.FireTimer("expire"); err != nil {
		t.Fatalf("FireTimer: %v", err)
	}
	tk.WantState(&cartv1.Cart{})
	if got := tk.Timers(); len(got) != 0 {
		t.Errorf("timers after expiry: %+v", got)
	}

	tk.AddItem(&cartv1.AddItemRequest{CartId: "c", Sku: "fig", Quantity: 1}).WantCode(codes.OK)
	tk.Checkout(&cartv1.CheckoutRequest{CartId: "c"}).WantCode(codes.OK)
	if got := tk.Timers(); len(got) != 0 {
		t.Errorf("timers after checkout: %+v, want none", got)
	}
	// A late delivery to a checked-out cart changes nothing.
	tk.ExpireCart(&cartv1.ExpireCartRequest{CartId: "c"}).WantEvents()
}

func TestCartsDoNotExpireByDefault(t *testing.T) {
	t.Parallel()
	tk := cartv1.NewShoppingCartTestKit(t, Cart{})
	tk.AddItem(&cartv1.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 2}).WantCode(codes.OK)
	if got := tk.Timers(); len(got) != 0 {
		t.Errorf("timers without an idle timeout: %+v", got)
	}
}

func TestIdleTimeoutSetting(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]time.Duration{"": 0, "30m": 30 * time.Minute, "1h30m": 90 * time.Minute} {
		if got, err := idleTimeout(v); err != nil || got != want {
			t.Errorf("idleTimeout(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"30", "-1m", "soon"} {
		if _, err := idleTimeout(v); err == nil || !strings.Contains(err.Error(), idleTimeoutEnv) {
			t.Errorf("idleTimeout(%q) = %v; want an error naming %s", v, err, idleTimeoutEnv)
		}
	}
}
