package statefun_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/kafkabroker"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/eventing"
)

// testKafka returns the Kafka brokers a test uses: STATEFUN_TEST_KAFKA_BROKERS
// (host:port[,...]) when set, else an in-process one (kfake) of the test's
// own.
func testKafka(t testing.TB) []string {
	if env := os.Getenv("STATEFUN_TEST_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ",")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs()
}

// TestEventingOverKafka runs a server against an in-process Kafka
// (kfake): a refused payment on a topic cancels its order through the
// subscribed Cancel method, and the order's events since the server
// started reach the history topic, in order, with the order as the
// record key.
func TestEventingOverKafka(t *testing.T) {
	t.Parallel()
	brokers := testKafka(t)
	rt, err := statefun.New([]*statefun.Entity{eventing.NewOrder(orders{})}, statefun.WithStore(memory.New()),
		statefun.WithPublishers(eventing.NewOrderHistory()), statefun.WithBrokers(statefun.BrokerConfig{KafkaBrokers: brokers}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	ctx := testContext(t)
	order := eventing.NewOrderEntityClient(rt.ClientConn())
	if _, err := order.Place(ctx, &eventing.PlaceOrderRequest{OrderId: "o1", CustomerId: "ada", TotalCents: 900}); err != nil {
		t.Fatal(err)
	}

	client, err := kafkabroker.Open(ctx, brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	body, _ := proto.Marshal(&eventing.CancelOrderRequest{OrderId: "o1", Reason: "card declined"})
	if err := client.Publish(ctx, []broker.Message{{Topic: "payments.refused", Key: "o1", ID: "payment-7", Body: body}}); err != nil {
		t.Fatal(err)
	}
	eventuallyEqual(t, "o1's status", "cancelled", func() string {
		o, err := order.Get(ctx, &eventing.GetOrderRequest{OrderId: "o1"})
		if err != nil {
			t.Fatal(err)
		}
		return o.GetStatus()
	})

	var mu sync.Mutex
	var got []broker.Message
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- client.Subscribe(subCtx, broker.Subscription{Topic: "shop.orders.history", Group: "reader", Parallel: 2}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			mu.Lock()
			got = append(got, d.Message)
			mu.Unlock()
			return broker.Ack, 0
		})
	}()
	eventuallyEqual(t, "history records", 2, func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Subscribe did not return 15s after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if got[0].ID != "order/o1/1" || got[0].Headers["ce-type"] != "OrderPlaced" || got[1].ID != "order/o1/2" || got[1].Headers["ce-type"] != "order-cancelled" || got[0].Key != "o1" {
		t.Errorf("history: %s %v, %s %v; want o1's OrderPlaced then order-cancelled, keyed o1", got[0].ID, got[0].Headers, got[1].ID, got[1].Headers)
	}
}
