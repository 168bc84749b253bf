package baseline_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/bench/baseline"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func databaseURL() string {
	if url := os.Getenv("STATEFUN_TEST_DATABASE_URL"); url != "" {
		return url
	}
	return "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
}

// newServer returns a baseline server on a schema of its own, dropped when
// the test ends.
func newServer(t *testing.T, poolSize int) *baseline.Server {
	t.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("baseline_test_%d", time.Now().UnixNano())
	if err := baseline.Migrate(ctx, databaseURL(), schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.WithoutCancel(ctx), databaseURL())
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	pool, err := baseline.OpenPool(ctx, databaseURL(), schema, poolSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return baseline.New(pool)
}

func TestCart(t *testing.T) {
	t.Parallel()
	s := newServer(t, 2)
	ctx := context.Background()
	got, err := s.GetCart(ctx, &cartv1.GetCartRequest{CartId: "new"})
	if err != nil || len(got.GetItems()) != 0 {
		t.Fatalf("GetCart of a new cart = %v, %v; want an empty cart", got, err)
	}
	for _, req := range []*cartv1.AddItemRequest{
		{CartId: "c1", Sku: "apple", Quantity: 2},
		{CartId: "c1", Sku: "pear", Quantity: 1},
		{CartId: "c1", Sku: "apple", Quantity: 3},
	} {
		if _, err := s.AddItem(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RemoveItem(ctx, &cartv1.RemoveItemRequest{CartId: "c1", Sku: "pear"}); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetCart(ctx, &cartv1.GetCartRequest{CartId: "c1"})
	if err != nil || len(got.GetItems()) != 1 || got.GetItems()[0].GetQuantity() != 5 {
		t.Fatalf("GetCart = %v, %v; want 5 apples", got, err)
	}
	if _, err := s.Checkout(ctx, &cartv1.CheckoutRequest{CartId: "c1"}); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"no key":         second(s.AddItem(ctx, &cartv1.AddItemRequest{Sku: "apple", Quantity: 1})),
		"bad quantity":   second(s.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c2", Sku: "apple"})),
		"checked out":    second(s.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 1})),
		"not in cart":    second(s.RemoveItem(ctx, &cartv1.RemoveItemRequest{CartId: "c3", Sku: "apple"})),
		"empty checkout": second(s.Checkout(ctx, &cartv1.CheckoutRequest{CartId: "c4"})),
	} {
		want := map[string]codes.Code{"no key": codes.InvalidArgument, "bad quantity": codes.InvalidArgument,
			"checked out": codes.FailedPrecondition, "not in cart": codes.NotFound, "empty checkout": codes.FailedPrecondition}[name]
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestConcurrentWritesLoseNothing: writers racing on one cart, the first
// of them creating it, each get their item in. The row lock serialises
// updates, and a lost race to insert the row retries against the winner's.
func TestConcurrentWritesLoseNothing(t *testing.T) {
	t.Parallel()
	s := newServer(t, 8)
	ctx := context.Background()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := s.AddItem(ctx, &cartv1.AddItemRequest{CartId: "hot", Sku: "apple", Quantity: 1}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := s.GetCart(ctx, &cartv1.GetCartRequest{CartId: "hot"})
	if err != nil || len(got.GetItems()) != 1 || got.GetItems()[0].GetQuantity() != writers*each {
		t.Fatalf("GetCart = %v, %v; want %d apples", got, err, writers*each)
	}
}
