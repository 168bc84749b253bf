package statefun_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/natsbroker"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// testNATS returns the URL of the NATS server the tests use, failing (or
// skipping, with STATEFUN_SKIP_NATS=1) when none answers.
func testNATS(t testing.TB) string {
	t.Helper()
	u := os.Getenv("STATEFUN_TEST_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "nats://"), 3*time.Second)
	if err != nil {
		msg := fmt.Sprintf("NATS is not reachable at %s: %v; start it with .ci/ensure-nats (make test does), point STATEFUN_TEST_NATS_URL at one, or set STATEFUN_SKIP_NATS=1", u, err)
		if os.Getenv("STATEFUN_SKIP_NATS") == "1" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	_ = c.Close()
	return u
}

// dropStream deletes the stream of subject when the test ends.
func dropStream(t testing.TB, url, subject string) {
	t.Cleanup(func() {
		nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, natsbroker.StreamName(subject))
	})
}

// TestPublisherToNATS: a server publishes its carts' events to a JetStream
// subject it creates the stream of; a reader of the subject gets every
// event once, in order per cart, with its CloudEvents attributes.
func TestPublisherToNATS(t *testing.T) {
	t.Parallel()
	url := testNATS(t)
	subject := "statefun-test." + strings.ToLower(rand.Text()) + ".carts"
	dropStream(t, url, subject)
	p := statefun.NewPublisher(statefun.PublisherConfig{
		Name: "cart-events", EntityType: "shopping-cart", Broker: statefun.BrokerNATS, Topic: subject,
		NewEvent: func(string) proto.Message { return nil },
	})
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(memory.New()),
		statefun.WithPublishers(p), statefun.WithBrokers(statefun.BrokerConfig{NATSURL: url}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	want := map[string]int{}
	for i := range 60 {
		id := fmt.Sprint("c", i%6)
		if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: id, Sku: fmt.Sprint(i), Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		want[id]++
	}

	reader, err := natsbroker.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var mu sync.Mutex
	var got []broker.Message
	subCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- reader.Subscribe(subCtx, broker.Subscription{Topic: subject, Group: "reader", Parallel: 4}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			mu.Lock()
			got = append(got, d.Message)
			mu.Unlock()
			return broker.Ack, 0
		})
	}()
	eventuallyEqual(t, "messages read from NATS", 60, func() int {
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
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe did not return 10s after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	checkPerEntityOrder(t, got, want)
}
