package kafkabroker_test

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/brokertest"
)

// TestConformance runs the broker suite the NATS adapter passes: the
// runtime relies on both behaving as broker.go says.
//
// With STATEFUN_TEST_KAFKA_BROKERS (host:port[,...]) it runs against that
// Kafka instead of the in-process one; each test makes topics of its own.
func TestConformance(t *testing.T) {
	var addrs []string
	if env := os.Getenv("STATEFUN_TEST_KAFKA_BROKERS"); env != "" {
		addrs = strings.Split(env, ",")
	} else {
		addrs = newCluster(t, nil).ListenAddrs()
	}
	brokertest.Run(t,
		func(t *testing.T) broker.Broker { return open(t, addrs) },
		func(t *testing.T) string {
			topic := "suite-" + strings.ToLower(rand.Text())
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := open(t, addrs).EnsureTopic(ctx, topic, 4); err != nil {
				t.Fatal(err)
			}
			return topic
		},
		brokertest.Caps{
			MissingTopic: func(*testing.T) string { return "missing-" + strings.ToLower(rand.Text()) },
			Timeout:      30 * time.Second,
		})
}
