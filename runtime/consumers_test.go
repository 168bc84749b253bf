package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/testdata/consumer"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// audit records what the cart-audit consumer is given.
type audit struct {
	mu       sync.Mutex
	seen     map[string][]int64 // seqs per cart, in delivery order
	items    map[string]int32
	failOnce map[string]bool // carts whose next delivery fails once
}

func newAudit() *audit {
	return &audit{seen: map[string][]int64{}, items: map[string]int32{}, failOnce: map[string]bool{}}
}

var errFlaky = errors.New("flaky downstream")

func (a *audit) record(ctx *consumer.CartAuditContext, q int32) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := ctx.EntityID()
	if a.failOnce[id] {
		delete(a.failOnce, id)
		return errFlaky
	}
	a.seen[id] = append(a.seen[id], ctx.Seq())
	a.items[id] += q
	return nil
}

func (a *audit) OnItemAdded(ctx *consumer.CartAuditContext, e *cart.ItemAdded) error {
	return a.record(ctx, e.GetQuantity())
}

func (a *audit) OnCheckedOut(ctx *consumer.CartAuditContext, _ *cart.CheckedOut) error {
	return a.record(ctx, 0)
}

func (a *audit) snapshot() (map[string][]int64, map[string]int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[string][]int64{}
	for k, v := range a.seen {
		seen[k] = append([]int64(nil), v...)
	}
	items := map[string]int32{}
	for k, v := range a.items {
		items[k] = v
	}
	return seen, items
}

type recent struct {
	mu   sync.Mutex
	skus []string
}

func (r *recent) OnItemRemoved(_ *consumer.RecentContext, e *cart.ItemRemoved) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skus = append(r.skus, e.GetSku())
	return nil
}

// TestConsumerDeliversInOrderPerEntity: every committed event reaches the
// consumer, each entity's in sequence order, including after a handler
// error (retried) and across a restart (resumed from the stored position).
func TestConsumerDeliversInOrderPerEntity(t *testing.T) {
	t.Parallel()
	st := memory.New()
	a := newAudit()
	a.failOnce["c3"] = true
	ctx := context.Background()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})},
		statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(a)))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	const perCart = 20
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perCart {
				if err := add(ctx, carts, fmt.Sprintf("c%d", c), fmt.Sprint("sku", i%3), 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "every event delivered", func() bool {
		_, items := a.snapshot()
		total := int32(0)
		for _, q := range items {
			total += q
		}
		return total == 8*perCart
	})
	seen, _ := a.snapshot()
	for id, seqs := range seen {
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("cart %s: deliveries %v, want 1..%d in order", id, seqs, perCart)
			}
		}
	}
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A new runtime on the same store resumes after what was handled.
	b := newAudit()
	rt2, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})},
		statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close(ctx)
	carts2 := cart.NewShoppingCartEntityClient(rt2.ClientConn())
	if _, err := carts2.Checkout(ctx, &cart.CheckoutRequest{CartId: "c0"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the checkout delivered", func() bool {
		seen, _ := b.snapshot()
		return len(seen["c0"]) > 0 && seen["c0"][len(seen["c0"])-1] == perCart+1
	})
	seen, _ = b.snapshot()
	if n := len(seen["c1"]); n != 0 {
		t.Errorf("after a restart, %d events of c1 were delivered again; the position was not kept", n)
	}
}

// TestConsumerStartFromNow: a consumer that starts from now sees only
// events committed after its first start.
func TestConsumerStartFromNow(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := context.Background()
	before := newRuntime(t, statefun.WithStore(st))
	carts := cart.NewShoppingCartEntityClient(before.ClientConn())
	if err := add(ctx, carts, "c", "old", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "c", Sku: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := before.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := &recent{}
	rt := newRuntime(t, statefun.WithStore(st), statefun.WithConsumers(consumer.NewRecent(r)))
	carts = cart.NewShoppingCartEntityClient(rt.ClientConn())
	if err := add(ctx, carts, "c", "new", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "c", Sku: "new"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new removal delivered", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.skus) > 0
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.skus) != 1 || r.skus[0] != "new" {
		t.Errorf("delivered removals %v, want only the one after the consumer started", r.skus)
	}
}

// TestConsumerWokenByCommitNotByPoll: a commit wakes an idle consumer at
// once. The poll is set to an hour, so only the wake-up can deliver the
// event within the test's deadline. Deleting the send in
// consumerRunner.notify (consumer.go, `case r.wake <- struct{}{}:`) or the
// r.notify() call in consumerSet.notify (consumers.go) makes it fail.
// BenchmarkConsumerLag measures how fast the wake-up is.
//
// Not parallel: it changes the poll of every runtime created meanwhile.
func TestConsumerWokenByCommitNotByPoll(t *testing.T) {
	defer statefun.SetConsumerPoll(time.Hour)()
	st := &feedWatch{Store: memory.New(), read: make(chan struct{}, 1)}
	a := newAudit()
	rt := newClosingRuntime(t, statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(a)))
	// Wait until the consumer has read the empty feed: from then on it
	// reads again only when woken (or in an hour).
	select {
	case <-st.read:
	case <-time.After(5 * time.Second):
		t.Fatal("the consumer did not read its feed within 5 s of starting")
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	if err := add(context.Background(), carts, "c", "x", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery after a wake-up (the poll is an hour away)", func() bool {
		_, items := a.snapshot()
		return items["c"] == 1
	})
}

// feedWatch reports each ReadFeed that returned.
type feedWatch struct {
	*memory.Store
	read chan struct{}
}

func (f *feedWatch) ReadFeed(ctx context.Context, entityType string, after store.Position, limit int, fn func(store.FeedEvent) error) error {
	err := f.Store.ReadFeed(ctx, entityType, after, limit, fn)
	select {
	case f.read <- struct{}{}:
	default:
	}
	return err
}

// newClosingRuntime is newRuntime with a deadline on Close: a Close that
// hangs fails the test instead of stalling the suite.
func newClosingRuntime(t *testing.T, opts ...statefun.Option) *statefun.Runtime {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, rt, 10*time.Second) })
	return rt
}

func closeWithin(t *testing.T, rt *statefun.Runtime, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	closed := async(func() error { return rt.Close(ctx) })
	select {
	case <-closed.done:
		if closed.err != nil {
			t.Errorf("Close: %v", closed.err)
		}
	case <-time.After(d + time.Second):
		t.Errorf("Close did not return within %v", d+time.Second)
	}
}
