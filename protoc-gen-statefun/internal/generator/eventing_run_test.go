package generator_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/testdata/eventing"
)

// fulfillments implements the Fulfillment entity of testdata/eventing:
// each command records the entity it reached, so that a test sees which
// entity the generated glue addressed.
type fulfillments struct{}

func (fulfillments) Open(ctx *eventing.FulfillmentContext, _ *eventing.Fulfillment, req *eventing.OrderPlaced) (*eventing.Fulfillment, error) {
	next := &eventing.Fulfillment{CustomerId: req.GetCustomerId(), Status: "open:" + ctx.EntityID()}
	ctx.SetState(next)
	return next, nil
}

func (fulfillments) Track(ctx *eventing.FulfillmentContext, state *eventing.Fulfillment, req *eventing.TrackingUpdate) (*eventing.Fulfillment, error) {
	next := proto.Clone(state).(*eventing.Fulfillment)
	next.Status = req.GetStatus()
	ctx.SetState(next)
	return next, nil
}

func (fulfillments) Note(ctx *eventing.FulfillmentContext, state *eventing.Fulfillment, req *eventing.CarrierNote) (*eventing.Fulfillment, error) {
	next := proto.Clone(state).(*eventing.Fulfillment)
	next.Notes = append(next.Notes, req.GetText())
	ctx.SetState(next)
	return next, nil
}

func (fulfillments) Get(_ *eventing.FulfillmentReadContext, state *eventing.Fulfillment, _ *eventing.GetFulfillmentRequest) (*eventing.Fulfillment, error) {
	return state, nil
}

// TestSubjectKeyGlue hosts the generated Fulfillment entity, whose Open
// request has no key fields, and checks that its generated server takes
// the entity from the ce-subject metadata (statefun.SubjectKey), that the
// generated client sends its id argument there, and that both refuse a
// call without one.
func TestSubjectKeyGlue(t *testing.T) {
	t.Parallel()
	rt, err := statefun.New([]*statefun.Entity{eventing.NewFulfillment(fulfillments{})}, statefun.WithoutSubscriptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := &countingConn{ClientConnInterface: rt.ClientConn()}
	client := eventing.NewFulfillmentEntityClient(conn)
	get := func(id string) *eventing.Fulfillment {
		t.Helper()
		f, err := client.Get(ctx, &eventing.GetFulfillmentRequest{OrderId: id})
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		return f
	}

	opened, err := client.Open(ctx, "o-1", &eventing.OrderPlaced{CustomerId: "c-1"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if opened.GetStatus() != "open:o-1" {
		t.Errorf("Open reached %q, want entity o-1", opened.GetStatus())
	}
	if got := get("o-1"); got.GetStatus() != "open:o-1" || got.GetCustomerId() != "c-1" {
		t.Errorf("entity o-1 after Open: %v", got)
	}

	// A subject the caller set already is replaced, not doubled: the
	// server refuses two.
	preset := metadata.AppendToOutgoingContext(ctx, statefun.SubjectHeader, "o-other")
	if _, err := client.Open(preset, "o-2", &eventing.OrderPlaced{CustomerId: "c-2"}); err != nil {
		t.Fatalf("Open with a subject already in the context: %v", err)
	}
	if got := get("o-2"); got.GetStatus() != "open:o-2" {
		t.Errorf("entity o-2 after Open: %v", got)
	}
	if got := get("o-other"); got.GetStatus() != "" {
		t.Errorf("Open reached o-other, the context's subject, not the id argument: %v", got)
	}

	before := conn.calls.Load()
	if _, err := client.Open(ctx, "", &eventing.OrderPlaced{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("client Open without an id: %v, want InvalidArgument", err)
	}
	if n := conn.calls.Load() - before; n != 0 {
		t.Errorf("client Open without an id sent %d calls; it must fail before sending", n)
	}
	// The server glue itself, called without the metadata (as the gRPC
	// client protoc-gen-go-grpc generates would): SubjectKey refuses it.
	raw := eventing.NewFulfillmentServiceClient(rt.ClientConn())
	if _, err := raw.Open(ctx, &eventing.OrderPlaced{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), statefun.SubjectHeader) {
		t.Errorf("Open without %s metadata: %v, want InvalidArgument naming it", statefun.SubjectHeader, err)
	}
	withSubject := metadata.AppendToOutgoingContext(ctx, statefun.SubjectHeader, "o-3")
	if f, err := raw.Open(withSubject, &eventing.OrderPlaced{}); err != nil || f.GetStatus() != "open:o-3" {
		t.Errorf("Open with %s o-3: %v, %v", statefun.SubjectHeader, f, err)
	}

	// Methods with key fields keep their keys, next to it.
	if _, err := client.Track(ctx, &eventing.TrackingUpdate{OrderId: "o-1", Status: "shipped"}); err != nil {
		t.Fatalf("Track: %v", err)
	}
	if got := get("o-1"); got.GetStatus() != "shipped" {
		t.Errorf("entity o-1 after Track: %v", got)
	}
}

// countingConn counts the unary calls sent through it.
type countingConn struct {
	grpc.ClientConnInterface
	calls atomic.Int64
}

func (c *countingConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	c.calls.Add(1)
	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

// recordingTB is a statefun.TB that records a fatal failure instead of
// ending the test.
type recordingTB struct{ failed []string }

func (*recordingTB) Helper() {}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

// TestSubjectKeyTestKit checks the testkit method of a method whose
// request has no key fields: it takes the entity ID as an argument, and a
// test without one fails, as the server refuses such a call.
func TestSubjectKeyTestKit(t *testing.T) {
	t.Parallel()
	tk := eventing.NewFulfillmentTestKit(t, fulfillments{})
	tk.Open("o-1", &eventing.OrderPlaced{CustomerId: "c-1"}).WantReply(&eventing.Fulfillment{CustomerId: "c-1", Status: "open:o-1"})
	tk.WantState(&eventing.Fulfillment{CustomerId: "c-1", Status: "open:o-1"})

	rec := &recordingTB{}
	eventing.NewFulfillmentTestKit(rec, fulfillments{}).Open("", &eventing.OrderPlaced{})
	if len(rec.failed) != 1 || !strings.Contains(rec.failed[0], statefun.SubjectHeader) {
		t.Errorf("testkit Open without an id: failures %q, want one naming %s", rec.failed, statefun.SubjectHeader)
	}
}
