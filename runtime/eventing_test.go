package statefun_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/membroker"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// cartPublisher publishes the shopping cart's events to topic "carts".
func cartPublisher(events []string, json bool) *statefun.Publisher {
	return statefun.NewPublisher(statefun.PublisherConfig{
		Name: "cart-events", EntityType: "shopping-cart", Broker: statefun.BrokerNATS, Topic: "carts",
		Events: events, JSON: json,
		NewEvent: func(t string) proto.Message {
			switch t {
			case "ItemAdded":
				return new(cart.ItemAdded)
			case "ItemRemoved":
				return new(cart.ItemRemoved)
			case "cart-checked-out":
				return new(cart.CheckedOut)
			}
			return nil
		},
	})
}

func publishingRuntime(t *testing.T, st store.Store, b broker.Broker, p *statefun.Publisher) *statefun.Runtime {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st),
		statefun.WithPublishers(p), statefun.WithTestBroker(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	return rt
}

// waitMessages waits until topic holds n messages and returns them.
func waitMessages(t *testing.T, b *membroker.Broker, topic string, n int) []broker.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := b.Messages(topic)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages after 10s, want %d", topic, len(msgs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkPerEntityOrder checks that each cart's messages are its events 1..n
// in order, each once, with their CloudEvents attributes.
func checkPerEntityOrder(t *testing.T, msgs []broker.Message, want map[string]int) {
	t.Helper()
	next := map[string]int64{}
	for _, m := range msgs {
		id := m.Key
		next[id]++
		wantID := fmt.Sprintf("shopping-cart/%s/%d", id, next[id])
		if m.ID != wantID || m.Headers["ce-id"] != wantID {
			t.Fatalf("message %d of %s has ID %q (ce-id %q), want %q: out of order, repeated or skipped", next[id], id, m.ID, m.Headers["ce-id"], wantID)
		}
		if m.Headers["ce-subject"] != id || m.Headers["ce-source"] != "statefun:shopping-cart" || m.Headers["ce-specversion"] != "1.0" || m.Headers["ce-time"] == "" {
			t.Errorf("message %s: CloudEvents attributes %v", m.ID, m.Headers)
		}
	}
	for id, n := range want {
		if next[id] != int64(n) {
			t.Errorf("%s: %d messages published, want %d", id, next[id], n)
		}
	}
}

// TestPublisherPublishesEventsInOrderPerEntity: every committed event of
// every cart reaches the topic once, in its cart's order, with its
// CloudEvents attributes and the cart as the partition key; the calls a
// cart sends (stored with its events) are not published.
func TestPublisherPublishesEventsInOrderPerEntity(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	rt := publishingRuntime(t, memory.New(), b, cartPublisher(nil, false))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	want := map[string]int{}
	for i := range 40 {
		id := fmt.Sprint("c", i%8)
		if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: id, Sku: strconv.Itoa(i), Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		want[id]++
	}
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c0"}); err != nil {
		t.Fatal(err)
	}
	want["c0"]++
	want["archive"]++ // the call c0's checkout sent, made as a command
	msgs := waitMessages(t, b, "carts", 42)
	checkPerEntityOrder(t, msgs, want)
	types := map[string]int{}
	for _, m := range msgs {
		types[m.Headers["ce-type"]]++
		if m.Headers["content-type"] != "application/protobuf" {
			t.Errorf("content-type %q, want application/protobuf", m.Headers["content-type"])
		}
	}
	if types["ItemAdded"] != 41 || types["cart-checked-out"] != 1 || len(types) != 2 {
		t.Errorf("published event types %v, want 41 ItemAdded and 1 cart-checked-out, nothing else", types)
	}
	for _, m := range msgs {
		if m.ID == "shopping-cart/c0/1" {
			added := new(cart.ItemAdded)
			if err := proto.Unmarshal(m.Body, added); err != nil || added.GetSku() != "0" {
				t.Errorf("c0's first message body: %v, %v; want ItemAdded of sku 0", added, err)
			}
		}
	}
}

// TestPublisherPublishesOnlyItsEvents: a publisher of some event types
// leaves the others out, and encodes JSON when asked to.
func TestPublisherPublishesOnlyItsEvents(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	rt := publishingRuntime(t, memory.New(), b, cartPublisher([]string{"cart-checked-out"}, true))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	for _, id := range []string{"a", "b"} {
		if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: id, Sku: "x", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: id}); err != nil {
			t.Fatal(err)
		}
	}
	waitMessages(t, b, "carts", 2)
	time.Sleep(100 * time.Millisecond) // nothing more comes
	msgs := b.Messages("carts")
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want the 2 checkouts only", len(msgs))
	}
	for _, m := range msgs {
		var out cart.CheckedOut
		if m.Headers["content-type"] != "application/json" || protojson.Unmarshal(m.Body, &out) != nil || out.GetAt() == nil {
			t.Errorf("message %s: content-type %q, body %s; want a CheckedOut in JSON", m.ID, m.Headers["content-type"], m.Body)
		}
		if !strings.HasSuffix(m.ID, "/2") {
			t.Errorf("message ID %s; a checkout is its cart's second event", m.ID)
		}
	}
}

// TestPublisherWaitsOutABrokerOutage: while the broker refuses messages the
// carts keep taking commands; once it is back every event is published,
// in order, none skipped, and a restarted runtime publishes nothing twice.
func TestPublisherWaitsOutABrokerOutage(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	st := memory.New()
	rt := publishingRuntime(t, st, b, cartPublisher(nil, false))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	b.Fail(errors.New("broker down"))
	want := map[string]int{}
	for i := range 30 {
		id := fmt.Sprint("c", i%3)
		if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: id, Sku: strconv.Itoa(i), Quantity: 1}); err != nil {
			t.Fatalf("command during the broker outage: %v", err)
		}
		want[id]++
	}
	eventuallyEqual(t, "failed publishes", true, func() bool { return rt.Stats().Eventing.PublishFailed > 0 })
	if n := len(b.Messages("carts")); n != 0 {
		t.Fatalf("%d messages stored by a broker that is down", n)
	}
	b.Fail(nil)
	checkPerEntityOrder(t, waitMessages(t, b, "carts", 30), want)

	// A clean stop saves the position: the next runtime goes on from it.
	closeRuntime(t, rt)
	offered := b.Offered("carts")
	rt = publishingRuntime(t, st, b, cartPublisher(nil, false))
	if _, err := cart.NewShoppingCartEntityClient(rt.ClientConn()).AddItem(ctx, &cart.AddItemRequest{CartId: "c0", Sku: "late", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	want["c0"]++
	checkPerEntityOrder(t, waitMessages(t, b, "carts", 31), want)
	if n := b.Offered("carts") - offered; n != 1 {
		t.Errorf("the restarted runtime published %d messages, want 1 (the new event): it repeated what was published before", n)
	}
}
