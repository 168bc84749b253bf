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
