package statefun_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	statefun "github.com/statefun-go/statefun/runtime"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/keyvalue"
)

// recordingTB records what a testkit reports instead of failing the test,
// so that the tests below can check that it does report. Unlike
// *testing.T, its Fatalf returns: the testkit must stay usable after it.
type recordingTB struct{ fatals []string }

func (*recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

// wantFatal checks that the testkit failed the test exactly once, with a
// message containing each of parts.
func (r *recordingTB) wantFatal(t *testing.T, parts ...string) {
	t.Helper()
	if len(r.fatals) != 1 {
		t.Fatalf("testkit reported %d failures, want 1: %q", len(r.fatals), r.fatals)
	}
	for _, p := range parts {
		if !strings.Contains(r.fatals[0], p) {
			t.Errorf("failure %q does not say %q", r.fatals[0], p)
		}
	}
	r.fatals = nil
}

func (r *recordingTB) wantNoFatal(t *testing.T) {
	t.Helper()
	if len(r.fatals) > 0 {
		t.Fatalf("testkit reported failures: %q", r.fatals)
	}
}

func item(sku string, quantity int32) *cart.Cart_Item {
	return &cart.Cart_Item{Sku: sku, Quantity: quantity}
}

func TestTestKitEventSourced(t *testing.T) {
	t.Parallel()
	tk := cart.NewShoppingCartTestKit(t, cartEntity{})
	tk.Given(&cart.ItemAdded{Sku: "apple", Quantity: 2})
	tk.WantState(&cart.Cart{Items: []*cart.Cart_Item{item("apple", 2)}})

	res := tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "pear", Quantity: 1})
	res.WantCode(codes.OK)
	res.WantReply(&emptypb.Empty{})
	res.WantEvents(&cart.ItemAdded{Sku: "pear", Quantity: 1})
	// The next command sees what the previous one emitted.
	tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 3}).WantEvents(&cart.ItemAdded{Sku: "apple", Quantity: 3})
	want := &cart.Cart{Items: []*cart.Cart_Item{item("apple", 5), item("pear", 1)}}
	tk.WantState(want)
	tk.GetCart(&cart.GetCartRequest{CartId: "c1"}).WantReply(want)

	events := tk.Checkout(&cart.CheckoutRequest{CartId: "c1"}).Events()
	if len(events) != 1 {
		t.Fatalf("Checkout emitted %v, want one CheckedOut", events)
	}
	if e, ok := events[0].(*cart.CheckedOut); !ok || e.GetAt() == nil {
		t.Fatalf("Checkout emitted %v, want CheckedOut with a time", events[0])
	}
	if tk.State().GetCheckedOutAt() == nil {
		t.Error("state after Checkout is not checked out")
	}
	tk.Checkout(&cart.CheckoutRequest{CartId: "c1"}).WantCode(codes.FailedPrecondition)
}

// TestTestKitFailedCommandKeepsNothing is invariant 4 seen from a unit
// test: a command that returns an error changes nothing, even when it
// emitted events before it failed.
func TestTestKitFailedCommandKeepsNothing(t *testing.T) {
	t.Parallel()
	tk := cart.NewShoppingCartTestKit(t, cartEntity{})
	tk.Given(&cart.ItemAdded{Sku: "apple", Quantity: 2})
	before := tk.State()

	res := tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "half", Quantity: 1})
	res.WantCode(codes.Aborted)
	if res.Err() == nil || res.Reply() != nil {
		t.Errorf("result = (%v, %v), want an error and no reply", res.Reply(), res.Err())
	}
	if len(res.Events()) != 0 {
		t.Errorf("failed command kept events %v", res.Events())
	}
	tk.WantState(before)
}

// mutatingCart breaks the rule the testkit checks: its handlers change the
// state they are given.
type mutatingCart struct{ cartEntity }

func (mutatingCart) AddItem(ctx *cart.ShoppingCartContext, state *cart.Cart, req *cart.AddItemRequest) (*emptypb.Empty, error) {
	state.Items = append(state.Items, item(req.GetSku(), req.GetQuantity()))
	ctx.Emit(&cart.ItemAdded{Sku: req.GetSku(), Quantity: req.GetQuantity()})
	return &emptypb.Empty{}, nil
}

func (mutatingCart) RemoveItem(_ *cart.ShoppingCartContext, state *cart.Cart, _ *cart.RemoveItemRequest) (*emptypb.Empty, error) {
	// Changes a nested message in place, and fails: still a change.
	state.Items[0].Quantity = 0
	return nil, fmt.Errorf("no")
}

func (mutatingCart) GetCart(_ *cart.ShoppingCartReadContext, state *cart.Cart, _ *cart.GetCartRequest) (*cart.Cart, error) {
	state.Items = nil
	return state, nil
}

func TestTestKitCatchesStateMutation(t *testing.T) {
	t.Parallel()
	tb := &recordingTB{}
	tk := cart.NewShoppingCartTestKit(tb, mutatingCart{})
	tk.Given(&cart.ItemAdded{Sku: "apple", Quantity: 2})
	before := tk.State()

	tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "pear", Quantity: 1})
	tb.wantFatal(t, "ShoppingCart.AddItem changed its state argument; command handlers must only emit events", `sku:"pear"`)
	tk.RemoveItem(&cart.RemoveItemRequest{CartId: "c1", Sku: "apple"})
	tb.wantFatal(t, "ShoppingCart.RemoveItem changed its state argument")
	tk.GetCart(&cart.GetCartRequest{CartId: "c1"})
	tb.wantFatal(t, "ShoppingCart.GetCart changed its state argument; read-only handlers must not change the state")

	// Nothing of the offending calls is kept.
	tk.WantState(before)
	tb.wantNoFatal(t)
}

func TestTestKitReportsHandlerPanic(t *testing.T) {
	t.Parallel()
	tb := &recordingTB{}
	tk := cart.NewShoppingCartTestKit(tb, cartEntity{})
	tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "panic", Quantity: 1})
	tb.wantFatal(t, "ShoppingCart.AddItem panicked: handler bug", "cartEntity.AddItem")
	tk.WantState(&cart.Cart{})
	tb.wantNoFatal(t)
}

func TestTestKitChecksKey(t *testing.T) {
	t.Parallel()
	tb := &recordingTB{}
	tk := cart.NewShoppingCartTestKit(tb, cartEntity{})
	tk.AddItem(&cart.AddItemRequest{Sku: "apple", Quantity: 1})
	tb.wantFatal(t, "ShoppingCart.AddItem", "field cart_id of statefun.testdata.eventsourced.AddItemRequest is empty")

	tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 1}).WantCode(codes.OK)
	tk.GetCart(&cart.GetCartRequest{CartId: "c2"})
	tb.wantFatal(t, `ShoppingCart.GetCart addresses entity "c2", but this testkit holds entity "c1"`)
	tb.wantNoFatal(t)
}

// TestTestKitAssertions checks that each assertion fails when it should,
// with a message that shows what differs.
func TestTestKitAssertions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		assert func(*cart.ShoppingCartTestKit)
		want   []string
	}{
		{
			name: "other events",
			assert: func(tk *cart.ShoppingCartTestKit) {
				tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 1}).WantEvents(&cart.ItemAdded{Sku: "apple", Quantity: 2})
			},
			want: []string{"ShoppingCart.AddItem events:", `got:`, `quantity:1`, `want:`, `quantity:2`},
		},
		{
			name: "events from a failed command",
			assert: func(tk *cart.ShoppingCartTestKit) {
				tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "apple"}).WantEvents()
			},
			want: []string{"ShoppingCart.AddItem failed", "quantity must be positive", "want events: (none)"},
		},
		{
			name: "other code",
			assert: func(tk *cart.ShoppingCartTestKit) {
				tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "apple"}).WantCode(codes.NotFound)
			},
			want: []string{"ShoppingCart.AddItem failed with code InvalidArgument, want NotFound"},
		},
		{
			name: "success, want an error",
			assert: func(tk *cart.ShoppingCartTestKit) {
				tk.AddItem(&cart.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 1}).WantCode(codes.FailedPrecondition)
			},
			want: []string{"ShoppingCart.AddItem succeeded; want code FailedPrecondition"},
		},
		{
			name: "other reply",
			assert: func(tk *cart.ShoppingCartTestKit) {
				tk.GetCart(&cart.GetCartRequest{CartId: "c1"}).WantReply(&cart.Cart{Items: []*cart.Cart_Item{item("fig", 1)}})
			},
			want: []string{"ShoppingCart.GetCart reply:", `sku:"fig"`},
		},
		{
			name: "other state",
			assert: func(tk *cart.ShoppingCartTestKit) {
				tk.Given(&cart.ItemAdded{Sku: "apple", Quantity: 1})
				tk.WantState(&cart.Cart{})
			},
			want: []string{"state:", `got: Cart{items:{sku:"apple"`, "want: Cart{}"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tb := &recordingTB{}
			tt.assert(cart.NewShoppingCartTestKit(tb, cartEntity{}))
			tb.wantFatal(t, tt.want...)
		})
	}
}

// TestTestKitCopies checks that the testkit's state shares no memory with
// the messages a test passes in or gets back.
func TestTestKitCopies(t *testing.T) {
	t.Parallel()
	tk := cart.NewShoppingCartTestKit(t, cartEntity{})
	given := &cart.Cart{Items: []*cart.Cart_Item{item("apple", 1)}}
	tk.GivenState(given)
	given.Items[0].Quantity = 9
	tk.State().Items[0].Quantity = 9
	tk.GetCart(&cart.GetCartRequest{CartId: "c1"}).Reply().Items[0].Quantity = 9
	tk.WantState(&cart.Cart{Items: []*cart.Cart_Item{item("apple", 1)}})
}

func TestTestKitKeyValue(t *testing.T) {
	t.Parallel()
	tk := keyvalue.NewCustomerTestKit(t, customerEntity{})
	ada := &keyvalue.Customer{Name: "Ada", Address: "Here"}
	res := tk.Create(&keyvalue.CreateCustomerRequest{CustomerId: "u1", Name: "Ada", Address: "Here"})
	res.WantReply(ada)
	if !proto.Equal(res.NewState(), ada) {
		t.Errorf("NewState() = %v, want %v", res.NewState(), ada)
	}
	tk.WantState(ada)

	res = tk.Create(&keyvalue.CreateCustomerRequest{CustomerId: "u1", Name: "Bob"})
	res.WantCode(codes.AlreadyExists)
	if res.NewState() != nil {
		t.Errorf("failed command set state %v", res.NewState())
	}
	tk.WantState(ada)

	tk.ChangeAddress(&keyvalue.ChangeAddressRequest{CustomerId: "u1", Address: "There"}).WantCode(codes.OK)
	tk.Get(&keyvalue.GetCustomerRequest{CustomerId: "u1"}).WantReply(&keyvalue.Customer{Name: "Ada", Address: "There"})

	tk.GivenState(&keyvalue.Customer{Name: "Cy"})
	tk.Get(&keyvalue.GetCustomerRequest{CustomerId: "u1"}).WantReply(&keyvalue.Customer{Name: "Cy"})
}

// mutatingCustomer changes the state it is given and passes it to SetState,
// which works against a server only by accident.
type mutatingCustomer struct{ customerEntity }

func (mutatingCustomer) ChangeAddress(ctx *keyvalue.CustomerContext, state *keyvalue.Customer, req *keyvalue.ChangeAddressRequest) (*keyvalue.Customer, error) {
	state.Address = req.GetAddress()
	ctx.SetState(state)
	return state, nil
}

func TestTestKitKeyValueCatchesStateMutation(t *testing.T) {
	t.Parallel()
	tb := &recordingTB{}
	tk := keyvalue.NewCustomerTestKit(tb, mutatingCustomer{})
	tk.GivenState(&keyvalue.Customer{Name: "Ada", Address: "Here"})
	tk.ChangeAddress(&keyvalue.ChangeAddressRequest{CustomerId: "u1", Address: "There"})
	tb.wantFatal(t, "Customer.ChangeAddress changed its state argument; command handlers must not change the state they are given: pass a new one to SetState")
	tk.WantState(&keyvalue.Customer{Name: "Ada", Address: "Here"})
	tb.wantNoFatal(t)
}

func TestTestKitGivenEventsOnKeyValue(t *testing.T) {
	t.Parallel()
	tb := &recordingTB{}
	kit := statefun.NewTestKit(tb, statefun.EntityConfig[*keyvalue.Customer]{
		Type:     keyvalue.CustomerEntityType,
		Kind:     statefun.KeyValue,
		NewState: func() *keyvalue.Customer { return new(keyvalue.Customer) },
	})
	kit.Given(&cart.ItemAdded{})
	tb.wantFatal(t, "key-value entities have no events; use GivenState")
}
