package statefun

import (
	"context"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// WithTestBroker makes every broker the runtime opens b.
func WithTestBroker(b broker.Broker) Option {
	return optionFunc(func(c *config) {
		c.openBroker = func(context.Context, string) (broker.Broker, error) { return nopClose{b}, nil }
	})
}

// nopClose keeps a test's broker open across the runtimes that use it.
type nopClose struct{ broker.Broker }

func (nopClose) Close() error { return nil }

// Rebind points every subscription of e at topic on broker: a benchmark
// reads a topic of its own with a generated entity.
func Rebind(e *Entity, brokerName, topic string) *Entity {
	subs := make([]SubscriptionConfig, len(e.subscriptions))
	for i, s := range e.subscriptions {
		s.Broker, s.Topic, s.DeadLetter = brokerName, topic, ""
		subs[i] = s
	}
	e.subscriptions = subs
	return e
}
