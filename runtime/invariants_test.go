package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/keyvalue"
)

// faultStore wraps a store so tests can hold commits, fail them and count
// what reaches the store.
type faultStore struct {
	*memory.Store
	mu       sync.Mutex
	gate     chan struct{}            // when non-nil, Commit waits for it to close
	failWith error                    // when non-nil, the next Commit fails with it
	failIf   func(*store.Batch) error // when non-nil, fails the Commits it returns an error for
	seen     []store.Event            // every event offered to Commit, written or not
	batches  []int                    // records per successful batch
	reads    atomic.Int64             // ReadEvents calls
	readFrom []int64                  // afterSeq of each ReadEvents call
	entered  chan struct{}            // receives when a Commit starts
}

func newFaultStore() *faultStore {
	return &faultStore{Store: memory.New(), entered: make(chan struct{}, 1024)}
}

// hold makes commits wait until release. The test's cleanup releases
// them, before the runtime's Close (cleanups run last first), so a failing
// test ends instead of hanging on a held commit.
func (f *faultStore) hold(t *testing.T) {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
	t.Cleanup(f.release)
}

func (f *faultStore) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

// waitEntered waits for a commit to reach the store.
func (f *faultStore) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-f.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no commit reached the store within 10s")
	}
}

// drainEntered forgets the commits that reached the store so far.
func (f *faultStore) drainEntered() {
	for len(f.entered) > 0 {
		<-f.entered
	}
}

func (f *faultStore) failNext(err error) {
	f.mu.Lock()
	f.failWith = err
	f.mu.Unlock()
}

func (f *faultStore) Commit(ctx context.Context, b *store.Batch) error {
	f.entered <- struct{}{}
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	err := f.failWith
	f.failWith = nil
	f.seen = append(f.seen, b.Events...)
	if err == nil && f.failIf != nil {
		err = f.failIf(b)
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if err := f.Store.Commit(ctx, b); err != nil {
		return err
	}
	f.mu.Lock()
	f.batches = append(f.batches, b.Len())
	f.mu.Unlock()
	return nil
}

func (f *faultStore) ReadEvents(ctx context.Context, ref store.Ref, after int64, fn func(store.Event) error) error {
	f.reads.Add(1)
	f.mu.Lock()
	f.readFrom = append(f.readFrom, after)
	f.mu.Unlock()
	return f.Store.ReadEvents(ctx, ref, after, fn)
}

// offered reports whether an event with an ItemAdded payload for sku was
// ever passed to Commit.
func (f *faultStore) offered(sku string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.seen {
		if strings.Contains(string(e.Payload), sku) {
			return true
		}
	}
	return false
}

func (f *faultStore) committed() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.batches...)
}

func add(ctx context.Context, c *cart.ShoppingCartEntityClient, id, sku string, q int32) error {
	_, err := c.AddItem(ctx, &cart.AddItemRequest{CartId: id, Sku: sku, Quantity: q})
	return err
}

func quantities(t *testing.T, c *cart.ShoppingCartEntityClient, id string) map[string]int32 {
	t.Helper()
	got, err := c.GetCart(context.Background(), &cart.GetCartRequest{CartId: id})
	if err != nil {
		t.Fatalf("GetCart(%s): %v", id, err)
	}
	q := map[string]int32{}
	for _, it := range got.GetItems() {
		q[it.GetSku()] = it.GetQuantity()
	}
	return q
}

// testContext is the context of a test's calls: it ends with the test, and
// after 30 seconds, so that a call that should have returned fails the
// test instead of hanging it.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// result collects the outcome of a call made in the background.
type result struct {
	done chan struct{}
	err  error
}

func async(fn func() error) *result {
	r := &result{done: make(chan struct{})}
	go func() {
		r.err = fn()
		close(r.done)
	}()
	return r
}

func (r *result) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *result) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(10 * time.Second):
		t.Fatal("call did not finish within 10s")
		return nil
	}
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutputGate: a reply, and a read of the changed state, are released
// only after the change is durable; the next command runs meanwhile
// (pipelining) and is gated behind the same commit.
func TestOutputGate(t *testing.T) {
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
	first := async(func() error { return add(ctx, carts, "c", "apple", 1) })
	fs.waitEntered(t) // the first commit is in the store, held
	second := async(func() error { return add(ctx, carts, "c", "pear", 1) })
	read := async(func() error {
		_, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c"})
		return err
	})
	// The second command and the read run on the new in-memory state
	// while the first commit is in flight; their replies wait.
	eventually(t, "the second command to be queued", func() bool { return rt.Stats().Journal.Queued == 1 })
	time.Sleep(20 * time.Millisecond)
	if first.finished() || second.finished() || read.finished() {
		t.Fatal("a reply was released before its change was durable")
	}
	fs.release()
	for _, r := range []*result{first, second, read} {
		if err := r.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	if q := quantities(t, carts, "c"); q["apple"] != 1 || q["pear"] != 1 {
		t.Errorf("cart = %v", q)
	}
}

var errReadAfterReset = errors.New("read after the reset")

// TestFailedCommitResetsEntity: when a commit fails, every reply that
// depends on it fails, the entity is dropped from memory, and the next
// command sees only what the store holds.
func TestFailedCommitResetsEntity(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(ctx, carts, "c", "kept", 1); err != nil {
		t.Fatal(err)
	}
	fs.waitEntered(t)

	fs.hold(t)
	fs.failNext(errors.New("disk on fire"))
	first := async(func() error { return add(ctx, carts, "c", "lost", 1) })
	fs.waitEntered(t)
	second := async(func() error { return add(ctx, carts, "c", "built-on-lost", 1) })
	read := async(func() error {
		got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "c"})
		if err == nil {
			// The read ran after the reset (a slow machine scheduled it
			// late): it may answer, from what the store holds only.
			for _, item := range got.GetItems() {
				if item.GetSku() != "kept" {
					return fmt.Errorf("a read answered with %q, a change that was never durable", item.GetSku())
				}
			}
			return errReadAfterReset
		}
		return err
	})
	eventually(t, "the second command to be queued", func() bool { return rt.Stats().Journal.Queued == 1 })
	fs.release()
	wantCode(t, first.wait(t), codes.Unavailable)
	wantCode(t, second.wait(t), codes.Aborted)
	// The read saw the lost change, or the change built on it, and fails
	// with it; or it ran after the reset, and saw neither.
	if err := read.wait(t); !errors.Is(err, errReadAfterReset) {
		if code := status.Code(err); code != codes.Unavailable && code != codes.Aborted {
			t.Errorf("read of a lost change: %v, want Unavailable or Aborted", err)
		}
	}

	if q := quantities(t, carts, "c"); len(q) != 1 || q["kept"] != 1 {
		t.Errorf("cart after a failed commit = %v, want only what was stored", q)
	}
	// A change decided on refused state is dropped before the store: it
	// must not depend on the store to refuse it again.
	if fs.offered("built-on-lost") {
		t.Error("a commit decided on a refused change was sent to the store")
	}
	if err := add(ctx, carts, "c", "after", 1); err != nil {
		t.Fatalf("command after reset: %v", err)
	}
	if q := quantities(t, carts, "c"); len(q) != 2 || q["after"] != 1 {
		t.Errorf("cart = %v", q)
	}
}

// TestGroupCommit: commands of many entities that queue while a commit is
// in flight are written together, in one batch.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)

	fs.hold(t)
	blocker := async(func() error { return add(ctx, carts, "blocker", "x", 1) })
	fs.waitEntered(t)
	const n = 50
	var calls []*result
	for i := range n {
		id := "c" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		calls = append(calls, async(func() error { return add(ctx, carts, id, "apple", 1) }))
	}
	eventually(t, "all commands to be queued", func() bool { return rt.Stats().Journal.Queued == n })
	fs.release()
	for _, c := range append(calls, blocker) {
		if err := c.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	batches := fs.committed()
	if len(batches) != 2 || batches[0] != 1 || batches[1] != n {
		t.Errorf("batches = %v, want [1 %d]: the queued commands in one transaction", batches, n)
	}
}

// TestMultiEventCommandIsAtomic: the events of one command reach the
// store in one transaction: when the store refuses a batch with one of
// them, the other is not stored either. Fails if the writer commits the
// events of a batch one at a time.
func TestMultiEventCommandIsAtomic(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	if err := add(ctx, carts, "c", "a", 1); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	fs.failIf = func(b *store.Batch) error {
		for _, e := range b.Events {
			if strings.Contains(string(e.Payload), "pair-b") {
				return errors.New("pair-b does not fit")
			}
		}
		return nil
	}
	fs.mu.Unlock()
	wantCode(t, add(ctx, carts, "c", "pair", 1), codes.Unavailable)
	var stored []string
	if err := fs.Store.ReadEvents(ctx, store.Ref{Type: cart.ShoppingCartEntityType, ID: "c"}, 0, func(e store.Event) error {
		stored = append(stored, string(e.Payload))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 {
		t.Errorf("stored %d events, want 1: half of a refused command was kept", len(stored))
	}
	fs.mu.Lock()
	fs.failIf = nil
	fs.mu.Unlock()
	if err := add(ctx, carts, "c", "pair", 1); err != nil {
		t.Fatal(err)
	}
	if batches := fs.committed(); batches[len(batches)-1] != 2 {
		t.Errorf("the two events of a command were written in batches %v, want one of 2", batches)
	}
}

// TestFencing: two runtimes (two nodes) on one store write the same entity.
// The stale one fails with ABORTED, resets, and then converges.
func TestFencing(t *testing.T) {
	t.Parallel()
	shared := memory.New()
	nodeA := cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(shared)).ClientConn())
	nodeB := cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(shared)).ClientConn())
	ctx := testContext(t)
	if err := add(ctx, nodeA, "c", "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := add(ctx, nodeB, "c", "b", 1); err != nil { // B loads after A's write
		t.Fatal(err)
	}
	// A's in-memory cart is stale: its next write collides at seq 2.
	wantCode(t, add(ctx, nodeA, "c", "a2", 1), codes.Aborted)
	// After the reset A sees B's write and continues the one history.
	if err := add(ctx, nodeA, "c", "a3", 1); err != nil {
		t.Fatal(err)
	}
	want := map[string]int32{"a": 1, "b": 1, "a3": 1}
	for _, node := range []*cart.ShoppingCartEntityClient{nodeA} {
		if q := quantities(t, node, "c"); len(q) != 3 || q["a"] != 1 || q["b"] != 1 || q["a3"] != 1 {
			t.Errorf("cart = %v, want %v", q, want)
		}
	}
	var seqs []int64
	_ = shared.ReadEvents(ctx, store.Ref{Type: "shopping-cart", ID: "c"}, 0, func(e store.Event) error {
		seqs = append(seqs, e.Seq)
		return nil
	})
	if len(seqs) != 3 || seqs[0] != 1 || seqs[2] != 3 {
		t.Errorf("stored history seqs = %v, want [1 2 3]", seqs)
	}
}

// TestRecoveryFromSnapshots: loading uses the newest snapshot and replays
// only later events, and deleting every snapshot changes no state.
func TestRecoveryFromSnapshots(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	ctx := testContext(t)
	writer := newRuntime(t, statefun.WithStore(fs), statefun.WithSnapshotEvery(100)) // the annotation says 100 too
	carts := cart.NewShoppingCartEntityClient(writer.ClientConn())
	for i := range 250 {
		if err := add(ctx, carts, "c", string(rune('a'+i%7)), int32(i%5+1)); err != nil {
			t.Fatal(err)
		}
	}
	before := quantities(t, carts, "c")
	if err := writer.Close(ctx); err != nil { // flushes snapshots
		t.Fatal(err)
	}
	snap, found, err := fs.LatestSnapshot(ctx, store.Ref{Type: "shopping-cart", ID: "c"})
	if err != nil || !found || snap.Seq != 200 {
		t.Fatalf("snapshot: %+v found=%v err=%v; want one at seq 200", snap, found, err)
	}

	reader := cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(fs)).ClientConn())
	fs.mu.Lock()
	fs.readFrom = nil
	fs.mu.Unlock()
	withSnapshot := quantities(t, reader, "c")
	fs.mu.Lock()
	from := append([]int64(nil), fs.readFrom...)
	fs.mu.Unlock()
	if len(from) != 1 || from[0] != 200 {
		t.Errorf("load read events after %v, want after 200 (the snapshot)", from)
	}

	if err := fs.DeleteSnapshots(ctx, "shopping-cart"); err != nil {
		t.Fatal(err)
	}
	replayed := quantities(t, cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(fs)).ClientConn()), "c")
	for name, got := range map[string]map[string]int32{"from snapshot": withSnapshot, "full replay": replayed} {
		if len(got) != len(before) {
			t.Errorf("%s: %v, want %v", name, got, before)
		}
		for k, v := range before {
			if got[k] != v {
				t.Errorf("%s: %s = %d, want %d", name, k, got[k], v)
			}
		}
	}
}

// TestPassivation: idle entities leave memory after the timeout and when
// the cache is over its bound, and come back from the store intact.
func TestPassivation(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	t.Run("bound", func(t *testing.T) {
		t.Parallel()
		rt := newRuntime(t, statefun.WithMaxEntities(10))
		carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
		for i := range 50 {
			if err := add(ctx, carts, string(rune('A'+i)), "x", 1); err != nil {
				t.Fatal(err)
			}
		}
		st := rt.Stats().Entities
		var cached int
		var evictions uint64
		for _, h := range st {
			cached += h.Cached
			evictions += h.Evictions
		}
		if cached > 10 || evictions < 40 {
			t.Errorf("cached %d, evictions %d; want at most 10 cached", cached, evictions)
		}
		for i := range 50 {
			if q := quantities(t, carts, string(rune('A'+i))); q["x"] != 1 {
				t.Fatalf("entity %c after eviction: %v", 'A'+i, q)
			}
		}
	})
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		rt := newRuntime(t, statefun.WithPassivation(50*time.Millisecond))
		carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
		if err := add(ctx, carts, "c", "x", 1); err != nil {
			t.Fatal(err)
		}
		eventually(t, "passivation", func() bool {
			for _, h := range rt.Stats().Entities {
				if h.EntityType == "shopping-cart" {
					return h.Cached == 0 && h.Evictions == 1
				}
			}
			return false
		})
		if q := quantities(t, carts, "c"); q["x"] != 1 {
			t.Errorf("after passivation: %v", q)
		}
	})
	// An entity with a change in flight is not evicted: a successor
	// loaded before the change lands would never show it, though its
	// caller is told OK. Fails without the durability check in
	// passivateLocked (instance.go).
	t.Run("pending changes stay", func(t *testing.T) {
		t.Parallel()
		fs := newFaultStore()
		rt := newRuntime(t, statefun.WithStore(fs), statefun.WithMaxEntities(1))
		carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
		ctx := testContext(t)
		fs.hold(t)
		pending := async(func() error { return add(ctx, carts, "pending", "x", 1) })
		fs.waitEntered(t)
		// Loading more entities pushes the cache over its bound; the
		// one with an uncommitted change must stay.
		for _, id := range []string{"other", "another", "third"} {
			if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: id}); err != nil {
				t.Fatal(err)
			}
		}
		// A read now must wait for the pending change, not reload
		// without it.
		read := async(func() error {
			if q := quantities(t, carts, "pending"); q["x"] != 1 {
				return fmt.Errorf("read while the change was in flight returned %v after it was acknowledged", q)
			}
			return nil
		})
		time.Sleep(20 * time.Millisecond)
		fs.release()
		if err := pending.wait(t); err != nil {
			t.Fatal(err)
		}
		if err := read.wait(t); err != nil {
			t.Fatal(err)
		}
		if q := quantities(t, carts, "pending"); q["x"] != 1 {
			t.Errorf("an acknowledged change is invisible: cart = %v", q)
		}
	})
}

// TestBackpressure: when the store falls behind, new commands wait for
// room and fail with RESOURCE_EXHAUSTED at their deadline.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt := newRuntime(t, statefun.WithStore(fs), statefun.WithMaxPending(2))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	fs.hold(t)
	a := async(func() error { return add(ctx, carts, "a", "x", 1) })
	fs.waitEntered(t)
	b := async(func() error { return add(ctx, carts, "b", "x", 1) })
	eventually(t, "two pending", func() bool { return rt.Stats().Journal.Pending == 2 })
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	wantCode(t, add(short, carts, "c", "x", 1), codes.ResourceExhausted)
	fs.release()
	for _, r := range []*result{a, b} {
		if err := r.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	if err := add(ctx, carts, "c", "x", 1); err != nil {
		t.Fatalf("after the store caught up: %v", err)
	}
}

// TestCloseFlushes: Close waits for accepted changes to be durable and
// releases their replies; later calls are refused.
func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	fs := newFaultStore()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(fs))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := testContext(t)
	fs.hold(t)
	var calls []*result
	for _, id := range []string{"a", "b", "c"} {
		calls = append(calls, async(func() error { return add(ctx, carts, id, "x", 1) }))
	}
	eventually(t, "three pending", func() bool { return rt.Stats().Journal.Pending == 3 })
	closed := async(func() error { return rt.Close(ctx) })
	time.Sleep(20 * time.Millisecond)
	if closed.finished() {
		t.Fatal("Close returned before pending changes were durable")
	}
	fs.release()
	if err := closed.wait(t); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if err := c.wait(t); err != nil {
			t.Fatalf("accepted call failed across Close: %v", err)
		}
	}
	wantCode(t, add(ctx, carts, "d", "x", 1), codes.Unavailable)
}

// TestKeyValueGateAndFencing: key-value writes are gated and versioned.
func TestKeyValueGateAndFencing(t *testing.T) {
	t.Parallel()
	shared := newFaultStore()
	nodeA := keyvalue.NewCustomerEntityClient(newRuntime(t, statefun.WithStore(shared)).ClientConn())
	nodeB := keyvalue.NewCustomerEntityClient(newRuntime(t, statefun.WithStore(shared)).ClientConn())
	ctx := testContext(t)
	if _, err := nodeA.Create(ctx, &keyvalue.CreateCustomerRequest{CustomerId: "ada", Name: "Ada", Address: "London"}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeB.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "ada", Address: "Paris"}); err != nil {
		t.Fatal(err)
	}
	_, err := nodeA.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "ada", Address: "Rome"})
	wantCode(t, err, codes.Aborted)
	got, err := nodeA.Get(ctx, &keyvalue.GetCustomerRequest{CustomerId: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, &keyvalue.Customer{Name: "Ada", Address: "Paris"}) {
		t.Errorf("after reset node A sees %v, want the stored Paris", got)
	}
	v, _, _ := shared.LoadValue(ctx, store.Ref{Type: "customer", ID: "ada"})
	if v.Version != 2 {
		t.Errorf("stored version %d, want 2", v.Version)
	}

	shared.hold(t)
	shared.waitEntered(t) // drain the signals of earlier commits
	for len(shared.entered) > 0 {
		shared.waitEntered(t)
	}
	write := async(func() error {
		_, err := nodeA.ChangeAddress(ctx, &keyvalue.ChangeAddressRequest{CustomerId: "ada", Address: "Oslo"})
		return err
	})
	shared.waitEntered(t)
	read := async(func() error {
		_, err := nodeA.Get(ctx, &keyvalue.GetCustomerRequest{CustomerId: "ada"})
		return err
	})
	time.Sleep(20 * time.Millisecond)
	if write.finished() || read.finished() {
		t.Fatal("key-value reply released before the write was durable")
	}
	shared.release()
	if err := write.wait(t); err != nil {
		t.Fatal(err)
	}
	if err := read.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptJournal: an event the entity cannot decode fails that entity
// with a clear error; other entities keep working.
func TestCorruptJournal(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := testContext(t)
	if err := st.Commit(ctx, &store.Batch{Events: []store.Event{
		{Entity: store.Ref{Type: "shopping-cart", ID: "bad"}, Seq: 1, EventType: "ItemTeleported", Payload: []byte{1}},
		{Entity: store.Ref{Type: "shopping-cart", ID: "garbled"}, Seq: 1, EventType: "ItemAdded", Payload: []byte{0xff, 0xff}},
	}}); err != nil {
		t.Fatal(err)
	}
	// The startup check would refuse the unknown type; serve anyway, as
	// a node does that started before a newer one wrote it.
	carts := cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(st), statefun.WithAllowUnknownEvents()).ClientConn())
	_, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "bad"})
	wantCode(t, err, codes.Internal)
	if want := `load shopping-cart/bad: event 1 has type "ItemTeleported", which this binary's "shopping-cart" entity does not declare, so the entity cannot be loaded; deploy a binary whose proto lists "ItemTeleported" in the entity's events`; err != nil && !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	_, err = carts.GetCart(ctx, &cart.GetCartRequest{CartId: "garbled"})
	wantCode(t, err, codes.Internal)
	if err := add(ctx, carts, "fine", "x", 1); err != nil {
		t.Fatalf("other entities must keep working: %v", err)
	}
}

// TestStableNamesOnDisk: history is read by the names in the annotations
// (entity type, event types), never by Go or proto names, so a history
// written before a rename of the Go types or the proto package loads. The
// events below are what any build writes: the names come from the
// annotations and the payloads are protobuf binary, which depends on field
// numbers only. Fails if the runtime stored or resolved events by their
// full proto names.
func TestStableNamesOnDisk(t *testing.T) {
	t.Parallel()
	st := memory.New()
	ctx := testContext(t)
	added, _ := proto.Marshal(&cart.ItemAdded{Sku: "apple", Quantity: 2})
	checkedOut, _ := proto.Marshal(&cart.CheckedOut{At: timestamppb.Now()})
	ref := store.Ref{Type: "shopping-cart", ID: "old"}
	if err := st.Commit(ctx, &store.Batch{Events: []store.Event{
		{Entity: ref, Seq: 1, EventType: "ItemAdded", Payload: added},
		{Entity: ref, Seq: 2, EventType: "cart-checked-out", Payload: checkedOut},
	}}); err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(newRuntime(t, statefun.WithStore(st)).ClientConn())
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetItems()) != 1 || got.GetItems()[0].GetQuantity() != 2 || got.GetCheckedOutAt() == nil {
		t.Errorf("cart from stored names = %v, want 2 apples, checked out", got)
	}
	// And what the runtime writes uses the same names.
	if _, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "new", Sku: "x"}); err != nil {
		t.Fatal(err)
	}
	_ = st.ReadEvents(ctx, store.Ref{Type: "shopping-cart", ID: "new"}, 0, func(e store.Event) error {
		if e.EventType != "ItemRemoved" {
			t.Errorf("stored event type %q, want the annotation's name ItemRemoved", e.EventType)
		}
		return nil
	})
}
