package reliability

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// stallingStore stops answering while stalled, as a database behind a
// network partition does: every call waits until its context ends.
type stallingStore struct {
	store.Store
	mu      sync.Mutex
	stalled chan struct{} // non-nil while stalled; closed when it ends
}

func (s *stallingStore) stall() {
	s.mu.Lock()
	s.stalled = make(chan struct{})
	s.mu.Unlock()
}

func (s *stallingStore) resume() {
	s.mu.Lock()
	close(s.stalled)
	s.stalled = nil
	s.mu.Unlock()
}

func (s *stallingStore) wait(ctx context.Context) error {
	s.mu.Lock()
	stalled := s.stalled
	s.mu.Unlock()
	if stalled == nil {
		return nil
	}
	select {
	case <-stalled:
		return nil
	case <-ctx.Done():
		// What pgx returns: the context's error, wrapped.
		return ctx.Err()
	}
}

func (s *stallingStore) Commit(ctx context.Context, b *store.Batch) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.Commit(ctx, b)
}

func (s *stallingStore) ReadEvents(ctx context.Context, ref store.Ref, after int64, fn func(store.Event) error) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.ReadEvents(ctx, ref, after, fn)
}

func (s *stallingStore) LatestSnapshot(ctx context.Context, ref store.Ref) (store.Snapshot, bool, error) {
	if err := s.wait(ctx); err != nil {
		return store.Snapshot{}, false, err
	}
	return s.Store.LatestSnapshot(ctx, ref)
}

// TestStoreThatStopsAnswering: a store that hangs (rather than refusing)
// must turn into UNAVAILABLE within the runtime's store timeout, for
// commands on loaded entities (their commit times out) and for entities
// that must first be loaded, even when the caller set no deadline. It
// found two bugs: a timed-out commit reached callers as DEADLINE_EXCEEDED
// (a deadline they never set), and loads had no timeout at all, so a call
// hung for as long as the database did.
func TestStoreThatStopsAnswering(t *testing.T) {
	t.Parallel()
	st := &stallingStore{Store: memory.New()}
	const storeTimeout = 300 * time.Millisecond
	rt := newInProcess(t, statefun.WithStore(st), statefun.WithCommitTimeout(storeTimeout))
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := context.Background() // no deadline: the runtime must bound the wait itself
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "warm", Sku: "a", Quantity: 1}); err != nil {
		t.Fatal(err)
	}

	st.stall()
	for _, call := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"command on a loaded entity", func(ctx context.Context) error {
			_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "warm", Sku: "b", Quantity: 1})
			return err
		}},
		{"read of an entity to load", func(ctx context.Context) error {
			_, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "cold"})
			return err
		}},
		{"command on an entity to load", func(ctx context.Context) error {
			_, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "cold2", Sku: "a", Quantity: 1})
			return err
		}},
	} {
		start := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- call.do(ctx) }()
		select {
		case err := <-errc:
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s while the store hangs: %v, want UNAVAILABLE", call.name, err)
			} else if !strings.Contains(err.Error(), "did not answer within") {
				t.Errorf("%s: %v does not say that the store timed out", call.name, err)
			}
			t.Logf("%s: %v after %v", call.name, status.Code(err), time.Since(start).Round(time.Millisecond))
		case <-time.After(hangLimit):
			t.Errorf("%s hangs while the store does: no answer after %v", call.name, hangLimit)
		}
	}

	st.resume()
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "warm", Sku: "c", Quantity: 1}); err != nil {
		t.Fatalf("after the store answers again: %v", err)
	}
	got, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "warm"})
	if err != nil {
		t.Fatal(err)
	}
	// b's commit timed out and wrote nothing: the entity was reset and
	// reloaded without it.
	if skus := skusOf(got); skus != "a,c" {
		t.Errorf("cart after the stall holds %s, want a,c", skus)
	}
}

func skusOf(c *cart.Cart) string {
	var skus []string
	for _, it := range c.GetItems() {
		skus = append(skus, it.GetSku())
	}
	return strings.Join(skus, ",")
}
