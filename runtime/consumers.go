package statefun

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/runtime/store"
)

// Component is what a statefun server runs: an entity (New<Entity>) or a
// consumer (New<Consumer>), as generated constructors return them.
type Component interface {
	isComponent()
}

func (*Entity) isComponent()   {}
func (*Consumer) isComponent() {}

// WithConsumers adds consumers of entity events to the runtime: values of
// generated constructors such as NewAnomalyDetector. They start with the
// runtime and stop when it closes.
func WithConsumers(consumers ...*Consumer) Option {
	return optionFunc(func(c *config) { c.consumers = append(c.consumers, consumers...) })
}

// callsConsumer is the name of the internal consumer that makes the calls
// commands send; consumer names starting with "statefun" are reserved.
const callsConsumer = "statefun.calls"

// consumerSet runs the consumers of a runtime.
type consumerSet struct {
	rt      *Runtime
	feed    store.Store
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	runners map[string]*consumerRunner // by name
	calls   map[string]bool            // entity types with a calls dispatcher
}

func (r *Runtime) startConsumers(consumers []*Consumer) {
	feed := r.store
	ctx, cancel := context.WithCancel(context.Background())
	r.consumers = &consumerSet{rt: r, feed: feed, ctx: ctx, cancel: cancel, runners: map[string]*consumerRunner{}, calls: map[string]bool{}}
	for _, c := range consumers {
		r.consumers.start(c.cfg)
	}
	// A calls dispatcher that ran before resumes at startup, so that calls
	// committed just before a crash are made even if no command sends
	// another one.
	for _, h := range r.hosts {
		if h.kind() != EventSourced {
			continue
		}
		if _, found, err := feed.LoadConsumerPosition(ctx, callsConsumer, h.entityType()); err == nil && found {
			r.consumers.startCalls(h.entityType(), true)
		} else if err != nil {
			r.log.Warn("cannot check for calls to resume; they resume when a command sends one", "entity", h.entityType(), "error", err)
		}
	}
}

func validateConsumers(consumers []*Consumer) []error {
	var errs []error
	seen := map[string]bool{}
	for _, c := range consumers {
		switch {
		case c == nil:
			errs = append(errs, fmt.Errorf("nil consumer; pass the value of a generated constructor"))
		case c.err != nil:
			errs = append(errs, c.err)
		case strings.HasPrefix(c.cfg.Name, "statefun"):
			errs = append(errs, fmt.Errorf("consumer name %q is reserved (names starting with \"statefun\" are the runtime's); rename the consumer", c.cfg.Name))
		case seen[c.cfg.Name]:
			errs = append(errs, fmt.Errorf("consumer %q is registered twice; each consumer runs once", c.cfg.Name))
		default:
			seen[c.cfg.Name] = true
		}
	}
	return errs
}

func (s *consumerSet) start(cfg ConsumerConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	runner := newConsumerRunner(cfg, s.feed, s.rt.conn, s.rt.log)
	s.runners[cfg.Name+"/"+cfg.EntityType] = runner
	pos, err := runner.start(s.ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		runner.run(s.ctx, pos, err)
	}()
}

// startCalls starts the dispatcher of the calls that commands of
// entityType send, once per entity type. recorded says the dispatcher
// already has a stored position, which must be resumed, not reset.
func (s *consumerSet) startCalls(entityType string, recorded bool) {
	s.mu.Lock()
	started := s.calls[entityType]
	s.calls[entityType] = true
	s.mu.Unlock()
	if started {
		return
	}
	// Record a position at once, so that from now on a restart resumes
	// the dispatcher even before a command sends a call.
	if !recorded {
		_, found, err := s.feed.LoadConsumerPosition(s.ctx, callsConsumer, entityType)
		if err == nil && !found {
			err = s.feed.SaveConsumerPosition(s.ctx, callsConsumer, entityType, "")
		}
		if err != nil {
			s.rt.log.Warn("cannot record the calls dispatcher; a restart resumes it with the next call sent", "entity", entityType, "error", err)
		}
	}
	s.start(ConsumerConfig{Name: callsConsumer, EntityType: entityType, Handle: s.dispatchCall})
}

// dispatchCall makes one stored call. Calls that fail for a reason a retry
// may cure (the target is unavailable, overloaded, fenced or slow) are
// retried with backoff; other failures are the target's answer to this
// call, and are logged and not retried.
func (s *consumerSet) dispatchCall(ec *EventContext, eventType string, payload []byte) error {
	if eventType != callEventType {
		return nil
	}
	call, err := decodeCall(payload)
	if err != nil {
		s.rt.log.Error("stored call dropped", "entity", ec.entityID, "seq", ec.seq, "error", err)
		return nil
	}
	err = s.rt.conn.invokeEncoded(ec.ctx, call.method, call.request)
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		return err
	default:
		s.rt.log.Warn("sent call refused by its target; not retried", "from", ec.entityID, "seq", ec.seq, "method", call.method, "error", err)
		return nil
	}
}

// notify tells every consumer that events were committed.
func (s *consumerSet) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runners {
		r.notify()
	}
}

func (s *consumerSet) stop() {
	s.cancel()
	s.wg.Wait()
}
