package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/testdata/compositekey"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/keyvalue"
	"github.com/statefun-go/statefun/testdata/nestedkey"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cartEntity implements the golden shopping cart the way a user would.
type cartEntity struct{}

func (cartEntity) AddItem(ctx *cart.ShoppingCartContext, state *cart.Cart, req *cart.AddItemRequest) (*emptypb.Empty, error) {
	switch {
	case state.GetCheckedOutAt() != nil:
		return nil, status.Error(codes.FailedPrecondition, "cart is checked out")
	case req.GetQuantity() <= 0:
		return nil, status.Error(codes.InvalidArgument, "quantity must be positive")
	case req.GetSku() == "panic":
		panic("handler bug")
	case req.GetSku() == "half":
		// Emits, then fails: nothing may be kept.
		ctx.Emit(&cart.ItemAdded{Sku: "half", Quantity: req.GetQuantity()})
		return nil, status.Error(codes.Aborted, "changed my mind")
	case req.GetSku() == "pair":
		// Two events from one command: they commit together or not at all.
		ctx.Emit(&cart.ItemAdded{Sku: "pair-a", Quantity: req.GetQuantity()})
		ctx.Emit(&cart.ItemAdded{Sku: "pair-b", Quantity: req.GetQuantity()})
		return &emptypb.Empty{}, nil
	case req.GetSku() == "nil-reply":
		return nil, nil
	}
	ctx.Emit(&cart.ItemAdded{Sku: req.GetSku(), Quantity: req.GetQuantity()})
	return &emptypb.Empty{}, nil
}

func (cartEntity) RemoveItem(ctx *cart.ShoppingCartContext, _ *cart.Cart, req *cart.RemoveItemRequest) (*emptypb.Empty, error) {
	ctx.Emit(&cart.ItemRemoved{Sku: req.GetSku()})
	return &emptypb.Empty{}, nil
}

func (cartEntity) Checkout(ctx *cart.ShoppingCartContext, state *cart.Cart, _ *cart.CheckoutRequest) (*emptypb.Empty, error) {
	if state.GetCheckedOutAt() != nil {
		return nil, status.Error(codes.FailedPrecondition, "cart is checked out")
	}
	ctx.Emit(&cart.CheckedOut{At: timestamppb.Now()})
	if ctx.EntityID() != "archive" {
		// The archive learns of every checkout once it is durable.
		ctx.Send(cart.ShoppingCartAddItemCall(&cart.AddItemRequest{CartId: "archive", Sku: ctx.EntityID(), Quantity: 1}))
	}
	return &emptypb.Empty{}, nil
}

func (cartEntity) GetCart(_ *cart.ShoppingCartReadContext, state *cart.Cart, req *cart.GetCartRequest) (*cart.Cart, error) {
	if strings.HasPrefix(req.GetCartId(), "strict") && len(state.GetItems()) == 0 {
		// A read that refuses, decided on the state it saw.
		return nil, status.Error(codes.NotFound, "empty cart")
	}
	if req.GetCartId() == "read-panic" && len(state.GetItems()) == 1 && state.GetItems()[0].GetQuantity() == 1 {
		state.Items = nil // a buggy read that changes the state, then panics
		panic("read bug")
	}
	return state, nil
}

func (cartEntity) OnItemAdded(state *cart.Cart, e *cart.ItemAdded) {
	if e.GetSku() == "apply-panic" {
		state.Items = nil // half applied, then the event handler fails
		panic("event handler bug")
	}
	for _, it := range state.Items {
		if it.GetSku() == e.GetSku() {
			it.Quantity += e.GetQuantity()
			return
		}
	}
	state.Items = append(state.Items, &cart.Cart_Item{Sku: e.GetSku(), Quantity: e.GetQuantity()})
}

func (cartEntity) OnItemRemoved(state *cart.Cart, e *cart.ItemRemoved) {
	for i, it := range state.Items {
		if it.GetSku() == e.GetSku() {
			state.Items = append(state.Items[:i], state.Items[i+1:]...)
			return
		}
	}
}

func (cartEntity) OnCheckedOut(state *cart.Cart, e *cart.CheckedOut) {
	state.CheckedOutAt = e.GetAt()
}

type customerEntity struct{}

func (customerEntity) Create(ctx *keyvalue.CustomerContext, state *keyvalue.Customer, req *keyvalue.CreateCustomerRequest) (*keyvalue.Customer, error) {
	if state.GetName() != "" {
		return nil, status.Error(codes.AlreadyExists, "customer exists")
	}
	next := &keyvalue.Customer{Name: req.GetName(), Address: req.GetAddress()}
	ctx.SetState(next)
	return next, nil
}

func (customerEntity) ChangeAddress(ctx *keyvalue.CustomerContext, state *keyvalue.Customer, req *keyvalue.ChangeAddressRequest) (*keyvalue.Customer, error) {
	if state.GetName() == "" {
		return nil, status.Error(codes.NotFound, "no such customer")
	}
	next := proto.Clone(state).(*keyvalue.Customer)
	next.Address = req.GetAddress()
	ctx.SetState(next)
	return next, nil
}

func (customerEntity) Get(_ *keyvalue.CustomerReadContext, state *keyvalue.Customer, _ *keyvalue.GetCustomerRequest) (*keyvalue.Customer, error) {
	return state, nil
}

type seatEntity struct{}

func (seatEntity) Reserve(ctx *compositekey.SeatContext, state *compositekey.SeatState, req *compositekey.ReserveRequest) (*compositekey.SeatState, error) {
	if state.GetPassenger() != "" {
		return nil, status.Errorf(codes.AlreadyExists, "seat taken by %s (entity %s)", state.GetPassenger(), ctx.EntityID())
	}
	ctx.Emit(&compositekey.SeatReserved{Passenger: req.GetPassenger()})
	return &compositekey.SeatState{Passenger: req.GetPassenger()}, nil
}

func (seatEntity) Release(ctx *compositekey.SeatContext, _ *compositekey.SeatState, _ *compositekey.ReleaseRequest) (*compositekey.SeatState, error) {
	ctx.Emit(&compositekey.SeatReleased{})
	return &compositekey.SeatState{}, nil
}

func (seatEntity) OnSeatReserved(state *compositekey.SeatState, e *compositekey.SeatReserved) {
	state.Passenger = e.GetPassenger()
}

func (seatEntity) OnSeatReleased(state *compositekey.SeatState, _ *compositekey.SeatReleased) {
	state.Passenger = ""
}

type deviceEntity struct{}

func (deviceEntity) Record(ctx *nestedkey.DeviceContext, state *nestedkey.DeviceState, req *nestedkey.RecordRequest) (*nestedkey.DeviceState, error) {
	ctx.Emit(&nestedkey.Reading{Celsius: req.GetCelsius()})
	return &nestedkey.DeviceState{Celsius: req.GetCelsius(), Readings: state.GetReadings() + 1}, nil
}

func (deviceEntity) Latest(_ *nestedkey.DeviceReadContext, state *nestedkey.DeviceState, _ *nestedkey.LatestRequest) (*nestedkey.DeviceState, error) {
	return state, nil
}

func (deviceEntity) OnReading(state *nestedkey.DeviceState, e *nestedkey.Reading) {
	state.Celsius = e.GetCelsius()
	state.Readings++
}

// closeRuntime closes rt with a deadline, so that a regression shows as a
// failure, not as a test binary that hangs until its timeout.
func closeRuntime(t *testing.T, rt *statefun.Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func newRuntime(t *testing.T, opts ...statefun.Option) *statefun.Runtime {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{
		cart.NewShoppingCart(cartEntity{}),
		keyvalue.NewCustomer(customerEntity{}),
		compositekey.NewSeat(seatEntity{}),
		nestedkey.NewDevice(deviceEntity{}),
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	return rt
}

// wantCode fails the test unless err has one of the codes.
func wantCode(t *testing.T, err error, want ...codes.Code) {
	t.Helper()
	got := status.Code(err)
	for _, c := range want {
		if got == c {
			return
		}
	}
	t.Fatalf("error %v: code %v, want %v", err, got, want)
}

func TestEventSourcedCommandsAndReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	carts := cart.NewShoppingCartEntityClient(newRuntime(t).ClientConn())

	for _, req := range []*cart.AddItemRequest{
		{CartId: "c1", Sku: "apple", Quantity: 2},
		{CartId: "c1", Sku: "pear", Quantity: 1},
		{CartId: "c1", Sku: "apple", Quantity: 3},
		{CartId: "c2", Sku: "plum", Quantity: 7},
	} {
		if _, err := carts.AddItem(ctx, req); err != nil {
			t.Fatalf("AddItem(%v): %v", req, err)
		}
	}
	if _, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "c1", Sku: "pear"}); err != nil {
		t.Fatal(err)
	}
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	want := &cart.Cart{Items: []*cart.Cart_Item{{Sku: "apple", Quantity: 5}}}
	if !proto.Equal(got, want) {
		t.Errorf("cart c1 = %v, want %v", got, want)
	}
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c1"}); err != nil {
		t.Fatal(err)
	}
	_, err = carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c1", Sku: "fig", Quantity: 1})
	wantCode(t, err, codes.FailedPrecondition)
}

func TestFailedCommandEmitsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	carts := cart.NewShoppingCartEntityClient(newRuntime(t).ClientConn())
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c", Sku: "half", Quantity: 4})
	wantCode(t, err, codes.Aborted)
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetItems()) != 1 || got.GetItems()[0].GetSku() != "apple" {
		t.Errorf("cart after a failed command = %v; the failed command's event was kept", got)
	}
}

func TestHandlerPanicIsInternalAndKeepsServing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	carts := cart.NewShoppingCartEntityClient(newRuntime(t).ClientConn())
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c", Sku: "panic", Quantity: 1})
	wantCode(t, err, codes.Internal)
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 1}); err != nil {
		t.Fatalf("call after a panic: %v", err)
	}
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.GetItems()[0].GetQuantity(); q != 2 {
		t.Errorf("quantity after reload = %d, want 2", q)
	}
}

func TestMissingKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := newRuntime(t).ClientConn()
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"typed client", func() error {
			_, err := cart.NewShoppingCartEntityClient(conn).AddItem(ctx, &cart.AddItemRequest{Sku: "x", Quantity: 1})
			return err
		}, "field cart_id of statefun.testdata.eventsourced.AddItemRequest is empty"},
		{"plain gRPC client, checked by the server", func() error {
			_, err := cart.NewShoppingCartClient(conn).GetCart(ctx, &cart.GetCartRequest{})
			return err
		}, "field cart_id of statefun.testdata.eventsourced.GetCartRequest is empty"},
		{"zero integer in a composite key", func() error {
			_, err := compositekey.NewSeatEntityClient(conn).Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH1", Letter: "A"})
			return err
		}, "field row of statefun.testdata.compositekey.ReserveRequest is empty"},
		{"nil nested key message", func() error {
			_, err := nestedkey.NewDeviceClient(conn).Latest(ctx, &nestedkey.LatestRequest{})
			return err
		}, "field query.device.site of statefun.testdata.nestedkey.LatestRequest is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, codes.InvalidArgument)
			if want := "missing entity key: " + tt.field + "; set it to the key of the entity to address"; status.Convert(err).Message() != want {
				t.Errorf("message %q, want %q", status.Convert(err).Message(), want)
			}
		})
	}
}

func TestReplyDoesNotAliasState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rt := newRuntime(t)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c", Sku: "apple", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	got.Items[0].Quantity = 100
	again, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if q := again.GetItems()[0].GetQuantity(); q != 1 {
		t.Errorf("state changed through a reply: quantity %d", q)
	}
}

// TestSingleWriter runs many concurrent commands against one entity; with
// more than one writer at a time, increments would be lost (and -race
// would report the data race on the state).
func TestSingleWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	carts := cart.NewShoppingCartEntityClient(newRuntime(t).ClientConn())
	const writers, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "hot", Sku: "apple", Quantity: 1}); err != nil {
					errs <- err
					return
				}
				if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "hot"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "hot"})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.GetItems()[0].GetQuantity(); q != writers*each {
		t.Errorf("quantity = %d, want %d", q, writers*each)
	}
}

func TestKeyValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	customers := keyvalue.NewCustomerEntityClient(newRuntime(t).ClientConn())
	if _, err := customers.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: "ada", Name: "Ada", Address: "London"}); err != nil {
		t.Fatal(err)
	}
	_, err := customers.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: "ada", Name: "Ada"})
	wantCode(t, err, codes.AlreadyExists)
	if _, err := customers.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "ada", Address: "Paris"}); err != nil {
		t.Fatal(err)
	}
	got, err := customers.Get(ctx, &keyvalue.GetCustomerRequest{CustomerId: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (&keyvalue.Customer{Name: "Ada", Address: "Paris"}); !proto.Equal(got, want) {
		t.Errorf("customer = %v, want %v", got, want)
	}
	_, err = customers.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "bob", Address: "Rome"})
	wantCode(t, err, codes.NotFound)
}

func TestCompositeAndNestedKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := newRuntime(t).ClientConn()
	seats := compositekey.NewSeatEntityClient(conn)
	if _, err := seats.Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH1", Row: 12, Letter: "A", Passenger: "ada"}); err != nil {
		t.Fatal(err)
	}
	if _, err := seats.Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH1", Row: 12, Letter: "B", Passenger: "bob"}); err != nil {
		t.Fatalf("another seat of the same row: %v", err)
	}
	_, err := seats.Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH1", Row: 12, Letter: "A", Passenger: "eve"})
	wantCode(t, err, codes.AlreadyExists)
	if want := "seat taken by ada (entity LH1/12/A)"; status.Convert(err).Message() != want {
		t.Errorf("message %q, want %q", status.Convert(err).Message(), want)
	}
	// The same key through a request with the fields in another order.
	if _, err := seats.Release(ctx, &compositekey.ReleaseRequest{Passenger: "ada", Flight: "LH1", Row: 12, Letter: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := seats.Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH1", Row: 12, Letter: "A", Passenger: "eve"}); err != nil {
		t.Fatalf("reserve after release: %v", err)
	}

	devices := nestedkey.NewDeviceEntityClient(conn)
	ref := &nestedkey.DeviceRef{Site: "berlin", Serial: 7, Label: "ignored by the key"}
	for _, c := range []float64{20.5, 21} {
		if _, err := devices.Record(ctx, &nestedkey.RecordRequest{Device: ref, Celsius: c}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := devices.Latest(ctx, &nestedkey.LatestRequest{Query: &nestedkey.LatestRequest_Query{Device: &nestedkey.DeviceRef{Site: "berlin", Serial: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (&nestedkey.DeviceState{Celsius: 21, Readings: 2}); !proto.Equal(got, want) {
		t.Errorf("device = %v, want %v", got, want)
	}
}

func TestJoinKeyIsInjective(t *testing.T) {
	t.Parallel()
	pairs := [][2][]string{
		{{"a/b", "c"}, {"a", "b/c"}},
		{{"a%2Fb", "c"}, {"a/b", "c"}},
		{{"", "a"}, {"a", ""}},
	}
	for _, p := range pairs {
		if x, y := statefun.JoinKey(p[0]...), statefun.JoinKey(p[1]...); x == y {
			t.Errorf("JoinKey(%q) == JoinKey(%q) == %q", p[0], p[1], x)
		}
	}
	if got := statefun.JoinKey("LH1", "12", "A"); got != "LH1/12/A" {
		t.Errorf("JoinKey = %q", got)
	}
	for _, parts := range [][]string{{"a/b", "c"}, {"50%", "x/%2F"}, {"", ""}, {"plain"}} {
		got, err := statefun.SplitKey(statefun.JoinKey(parts...))
		if err != nil || len(got) != len(parts) {
			t.Fatalf("SplitKey(JoinKey(%q)) = %q, %v", parts, got, err)
		}
		for i := range parts {
			if got[i] != parts[i] {
				t.Errorf("SplitKey(JoinKey(%q)) = %q", parts, got)
			}
		}
	}
	if _, err := statefun.SplitKey("a%zz"); err == nil {
		t.Error("SplitKey accepted an escape JoinKey never writes")
	}
}

func TestNewRejectsDuplicateTypes(t *testing.T) {
	t.Parallel()
	_, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{}), cart.NewShoppingCart(cartEntity{}), nil})
	if err == nil {
		t.Fatal("no error")
	}
	want := `statefun: entity type "shopping-cart" is registered twice; each entity type may be hosted once` + "\n" +
		"nil entity; pass the value of a generated constructor such as NewShoppingCart"
	if err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%v", err, want)
	}
}

// TestOverGRPC serves the entities from a real gRPC server.
func TestOverGRPC(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	rt.RegisterServices(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	ctx := context.Background()
	carts := cart.NewShoppingCartClient(conn)
	for i := range 3 {
		if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "net", Sku: fmt.Sprint("sku", i), Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "net"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetItems()) != 3 {
		t.Errorf("cart = %v, want 3 items", got)
	}
	_, err = carts.AddItem(ctx, &cart.AddItemRequest{Sku: "x", Quantity: 1})
	wantCode(t, err, codes.InvalidArgument)
	var st interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &st) {
		t.Errorf("error %T carries no gRPC status", err)
	}
}
