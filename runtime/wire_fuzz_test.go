package statefun_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/compositekey"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/keyvalue"
	"github.com/statefun-go/statefun/testdata/nestedkey"
)

// The fuzz targets here feed the runtime what a client or a damaged
// journal could hold, through the generated glue and the entity host:
//
//	go test -run '^$' -fuzz '^FuzzAddItemWire$' -fuzztime 30s ./runtime
//
// Normal test runs execute their seeds (f.Add and testdata/fuzz).

// newFuzzRuntime hosts the test entities for a whole fuzz target: one
// runtime serves every input, as a server serves every request.
func newFuzzRuntime(f *testing.F, opts ...statefun.Option) *statefun.Runtime {
	f.Helper()
	rt, err := statefun.New([]*statefun.Entity{
		cart.NewShoppingCart(cartEntity{}),
		keyvalue.NewCustomer(customerEntity{}),
		compositekey.NewSeat(seatEntity{}),
		nestedkey.NewDevice(deviceEntity{}),
	}, opts...)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt
}

// rawRequest is a message whose wire form is exactly b: an Empty carrying
// b as unknown fields, which proto.Marshal writes out as they are.
func rawRequest(b []byte) proto.Message {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(b)
	return m
}

func addItemWire(cartID string, sku string, quantity int64) []byte {
	var b []byte
	if cartID != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, cartID)
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, sku)
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(quantity))
}

// FuzzAddItemWire sends arbitrary bytes as an AddItemRequest. Whatever
// they are, the call must return (no panic anywhere in decoding, key
// extraction or the host) with: an error if they do not decode,
// INVALID_ARGUMENT naming cart_id if the key is missing, and otherwise
// what the handler decides.
func FuzzAddItemWire(f *testing.F) {
	f.Add(addItemWire("c1", "apple", 2))
	f.Add(addItemWire("", "apple", 2))
	f.Add(addItemWire("c1", "apple", 0))
	f.Add(addItemWire("c1", "panic", 1))
	f.Add(addItemWire("c1", "half", 1))
	f.Add(addItemWire("c\xff\xfe", "apple", 1))
	f.Add(addItemWire(strings.Repeat("k", 3000), "apple", 1))
	f.Add(append(addItemWire("c1", "apple", 1), 0x0a, 0x80)) // truncated field
	f.Add([]byte{0x08, 0x01})                                // wrong wire type for cart_id
	f.Add([]byte{})
	rt := newFuzzRuntime(f)
	conn := rt.ClientConn()
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req cart.AddItemRequest
		decodeErr := proto.Unmarshal(wire, &req)
		err := conn.Invoke(context.Background(), cart.ShoppingCart_AddItem_FullMethodName, rawRequest(wire), &emptypb.Empty{})
		code := status.Code(err)
		switch {
		case decodeErr != nil:
			if err == nil {
				t.Fatalf("%x does not decode (%v), yet the call succeeded", wire, decodeErr)
			}
		case req.GetCartId() == "":
			if code != codes.InvalidArgument || !strings.Contains(err.Error(), "cart_id") {
				t.Fatalf("request without a key: %v, want INVALID_ARGUMENT naming cart_id", err)
			}
		case len(req.GetCartId()) > 2048:
			if code != codes.InvalidArgument {
				t.Fatalf("request with a %d-byte key: %v, want INVALID_ARGUMENT", len(req.GetCartId()), err)
			}
		case req.GetQuantity() <= 0:
			if code != codes.InvalidArgument {
				t.Fatalf("quantity %d: %v, want the handler's INVALID_ARGUMENT", req.GetQuantity(), err)
			}
		case req.GetSku() == "panic":
			if code != codes.Internal {
				t.Fatalf("panicking handler: %v, want INTERNAL", err)
			}
		case req.GetSku() == "half":
			if code != codes.Aborted {
				t.Fatalf("failing handler: %v, want its ABORTED", err)
			}
		default:
			// The cart may have been checked out by no one here, so the
			// only answer is success.
			if err != nil {
				t.Fatalf("valid AddItem %v: %v", &req, err)
			}
		}
	})
}

// FuzzRequestWire sends arbitrary bytes to any method of the test
// entities: event-sourced and key-value, string, integer, composite and
// nested keys. Nothing may panic, and a decoded request whose key is
// missing must be refused with INVALID_ARGUMENT naming the field.
func FuzzRequestWire(f *testing.F) {
	descs := []*grpc.ServiceDesc{&cart.ShoppingCart_ServiceDesc, &keyvalue.CustomerService_ServiceDesc, &compositekey.Seat_ServiceDesc, &nestedkey.Device_ServiceDesc}
	var methods []string
	for _, d := range descs {
		for _, m := range d.Methods {
			methods = append(methods, "/"+d.ServiceName+"/"+m.MethodName)
		}
	}
	// Valid requests of each kind of key, as seeds.
	for _, m := range []proto.Message{
		&cart.AddItemRequest{CartId: "c", Sku: "s", Quantity: 1},
		&keyvalue.CreateCustomerRequest{CustomerId: "k", Name: "n"},
		&compositekey.ReserveRequest{Flight: "LH1", Row: 12, Letter: "C", Passenger: "p"},
		&nestedkey.RecordRequest{Device: &nestedkey.DeviceRef{Site: "s", Serial: 7}, Celsius: 20},
		&nestedkey.LatestRequest{Query: &nestedkey.LatestRequest_Query{Device: &nestedkey.DeviceRef{Site: "s", Serial: 7}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		for i := range methods {
			f.Add(uint8(i), b)
		}
	}
	rt := newFuzzRuntime(f)
	conn := rt.ClientConn()
	f.Fuzz(func(t *testing.T, method uint8, wire []byte) {
		name := methods[int(method)%len(methods)]
		err := conn.Invoke(context.Background(), name, rawRequest(wire), &emptypb.Empty{})
		if err == nil {
			return
		}
		if status.Code(err) == codes.InvalidArgument && strings.Contains(err.Error(), "missing entity key") && !strings.Contains(err.Error(), "field ") {
			t.Fatalf("%s: %v does not name the missing field", name, err)
		}
	})
}

// FuzzStoredEvent puts an arbitrary event (any type name, any payload) in
// an entity's journal after a valid one, and sometimes an arbitrary
// snapshot before them, then loads the entity. Loading must never panic:
// it gives the state, or INTERNAL naming the entity (the damage is in the
// journal, not in the request), and other entities keep working. This is
// TestCorruptJournal with the damage chosen by the fuzzer.
func FuzzStoredEvent(f *testing.F) {
	added, _ := proto.Marshal(&cart.ItemAdded{Sku: "apple", Quantity: 2})
	cartState, _ := proto.Marshal(&cart.Cart{Items: []*cart.Cart_Item{{Sku: "pear", Quantity: 1}}})
	f.Add("ItemAdded", added, []byte(nil))
	f.Add("ItemAdded", []byte{0xff, 0xff}, []byte(nil))
	f.Add("ItemTeleported", added, []byte(nil))
	f.Add("", []byte{}, []byte(nil))
	f.Add("CheckedOut", []byte{0x0a, 0x02, 0x08, 0x01}, []byte(nil))
	f.Add("ItemRemoved", added, cartState)
	f.Add("ItemAdded", added, []byte{0x0a, 0xff})
	f.Add("statefun.call", []byte{0x01}, []byte(nil))
	st := memory.New()
	rt := newFuzzRuntime(f, statefun.WithStore(st))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, eventType string, payload, snapshot []byte) {
		ctx := context.Background()
		id := fmt.Sprintf("fuzz-%d", n.Add(1))
		ref := store.Ref{Type: cart.ShoppingCartEntityType, ID: id}
		first, _ := proto.Marshal(&cart.ItemAdded{Sku: "first", Quantity: 1})
		err := st.Commit(ctx, &store.Batch{Events: []store.Event{
			{Entity: ref, Seq: 1, EventType: "ItemAdded", Payload: first},
			{Entity: ref, Seq: 2, EventType: eventType, Payload: payload},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if snapshot != nil {
			if err := st.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 1, Payload: snapshot}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = carts.GetCart(ctx, &cart.GetCartRequest{CartId: id})
		if err != nil && (status.Code(err) != codes.Internal || !strings.Contains(err.Error(), ref.String())) {
			t.Fatalf("loading %s with event %q %x: %v, want the state or INTERNAL naming the entity", id, eventType, payload, err)
		}
		if err := add(ctx, carts, id+"-neighbour", "x", 1); err != nil {
			t.Fatalf("a damaged journal must not affect other entities: %v", err)
		}
	})
}
