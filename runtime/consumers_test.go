package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	statefun "github.com/statefun-go/statefun/runtime"
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

// TestConsumerNotifiedAfterCommit: a single event at idle reaches the
// consumer (BenchmarkConsumerLag measures how fast).
func TestConsumerNotifiedAfterCommit(t *testing.T) {
	t.Parallel()
	a := newAudit()
	rt := newRuntime(t, statefun.WithConsumers(consumer.NewCartAudit(a)))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	if err := add(context.Background(), carts, "c", "x", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery", func() bool {
		_, items := a.snapshot()
		return items["c"] == 1
	})
}

// TestSendAfterCommit: a call a command sends is made after its events
// are durable, never before, and never when the commit fails.
func TestSendAfterCommit(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background()
	archived := func() map[string]int32 {
		got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "archive"})
		if err != nil {
			t.Fatal(err)
		}
		q := map[string]int32{}
		for _, it := range got.GetItems() {
			q[it.GetSku()] = it.GetQuantity()
		}
		return q
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		if err := add(ctx, carts, id, "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	drain(fs)

	// Held commit: the call waits for it.
	fs.hold(t)
	checkout := async(func() error {
		_, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c1"})
		return err
	})
	<-fs.entered
	time.Sleep(50 * time.Millisecond)
	if q := archived(); q["c1"] != 0 {
		t.Fatal("the call was made before the command's events were durable")
	}
	fs.release()
	if err := checkout.wait(t); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the call after the commit", func() bool { return archived()["c1"] == 1 })

	// Failed commit: the call is never made.
	fs.failNext(errors.New("disk on fire"))
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c2"}); err == nil {
		t.Fatal("checkout succeeded despite the failed commit")
	}
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c3"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the later call", func() bool { return archived()["c3"] == 1 })
	if q := archived(); q["c2"] != 0 {
		t.Errorf("a call from a failed commit was made: %v", q)
	}
}

// TestSentCallsResumeAfterRestart: a restarted runtime resumes the calls
// dispatcher where it stopped; it does not make every call ever sent again.
func TestSentCallsResumeAfterRestart(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := context.Background()
	first, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st))
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
	eventually(t, "the call", func() bool { return quantities(t, carts, "archive")["c1"] == 1 })
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	before, found, err := st.LoadConsumerPosition(ctx, "statefun.calls", cart.ShoppingCartEntityType)
	if err != nil || !found || before == "" {
		t.Fatalf("calls dispatcher position after close: %q found=%v err=%v", before, found, err)
	}

	second := newRuntime(t, statefun.WithStore(st))
	after, _, err := st.LoadConsumerPosition(ctx, "statefun.calls", cart.ShoppingCartEntityType)
	if err != nil || after != before {
		t.Fatalf("restart moved the calls dispatcher from %q to %q (err %v): old calls would be made again", before, after, err)
	}
	carts = cart.NewShoppingCartEntityClient(second.ClientConn())
	if err := add(ctx, carts, "c2", "x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new call", func() bool { return quantities(t, carts, "archive")["c2"] == 1 })
	if q := quantities(t, carts, "archive")["c1"]; q != 1 {
		t.Errorf("archive has c1 %d times, want 1: the old call was made again", q)
	}
}

func drain(fs *faultStore) {
	for {
		select {
		case <-fs.entered:
		default:
			return
		}
	}
}
