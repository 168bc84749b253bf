package statefun

import (
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
)

// Runtime hosts a set of entity types and serves them as gRPC services.
type Runtime struct {
	log      *slog.Logger
	store    *memoryStore
	services []boundService
	conn     *localConn
}

type boundService struct {
	desc *grpc.ServiceDesc
	impl any
}

// Option configures a Runtime.
type Option interface{ apply(*Runtime) }

type optionFunc func(*Runtime)

func (f optionFunc) apply(r *Runtime) { f(r) }

// WithLogger sets the logger for runtime events (entity resets, handler
// panics). The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(r *Runtime) { r.log = l })
}

// New returns a runtime hosting entities, the values of generated
// constructors such as NewShoppingCart. It reports every invalid or
// duplicate entity type at once.
func New(entities []*Entity, opts ...Option) (*Runtime, error) {
	r := &Runtime{log: slog.Default(), store: newMemoryStore()}
	for _, o := range opts {
		o.apply(r)
	}
	var errs []error
	seen := map[string]bool{}
	for _, e := range entities {
		switch {
		case e == nil:
			errs = append(errs, errors.New("nil entity; pass the value of a generated constructor such as NewShoppingCart"))
			continue
		case e.err != nil:
			errs = append(errs, e.err)
			continue
		case seen[e.typ]:
			errs = append(errs, fmt.Errorf("entity type %q is registered twice; each entity type may be hosted once", e.typ))
			continue
		}
		seen[e.typ] = true
		r.services = append(r.services, boundService{desc: e.service, impl: e.bind(r)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("statefun: %w", err)
	}
	r.conn = newLocalConn(r.services)
	return r, nil
}

// RegisterServices registers the entities' gRPC services with s, a
// *grpc.Server or any other registrar.
func (r *Runtime) RegisterServices(s grpc.ServiceRegistrar) {
	for _, svc := range r.services {
		s.RegisterService(svc.desc, svc.impl)
	}
}

// ClientConn returns a connection that calls the hosted entities in
// process, without a network or a server. Generated clients accept it:
//
//	cart := cartv1.NewShoppingCartClient(rt.ClientConn())
//
// Requests and replies are copied, as they would be over the wire.
func (r *Runtime) ClientConn() grpc.ClientConnInterface { return r.conn }
