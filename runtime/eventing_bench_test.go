package statefun_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/kafkabroker"
	"github.com/statefun-go/statefun/runtime/internal/broker/natsbroker"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/testdata/eventing"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// benchBroker is one broker the eventing benchmark runs against: the
// machine's NATS server, or an in-process Kafka (kfake, franz-go's fake:
// its figures say what statefun and the client cost, not what a Kafka
// cluster does).
type benchBroker struct {
	name   string
	config func(b *testing.B) statefun.BrokerConfig
	open   func(b *testing.B, cfg statefun.BrokerConfig) broker.Broker
	// topic returns a topic of the benchmark's own (a stream deleted at
	// the end, for NATS).
	topic func(b *testing.B, cfg statefun.BrokerConfig, what string) string
}

func benchBrokers() []benchBroker {
	return []benchBroker{
		{
			name: statefun.BrokerNATS,
			config: func(b *testing.B) statefun.BrokerConfig {
				return statefun.BrokerConfig{NATSURL: testNATS(b)}
			},
			open: func(b *testing.B, cfg statefun.BrokerConfig) broker.Broker {
				c, err := natsbroker.Open(context.Background(), cfg.NATSURL, natsbroker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.Close() })
				return c
			},
			topic: func(b *testing.B, cfg statefun.BrokerConfig, what string) string {
				subject := "statefun-bench." + strings.ToLower(rand.Text()) + "." + what
				dropStream(b, cfg.NATSURL, subject)
				return subject
			},
		},
		{
			name: statefun.BrokerKafka,
			config: func(b *testing.B) statefun.BrokerConfig {
				c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(c.Close)
				return statefun.BrokerConfig{KafkaBrokers: c.ListenAddrs()}
			},
			open: func(b *testing.B, cfg statefun.BrokerConfig) broker.Broker {
				// Quiet: a log line would split the benchmark's result line.
				c, err := kafkabroker.Open(context.Background(), cfg.KafkaBrokers, kafkabroker.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.Close() })
				return c
			},
			topic: func(b *testing.B, _ statefun.BrokerConfig, what string) string {
				return "statefun-bench-" + strings.ToLower(rand.Text()) + "-" + what
			},
		},
	}
}

func cartPublisherTo(brokerName, topic string) *statefun.Publisher {
	return statefun.NewPublisher(statefun.PublisherConfig{
		Name: "cart-events", EntityType: "shopping-cart", Broker: brokerName, Topic: topic,
		NewEvent: func(string) proto.Message { return nil },
	})
}

// BenchmarkEventing measures, on Postgres, against NATS JetStream and an
// in-process Kafka:
//   - publish: how fast a publisher works through a backlog of 20,000
//     committed events (events/s);
//   - lag: at idle, from a command's commit to a subscriber of the topic
//     receiving its event (p50/p99);
//   - consume: how fast a subscription turns 20,000 waiting messages into
//     durable commands (messages/s).
func BenchmarkEventing(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, bb := range benchBrokers() {
		b.Run(bb.name+"/publish", func(b *testing.B) {
			const backlog = 20000
			cfg := bb.config(b)
			topic := bb.topic(b, cfg, "carts")
			st := benchStores()["postgres"](b)
			defer st.Close()
			fill(b, st, backlog)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st), statefun.WithLogger(quiet),
					statefun.WithPublishers(cartPublisherTo(bb.name, topic)), statefun.WithBrokers(cfg))
				if err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Minute)
				for rt.Stats().Eventing.Published < backlog {
					if time.Now().After(deadline) {
						b.Fatalf("published %d of %d in 5 minutes", rt.Stats().Eventing.Published, backlog)
					}
					time.Sleep(5 * time.Millisecond)
				}
				took := time.Since(start)
				b.ReportMetric(backlog/took.Seconds(), "events/s")
				closeBench(b, rt)
			}
		})
		b.Run(bb.name+"/lag", func(b *testing.B) {
			cfg := bb.config(b)
			topic := bb.topic(b, cfg, "carts")
			inner := benchStores()["postgres"](b)
			defer inner.Close()
			st := &commitClock{Store: inner, committed: map[commitKey]time.Time{}}
			rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st), statefun.WithLogger(quiet),
				statefun.WithPublishers(cartPublisherTo(bb.name, topic)), statefun.WithBrokers(cfg))
			if err != nil {
				b.Fatal(err)
			}
			defer closeBench(b, rt)
			type got struct {
				key commitKey
				at  time.Time
			}
			arrived := make(chan got, 16)
			reader := bb.open(b, cfg)
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = reader.Subscribe(ctx, broker.Subscription{Topic: topic, Group: "bench", Parallel: 4}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
					at := time.Now()
					seq, _ := strconv.ParseInt(d.ID[strings.LastIndexByte(d.ID, '/')+1:], 10, 64)
					arrived <- got{commitKey{d.Key, seq}, at}
					return broker.Ack, 0
				})
			}()
			defer func() { stop(); wg.Wait() }()
			carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
			lags := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprint("lag-", i%100)
				if err := add(context.Background(), carts, id, "sku", 1); err != nil {
					b.Fatal(err)
				}
				select {
				case g := <-arrived:
					committed, ok := st.at(g.key)
					if !ok {
						b.Fatalf("the subscriber received %s/%d, which no completed commit wrote", g.key.id, g.key.seq)
					}
					lags = append(lags, g.at.Sub(committed))
				case <-time.After(10 * time.Second):
					b.Fatal("the subscriber did not receive the event within 10 s")
				}
			}
			b.StopTimer()
			slices.Sort(lags)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lags[len(lags)/2]), "p50-ms")
			b.ReportMetric(ms(lags[len(lags)*99/100]), "p99-ms")
		})
		b.Run(bb.name+"/consume", func(b *testing.B) {
			const messages = 20000
			cfg := bb.config(b)
			// Order.Cancel subscribes to Kafka's payments.refused; for
			// NATS the same method is bound to a subject of this run.
			topic := "payments.refused"
			if bb.name == statefun.BrokerNATS {
				topic = bb.topic(b, cfg, "refused")
			}
			w := bb.open(b, cfg)
			var ensured error
			switch m := w.(type) {
			case *natsbroker.Broker:
				ensured = m.EnsureStream(context.Background(), "", topic)
			case *kafkabroker.Broker:
				ensured = m.EnsureTopic(context.Background(), topic, 0)
			}
			if ensured != nil {
				b.Fatal(ensured)
			}
			batch := make([]broker.Message, 0, 500)
			for i := range messages {
				body, _ := proto.Marshal(&eventing.CancelOrderRequest{OrderId: fmt.Sprint("o", i%1000), Reason: "refused"})
				batch = append(batch, broker.Message{Topic: topic, Key: fmt.Sprint("o", i%1000), ID: fmt.Sprint("m", i), Body: body})
				if len(batch) == cap(batch) || i == messages-1 {
					if err := w.Publish(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			order := eventing.NewOrder(orders{})
			if bb.name == statefun.BrokerNATS {
				order = statefun.Rebind(order, statefun.BrokerNATS, topic)
			}
			st := benchStores()["postgres"](b)
			defer st.Close()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				rt, err := statefun.New([]*statefun.Entity{order}, statefun.WithStore(st), statefun.WithLogger(quiet), statefun.WithBrokers(cfg))
				if err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Minute)
				for rt.Stats().Eventing.Handled < messages {
					if time.Now().After(deadline) {
						b.Fatalf("handled %d of %d in 5 minutes", rt.Stats().Eventing.Handled, messages)
					}
					time.Sleep(5 * time.Millisecond)
				}
				b.ReportMetric(messages/time.Since(start).Seconds(), "msgs/s")
				closeBench(b, rt)
			}
		})
	}
}

// fill commits n events over 1,000 carts.
func fill(b *testing.B, st store.Store, n int) {
	b.Helper()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st),
		statefun.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	defer closeBench(b, rt)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if err := add(context.Background(), carts, fmt.Sprint("c", i%1000), "sku", 1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

func closeBench(b *testing.B, rt *statefun.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Close(ctx); err != nil {
		b.Errorf("Close: %v", err)
	}
}
