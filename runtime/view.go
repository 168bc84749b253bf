package statefun

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// ViewConfig describes a view to the runtime. Generated code fills it in;
// programs do not build it by hand.
type ViewConfig struct {
	// Name is the view's stable name.
	Name string
	// Version is the version of its rows; 0 means 1.
	Version int
	// EntityType is the stored type name of the source entity.
	EntityType string
	// Service is the gRPC service whose methods query the view.
	Service *grpc.ServiceDesc
	// NewRow returns an empty row message.
	NewRow func() proto.Message
	// Update applies one stored event of the source to its entity's row:
	// row is the current row, or a new empty one when the entity has none
	// (ctx.Exists tells which). It returns the new row (row itself,
	// changed in place, will do), or nil to delete the row; an event it
	// has no handler for returns row as it is. An error is retried with
	// backoff, like a consumer's.
	Update func(ctx *ViewUpdateContext, row proto.Message, eventType string, payload []byte) (proto.Message, error)
	// Queries are the view's query RPCs, in declaration order: QueryView
	// and StreamView name one by its index.
	Queries []ViewQueryConfig
	// NewService returns the gRPC service implementation bound to a host.
	NewService func(*ViewHost) any
}

// ViewQueryConfig describes one query RPC of a view.
type ViewQueryConfig struct {
	// Method is the RPC's name, as in the proto ("CartsByCustomer").
	Method string
	// Query is the query, as in the proto's (statefun.v1.method).query.
	Query string
	// Request is an empty request message, for its descriptor.
	Request proto.Message
	// Response is an empty response message of a unary RPC, for its
	// descriptor: one repeated field of rows, and an optional
	// next_page_token. Nil for a server-streaming RPC.
	Response proto.Message
}

// View is a view ready to be served: the value a generated constructor
// such as NewCartsByCustomer returns. Pass it to Main, or to New with
// WithViews.
type View struct {
	cfg ViewConfig
	err error
}

func (*View) isComponent() {}

// NewView turns a configuration into a View. Generated code calls it; a
// configuration error is reported by New.
func NewView(cfg ViewConfig) *View {
	return &View{cfg: cfg, err: errors.New("views are not written yet")}
}

// Name returns the view's stable name.
func (v *View) Name() string { return v.cfg.Name }

// WithViews adds views to the runtime: values of generated constructors
// such as NewCartsByCustomer.
func WithViews(views ...*View) Option {
	return optionFunc(func(c *config) {})
}

// ViewHost serves one view's queries: generated query handlers call
// QueryView and StreamView with it.
type ViewHost struct {
	rt   *Runtime
	view *View
}

// ViewUpdateContext is what a view's update handler gets with each event.
type ViewUpdateContext struct {
	ctx      context.Context
	entityID string
	seq      int64
	exists   bool
}

// Context returns the context of the update; it ends when the runtime
// stops.
func (c *ViewUpdateContext) Context() context.Context { return c.ctx }

// EntityID returns the ID of the source entity whose event this is: the
// row's key.
func (c *ViewUpdateContext) EntityID() string { return c.entityID }

// Seq returns the event's position in its entity's history, from 1.
func (c *ViewUpdateContext) Seq() int64 { return c.seq }

// Exists reports whether the entity had a row before this event.
func (c *ViewUpdateContext) Exists() bool { return c.exists }

// QueryView answers a unary query RPC: the query at index query of the
// view's configuration, bound to req.
func QueryView[Req, Resp proto.Message](ctx context.Context, h *ViewHost, query int, req Req) (Resp, error) {
	var zero Resp
	return zero, errors.New("views are not written yet")
}

// StreamView answers a server-streaming query RPC: send is called with
// each matching row, in the query's order.
func StreamView[Req, Row proto.Message](ctx context.Context, h *ViewHost, query int, req Req, send func(Row) error) error {
	return errors.New("views are not written yet")
}
