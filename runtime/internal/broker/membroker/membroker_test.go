package membroker_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/brokertest"
	"github.com/statefun-go/statefun/runtime/internal/broker/membroker"
)

// TestConformance: the in-memory broker the runtime's tests use behaves
// like the real ones, as the suite they pass says.
func TestConformance(t *testing.T) {
	shared := membroker.New()
	brokertest.Run(t,
		func(*testing.T) broker.Broker { return connection{shared} },
		func(*testing.T) string { return "topic-" + rand.Text() },
		brokertest.Caps{DedupByID: true, Timeout: 10 * time.Second})
}

// connection is one connection to the shared broker: closing it leaves
// the broker open for the others.
type connection struct{ *membroker.Broker }

func (connection) Close() error { return nil }
