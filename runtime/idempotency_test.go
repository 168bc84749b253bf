package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/keyvalue"
)

// withKey returns ctx carrying an idempotency key, as a client sets it.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, statefun.IdempotencyKeyHeader, key)
}

// TestIdempotentRetryReturnsTheFirstReply: a retry with the key of a
// command that succeeded gets its reply, and the command does not run
// again: the cart holds one apple, not two. Fails without the recall of
// the instance's own answers in Command.
func TestIdempotentRetryReturnsTheFirstReply(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	customers := keyvalue.NewCustomerEntityClient(rt.ClientConn())
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	for range 3 {
		if err := add(withKey(ctx, "k1"), carts, "c", "apple", 1); err != nil {
			t.Fatal(err)
		}
	}
	if q := quantities(t, carts, "c"); q["apple"] != 1 {
		t.Errorf("cart after 3 tries with one key = %v, want one apple", q)
	}
	// Replies come back as they were first given.
	first, err := customers.Create(withKey(ctx, "create-ada"), &keyvalue.CreateCustomerRequest{CustomerId: "ada", Name: "Ada", Address: "London"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := customers.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "ada", Address: "Paris"}); err != nil {
		t.Fatal(err)
	}
	again, err := customers.Create(withKey(ctx, "create-ada"), &keyvalue.CreateCustomerRequest{CustomerId: "ada", Name: "Ada", Address: "London"})
	if err != nil {
		t.Fatalf("retry of a successful create: %v; want its first reply, not AlreadyExists", err)
	}
	if !proto.Equal(first, again) {
		t.Errorf("retry reply %v, want the first reply %v", again, first)
	}
}

// TestIdempotentRetryReturnsTheFirstError: a refusal is an answer too: a
// retry gets it even though the command would now succeed.
func TestIdempotentRetryReturnsTheFirstError(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	customers := keyvalue.NewCustomerEntityClient(rt.ClientConn())
	ctx := testContext(t)
	change := func() error {
		_, err := customers.ChangeAddress(withKey(ctx, "move-bob"), &keyvalue.ChangeAddressRequest{CustomerId: "bob", Address: "Rome"})
		return err
	}
	wantCode(t, change(), codes.NotFound)
	if _, err := customers.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	err := change()
	wantCode(t, err, codes.NotFound)
	if msg := status.Convert(err).Message(); msg != "no such customer" {
		t.Errorf("replayed error message %q, want the handler's own", msg)
	}
	got, err := customers.Get(ctx, &keyvalue.GetCustomerRequest{CustomerId: "bob"})
	if err != nil || got.GetAddress() != "" {
		t.Errorf("customer = %v, %v; the retried change must not have run", got, err)
	}
}

// TestIdempotentRetryAfterRestart: the answer is in the store, in the
// command's transaction, so a new runtime (a restart, or another node
// after a move) answers a retry without running the command. Fails
// without the store lookup in Command.
func TestIdempotentRetryAfterRestart(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := testContext(t)
	first := newRuntime(t, statefun.WithStore(st))
	if err := add(withKey(ctx, "once"), cart.NewShoppingCartEntityClient(first.ClientConn()), "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
	closeRuntime(t, first)

	second := cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(st)).ClientConn())
	if err := add(withKey(ctx, "once"), second, "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
	if q := quantities(t, second, "c"); q["apple"] != 1 {
		t.Errorf("cart after a retry on a restarted runtime = %v, want one apple", q)
	}
}

// TestIdempotencyKeyForgottenInMemory: answers leave memory once durable
// (an instance keeps the last 64); older keys are found in the store.
func TestIdempotencyKeyForgottenInMemory(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	for i := range 100 {
		if err := add(withKey(ctx, fmt.Sprint("k", i)), carts, "c", fmt.Sprint("sku", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if err := add(withKey(ctx, fmt.Sprint("k", i)), carts, "c", fmt.Sprint("sku", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	for sku, n := range quantities(t, carts, "c") {
		if n != 1 {
			t.Errorf("%s: quantity %d after a retry, want 1", sku, n)
		}
	}
}

// TestIdempotentConcurrentRetries: retries that arrive while the first
// call's commit is in flight (so the store does not have its answer yet)
// wait for it and get its answer; the command runs once.
func TestIdempotentConcurrentRetries(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	fs.hold(t)
	first := async(func() error { return add(withKey(ctx, "same"), carts, "c", "apple", 1) })
	fs.waitEntered(t)
	var retries []*result
	for range 10 {
		retries = append(retries, async(func() error { return add(withKey(ctx, "same"), carts, "c", "apple", 1) }))
	}
	time.Sleep(20 * time.Millisecond)
	fs.release()
	for _, r := range append(retries, first) {
		if err := r.wait(t); err != nil {
			t.Error(err)
		}
	}
	if q := quantities(t, carts, "c"); q["apple"] != 1 {
		t.Errorf("cart = %v, want one apple", q)
	}
}

// TestIdempotencyKeyNamesOneCall: a key reused for another method is a
// client bug, refused with a message that says so.
func TestIdempotencyKeyNamesOneCall(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(withKey(ctx, "k"), carts, "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
	_, err := carts.RemoveItem(withKey(ctx, "k"), &cart.RemoveItemRequest{CartId: "c", Sku: "apple"})
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "was used for /statefun.testdata.eventsourced.ShoppingCart/AddItem") {
		t.Errorf("error %q does not name the first use", err)
	}
}

// TestIdempotencyKeyExpires: after the retention, a key may be used
// again, and its new answer replaces the old one.
func TestIdempotencyKeyExpires(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, statefun.WithIdempotencyRetention(50*time.Millisecond))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(withKey(ctx, "k"), carts, "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
	// Enough keyed commands that "k" leaves the instance's memory.
	for i := range 70 {
		if err := add(withKey(ctx, fmt.Sprint("filler", i)), carts, "c", "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if err := add(withKey(ctx, "k"), carts, "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
	if q := quantities(t, carts, "c"); q["apple"] != 2 || q["x"] != 70 {
		t.Errorf("cart = %v, want 2 apples: the expired key ran again", q)
	}
	// The new answer replaced the expired one: a retry now gets it.
	if err := add(withKey(ctx, "k"), carts, "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
}

// TestBadIdempotencyKeys: a key that cannot be stored is refused before
// anything runs.
func TestBadIdempotencyKeys(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	err := add(withKey(ctx, strings.Repeat("k", 257)), carts, "c", "apple", 1)
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "over the limit of 256") {
		t.Errorf("error %q does not give the limit", err)
	}
	two := metadata.AppendToOutgoingContext(ctx, statefun.IdempotencyKeyHeader, "a", statefun.IdempotencyKeyHeader, "b")
	wantCode(t, add(two, carts, "c", "apple", 1), codes.InvalidArgument)
	if q := quantities(t, carts, "c"); len(q) != 0 {
		t.Errorf("refused calls changed the cart: %v", q)
	}
}

// TestUnknownOutcomeIsReported: a commit whose outcome the store cannot
// know is reported as such, with an ErrorInfo a program can test, apart
// from a commit that certainly stored nothing. A retry with the key then
// finds out.
func TestUnknownOutcomeIsReported(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)

	fs.failNext(errors.New("connection refused"))
	err := add(withKey(ctx, "first"), carts, "c", "apple", 1)
	wantCode(t, err, codes.Unavailable)
	if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "the change was not stored") {
		t.Errorf("a commit that stored nothing: %q", msg)
	}
	if err := add(withKey(ctx, "first"), carts, "c", "apple", 1); err != nil {
		t.Fatalf("retry after a commit that stored nothing: %v", err)
	}

	fs.failNext(fmt.Errorf("%w: connection lost after the batch was sent", store.ErrOutcomeUnknown))
	err = add(withKey(ctx, "second"), carts, "c", "pear", 1)
	wantCode(t, err, codes.Unavailable)
	st := status.Convert(err)
	if !strings.Contains(st.Message(), "may or may not have been applied") || !strings.Contains(st.Message(), "retry with the same idempotency key") {
		t.Errorf("unknown outcome reported as %q", st.Message())
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info.GetReason() != "OUTCOME_UNKNOWN" {
		t.Errorf("details %v, want an ErrorInfo with reason OUTCOME_UNKNOWN", st.Details())
	}
	if err := add(withKey(ctx, "second"), carts, "c", "pear", 1); err != nil {
		t.Fatal(err)
	}
	if q := quantities(t, carts, "c"); q["apple"] != 1 || q["pear"] != 1 {
		t.Errorf("cart = %v", q)
	}
}
