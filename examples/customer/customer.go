package main

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/statefun-go/statefun/examples/customer/gen/customer/v1"
)

// Customer implements the customer entity, a key-value entity: a command
// that changes the record builds a new one and hands it to ctx.SetState,
// which replaces the stored record whole. The record a handler is given is
// the entity's current state in memory: changing it in place would change
// the entity without storing anything, so handlers never do.
type Customer struct{}

var _ customerv1.CustomerHandler = Customer{}

// Create stores a new customer record.
func (Customer) Create(ctx *customerv1.CustomerContext, customer *customerv1.Customer, req *customerv1.CreateRequest) (*customerv1.Customer, error) {
	if strings.TrimSpace(req.GetName()) == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if !strings.Contains(req.GetEmail(), "@") {
		return nil, status.Errorf(codes.InvalidArgument, "email %q is not an email address: it has no '@'", req.GetEmail())
	}
	if exists(customer) {
		return nil, status.Errorf(codes.AlreadyExists, "customer %s already exists; use ChangeAddress to update it", ctx.EntityID())
	}
	created := &customerv1.Customer{
		CustomerId: ctx.EntityID(),
		Name:       req.GetName(),
		Email:      req.GetEmail(),
		Address:    req.GetAddress(),
	}
	ctx.SetState(created)
	return created, nil
}

// ChangeAddress replaces the address of an existing customer.
func (Customer) ChangeAddress(ctx *customerv1.CustomerContext, customer *customerv1.Customer, req *customerv1.ChangeAddressRequest) (*customerv1.Customer, error) {
	if req.GetAddress() == nil {
		return nil, status.Error(codes.InvalidArgument, "address is required")
	}
	if err := checkExists(ctx.EntityID(), customer); err != nil {
		return nil, err
	}
	// A copy, changed and handed over whole: customer itself stays as it
	// is, so a failure before SetState leaves nothing half changed.
	moved := proto.CloneOf(customer)
	moved.Address = req.GetAddress()
	ctx.SetState(moved)
	return moved, nil
}

// Get returns an existing customer.
func (Customer) Get(ctx *customerv1.CustomerReadContext, customer *customerv1.Customer, _ *customerv1.GetRequest) (*customerv1.Customer, error) {
	if err := checkExists(ctx.EntityID(), customer); err != nil {
		return nil, err
	}
	return customer, nil
}

// exists tells a created customer from the empty record the runtime gives
// for a key that was never written.
func exists(customer *customerv1.Customer) bool {
	return customer.GetCustomerId() != ""
}

func checkExists(id string, customer *customerv1.Customer) error {
	if !exists(customer) {
		return status.Errorf(codes.NotFound, "customer %s does not exist; create it first", id)
	}
	return nil
}
