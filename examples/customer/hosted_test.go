package main

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/statefun-go/statefun/examples/customer/gen/customer/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/memory"
)

// These tests host the entity in a runtime, in process, on an in-memory
// store: what the testkit leaves out.

func newRuntime(t *testing.T, opts ...statefun.Option) (*statefun.Runtime, *customerv1.CustomerEntityClient) {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{customerv1.NewCustomer(Customer{})}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt, customerv1.NewCustomerEntityClient(rt.ClientConn())
}

// TestRecordSurvivesRestart stores a record with one runtime and loads it
// into a second: the latest version, still counting as created.
func TestRecordSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := memory.New()
	rt, customers := newRuntime(t, statefun.WithStore(st))
	if _, err := customers.Create(ctx, createAda()); err != nil {
		t.Fatal(err)
	}
	if _, err := customers.ChangeAddress(ctx, &customerv1.ChangeAddressRequest{CustomerId: "c1", Address: work()}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	_, customers = newRuntime(t, statefun.WithStore(st))
	got, err := customers.Get(ctx, &customerv1.GetRequest{CustomerId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	want := ada()
	want.Address = work()
	if !proto.Equal(got, want) {
		t.Errorf("customer after restart:\n got: %v\nwant: %v", got, want)
	}
	_, err = customers.Create(ctx, createAda())
	wantError(t, err, codes.AlreadyExists, "customer c1 already exists")
}

// TestMissingCustomerID checks that a request without its key is refused
// before it reaches a handler.
func TestMissingCustomerID(t *testing.T) {
	t.Parallel()
	_, customers := newRuntime(t)
	_, err := customers.Get(t.Context(), &customerv1.GetRequest{})
	wantError(t, err, codes.InvalidArgument, "field customer_id of customer.v1.GetRequest is empty")
}
