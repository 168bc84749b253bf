package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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

// panickyAudit is the cart-audit consumer with a bug: it panics the
// first time it is given each cart's first event.
type panickyAudit struct {
	*audit
	mu       sync.Mutex
	panicked map[string]bool
}

func (p *panickyAudit) OnItemAdded(ctx *consumer.CartAuditContext, e *cart.ItemAdded) error {
	p.mu.Lock()
	first := !p.panicked[ctx.EntityID()]
	p.panicked[ctx.EntityID()] = true
	p.mu.Unlock()
	if first {
		panic("audit bug")
	}
	return p.audit.OnItemAdded(ctx, e)
}

// TestConsumerPanicIsLoggedWithStack: a consumer handler's panic is
// logged at error level with the consumer, the event (entity, seq) and the
// panic's value and stack, down to the handler's frame; the event is then
// delivered again. Fails without the stack taken in consumerRunner.handle
// (consumer.go, "debug.Stack()").
func TestConsumerPanicIsLoggedWithStack(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	a := &panickyAudit{audit: newAudit(), panicked: map[string]bool{}}
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})},
		statefun.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), statefun.WithConsumers(consumer.NewCartAudit(a)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	if err := add(testContext(t), cart.NewShoppingCartEntityClient(rt.ClientConn()), "c1", "apple", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event delivered after the panic", func() bool {
		seen, _ := a.snapshot()
		return len(seen["c1"]) == 1
	})
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "consumer handler panicked") {
			line = l
		}
	}
	for _, want := range []string{
		"level=ERROR", "consumer=cart-audit", "entity=c1", "seq=1", `panic="audit bug"`,
		"runtime_test.(*panickyAudit).OnItemAdded(", // the handler's frame
	} {
		if !strings.Contains(line, want) {
			t.Errorf("the panic's log line lacks %q:\n%s", want, line)
		}
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

// TestCallsDispatcherWokenOnlyByCommitsWithCalls: the calls dispatcher
// is woken by the commits that store calls, and only by them. The poll is
// set to an hour, so the second checkout's call is made within the test's
// deadline only if its commit woke the dispatcher (deleting the
// OnDurable wake-up in stageChanges, host.go, makes it fail); and commits
// without calls leave the dispatcher's feed unread (waking every
// dispatcher in consumerSet.notify, consumers.go, makes it fail).
//
// Not parallel: it changes the poll of every runtime created meanwhile.
func TestCallsDispatcherWokenOnlyByCommitsWithCalls(t *testing.T) {
	defer statefun.SetConsumerPoll(time.Hour)()
	st := &feedWatch{Store: memory.New(), read: make(chan struct{}, 1)}
	rt := newClosingRuntime(t, statefun.WithStore(st))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background()
	archived := func(id string) bool {
		got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "archive"})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range got.GetItems() {
			if it.GetSku() == id {
				return true
			}
		}
		return false
	}
	for _, id := range []string{"c1", "c2"} {
		if err := add(ctx, carts, id, "x", 1); err != nil {
			t.Fatal(err)
		}
		// The first checkout starts the dispatcher, which then reads its
		// feed; the second finds it idle, waiting for a wake-up.
		if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: id}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the call of "+id+"'s checkout (the poll is an hour away)", func() bool { return archived(id) })
	}
	// The archive's own commit (the call's effect) stores no call either;
	// let the dispatcher finish with what it read.
	time.Sleep(100 * time.Millisecond)
	before := st.reads.Load()
	for i := range 20 {
		if err := add(ctx, carts, fmt.Sprint("quiet-", i), "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := st.reads.Load() - before; n > 0 {
		t.Errorf("the calls dispatcher read its feed %d times after 20 commits without calls, want 0", n)
	}
}

// feedWatch reports each ReadFeed that returned, and counts them.
type feedWatch struct {
	*memory.Store
	read  chan struct{}
	reads atomic.Int64
}

func (f *feedWatch) ReadFeed(ctx context.Context, entityType string, after store.Position, limit int, fn func(store.FeedEvent) error) error {
	err := f.Store.ReadFeed(ctx, entityType, after, limit, fn)
	f.reads.Add(1)
	select {
	case f.read <- struct{}{}:
	default:
	}
	return err
}

// stallStore is a store whose consumer positions stall on demand, the way
// a database that stopped answering does: a stalled call returns when the
// test releases it or when its context ends, whichever is first.
type stallStore struct {
	*memory.Store
	mu      sync.Mutex
	gate    chan struct{} // while non-nil, position calls wait for it
	stalled chan string   // receives the name of each call that stalls
	waiting atomic.Int64  // calls stalled now
}

func newStallStore() *stallStore {
	return &stallStore{Store: memory.New(), stalled: make(chan string, 1024)}
}

func (s *stallStore) stall() {
	s.mu.Lock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *stallStore) release() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

func (s *stallStore) wait(ctx context.Context, call string) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate == nil {
		return nil
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case s.stalled <- call:
	default:
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// awaitStall waits until a call named call has stalled.
func (s *stallStore) awaitStall(t *testing.T, call string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-s.stalled:
			if got == call {
				return
			}
		case <-deadline:
			t.Fatalf("no %s stalled within 5 s", call)
		}
	}
}

func (s *stallStore) LoadConsumerPosition(ctx context.Context, consumer, entityType string) (store.Position, bool, error) {
	if err := s.wait(ctx, "load"); err != nil {
		return "", false, err
	}
	return s.Store.LoadConsumerPosition(ctx, consumer, entityType)
}

func (s *stallStore) SaveConsumerPosition(ctx context.Context, consumer, entityType string, pos store.Position) error {
	if err := s.wait(ctx, "save"); err != nil {
		return err
	}
	return s.Store.SaveConsumerPosition(ctx, consumer, entityType, pos)
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

func closeWithin(t testing.TB, rt *statefun.Runtime, d time.Duration) {
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

// within waits up to d for r, and reports whether it finished.
func within(r *result, d time.Duration) bool {
	select {
	case <-r.done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestSendingACallDoesNotWaitForConsumerPositions: the first command of a
// type that sends a call replies without waiting for the database to
// record where the calls dispatcher starts; the call is made once the
// database answers again.
func TestSendingACallDoesNotWaitForConsumerPositions(t *testing.T) {
	t.Parallel()
	st := newStallStore()
	rt := newClosingRuntime(t, statefun.WithStore(st))
	t.Cleanup(st.release) // runs before Close
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background()
	if err := add(ctx, carts, "c1", "x", 1); err != nil {
		t.Fatal(err)
	}
	st.stall()
	checkout := async(func() error {
		_, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c1"})
		return err
	})
	if !within(checkout, 2*time.Second) {
		t.Fatal("a command that sends a call waited for the stalled consumer-position store")
	}
	if checkout.err != nil {
		t.Fatal(checkout.err)
	}
	st.release()
	eventually(t, "the call, once the store answers", func() bool { return quantities(t, carts, "archive")["c1"] == 1 })
}

// TestCommitsDoNotWaitForAStalledConsumerStart: while a consumer is stuck
// reading its position, the runtime starts and commits go on (each commit
// notifies the consumers); the consumer catches up when the store answers.
func TestCommitsDoNotWaitForAStalledConsumerStart(t *testing.T) {
	t.Parallel()
	st := newStallStore()
	st.stall()
	t.Cleanup(st.release)
	a := newAudit()
	var rt *statefun.Runtime
	created := async(func() (err error) {
		rt, err = statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})},
			statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(a)))
		return err
	})
	if !within(created, 2*time.Second) {
		st.release()
		if within(created, 5*time.Second) && created.err == nil {
			closeWithin(t, rt, 10*time.Second)
		}
		t.Fatal("New waited for the stalled consumer-position store")
	}
	if created.err != nil {
		t.Fatal(created.err)
	}
	t.Cleanup(func() { closeWithin(t, rt, 10*time.Second) })
	st.awaitStall(t, "load")
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background()
	for i := range 5 {
		id := fmt.Sprint("c", i)
		added := async(func() error { return add(ctx, carts, id, "x", 1) })
		if !within(added, 2*time.Second) {
			t.Fatalf("a commit waited for a consumer stuck reading its position")
		}
		if added.err != nil {
			t.Fatal(added.err)
		}
	}
	st.release()
	eventually(t, "every event delivered once the store answers", func() bool {
		_, items := a.snapshot()
		return len(items) == 5
	})
}

// TestCloseDoesNotWaitForAHungPositionSave: Close returns within a bound
// while the database does not answer the consumer's last position save.
func TestCloseDoesNotWaitForAHungPositionSave(t *testing.T) {
	t.Parallel()
	st := newStallStore()
	t.Cleanup(st.release)
	a := newAudit()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})},
		statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(a)), statefun.WithCommitTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background()
	for i, id := range []string{"before", "after"} {
		if i == 1 {
			st.stall() // once the consumer is running
		}
		if err := add(ctx, carts, id, "x", 1); err != nil {
			t.Fatal(err)
		}
		eventually(t, "delivery", func() bool {
			_, items := a.snapshot()
			return items[id] == 1
		})
	}
	st.awaitStall(t, "save") // the consumer's progress cannot be saved
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	closed := async(func() error { return rt.Close(closeCtx) })
	if !within(closed, 3*time.Second) {
		st.release()
		within(closed, 5*time.Second)
		t.Fatal("Close waited for a position save the store never answered")
	}
	if closed.err != nil {
		t.Fatal(closed.err)
	}
	// The save gave up by its deadline; it does not linger past Close.
	eventually(t, "no store call left waiting after Close", func() bool { return st.waiting.Load() == 0 })
}

// TestConsumerSurvivesStoreErrors: a consumer whose position and feed
// reads fail for a while delivers every event once they succeed again.
func TestConsumerSurvivesStoreErrors(t *testing.T) {
	t.Parallel()
	st := &flakyFeed{Store: memory.New()}
	st.failing.Store(true)
	a := newAudit()
	rt := newClosingRuntime(t, statefun.WithStore(st), statefun.WithConsumers(consumer.NewCartAudit(a)))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background()
	for i := range 3 {
		if err := add(ctx, carts, fmt.Sprint("c", i), "x", 1); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "failed consumer store calls", func() bool { return st.failures.Load() >= 3 })
	st.failing.Store(false)
	eventually(t, "every event delivered after the errors", func() bool {
		_, items := a.snapshot()
		return len(items) == 3
	})
}

// flakyFeed fails consumer store calls while failing is set.
type flakyFeed struct {
	*memory.Store
	failing  atomic.Bool
	failures atomic.Int64
}

var errFeedDown = errors.New("feed down")

func (f *flakyFeed) fail() error {
	if f.failing.Load() {
		f.failures.Add(1)
		return errFeedDown
	}
	return nil
}

func (f *flakyFeed) LoadConsumerPosition(ctx context.Context, consumer, entityType string) (store.Position, bool, error) {
	if err := f.fail(); err != nil {
		return "", false, err
	}
	return f.Store.LoadConsumerPosition(ctx, consumer, entityType)
}

func (f *flakyFeed) SaveConsumerPosition(ctx context.Context, consumer, entityType string, pos store.Position) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.SaveConsumerPosition(ctx, consumer, entityType, pos)
}

func (f *flakyFeed) ReadFeed(ctx context.Context, entityType string, after store.Position, limit int, fn func(store.FeedEvent) error) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.ReadFeed(ctx, entityType, after, limit, fn)
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

// TestRedeliveredCallRunsOnce: the dispatcher delivers at least once (a
// crash after a call but before its position is saved makes the call
// again); each stored call carries its own idempotency key, so the repeat
// returns the first answer and the target changes once. Fails without the
// key in dispatchCall (consumers.go).
func TestRedeliveredCallRunsOnce(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := testContext(t)
	first := newRuntime(t, statefun.WithStore(st))
	carts := cart.NewShoppingCartEntityClient(first.ClientConn())
	if err := add(ctx, carts, "c1", "x", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "c1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the call", func() bool { return quantities(t, carts, "archive")["c1"] == 1 })
	closeRuntime(t, first)
	// As if the process died before the dispatcher saved its position.
	if err := st.SaveConsumerPosition(ctx, "statefun.calls", cart.ShoppingCartEntityType, ""); err != nil {
		t.Fatal(err)
	}
	second := newRuntime(t, statefun.WithStore(st))
	carts = cart.NewShoppingCartEntityClient(second.ClientConn())
	eventually(t, "the redelivery", func() bool {
		pos, _, err := st.LoadConsumerPosition(ctx, "statefun.calls", cart.ShoppingCartEntityType)
		return err == nil && pos != ""
	})
	if q := quantities(t, carts, "archive")["c1"]; q != 1 {
		t.Errorf("archive has c1 %d times after a redelivery, want 1", q)
	}
}
