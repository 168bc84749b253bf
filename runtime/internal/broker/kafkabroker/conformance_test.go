package kafkabroker_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/brokertest"
)

// TestConformance runs the broker suite the NATS adapter passes: the
// runtime relies on both behaving as broker.go says.
func TestConformance(t *testing.T) {
	c := newCluster(t, nil)
	addrs := c.ListenAddrs()
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
