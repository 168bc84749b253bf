package statefun

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/runtime/internal/journal"
	"github.com/statefun-go/statefun/runtime/store"
)

// Tracing. Every span starts behind a check of Runtime.tracer, which is
// nil unless a recording provider was given: with tracing off a request
// makes no span, no context and no allocation for it (BENCHMARKS.md,
// "Tracing overhead"). The spans, in the order a command meets them:
//
//	<package.Service>/<Method>   server: one per entity command or read
//	├─ statefun.forward          client: the call sent to the shard's owner (a cluster)
//	├─ statefun.load             the entity's load: snapshot and replay
//	├─ statefun.handler          the user's handler
//	└─ statefun.durability_wait  the output gate: the wait for the commit
//	statefun.commit              one store transaction of the journal writer
//	statefun.consumer.deliver    consumer: one delivery of an event to a consumer
//	statefun.call.deliver        consumer: one attempt to make a sent call
//
// Trace context crosses process boundaries with the W3C traceparent,
// tracestate and baggage headers: as gRPC metadata on a forwarded call,
// and stored with a sent call, so that its delivery continues the sending
// command's trace also after a restart or on another node.
//
// Timers are not built yet. A timer should carry its trace context the way
// a sent call does: traceContext(ctx) stored with the timer when a command
// schedules it, and propagator.Extract of that before the span of its
// firing starts, as dispatchCall does.

// instrumentationName names statefun's tracer to the provider.
const instrumentationName = "github.com/statefun-go/statefun/runtime"

// WithTracerProvider makes the runtime trace its requests, loads, commits
// and deliveries with tp (see the package's README, "Tracing and logs").
// The default is OpenTelemetry's no-op provider, not the global one: a
// library that starts tracing because some other package set the global
// provider surprises its user, and costs them. statefun.Main sets a
// provider from the OTEL_* environment variables. The runtime does not
// shut tp down; flush it after Runtime.Close, which may still commit.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tracerProvider = tp })
}

// newTracer returns the runtime's tracer, or nil when tp records nothing.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(Version))
}

// propagator reads and writes W3C trace context and baggage. It is fixed,
// not the global one, for the reason WithTracerProvider gives.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Attribute keys of statefun's spans; the rpc.* keys are OpenTelemetry's
// semantic conventions for RPC.
const (
	attrEntityType   = attribute.Key("statefun.entity.type")
	attrEntityID     = attribute.Key("statefun.entity.id")
	attrRPCSystem    = attribute.Key("rpc.system")
	attrRPCService   = attribute.Key("rpc.service")
	attrRPCMethod    = attribute.Key("rpc.method")
	attrGRPCCode     = attribute.Key("rpc.grpc.status_code")
	attrServerAddr   = attribute.Key("server.address")
	attrBatchSize    = attribute.Key("statefun.batch.size")
	attrBatchCmds    = attribute.Key("statefun.batch.commits")
	attrReplayed     = attribute.Key("statefun.load.events_replayed")
	attrFromSnapshot = attribute.Key("statefun.load.from_snapshot")
	attrConsumer     = attribute.Key("statefun.consumer")
	attrEventSeq     = attribute.Key("statefun.event.seq")
	attrEventType    = attribute.Key("statefun.event.type")
	attrAttempt      = attribute.Key("statefun.delivery.attempt")
)

// observed runs call, one request for entity id, inside its server span
// and logs it at debug level. Command and Read call it only when tracing
// is on or debug logging is enabled, so that otherwise a request pays for
// neither.
func observed[R any](ctx context.Context, r *Runtime, entityType, id string, call func(context.Context) (R, error)) (R, error) {
	method, _ := grpc.Method(ctx)
	var span trace.Span
	if r.tracer != nil {
		ctx, span = r.startRequest(ctx, method, entityType, id)
	}
	start := time.Now()
	reply, err := call(ctx)
	code := status.Code(err)
	if span != nil {
		span.SetAttributes(attrGRPCCode.Int64(int64(code)))
		endSpan(span, code, err)
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.LogAttrs(ctx, slog.LevelDebug, "request",
			slog.String("method", method), slog.String("entity", entityType), slog.String("id", id),
			slog.Duration("duration", time.Since(start)), slog.String("code", code.String()))
	}
	return reply, err
}

// startRequest starts the server span of a request. Its parent is the
// span in ctx (an in-process caller: a consumer, a sent call's delivery,
// a handler calling another entity), else the trace context in the
// incoming metadata (a gRPC client, or the node that forwarded the call).
func (r *Runtime) startRequest(ctx context.Context, method, entityType, id string) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			ctx = propagator.Extract(ctx, mdCarrier(md))
		}
	}
	return r.tracer.Start(ctx, strings.TrimPrefix(method, "/"), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		rpcAttributes(method, attrEntityType.String(entityType), attrEntityID.String(id))...))
}

// rpcAttributes returns OpenTelemetry's RPC attributes of the gRPC method
// full ("/package.Service/Method"), followed by more.
func rpcAttributes(full string, more ...attribute.KeyValue) []attribute.KeyValue {
	service, method, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	return append([]attribute.KeyValue{attrRPCSystem.String("grpc"), attrRPCService.String(service), attrRPCMethod.String(method)}, more...)
}

// endSpan ends span with the outcome code. As OpenTelemetry's RPC
// conventions say for a server, only codes that mean the server failed
// mark the span as an error: a refusal (NOT_FOUND, FAILED_PRECONDITION) is
// an answer.
func endSpan(span trace.Span, code codes.Code, err error) {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// waitDurable is the output gate (the package function) in a span of its
// own when tracing is on. The span links to the commit span that wrote c,
// which the writer records on c before c is done.
func (r *Runtime) waitDurable(ctx context.Context, c *journal.Commit) error {
	if r.tracer == nil || c == nil {
		return waitDurable(ctx, c)
	}
	ctx, span := r.tracer.Start(ctx, "statefun.durability_wait")
	err := waitDurable(ctx, c)
	// Only a finished commit's Trace.Commit may be read: the writer sets
	// it before it closes Done.
	if c.Trace != nil && isDone(c) && c.Trace.Commit.IsValid() {
		span.AddLink(trace.Link{SpanContext: c.Trace.Commit})
	}
	endSpan(span, status.Code(err), err)
	return err
}

// traceContext returns the trace context of ctx as stored text (W3C
// traceparent, tracestate, baggage), or nil when ctx has none.
func traceContext(ctx context.Context) propagation.MapCarrier {
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return nil
	}
	return carrier
}

// mdCarrier lets the propagator read and write gRPC metadata, whose keys
// are lowercase.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// emittedSpans remembers which span emitted each of the most recent
// events, so that a consumer's delivery span can link to the command that
// emitted the event. Events carry no trace context in the journal, and the
// journal's format is not changed for it, so the link exists only when it
// is known cheaply: for events this process emitted, recently (the last
// emittedSpanCap), while tracing. After a restart, or for an event emitted
// on another node of a cluster, the delivery span has no link.
type emittedSpans struct {
	mu     sync.Mutex
	byKey  map[eventKey]trace.SpanContext
	ring   []eventKey // made on first use: a runtime that is not traced pays nothing
	next   int
	filled bool
}

const emittedSpanCap = 4096

type eventKey struct {
	typ, id string
	seq     int64
}

func (e *emittedSpans) remember(events []store.Event, sc trace.SpanContext) {
	if !sc.IsSampled() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byKey == nil {
		e.byKey = make(map[eventKey]trace.SpanContext, emittedSpanCap)
		e.ring = make([]eventKey, emittedSpanCap)
	}
	for _, ev := range events {
		if e.filled {
			delete(e.byKey, e.ring[e.next])
		}
		k := eventKey{ev.Entity.Type, ev.Entity.ID, ev.Seq}
		e.ring[e.next] = k
		e.byKey[k] = sc
		e.next++
		if e.next == emittedSpanCap {
			e.next, e.filled = 0, true
		}
	}
}

func (e *emittedSpans) lookup(ev store.Event) (trace.SpanContext, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sc, ok := e.byKey[eventKey{ev.Entity.Type, ev.Entity.ID, ev.Seq}]
	return sc, ok
}
