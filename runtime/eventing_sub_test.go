package statefun_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/membroker"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/eventing"
)

type orders struct{}

func (orders) Place(ctx *eventing.OrderContext, _ *eventing.Order, req *eventing.PlaceOrderRequest) (*eventing.Order, error) {
	ctx.Emit(&eventing.OrderPlaced{CustomerId: req.GetCustomerId(), TotalCents: req.GetTotalCents()})
	return &eventing.Order{CustomerId: req.GetCustomerId()}, nil
}

func (orders) Ship(ctx *eventing.OrderContext, _ *eventing.Order, req *eventing.ShipOrderRequest) (*eventing.Order, error) {
	ctx.Emit(&eventing.OrderShipped{Carrier: req.GetCarrier()})
	return &eventing.Order{}, nil
}

func (orders) Cancel(ctx *eventing.OrderContext, _ *eventing.Order, req *eventing.CancelOrderRequest) (*eventing.Order, error) {
	ctx.Emit(&eventing.OrderCancelled{Reason: req.GetReason()})
	return &eventing.Order{}, nil
}

func (orders) Get(_ *eventing.OrderReadContext, state *eventing.Order, _ *eventing.GetOrderRequest) (*eventing.Order, error) {
	return state, nil
}

func (orders) OnOrderPlaced(o *eventing.Order, e *eventing.OrderPlaced) {
	o.CustomerId, o.TotalCents, o.Status = e.GetCustomerId(), e.GetTotalCents(), "placed"
}
func (orders) OnOrderShipped(o *eventing.Order, _ *eventing.OrderShipped)     { o.Status = "shipped" }
func (orders) OnOrderCancelled(o *eventing.Order, _ *eventing.OrderCancelled) { o.Status = "cancelled" }

// fulfillments counts the tracking updates it was asked to record: one
// with status "flaky" fails twice before it is recorded, one with status
// "broken" always fails.
type fulfillments struct {
	mu    sync.Mutex
	calls map[string]int
}

func (f *fulfillments) Open(ctx *eventing.FulfillmentContext, state *eventing.Fulfillment, req *eventing.OrderPlaced) (*eventing.Fulfillment, error) {
	next := proto.CloneOf(state)
	next.CustomerId, next.Status = req.GetCustomerId(), "open"
	next.Notes = append(next.Notes, "opened")
	ctx.SetState(next)
	return next, nil
}

func (f *fulfillments) Track(ctx *eventing.FulfillmentContext, state *eventing.Fulfillment, req *eventing.TrackingUpdate) (*eventing.Fulfillment, error) {
	f.mu.Lock()
	f.calls[ctx.EntityID()+"/"+req.GetStatus()]++
	n := f.calls[ctx.EntityID()+"/"+req.GetStatus()]
	f.mu.Unlock()
	if req.GetStatus() == "broken" || (req.GetStatus() == "flaky" && n <= 2) {
		return nil, status.Error(codes.Unavailable, "the carrier's system is down")
	}
	next := proto.CloneOf(state)
	next.Status = req.GetStatus()
	next.Notes = append(next.Notes, req.GetStatus())
	ctx.SetState(next)
	return next, nil
}

func (f *fulfillments) Note(ctx *eventing.FulfillmentContext, state *eventing.Fulfillment, req *eventing.CarrierNote) (*eventing.Fulfillment, error) {
	next := proto.CloneOf(state)
	next.Notes = append(next.Notes, req.GetText())
	ctx.SetState(next)
	return next, nil
}

func (f *fulfillments) Get(_ *eventing.FulfillmentReadContext, state *eventing.Fulfillment, _ *eventing.GetFulfillmentRequest) (*eventing.Fulfillment, error) {
	return state, nil
}

func eventingRuntime(t *testing.T, b broker.Broker) (*statefun.Runtime, *fulfillments) {
	t.Helper()
	f := &fulfillments{calls: map[string]int{}}
	rt, err := statefun.New([]*statefun.Entity{eventing.NewOrder(orders{}), eventing.NewFulfillment(f)},
		statefun.WithStore(memory.New()), statefun.WithPublishers(eventing.NewOrderPlacements()), statefun.WithTestBroker(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	return rt, f
}

func fulfillmentNotes(t *testing.T, rt *statefun.Runtime, id string) string {
	t.Helper()
	got, err := eventing.NewFulfillmentEntityClient(rt.ClientConn()).Get(testContext(t), &eventing.GetFulfillmentRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(got.GetNotes(), ",")
}

// TestSubscriptionTurnsPublishedEventsIntoCommands: an order placed is
// published (JSON, to a NATS subject) and the subscribed method of another
// entity, keyed by the message's subject, is called with it once; a
// message of another event type on the subject is skipped.
func TestSubscriptionTurnsPublishedEventsIntoCommands(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	rt, _ := eventingRuntime(t, b)
	ctx := testContext(t)
	if _, err := eventing.NewOrderEntityClient(rt.ClientConn()).Place(ctx, &eventing.PlaceOrderRequest{OrderId: "o1", CustomerId: "ada", TotalCents: 500}); err != nil {
		t.Fatal(err)
	}
	eventuallyEqual(t, "o1's fulfillment", "opened", func() string { return fulfillmentNotes(t, rt, "o1") })

	// Another event type on the same subject: not an OrderPlaced.
	if err := b.Publish(ctx, []broker.Message{{
		Topic: "shop.orders.placed", Key: "o2", ID: "order/o2/1", Body: []byte(`{"carrier":"dhl"}`),
		Headers: map[string]string{"ce-type": "OrderShipped", "ce-subject": "o2", "content-type": "application/json"},
	}}); err != nil {
		t.Fatal(err)
	}
	eventuallyEqual(t, "messages skipped", uint64(1), func() uint64 { return rt.Stats().Eventing.Skipped })
	if got := fulfillmentNotes(t, rt, "o2"); got != "" {
		t.Errorf("o2's fulfillment: %q; the OrderShipped message was taken as an OrderPlaced", got)
	}
	if got := fulfillmentNotes(t, rt, "o1"); got != "opened" {
		t.Errorf("o1's fulfillment: %q, want opened once", got)
	}
}

// TestSubscriptionRetriesThenDeadLetters: a message whose call fails is
// tried again until it succeeds; one that fails max_attempts times, or
// cannot be decoded, goes to the dead-letter topic with why, and the
// messages after it on its key are handled.
func TestSubscriptionRetriesThenDeadLetters(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	rt, f := eventingRuntime(t, b)
	ctx := testContext(t)
	publish := func(id, key string, body []byte) {
		t.Helper()
		if err := b.Publish(ctx, []broker.Message{{Topic: "carrier.tracking", Key: key, ID: id, Body: body}}); err != nil {
			t.Fatal(err)
		}
	}
	enc := func(status string) []byte {
		body, _ := proto.Marshal(&eventing.TrackingUpdate{OrderId: "o1", Status: status})
		return body
	}
	publish("m1", "o1", enc("flaky"))
	publish("m2", "o1", enc("broken"))
	publish("m3", "o1", []byte{0xff, 0xff, 0xff})
	publish("m4", "o1", enc("delivered"))
	eventuallyEqual(t, "o1's notes", "flaky,delivered", func() string { return fulfillmentNotes(t, rt, "o1") })

	f.mu.Lock()
	flaky, broken := f.calls["o1/flaky"], f.calls["o1/broken"]
	f.mu.Unlock()
	if flaky != 3 || broken != 5 {
		t.Errorf("calls: flaky %d (want 3: two failures, then done), broken %d (want 5: max_attempts)", flaky, broken)
	}
	dead := waitMessages(t, b, "carrier.tracking.failed", 2)
	if len(dead) != 2 || dead[0].ID != "m2" || dead[1].ID != "m3" {
		t.Fatalf("dead letters %v, want m2 and m3", dead)
	}
	if h := dead[0].Headers; h["statefun-attempts"] != "5" || h["statefun-topic"] != "carrier.tracking" || !strings.Contains(h["statefun-error"], "carrier's system is down") {
		t.Errorf("m2's dead-letter headers %v: want 5 attempts, its topic and the last error", h)
	}
	if h := dead[1].Headers; h["statefun-attempts"] != "1" || !strings.Contains(h["statefun-error"], "decode") {
		t.Errorf("m3's dead-letter headers %v: want 1 attempt and a decoding error", h)
	}
	// Counted once the dead letter is stored: maybe just after it shows.
	eventuallyEqual(t, "messages dead-lettered", uint64(2), func() uint64 { return rt.Stats().Eventing.DeadLettered })
	if s := rt.Stats().Eventing; s.Retried < 6 {
		t.Errorf("stats %+v: want at least 6 retries (2 of m1, 4 of m2)", s)
	}
}

// TestSubscriptionCallsOnceForARedeliveredMessage: a message delivered
// again after its call succeeded (its acknowledgement was lost) changes
// the entity once: the message ID is the call's idempotency key.
func TestSubscriptionCallsOnceForARedeliveredMessage(t *testing.T) {
	t.Parallel()
	b := membroker.New()
	rt, _ := eventingRuntime(t, b)
	ctx := testContext(t)
	body, _ := proto.Marshal(&eventing.TrackingUpdate{OrderId: "o9", Status: "delivered"})
	b.LoseAcks(1)
	if err := b.Publish(ctx, []broker.Message{{Topic: "carrier.tracking", Key: "o9", ID: "t-1", Body: body}}); err != nil {
		t.Fatal(err)
	}
	eventuallyEqual(t, "calls that succeeded", uint64(2), func() uint64 { return rt.Stats().Eventing.Handled })
	if got := fulfillmentNotes(t, rt, "o9"); got != "delivered" {
		t.Errorf("o9's notes: %q, want the update recorded once", got)
	}
}

// TestEventingInACluster: on a cluster of two nodes sharing one broker,
// each order's events are published by one node, once, in order, and each
// subscribed message is handled once by one of the nodes, whichever owns
// its entity answering the call.
func TestEventingInACluster(t *testing.T) {
	t.Parallel()
	st := memory.New()
	b := membroker.New()
	nodes := make([]*clusterNode, 2)
	f := &fulfillments{calls: map[string]int{}}
	for i := range nodes {
		nodes[i] = startNodeHosting(t, st, 2*time.Second, []*statefun.Entity{eventing.NewOrder(orders{}), eventing.NewFulfillment(f)},
			statefun.WithPublishers(eventing.NewOrderPlacements()), statefun.WithTestBroker(b))
	}
	ctx := testContext(t)
	const n = 20
	for i := range n {
		order := eventing.NewOrderEntityClient(nodes[i%2].rt.ClientConn())
		if _, err := order.Place(ctx, &eventing.PlaceOrderRequest{OrderId: fmt.Sprint("o", i), CustomerId: "ada"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		eventuallyEqual(t, fmt.Sprint("o", i, "'s fulfillment"), "opened", func() string { return fulfillmentNotes(t, nodes[0].rt, fmt.Sprint("o", i)) })
	}
	if got := b.Offered("shop.orders.placed"); got != n {
		t.Errorf("%d messages published for %d orders placed: the nodes both published", got, n)
	}
	// A handler counts its message after its call returned, which may be
	// just after the call's effect can be read: wait for the count, then
	// make sure it stays.
	handled := func() uint64 { return nodes[0].rt.Stats().Eventing.Handled + nodes[1].rt.Stats().Eventing.Handled }
	eventuallyEqual(t, "messages handled by the two nodes", uint64(n), handled)
	time.Sleep(100 * time.Millisecond)
	if got := handled(); got != n {
		t.Errorf("messages handled by the two nodes: %d, want %d (each once)", got, n)
	}
	var published []uint64
	for _, node := range nodes {
		published = append(published, node.rt.Stats().Eventing.Published)
	}
	if (published[0] == 0) == (published[1] == 0) {
		t.Errorf("messages published per node: %v; want one node to run the publisher", published)
	}
}
