package statefun_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/consumer"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// newTracer returns a tracer provider that records every span in memory.
// Register it before the runtime that uses it: cleanups run last first,
// so the runtime closes (and commits) before the provider shuts down.
func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	})
	return tp, exp
}

const addItemSpan = "statefun.testdata.eventsourced.ShoppingCart/AddItem"

// spansNamed returns the ended spans called name, in the order they ended.
func spansNamed(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// spanOf returns the one span called name of the entity id.
func spanOf(t *testing.T, exp *tracetest.InMemoryExporter, name, id string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spansNamed(exp, name) {
		if v, ok := attr(s, "statefun.entity.id"); ok && v.AsString() == id {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %s of entity %s, want 1; spans: %v", len(found), name, id, names(exp))
	}
	return found[0]
}

// childOf returns the one span called name whose parent is parent.
func childOf(t *testing.T, exp *tracetest.InMemoryExporter, name string, parent tracetest.SpanStub) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spansNamed(exp, name) {
		if s.Parent.SpanID() == parent.SpanContext.SpanID() && s.SpanContext.TraceID() == parent.SpanContext.TraceID() {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %s under %s, want 1; spans: %v", len(found), name, parent.Name, names(exp))
	}
	return found[0]
}

func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, s tracetest.SpanStub, key attribute.Key, want any) {
	t.Helper()
	v, ok := attr(s, key)
	if !ok {
		t.Errorf("span %s has no attribute %s; it has %v", s.Name, key, s.Attributes)
		return
	}
	if got := v.AsInterface(); got != want {
		t.Errorf("span %s: %s = %v (%T), want %v (%T)", s.Name, key, got, got, want, want)
	}
}

func linksTo(s tracetest.SpanStub, sc trace.SpanContext) bool {
	for _, l := range s.Links {
		if l.SpanContext.SpanID() == sc.SpanID() && l.SpanContext.TraceID() == sc.TraceID() {
			return true
		}
	}
	return false
}

func names(exp *tracetest.InMemoryExporter) []string {
	var out []string
	for _, s := range exp.GetSpans() {
		out = append(out, s.Name)
	}
	return out
}

// TestTraceCommand: a command's request span has the handler, the load
// (on first use) and the durability wait as children; the commit span that
// wrote it is a child of it, carries the batch size, and the wait links to
// it. Fails without the Trace that command attaches to its commit
// (host.go, "commit.Trace = &journal.Trace{...}"): no commit span at all.
func TestTraceCommand(t *testing.T) {
	t.Parallel()
	tp, exp := newTracer(t)
	rt := newRuntime(t, statefun.WithTracerProvider(tp))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	if _, err := carts.AddItem(testContext(t), &cart.AddItemRequest{CartId: "c1", Sku: "pair", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	req := spanOf(t, exp, addItemSpan, "c1")
	if req.SpanKind != trace.SpanKindServer {
		t.Errorf("request span kind %v, want server", req.SpanKind)
	}
	wantAttr(t, req, "statefun.entity.type", cart.ShoppingCartEntityType)
	wantAttr(t, req, "rpc.method", "AddItem")
	wantAttr(t, req, "rpc.service", "statefun.testdata.eventsourced.ShoppingCart")
	wantAttr(t, req, "rpc.grpc.status_code", int64(0))

	childOf(t, exp, "statefun.handler", req)
	load := childOf(t, exp, "statefun.load", req)
	wantAttr(t, load, "statefun.load.events_replayed", int64(0))
	wantAttr(t, load, "statefun.load.from_snapshot", false)
	wait := childOf(t, exp, "statefun.durability_wait", req)
	commit := childOf(t, exp, "statefun.commit", req)
	wantAttr(t, commit, "statefun.batch.size", int64(2)) // "pair" emits two events
	wantAttr(t, commit, "statefun.batch.commits", int64(1))
	if !linksTo(wait, commit.SpanContext) {
		t.Errorf("the durability wait does not link to the commit span: links %v", wait.Links)
	}

	// A failed command's code is on its span.
	_ = add(testContext(t), carts, "c1", "x", -1)
	failed := spansNamed(exp, addItemSpan)
	wantAttr(t, failed[len(failed)-1], "rpc.grpc.status_code", int64(3)) // INVALID_ARGUMENT
}

// TestTraceCommitSpanLinksItsBatch: a batch that carries several
// requests' commits has one commit span, a child of the first request,
// linking to the others; each request's wait links to it. Fails without
// the links in startCommitSpan (internal/journal/writer.go).
func TestTraceCommitSpanLinksItsBatch(t *testing.T) {
	t.Parallel()
	tp, exp := newTracer(t)
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithTracerProvider(tp), statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	ids := []string{"b1", "b2", "b3", "b4"}
	for _, id := range ids {
		if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: id}); err != nil { // loaded before the batch
			t.Fatal(err)
		}
	}
	drain(fs)
	fs.hold(t)
	first := async(func() error { return add(ctx, carts, "b1", "x", 1) })
	<-fs.entered // b1's commit is with the store; the others queue behind it
	var rest []*result
	for _, id := range ids[1:] {
		rest = append(rest, async(func() error { return add(ctx, carts, id, "x", 1) }))
	}
	eventually(t, "three commits to queue", func() bool { return rt.Stats().Journal.Queued == 3 })
	fs.release()
	for _, r := range append(rest, first) {
		if err := r.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	var batch tracetest.SpanStub
	for _, c := range spansNamed(exp, "statefun.commit") {
		if v, _ := attr(c, "statefun.batch.commits"); v.AsInt64() == 3 {
			batch = c
		}
	}
	if !batch.SpanContext.IsValid() {
		t.Fatalf("no commit span of 3 commits; spans: %v", names(exp))
	}
	wantAttr(t, batch, "statefun.batch.size", int64(3))
	parents, links := 0, 0
	for _, id := range ids[1:] {
		req := spanOf(t, exp, addItemSpan, id)
		switch {
		case batch.Parent.SpanID() == req.SpanContext.SpanID():
			parents++
		case linksTo(batch, req.SpanContext):
			links++
		}
		if wait := childOf(t, exp, "statefun.durability_wait", req); !linksTo(wait, batch.SpanContext) {
			t.Errorf("%s's durability wait does not link to its commit span", id)
		}
	}
	if parents != 1 || links != 2 {
		t.Errorf("the commit span is the child of %d requests and links to %d, want 1 and 2", parents, links)
	}
}

// TestTraceLoadReplay: the load span says how many events were replayed
// and whether a snapshot was the start. Fails without the counting in
// load (host.go, "info.replayed++").
func TestTraceLoadReplay(t *testing.T) {
	t.Parallel()
	tp, exp := newTracer(t)
	st := memory.New()
	ctx := testContext(t)
	write := func(id string, from, to int64) {
		var b store.Batch
		for seq := from; seq <= to; seq++ {
			b.Events = append(b.Events, store.Event{Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: id}, Seq: seq, EventType: "ItemAdded", Payload: itemAddedPayload})
		}
		if err := st.Commit(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	write("plain", 1, 3)
	write("snapped", 1, 5)
	if err := st.SaveSnapshot(ctx, store.Snapshot{Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: "snapped"}, Seq: 4}); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, statefun.WithTracerProvider(tp), statefun.WithStore(st))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	for _, id := range []string{"plain", "snapped"} {
		if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: id}); err != nil {
			t.Fatal(err)
		}
	}
	plain := spanOf(t, exp, "statefun.load", "plain")
	wantAttr(t, plain, "statefun.load.events_replayed", int64(3))
	wantAttr(t, plain, "statefun.load.from_snapshot", false)
	snapped := spanOf(t, exp, "statefun.load", "snapped")
	wantAttr(t, snapped, "statefun.load.events_replayed", int64(1))
	wantAttr(t, snapped, "statefun.load.from_snapshot", true)
}

// TestTraceSentCallContinuesTrace: a call a command sends is delivered in
// the sending command's trace, and so is the target's request span; also
// when a fresh runtime on the same store delivers it after a restart,
// from the trace context stored with the call. Fails without the trace
// context stored with each sent call (host.go, "tc = traceContext(cc.ctx)").
func TestTraceSentCallContinuesTrace(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := testContext(t)
	tp1, exp1 := newTracer(t)
	first, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st), statefun.WithTracerProvider(tp1))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(first.ClientConn())
	if err := add(ctx, carts, "c1", "x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c1"}); err != nil {
		t.Fatal(err)
	}
	checkout := spanOf(t, exp1, "statefun.testdata.eventsourced.ShoppingCart/Checkout", "c1")
	sent := checkout.SpanContext.TraceID()
	eventually(t, "the call's delivery span", func() bool { return len(spansNamed(exp1, "statefun.call.deliver")) == 1 })
	deliver := spansNamed(exp1, "statefun.call.deliver")[0]
	if got := deliver.SpanContext.TraceID(); got != sent {
		t.Errorf("the call was delivered in trace %s, want the checkout's %s", got, sent)
	}
	eventually(t, "the archive's request span", func() bool { return len(spansNamed(exp1, addItemSpan)) == 2 })
	childOf(t, exp1, addItemSpan, deliver) // the archive's AddItem continues the delivery
	closeRuntime(t, first)

	// A restart before the dispatcher saved its position: the fresh
	// runtime delivers the call again, knowing it only from the store.
	if err := st.SaveConsumerPosition(ctx, "statefun.calls", cart.ShoppingCartEntityType, ""); err != nil {
		t.Fatal(err)
	}
	tp2, exp2 := newTracer(t)
	newRuntime(t, statefun.WithStore(st), statefun.WithTracerProvider(tp2))
	eventually(t, "the redelivery's span", func() bool { return len(spansNamed(exp2, "statefun.call.deliver")) == 1 })
	again := spansNamed(exp2, "statefun.call.deliver")[0]
	if got := again.SpanContext.TraceID(); got != sent {
		t.Errorf("after a restart the call was delivered in trace %s, want the checkout's %s", got, sent)
	}
	if !again.Parent.IsRemote() {
		t.Errorf("the redelivery's parent %v is not the stored (remote) span context", again.Parent)
	}
}

// TestTraceForwardedCall: a call made through a node that does not own
// the entity has, on that node, a request span with a forwarding client
// span under it, and on the owner a request span that is the client
// span's child: one trace. Fails without the traceparent put in the
// forwarded call's metadata (cluster.go, "propagator.Inject(ctx, mdCarrier(md))").
func TestTraceForwardedCall(t *testing.T) {
	t.Parallel()
	st := memory.New()
	tpA, expA := newTracer(t)
	tpB, expB := newTracer(t)
	a := startNode(t, st, 5*time.Second, statefun.WithTracerProvider(tpA))
	b := startNode(t, st, 5*time.Second, statefun.WithTracerProvider(tpB))
	eventually(t, "the shards to spread", func() bool { return held(a) == 32 && held(b) == 32 })
	ctx := testContext(t)
	for c := range 20 {
		if err := add(ctx, a.carts, fmt.Sprint("cart", c), "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	forwards := spansNamed(expA, "statefun.forward")
	if len(forwards) == 0 {
		t.Fatalf("no call was forwarded from a; spans: %v", names(expA))
	}
	fwd := forwards[0]
	if fwd.SpanKind != trace.SpanKindClient {
		t.Errorf("forward span kind %v, want client", fwd.SpanKind)
	}
	wantAttr(t, fwd, "server.address", b.addr)
	var origin tracetest.SpanStub
	for _, s := range spansNamed(expA, addItemSpan) {
		if s.SpanContext.SpanID() == fwd.Parent.SpanID() {
			origin = s
		}
	}
	if !origin.SpanContext.IsValid() {
		t.Fatal("the forward span's parent is not a request span of the forwarding node")
	}
	remote := childOf(t, expB, addItemSpan, fwd)
	if remote.SpanContext.TraceID() != origin.SpanContext.TraceID() {
		t.Error("the owner's request span is in another trace")
	}
	if id, _ := attr(remote, "statefun.entity.id"); id.AsString() != fmt.Sprint(attrOr(origin, "statefun.entity.id")) {
		t.Errorf("the owner served %v, the forwarding node forwarded %v", id.AsString(), attrOr(origin, "statefun.entity.id"))
	}
}

func attrOr(s tracetest.SpanStub, key attribute.Key) any {
	v, _ := attr(s, key)
	return v.AsInterface()
}

// TestTraceConsumerDelivery: each delivery to a consumer has a span,
// linked to the handler span of the command that emitted the event when
// this process emitted it. Fails without emittedSpans.remember in stage
// (host.go): no link.
func TestTraceConsumerDelivery(t *testing.T) {
	t.Parallel()
	tp, exp := newTracer(t)
	rt := newRuntime(t, statefun.WithTracerProvider(tp), statefun.WithConsumers(consumer.NewCartAudit(newAudit())))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	if err := add(testContext(t), carts, "c1", "x", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery span", func() bool { return len(spansNamed(exp, "statefun.consumer.deliver")) == 1 })
	d := spansNamed(exp, "statefun.consumer.deliver")[0]
	if d.SpanKind != trace.SpanKindConsumer {
		t.Errorf("delivery span kind %v, want consumer", d.SpanKind)
	}
	wantAttr(t, d, "statefun.consumer", consumer.CartAuditConsumerName)
	wantAttr(t, d, "statefun.entity.id", "c1")
	wantAttr(t, d, "statefun.event.seq", int64(1))
	wantAttr(t, d, "statefun.event.type", "ItemAdded")
	handler := childOf(t, exp, "statefun.handler", spanOf(t, exp, addItemSpan, "c1"))
	if !linksTo(d, handler.SpanContext) {
		t.Errorf("the delivery span does not link to the handler that emitted the event: links %v", d.Links)
	}
}

// TestTracingOffMakesNoSpans: without WithTracerProvider a runtime makes
// no span, also when the caller's context carries one and a global
// provider is set: the default is the no-op provider, not the global one.
// Not parallel: it sets OpenTelemetry's global provider. Fails if New
// defaulted to otel.GetTracerProvider().
func TestTracingOffMakesNoSpans(t *testing.T) {
	tp, exp := newTracer(t)
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)
	rt := newRuntime(t)
	ctx, span := tp.Tracer("test").Start(testContext(t), "caller")
	if err := add(ctx, cart.NewShoppingCartEntityClient(rt.ClientConn()), "c1", "x", 1); err != nil {
		t.Fatal(err)
	}
	span.End()
	if got := names(exp); len(got) != 1 {
		t.Errorf("spans %v, want only the caller's", got)
	}
}

// TestHandlerPanicIsLoggedWithStack: a handler's panic is logged at error
// level with the panic's value, the call (entity, id, method) and the
// stack, down to the handler's frame. Fails without the stack taken in
// callHandler (host.go, "debug.Stack()").
func TestHandlerPanicIsLoggedWithStack(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	rt := newRuntime(t, statefun.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	_ = add(testContext(t), carts, "c1", "panic", 1)
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "handler panicked; the call fails") {
			line = l
		}
	}
	for _, want := range []string{
		"level=ERROR", `panic="handler bug"`, "entity=shopping-cart", "id=c1",
		"method=/statefun.testdata.eventsourced.ShoppingCart/AddItem",
		"runtime_test.cartEntity.AddItem(", // the handler's frame
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the panic's log line lacks %q:\n%s", want, line)
		}
	}
}

// panickingUnaryHandler stands for a gRPC handler outside any entity.
func panickingUnaryHandler(context.Context, any) (any, error) {
	panic("interceptor bug")
}

// TestRecoverInterceptorLogsStack: a panic the gRPC server's recover
// interceptor catches fails the call with INTERNAL and is logged at error
// level with the panic's value, the method and the stack, down to the
// handler's frame. Fails without the stack taken in recoverInterceptor
// (server.go, "debug.Stack()").
func TestRecoverInterceptorLogsStack(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	intercept := statefun.RecoverInterceptorForTest(slog.New(slog.NewTextHandler(&logs, nil)))
	_, err := intercept(testContext(t), nil, &grpc.UnaryServerInfo{FullMethod: "/statefun.test.Broken/Call"}, panickingUnaryHandler)
	wantCode(t, err, codes.Internal)
	line := logs.String()
	for _, want := range []string{
		"level=ERROR", `msg="panic serving a call"`, "method=/statefun.test.Broken/Call", `panic="interceptor bug"`,
		"runtime_test.panickingUnaryHandler(", // the handler's frame
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the panic's log line lacks %q:\n%s", want, line)
		}
	}
}

// TestDebugRequestLog: at debug level every request is logged once, with
// method, entity, id, duration and code; at info level none is. Fails
// without the debug line in observed (trace.go).
func TestDebugRequestLog(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var logs syncBuffer
		rt := newRuntime(t, statefun.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))))
		carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
		ctx := testContext(t)
		if err := add(ctx, carts, "c1", "x", 1); err != nil {
			t.Fatal(err)
		}
		_ = add(ctx, carts, "c1", "x", -1)
		if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c1"}); err != nil {
			t.Fatal(err)
		}
		var requests []string
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "msg=request ") {
				requests = append(requests, l)
			}
		}
		if level == slog.LevelInfo {
			if len(requests) > 0 {
				t.Errorf("requests logged at info level: %v", requests)
			}
			continue
		}
		if len(requests) != 3 {
			t.Fatalf("%d request lines, want 3:\n%s", len(requests), logs.String())
		}
		for i, want := range []string{
			"level=DEBUG msg=request method=/statefun.testdata.eventsourced.ShoppingCart/AddItem entity=shopping-cart id=c1 duration=",
			"method=/statefun.testdata.eventsourced.ShoppingCart/AddItem entity=shopping-cart id=c1 duration=",
			"method=/statefun.testdata.eventsourced.ShoppingCart/GetCart entity=shopping-cart id=c1 duration=",
		} {
			if !strings.Contains(requests[i], want) {
				t.Errorf("request line %d lacks %q:\n%s", i, want, requests[i])
			}
		}
		for i, code := range []string{"code=OK", "code=InvalidArgument", "code=OK"} {
			if !strings.HasSuffix(strings.TrimSpace(requests[i]), code) {
				t.Errorf("request line %d does not end with %s:\n%s", i, code, requests[i])
			}
		}
	}
}

// TestServerExportsTraces: statefun.Main's server exports spans over OTLP
// when OTEL_EXPORTER_OTLP_ENDPOINT is set, and flushes them when it stops.
// Not parallel: the OTLP exporter reads the process environment. Fails
// without the deferred stopTracing in serve (server.go): the batch
// exporter's spans are never sent.
func TestServerExportsTraces(t *testing.T) {
	received := make(chan []byte, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			received <- body
		}
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "trace-test")

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	prev := slog.Default()
	defer slog.SetDefault(prev) // Run makes its logger the default
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- statefun.Run(ctx, []string{"serve", "--listen", addr, "--http-listen", "", "--data-dir", ":memory:"},
			os.Getenv, io.Discard, &logs, cart.NewShoppingCart(cartEntity{}))
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	carts := cart.NewShoppingCartEntityClient(conn)
	callCtx := testContext(t)
	eventually(t, "the server to answer", func() bool { return add(callCtx, carts, "c1", "x", 1) == nil })
	stop()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("server exited %d:\n%s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not stop within 20s")
	}
	// The batch exporter sends nothing before the flush at shutdown.
	var all []byte
	for {
		select {
		case b := <-received:
			all = append(all, b...)
			continue
		default:
		}
		break
	}
	for _, want := range []string{addItemSpan, "statefun.commit", "trace-test"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("the collector did not receive %q (%d bytes received)", want, len(all))
		}
	}
}
