package main

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/statefun-go/statefun/examples/customer/gen/customer/v1"
)

// The unit tests run the handlers in the generated testkit: given a state,
// when a command, then its reply or status code and the state it set. The
// testkit also fails a test whose handler changes its state argument
// instead of setting a new state.

func home() *customerv1.Address {
	return &customerv1.Address{Street: "Damrak 1", City: "Amsterdam", PostalCode: "1012 LG", Country: "NL"}
}

func work() *customerv1.Address {
	return &customerv1.Address{Street: "Unter den Linden 5", City: "Berlin", PostalCode: "10117", Country: "DE"}
}

// ada is customer c1, as created from createAda.
func ada() *customerv1.Customer {
	return &customerv1.Customer{CustomerId: "c1", Name: "Ada Lovelace", Email: "ada@example.com", Address: home()}
}

func createAda() *customerv1.CreateRequest {
	return &customerv1.CreateRequest{CustomerId: "c1", Name: "Ada Lovelace", Email: "ada@example.com", Address: home()}
}

// existingAda returns a testkit holding customer c1.
func existingAda(t *testing.T) *customerv1.CustomerTestKit {
	t.Helper()
	kit := customerv1.NewCustomerTestKit(t, Customer{})
	kit.GivenState(ada())
	return kit
}

// wantError checks the status code of err and that its message mentions
// part.
func wantError(t *testing.T, err error, code codes.Code, part string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, part) {
		t.Errorf("message %q does not mention %q", msg, part)
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	kit := customerv1.NewCustomerTestKit(t, Customer{})
	res := kit.Create(createAda())
	res.WantReply(ada())
	kit.WantState(ada())
	kit.Get(&customerv1.GetRequest{CustomerId: "c1"}).WantReply(ada())
}

func TestCreateWithoutAddress(t *testing.T) {
	t.Parallel()
	kit := customerv1.NewCustomerTestKit(t, Customer{})
	kit.Create(&customerv1.CreateRequest{CustomerId: "c2", Name: "Grace Hopper", Email: "grace@example.com"}).
		WantReply(&customerv1.Customer{CustomerId: "c2", Name: "Grace Hopper", Email: "grace@example.com"})
}

func TestCreateRefusesInvalidInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		req     *customerv1.CreateRequest
		wantMsg string
	}{
		{"empty name", &customerv1.CreateRequest{Email: "ada@example.com"}, "name is required"},
		{"blank name", &customerv1.CreateRequest{Name: " \t", Email: "ada@example.com"}, "name is required"},
		{"email without @", &customerv1.CreateRequest{Name: "Ada Lovelace", Email: "ada.example.com"}, `email "ada.example.com" is not an email address`},
		{"empty email", &customerv1.CreateRequest{Name: "Ada Lovelace"}, `email "" is not an email address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kit := customerv1.NewCustomerTestKit(t, Customer{})
			tt.req.CustomerId = "c1"
			res := kit.Create(tt.req)
			wantError(t, res.Err(), codes.InvalidArgument, tt.wantMsg)
			// Nothing was stored.
			kit.WantState(&customerv1.Customer{})
			kit.Get(&customerv1.GetRequest{CustomerId: "c1"}).WantCode(codes.NotFound)
		})
	}
}

func TestCreateTwice(t *testing.T) {
	t.Parallel()
	kit := existingAda(t)
	res := kit.Create(&customerv1.CreateRequest{CustomerId: "c1", Name: "Someone Else", Email: "else@example.com"})
	wantError(t, res.Err(), codes.AlreadyExists, "customer c1 already exists")
	kit.WantState(ada())
}

func TestChangeAddress(t *testing.T) {
	t.Parallel()
	kit := existingAda(t)
	want := ada()
	want.Address = work()

	res := kit.ChangeAddress(&customerv1.ChangeAddressRequest{CustomerId: "c1", Address: work()})
	res.WantReply(want)
	kit.WantState(want)
	kit.Get(&customerv1.GetRequest{CustomerId: "c1"}).WantReply(want)
}

func TestChangeAddressOfAbsentCustomer(t *testing.T) {
	t.Parallel()
	kit := customerv1.NewCustomerTestKit(t, Customer{})
	res := kit.ChangeAddress(&customerv1.ChangeAddressRequest{CustomerId: "nobody", Address: work()})
	wantError(t, res.Err(), codes.NotFound, "customer nobody does not exist")
	// Changing the address does not create the customer.
	kit.WantState(&customerv1.Customer{})
}

func TestChangeAddressToNothing(t *testing.T) {
	t.Parallel()
	kit := existingAda(t)
	res := kit.ChangeAddress(&customerv1.ChangeAddressRequest{CustomerId: "c1"})
	wantError(t, res.Err(), codes.InvalidArgument, "address is required")
	kit.WantState(ada())
}

func TestGet(t *testing.T) {
	t.Parallel()
	existingAda(t).Get(&customerv1.GetRequest{CustomerId: "c1"}).WantReply(ada())
}

func TestGetAbsent(t *testing.T) {
	t.Parallel()
	kit := customerv1.NewCustomerTestKit(t, Customer{})
	res := kit.Get(&customerv1.GetRequest{CustomerId: "nobody"})
	wantError(t, res.Err(), codes.NotFound, "customer nobody does not exist")
}
