package statefun_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// These tests pin down the entity life cycle (INVARIANTS.md, the entity
// life cycle) and the output gate for outcomes other than a reply. Each
// names, in its doc comment, the line of the runtime whose removal makes
// it fail; make mutants applies those removals.

// TestOutputGateHoldsHandlerErrors: an error a handler decided on state
// that is not yet durable waits for it, and becomes a failure of the call
// when that state never commits: a cart whose checkout failed to commit
// was never checked out, so "cart is checked out" must not escape.
// Fails without the wait in Command's error path (host.go, "its error
// waits for them like a reply would").
func TestOutputGateHoldsHandlerErrors(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(ctx, carts, "c", "apple", 1); err != nil {
		t.Fatal(err)
	}
	fs.waitEntered(t)

	fs.hold(t)
	fs.failNext(errors.New("disk on fire"))
	checkout := async(func() error {
		_, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c"})
		return err
	})
	fs.waitEntered(t)
	// Decided on the checked-out cart, which is not durable yet.
	refused := async(func() error { return add(ctx, carts, "c", "pear", 1) })
	time.Sleep(20 * time.Millisecond)
	if refused.finished() {
		t.Fatalf("a refusal decided on uncommitted state left before the commit: %v", refused.err)
	}
	fs.release()
	wantCode(t, checkout.wait(t), codes.Unavailable)
	err := refused.wait(t)
	if status.Code(err) == codes.FailedPrecondition {
		t.Fatalf("the caller was told %q about a checkout that never committed", err)
	}
	wantCode(t, err, codes.Unavailable, codes.Aborted)
	// The cart was never checked out: adding works.
	if err := add(ctx, carts, "c", "pear", 1); err != nil {
		t.Fatalf("after the failed checkout: %v", err)
	}
}

// TestOutputGateHoldsReadErrors: the same for a read handler's refusal.
// Fails without the wait in Read (host.go, Read's waitDurable).
func TestOutputGateHoldsReadErrors(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(ctx, carts, "strict", "apple", 1); err != nil {
		t.Fatal(err)
	}
	fs.waitEntered(t)
	fs.hold(t)
	fs.failNext(errors.New("disk on fire"))
	remove := async(func() error {
		_, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "strict", Sku: "apple"})
		return err
	})
	fs.waitEntered(t)
	read := async(func() error {
		_, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "strict"})
		return err
	})
	time.Sleep(20 * time.Millisecond)
	if read.finished() {
		t.Fatalf("a read's refusal left before the state it saw was durable: %v", read.err)
	}
	fs.release()
	wantCode(t, remove.wait(t), codes.Unavailable)
	if err := read.wait(t); status.Code(err) == codes.NotFound {
		t.Fatalf("the reader was told %q about a removal that never committed", err)
	}
	if q := quantities(t, carts, "strict"); q["apple"] != 1 {
		t.Errorf("cart = %v, want the apple that was never removed", q)
	}
}

// TestPanicResetKeepsInFlightCommits: a handler panic resets the entity,
// but a commit already in the store goes on; the entity must not reload
// before it lands, or its acknowledged change would be invisible. Fails
// without the barrier wait in Host.instance (instance.go, "loading now
// could miss it").
func TestPanicResetKeepsInFlightCommits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, sku string }{
		{"command handler", "panic"},
		{"event handler", "apply-panic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := newFaultStore()
			rt := newRuntime(t, statefun.WithStore(fs))
			carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
			ctx := testContext(t)
			if err := add(ctx, carts, "c", "warmup", 1); err != nil {
				t.Fatal(err)
			}
			fs.waitEntered(t)

			fs.hold(t)
			apple := async(func() error { return add(ctx, carts, "c", "apple", 1) })
			fs.waitEntered(t) // in the store, not yet durable
			wantCode(t, add(ctx, carts, "c", tc.sku, 1), codes.Internal)
			// This read comes after the reset; it must see the apple
			// once the apple is acknowledged.
			read := async(func() error {
				q := quantities(t, carts, "c")
				if q["apple"] != 1 {
					return fmt.Errorf("read after the reset: cart = %v, want the apple", q)
				}
				return nil
			})
			time.Sleep(20 * time.Millisecond)
			fs.release()
			if err := apple.wait(t); err != nil {
				t.Fatalf("a healthy command before the panic: %v", err)
			}
			if err := read.wait(t); err != nil {
				t.Fatal(err)
			}
			if q := quantities(t, carts, "c"); q["apple"] != 1 || q["warmup"] != 1 || len(q) != 2 {
				t.Errorf("cart = %v, want warmup and apple", q)
			}
		})
	}
}

// TestPanicResetKeepsQueuedCommits: commands staged before a panic were
// decided on sound state; the panic must not abort them. Fails if a reset
// after a panic sets the abandoned flag (instance.go, resetAfterPanic).
func TestPanicResetKeepsQueuedCommits(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	fs.hold(t)
	blocker := async(func() error { return add(ctx, carts, "other", "x", 1) })
	fs.waitEntered(t)
	apple := async(func() error { return add(ctx, carts, "c", "apple", 1) })
	eventually(t, "the apple to be queued", func() bool { return rt.Stats().Journal.Queued == 1 })
	wantCode(t, add(ctx, carts, "c", "panic", 1), codes.Internal)
	fs.release()
	for _, r := range []*result{blocker, apple} {
		if err := r.wait(t); err != nil {
			t.Fatalf("a command queued before the panic failed: %v", err)
		}
	}
	if q := quantities(t, carts, "c"); q["apple"] != 1 {
		t.Errorf("cart = %v, want the apple", q)
	}
}

// TestReadPanicResets: a read that changed the state and panicked leaves
// no trace: the entity reloads. Fails without resetAfterPanic in Read.
func TestReadPanicResets(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(ctx, carts, "read-panic", "apple", 1); err != nil {
		t.Fatal(err)
	}
	_, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "read-panic"})
	wantCode(t, err, codes.Internal)
	// The next command sees the cart as stored, not as the read left it.
	if err := add(ctx, carts, "read-panic", "apple", 1); err != nil {
		t.Fatal(err)
	}
	if q := quantities(t, carts, "read-panic"); q["apple"] != 2 {
		t.Errorf("cart = %v, want apple 2: the stored one and the new one", q)
	}
	for _, h := range rt.Stats().Entities {
		if h.EntityType == cart.ShoppingCartEntityType && h.Resets != 1 {
			t.Errorf("resets = %d, want 1", h.Resets)
		}
	}
}

// TestCloseTimeoutThenCommit: a Close that gives up while a commit with a
// snapshot is in flight must not crash when that commit lands later. Fails
// without the closed check in snapshotter.offer (snapshot.go).
func TestCloseTimeoutThenCommit(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(fs))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	for i := range 99 { // the annotation asks for a snapshot every 100 events
		if err := add(ctx, carts, "c", fmt.Sprint(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	fs.drainEntered()
	fs.hold(t)
	hundredth := async(func() error { return add(ctx, carts, "c", "snapshot-now", 1) })
	fs.waitEntered(t)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := rt.Close(short); err == nil {
		t.Fatal("Close returned nil while a commit was held")
	}
	fs.release()
	if err := hundredth.wait(t); err != nil {
		t.Fatalf("the commit in flight across Close: %v", err)
	}
	// Wait for the writer to finish with it (and offer its snapshot).
	eventually(t, "the writer to drain", func() bool { return rt.Stats().Journal.Pending == 0 })
	time.Sleep(20 * time.Millisecond)
}

// TestCacheCountSurvivesFailedCommits: the count the eviction bound reads
// stays exact across resets, so an outage does not shrink the cache for
// good. Fails if Host.instance replaces a reset instance without
// Host.remove (instance.go).
func TestCacheCountSurvivesFailedCommits(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs), statefun.WithMaxEntities(10))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	for i := range 20 {
		fs.failNext(errors.New("outage"))
		wantCode(t, add(ctx, carts, "flaky", fmt.Sprint(i), 1), codes.Unavailable)
	}
	for i := range 9 { // with "flaky", 10 entities: exactly the bound
		if err := add(ctx, carts, fmt.Sprint("e", i), "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	var cached int
	var evictions uint64
	for _, h := range rt.Stats().Entities {
		cached += h.Cached
		evictions += h.Evictions
	}
	if evictions != 0 || cached != 10 {
		t.Errorf("after 20 failed commits: cached %d, evictions %d; want 10 cached and no eviction", cached, evictions)
	}
}

// TestEvictionIsLeastRecentlyUsed: over the bound, entities in use stay
// and idle ones go. Random eviction would hit one of the ten hot entities
// in 60 evictions with a probability over 99.8%. Fails if evictOne takes the first sample instead
// of the oldest (instance.go, "used < best.lastUsed").
func TestEvictionIsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	const bound = 100
	rt := newRuntime(t, statefun.WithMaxEntities(bound))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	for i := range bound {
		if err := add(ctx, carts, fmt.Sprint("cold", i), "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	loads := func() uint64 {
		for _, h := range rt.Stats().Entities {
			if h.EntityType == cart.ShoppingCartEntityType {
				return h.Loads
			}
		}
		return 0
	}
	hot := make([]string, 10)
	for i := range hot {
		hot[i] = fmt.Sprint("cold", i) // the oldest entities, made hot
	}
	before := loads()
	const rounds = 60
	for i := range rounds {
		for _, id := range hot {
			quantities(t, carts, id)
		}
		time.Sleep(time.Millisecond) // the clock moves between rounds
		if err := add(ctx, carts, fmt.Sprint("new", i), "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	// Every round loads one new entity; any other load is a hot entity
	// that was evicted and read again.
	if reloaded := loads() - before - rounds; reloaded > 0 {
		t.Errorf("entities in constant use were evicted and reloaded %d times in %d evictions", reloaded, rounds)
	}
}

// TestNilReplyIsInternal: a handler returning (nil, nil) is a bug named
// in the error, not an empty OK. Fails without the IsValid check in
// callHandler (host.go).
func TestNilReplyIsInternal(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	err := add(testContext(t), carts, "c", "nil-reply", 1)
	wantCode(t, err, codes.Internal)
	if want := "/statefun.testdata.eventsourced.ShoppingCartService/AddItem returned neither a reply nor an error"; !strings.Contains(status.Convert(err).Message(), "returned neither a reply nor an error") {
		t.Errorf("error %q does not name the handler (want like %q)", err, want)
	}
}

// TestAdmissionCanceledIsCanceled: a caller that gives up while waiting
// for room is told CANCELED, and a caller without a deadline waits a
// bounded time. Fails if writerError maps cancellation to
// RESOURCE_EXHAUSTED, or if Admit has no timer of its own.
func TestAdmissionCanceledIsCanceled(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs), statefun.WithMaxPending(1), statefun.WithAdmitTimeout(100*time.Millisecond))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	fs.hold(t)
	held := async(func() error { return add(ctx, carts, "a", "x", 1) })
	fs.waitEntered(t)

	canceled, cancel := context.WithCancel(ctx)
	waiting := async(func() error { return add(canceled, carts, "b", "x", 1) })
	time.Sleep(20 * time.Millisecond)
	cancel()
	wantCode(t, waiting.wait(t), codes.Canceled)

	// No deadline at all: the admission timeout still ends the wait.
	noDeadline := async(func() error { return add(context.Background(), carts, "b", "x", 1) })
	wantCode(t, noDeadline.wait(t), codes.ResourceExhausted)
	fs.release()
	if err := held.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestResetsAreLogged: a failed commit, a fencing conflict and a panic
// each log one line naming the entity and the cause; a flood is cut to a
// burst and a count. Fails without the logReset calls (instance.go).
func TestResetsAreLogged(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs), statefun.WithLogger(log))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)

	fs.failNext(errors.New("disk on fire"))
	wantCode(t, add(ctx, carts, "burnt", "x", 1), codes.Unavailable)
	fs.failNext(&store.ConflictError{Entities: []store.Ref{{Type: cart.ShoppingCartEntityType, ID: "fenced"}}})
	wantCode(t, add(ctx, carts, "fenced", "x", 1), codes.Aborted)
	wantCode(t, add(ctx, carts, "buggy", "panic", 1), codes.Internal)
	out := buf.String()
	for _, want := range []string{
		`msg="entity reset: a commit failed; it reloads from the store on its next call" entity=shopping-cart id=burnt cause="disk on fire"`,
		`entity=shopping-cart id=fenced cause="conflicting writes to shopping-cart/fenced`,
		`msg="entity reset: a handler panicked; it reloads from the store on its next call" entity=shopping-cart id=buggy`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s\nlog:\n%s", want, out)
		}
	}

	for i := range 50 {
		fs.failNext(errors.New("outage"))
		wantCode(t, add(ctx, carts, fmt.Sprint("flood", i), "x", 1), codes.Unavailable)
	}
	if n := strings.Count(buf.String(), "entity reset"); n > 20 {
		t.Errorf("%d reset lines logged in a burst of 53 resets; want at most 20", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
