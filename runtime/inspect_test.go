package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/internal/console"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/compositekey"
	"github.com/statefun-go/statefun/testdata/consumer"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/keyvalue"
)

// inspectStores are the stores the inspection tests run against: what
// the console shows must not depend on the store.
func inspectStores(t *testing.T) map[string]func(t *testing.T) store.Store {
	t.Helper()
	return map[string]func(t *testing.T) store.Store{
		"memory": func(*testing.T) store.Store { return memory.New() },
		"embedded": func(t *testing.T) store.Store {
			s, err := embedded.Open(t.TempDir(), embedded.WithNoSync(true))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
}

// fillCart gives cart c1 a history of six events: four item changes, a
// checkout, and the call the checkout sent to the archive.
func fillCart(t *testing.T, rt *statefun.Runtime) {
	t.Helper()
	ctx := context.Background()
	carts := cart.NewShoppingCartClient(rt.ClientConn())
	steps := []func() error{
		func() error {
			_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c1", Sku: "a", Quantity: 1})
			return err
		},
		func() error {
			_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c1", Sku: "b", Quantity: 2})
			return err
		},
		func() error {
			_, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "c1", Sku: "a"})
			return err
		},
		func() error {
			_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c1", Sku: "b", Quantity: 5})
			return err
		},
		func() error { _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c1"}); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
}

// cartsByHand folds the stored events of ref with the entity's own event
// handlers, independently of the runtime: want[k] is the state after k
// events.
func cartsByHand(t *testing.T, st store.Store, ref store.Ref) []*cart.Cart {
	t.Helper()
	want := []*cart.Cart{{}}
	err := st.ReadEvents(context.Background(), ref, 0, func(e store.Event) error {
		next := proto.Clone(want[len(want)-1]).(*cart.Cart)
		switch e.EventType {
		case "ItemAdded":
			var ev cart.ItemAdded
			if err := proto.Unmarshal(e.Payload, &ev); err != nil {
				return err
			}
			cartEntity{}.OnItemAdded(next, &ev)
		case "ItemRemoved":
			var ev cart.ItemRemoved
			if err := proto.Unmarshal(e.Payload, &ev); err != nil {
				return err
			}
			cartEntity{}.OnItemRemoved(next, &ev)
		case "cart-checked-out":
			var ev cart.CheckedOut
			if err := proto.Unmarshal(e.Payload, &ev); err != nil {
				return err
			}
			cartEntity{}.OnCheckedOut(next, &ev)
		case "statefun.call":
		default:
			t.Errorf("event %d has type %q, which this fold does not know", e.Seq, e.EventType)
		}
		want = append(want, next)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func decodeCart(t *testing.T, js string) *cart.Cart {
	t.Helper()
	var c cart.Cart
	if err := protojson.Unmarshal([]byte(js), &c); err != nil {
		t.Fatalf("state JSON %q: %v", js, err)
	}
	return &c
}

// TestInspectStateAtEachSeq: the state at every seq is the fold of the
// events up to it; with a snapshot, versions at or after it replay from
// it (the snapshot carries a marker item, which only a replay from it
// shows), versions before it from the first event.
func TestInspectStateAtEachSeq(t *testing.T) {
	for name, open := range inspectStores(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			rt := newRuntime(t, statefun.WithStore(st))
			fillCart(t, rt)
			src := rt.ConsoleSource()
			ctx := context.Background()
			ref := store.Ref{Type: cart.ShoppingCartEntityType, ID: "c1"}
			want := cartsByHand(t, st, ref)
			if len(want) != 7 {
				t.Fatalf("history has %d events, want 6 (the last one the sent call)", len(want)-1)
			}
			check := func(seq int64, wantSeq, wantSnapshot int64, wantState *cart.Cart) {
				t.Helper()
				e, err := src.Entity(ctx, ref.Type, ref.ID, seq)
				if err != nil {
					t.Fatalf("Entity at %d: %v", seq, err)
				}
				if e.Seq != wantSeq || e.Latest != 6 || e.SnapshotSeq != wantSnapshot {
					t.Errorf("Entity at %d: seq %d, latest %d, snapshot %d; want %d, 6, %d", seq, e.Seq, e.Latest, e.SnapshotSeq, wantSeq, wantSnapshot)
				}
				if got := decodeCart(t, e.StateJSON); !proto.Equal(got, wantState) {
					t.Errorf("state at %d = %v, want %v", seq, got, wantState)
				}
			}
			for seq := int64(1); seq <= 6; seq++ {
				check(seq, seq, 0, want[seq])
			}
			check(0, 6, 0, want[6])

			// A snapshot at 3 that differs from the fold by a marker item.
			marked := func(c *cart.Cart) *cart.Cart {
				c = proto.Clone(c).(*cart.Cart)
				c.Items = append(c.Items, &cart.Cart_Item{Sku: "from-snapshot", Quantity: 1})
				return c
			}
			payload, err := proto.Marshal(marked(want[3]))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.SaveSnapshot(ctx, store.Snapshot{Entity: ref, Seq: 3, Payload: payload}); err != nil {
				t.Fatal(err)
			}
			for seq := int64(1); seq < 3; seq++ {
				check(seq, seq, 0, want[seq])
			}
			for seq := int64(3); seq <= 6; seq++ {
				wantState := proto.Clone(want[seq]).(*cart.Cart)
				cartEntity{}.OnItemAdded(wantState, &cart.ItemAdded{Sku: "from-snapshot", Quantity: 1})
				check(seq, seq, 3, wantState)
			}

			_, err = src.Entity(ctx, ref.Type, ref.ID, 7)
			if err == nil || !strings.Contains(err.Error(), "latest") || !strings.Contains(err.Error(), "6") {
				t.Errorf("Entity at 7: %v; want an error that names the latest seq, 6", err)
			}
			if _, err := src.Entity(ctx, ref.Type, "nobody", 0); !errors.Is(err, console.ErrNotFound) {
				t.Errorf("Entity of a cart without history: %v, want ErrNotFound", err)
			}
			if _, err := src.Entity(ctx, "no-such-type", "c1", 0); err == nil || !strings.Contains(err.Error(), cart.ShoppingCartEntityType) {
				t.Errorf("Entity of an unknown type: %v; want an error that lists the hosted types", err)
			}
		})
	}
}

// TestInspectEvents: history in pages, each event with its stored time
// and its payload as JSON; the sent call shown for what it is.
func TestInspectEvents(t *testing.T) {
	for name, open := range inspectStores(t) {
		t.Run(name, func(t *testing.T) {
			rt := newRuntime(t, statefun.WithStore(open(t)))
			before := time.Now().Add(-time.Minute)
			fillCart(t, rt)
			src := rt.ConsoleSource()
			ctx := context.Background()
			var all []console.Event
			for after := int64(0); ; {
				page, err := src.Events(ctx, cart.ShoppingCartEntityType, "c1", after, 4)
				if err != nil {
					t.Fatalf("Events after %d: %v", after, err)
				}
				if len(page) > 4 {
					t.Fatalf("page of %d events, asked for 4", len(page))
				}
				if len(page) == 0 {
					break
				}
				all = append(all, page...)
				after = page[len(page)-1].Seq
			}
			if len(all) != 6 {
				t.Fatalf("%d events in all pages, want 6", len(all))
			}
			for i, e := range all {
				if e.Seq != int64(i+1) {
					t.Errorf("event %d has seq %d", i+1, e.Seq)
				}
				if e.StoredAt.Before(before) || e.StoredAt.After(time.Now().Add(time.Minute)) {
					t.Errorf("event %d stored at %v: not the time of its commit", e.Seq, e.StoredAt)
				}
			}
			var added cart.ItemAdded
			if all[1].Type != "ItemAdded" || protojson.Unmarshal([]byte(all[1].PayloadJSON), &added) != nil || added.GetSku() != "b" || added.GetQuantity() != 2 {
				t.Errorf("event 2 = %q %s, want ItemAdded of 2 b", all[1].Type, all[1].PayloadJSON)
			}
			if !strings.Contains(all[5].PayloadJSON, "AddItem") {
				t.Errorf("the sent call is shown as %s; want its method", all[5].PayloadJSON)
			}
			if _, err := src.Events(ctx, cart.ShoppingCartEntityType, "nobody", 0, 10); !errors.Is(err, console.ErrNotFound) {
				t.Errorf("Events of a cart without history: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestInspectKeyValue: a key-value entity shows its one value; any other
// version is refused with the reason.
func TestInspectKeyValue(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	customers := keyvalue.NewCustomerEntityClient(rt.ClientConn())
	if _, err := customers.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: "k1", Name: "Ada", Address: "old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := customers.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "k1", Address: "new"}); err != nil {
		t.Fatal(err)
	}
	src := rt.ConsoleSource()
	for _, seq := range []int64{0, 2} {
		e, err := src.Entity(ctx, keyvalue.CustomerEntityType, "k1", seq)
		if err != nil {
			t.Fatalf("Entity at %d: %v", seq, err)
		}
		var got keyvalue.Customer
		if err := protojson.Unmarshal([]byte(e.StateJSON), &got); err != nil || got.GetAddress() != "new" || got.GetName() != "Ada" || e.Seq != 2 || e.Latest != 2 {
			t.Errorf("Entity at %d = %+v (%v); want version 2 with the new address", seq, e, err)
		}
	}
	if _, err := src.Entity(ctx, keyvalue.CustomerEntityType, "k1", 1); err == nil || !strings.Contains(err.Error(), "only its latest value") {
		t.Errorf("Entity at an older version: %v; want an error saying key-value entities keep only their latest value", err)
	}
	if _, err := src.Entity(ctx, keyvalue.CustomerEntityType, "k1", 3); err == nil || !strings.Contains(err.Error(), "latest") {
		t.Errorf("Entity beyond the latest version: %v; want an error naming the latest", err)
	}
	if _, err := src.Entity(ctx, keyvalue.CustomerEntityType, "nobody", 0); !errors.Is(err, console.ErrNotFound) {
		t.Errorf("Entity of a customer without a value: %v, want ErrNotFound", err)
	}
}

// TestInspectCompositeKey: the key fields of each type come from the
// request messages, and an entity is found from its key's values, joined
// as the generated code joins them.
func TestInspectCompositeKey(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	seats := compositekey.NewSeatEntityClient(rt.ClientConn())
	if _, err := seats.Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH/1", Row: 12, Letter: "C", Passenger: "Ada"}); err != nil {
		t.Fatal(err)
	}
	src := rt.ConsoleSource()
	types, err := src.EntityTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for i, et := range types {
		fields[et.Type] = strings.Join(et.KeyFields, ",")
		if i > 0 && types[i-1].Type >= et.Type {
			t.Errorf("entity types not sorted: %q before %q", types[i-1].Type, et.Type)
		}
	}
	for typ, want := range map[string]string{
		compositekey.SeatEntityType: "flight,row,letter",
		cart.ShoppingCartEntityType: "cart_id",
		"device":                    "device.site,device.serial",
		keyvalue.CustomerEntityType: "customer_id",
	} {
		if fields[typ] != want {
			t.Errorf("key fields of %q = %q, want %q", typ, fields[typ], want)
		}
	}
	id, err := src.EntityID(compositekey.SeatEntityType, []string{"LH/1", "12", "C"})
	if err != nil || id != statefun.JoinKey("LH/1", "12", "C") {
		t.Fatalf("EntityID = %q, %v; want %q", id, err, statefun.JoinKey("LH/1", "12", "C"))
	}
	e, err := src.Entity(ctx, compositekey.SeatEntityType, id, 0)
	if err != nil || !strings.Contains(e.StateJSON, "Ada") {
		t.Errorf("Entity(%q) = %+v, %v; want the reserved seat", id, e, err)
	}
	if _, err := src.EntityID(compositekey.SeatEntityType, []string{"LH/1", "12"}); err == nil || !strings.Contains(err.Error(), "flight, row, letter") {
		t.Errorf("EntityID with two of three values: %v; want an error naming the key fields", err)
	}
}

// gatedAudit is a cart consumer whose handler fails while its gate is
// shut.
type gatedAudit struct {
	mu   sync.Mutex
	shut bool
}

var errGateShut = errors.New("downstream is down")

func (g *gatedAudit) pass() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return errGateShut
	}
	return nil
}

func (g *gatedAudit) open() {
	g.mu.Lock()
	g.shut = false
	g.mu.Unlock()
}

func (g *gatedAudit) OnItemAdded(*consumer.CartAuditContext, *cart.ItemAdded) error { return g.pass() }
func (g *gatedAudit) OnCheckedOut(*consumer.CartAuditContext, *cart.CheckedOut) error {
	return g.pass()
}

// TestInspectConsumerLag: a consumer whose handler fails shows the
// events it has yet to handle, their age, its retry and its error; once
// it catches up, its lag falls to zero.
func TestInspectConsumerLag(t *testing.T) {
	for name, open := range inspectStores(t) {
		t.Run(name, func(t *testing.T) {
			gate := &gatedAudit{shut: true}
			rt := newRuntime(t, statefun.WithStore(open(t)), statefun.WithConsumers(consumer.NewCartAudit(gate)))
			ctx := context.Background()
			carts := cart.NewShoppingCartClient(rt.ClientConn())
			for _, sku := range []string{"a", "b", "c"} {
				if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "lag", Sku: sku, Quantity: 1}); err != nil {
					t.Fatal(err)
				}
			}
			src := rt.ConsoleSource()
			audit := func() console.Consumer {
				t.Helper()
				consumers, err := src.Consumers(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range consumers {
					if c.Name == consumer.CartAuditConsumerName {
						return c
					}
				}
				t.Fatalf("consumers %+v lack %q", consumers, consumer.CartAuditConsumerName)
				return console.Consumer{}
			}
			waitFor := func(what string, ok func(console.Consumer) bool) console.Consumer {
				t.Helper()
				deadline := time.Now().Add(20 * time.Second)
				for {
					c := audit()
					if ok(c) {
						return c
					}
					if time.Now().After(deadline) {
						t.Fatalf("consumer never %s: %+v", what, c)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			c := waitFor("retried", func(c console.Consumer) bool { return c.Retrying == 1 })
			if c.LagEvents != 3 || c.LagTime <= 0 || !strings.Contains(c.LastError, errGateShut.Error()) || c.EntityType != cart.ShoppingCartEntityType {
				t.Errorf("stuck consumer = %+v; want 3 events of lag, a lag in time, and the handler's error", c)
			}
			gate.open()
			c = waitFor("caught up", func(c console.Consumer) bool { return c.LagEvents == 0 })
			if c.LagTime != 0 || c.Retrying != 0 || c.Position == "" {
				t.Errorf("caught-up consumer = %+v; want no lag in time, no retries and a position", c)
			}
		})
	}
}

// TestInspectCluster: every node reports the same membership, each node's
// shards as the store's leases say, and marks itself.
func TestInspectCluster(t *testing.T) {
	st := memory.New()
	a := startNode(t, st, 5*time.Second)
	b := startNode(t, st, 5*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ca, errA := a.rt.ConsoleSource().Cluster(context.Background())
		cb, errB := b.rt.ConsoleSource().Cluster(context.Background())
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if len(ca.Nodes) == 2 && ca.Free == 0 && ca.Nodes[0].Shards > 0 && ca.Nodes[1].Shards > 0 {
			if !ca.Clustered || ca.Shards != 64 || ca.Nodes[0].Shards+ca.Nodes[1].Shards != 64 {
				t.Fatalf("cluster as node a sees it: %+v", ca)
			}
			selfA, selfB := 0, 0
			for i := range 2 {
				if ca.Nodes[i].Self {
					selfA++
					if ca.Nodes[i].ID != a.addr {
						t.Errorf("node a marks %s as itself", ca.Nodes[i].ID)
					}
				}
				if cb.Nodes[i].Self {
					selfB++
				}
			}
			if selfA != 1 || selfB != 1 {
				t.Errorf("each node marks itself once: a %d, b %d", selfA, selfB)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes did not share the shards: %+v", ca)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInspectTimers: an entity's pending timers, soonest first, with the
// method each will call; a fired or cancelled one is gone.
func TestInspectTimers(t *testing.T) {
	st := memory.New()
	rt := newTimerRuntime(t, st, newDeliveries())
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	far := time.Now().Add(time.Hour).UnixMilli()
	addItem(t, carts, "t1", fmt.Sprintf("at:late:%d:t1", far+1000))
	addItem(t, carts, "t1", fmt.Sprintf("at:soon:%d:t1", far))
	addItem(t, carts, "t1", fmt.Sprintf("at:gone:%d:t1", far))
	addItem(t, carts, "t1", "cancel:gone")
	timers, err := rt.ConsoleSource().Timers(context.Background(), cart.ShoppingCartEntityType, "t1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tm := range timers {
		got = append(got, tm.Name+" "+tm.Method)
	}
	want := []string{"soon /statefun.testdata.eventsourced.ShoppingCart/AddItem", "late /statefun.testdata.eventsourced.ShoppingCart/AddItem"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timers %q, want %q", got, want)
	}
	if _, err := rt.ConsoleSource().Timers(context.Background(), "no-such-type", "t1"); err == nil {
		t.Error("timers of an unknown type: no error")
	}
}

// TestInspectWorkflow: a workflow shows as an entity type whose state is
// its record (phase, step, history) with its own state decoded, not the
// bytes the record keeps it in, and so do its events.
func TestInspectWorkflow(t *testing.T) {
	e, host := errand(step{Name: "only", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
		s.Fields["done_by_step"] = structpb.NewStringValue("only")
		return c.End(), nil
	}})
	rt, err := statefun.New([]*statefun.Entity{e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	startErrand(t, host.Load(), "w1")
	waitPhase(t, host.Load(), "w1", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	ent, err := rt.ConsoleSource().Entity(context.Background(), "errand", "w1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ent.StateJSON, `"done_by_step"`) || !strings.Contains(ent.StateJSON, "PHASE_COMPLETED") {
		t.Errorf("the workflow's state does not show its own state decoded and its phase:\n%s", ent.StateJSON)
	}
	events, err := rt.ConsoleSource().Events(context.Background(), "errand", "w1", 0, 10)
	if err != nil || len(events) == 0 {
		t.Fatalf("events %v, %v", events, err)
	}
	if !strings.Contains(events[len(events)-1].PayloadJSON, `"done_by_step"`) {
		t.Errorf("the last step's event does not show the state it stored:\n%s", events[len(events)-1].PayloadJSON)
	}
}
