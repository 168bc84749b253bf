package statefun_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/runtime/store/postgres"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// cartWithout is the shopping cart as an older (or trimmed) binary hosts
// it: its proto no longer lists the event stored as dropped. It serves
// GetCart only, which loads the entity.
func cartWithout(dropped string) *statefun.Entity {
	return statefun.NewEntity(statefun.EntityConfig[*cart.Cart]{
		Type:     cart.ShoppingCartEntityType,
		Kind:     statefun.EventSourced,
		Service:  &cart.ShoppingCart_ServiceDesc,
		NewState: func() *cart.Cart { return new(cart.Cart) },
		NewEvent: func(eventType string) proto.Message {
			switch eventType {
			case dropped:
				return nil
			case "ItemAdded":
				return new(cart.ItemAdded)
			case "ItemRemoved":
				return new(cart.ItemRemoved)
			case "cart-checked-out":
				return new(cart.CheckedOut)
			}
			return nil
		},
		ApplyEvent: func(*cart.Cart, proto.Message) {},
		NewService: func(h *statefun.Host[*cart.Cart]) any { return cartReader{host: h} },
	})
}

type cartReader struct {
	cart.UnimplementedShoppingCartServer
	host *statefun.Host[*cart.Cart]
}

func (s cartReader) GetCart(ctx context.Context, req *cart.GetCartRequest) (*cart.Cart, error) {
	return statefun.Read(ctx, s.host, req.GetCartId(), func(_ *statefun.ReadContext, c *cart.Cart) (*cart.Cart, error) {
		return c, nil
	})
}

// TestStartupRefusesUnknownStoredEvents is the schema check of invariant 9
// (INVARIANTS.md) end to end: one binary writes its events through the
// runtime, and a binary whose entity no longer declares one of them
// refuses to start, naming the entity type and the event type; with
// WithAllowUnknownEvents it starts, warns, and fails only the loads that
// meet the event. Fails if Commit stops registering event types (the
// check would then find nothing), or if the check compared message names
// instead of stored names (the checkout is stored as "cart-checked-out").
func TestStartupRefusesUnknownStoredEvents(t *testing.T) {
	t.Parallel()
	st := memory.New()
	testStartupCheck(t, func() store.Store { return st })
}

// TestStartupRefusesUnknownStoredEventsOnPostgres is the same on Postgres,
// each runtime with a store of its own on one schema, as separate
// processes would be: the registry is in the database, and a store's
// memory of the types it registered is no part of the check. Fails if the
// Postgres Commit stops sending register-event-types.
func TestStartupRefusesUnknownStoredEventsOnPostgres(t *testing.T) {
	t.Parallel()
	url := benchDatabaseURL()
	schema := "statefun_test_" + strings.ToLower(rand.Text())
	t.Cleanup(func() { dropSchema(url, schema) })
	testStartupCheck(t, func() store.Store {
		st, err := postgres.Open(t.Context(), url, postgres.WithSchema(schema))
		if err != nil {
			t.Fatalf("open Postgres (start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start, or set STATEFUN_TEST_DATABASE_URL): %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	})
}

// testStartupCheck runs the scenario; open returns the store for each
// runtime it starts.
func testStartupCheck(t *testing.T, open func() store.Store) {
	ctx := testContext(t)
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(open()))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	for _, call := range []func() error{
		func() error { return add(ctx, carts, "removed", "apple", 2) },
		func() error {
			_, err := carts.RemoveItem(ctx, &cart.RemoveItemRequest{CartId: "removed", Sku: "apple"})
			return err
		},
		func() error { return add(ctx, carts, "added", "pear", 1) },
		func() error {
			_, err := carts.Checkout(ctx, &cart.CheckoutRequest{CartId: "added"})
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	closeRuntime(t, rt)

	// The same binary starts again: every stored type is known by its
	// stored name.
	closeRuntime(t, newRuntime(t, statefun.WithStore(open())))

	rt, err = statefun.New([]*statefun.Entity{cartWithout("ItemRemoved")}, statefun.WithStore(open()))
	if err == nil {
		closeRuntime(t, rt)
	}
	want := `entity type "shopping-cart" has stored events this binary does not know: ItemRemoved; an entity holding one could not be loaded. ` +
		`Deploy a binary whose proto lists them in the entity's events (or keep them listed until no stored entity holds them), ` +
		`or start with --allow-unknown-events`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("New with a stored event the entity does not declare: %v\nwant an error saying %q", err, want)
	}

	var log syncBuffer
	rt, err = statefun.New([]*statefun.Entity{cartWithout("ItemRemoved")}, statefun.WithStore(open()),
		statefun.WithAllowUnknownEvents(), statefun.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatalf("New WithAllowUnknownEvents: %v", err)
	}
	defer closeRuntime(t, rt)
	if got := log.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "entity=shopping-cart") || !strings.Contains(got, `unknown_events=ItemRemoved`) {
		t.Errorf("log of a start WithAllowUnknownEvents:\n%s\nwant a warning naming shopping-cart and ItemRemoved", got)
	}
	carts = cart.NewShoppingCartEntityClient(rt.ClientConn())
	if _, err := carts.GetCart(ctx, &cart.GetCartRequest{CartId: "added"}); err != nil {
		t.Errorf("GetCart of a cart without the unknown event: %v", err)
	}
	_, err = carts.GetCart(ctx, &cart.GetCartRequest{CartId: "removed"})
	wantCode(t, err, codes.Internal)
	if want := `load shopping-cart/removed: event 2 has type "ItemRemoved", which this binary's "shopping-cart" entity does not declare, so the entity cannot be loaded; ` +
		`deploy a binary whose proto lists "ItemRemoved" in the entity's events`; !strings.Contains(err.Error(), want) {
		t.Errorf("loading a cart with an unknown event: %v\nwant it to say %q", err, want)
	}
}

// TestStartupCheckNamesEveryEntityType: all the entity types with unknown
// stored events are reported at once, each with all of its unknown types,
// and entity types the binary does not host are not checked.
func TestStartupCheckNamesEveryEntityType(t *testing.T) {
	t.Parallel()
	st := memory.New()
	if err := st.Commit(testContext(t), &store.Batch{Events: []store.Event{
		{Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: "a"}, Seq: 1, EventType: "CouponApplied"},
		{Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: "a"}, Seq: 2, EventType: "ItemAdded"},
		{Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: "b"}, Seq: 1, EventType: "ItemTeleported"},
		{Entity: store.Ref{Type: "not-hosted", ID: "a"}, Seq: 1, EventType: "Whatever"},
	}}); err != nil {
		t.Fatal(err)
	}
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})}, statefun.WithStore(st))
	if err == nil {
		closeRuntime(t, rt)
		t.Fatal("New started with unknown stored events")
	}
	if want := `entity type "shopping-cart" has stored events this binary does not know: CouponApplied, ItemTeleported;`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\ndoes not say %q", err, want)
	}
	if strings.Contains(err.Error(), "not-hosted") {
		t.Errorf("error %q names an entity type the binary does not host", err)
	}
}

// TestServeRefusesUnknownStoredEvents: the server refuses to start on an
// embedded store whose events the binary does not know, and starts with
// --allow-unknown-events (here set by its environment variable).
func TestServeRefusesUnknownStoredEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := embedded.Open(dir, embedded.WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(testContext(t), &store.Batch{Events: []store.Event{
		{Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: "a"}, Seq: 1, EventType: "ItemTeleported"},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--http-listen", ""}
	entity := cart.NewShoppingCart(cartEntity{})

	var out syncBuffer
	noEnv := func(string) string { return "" }
	// Bounded: a server that wrongly starts serves until its context ends.
	refuseCtx, cancelRefuse := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelRefuse()
	if code := statefun.Run(refuseCtx, args, noEnv, &out, &out, entity); code != 1 {
		t.Errorf("serve exited with %d, want 1:\n%s", code, &out)
	}
	if want := `entity type \"shopping-cart\" has stored events this binary does not know: ItemTeleported;`; !strings.Contains(out.String(), want) {
		t.Errorf("serve said:\n%s\nwant %s", &out, want)
	}

	var served syncBuffer
	allow := func(name string) string {
		if name == "STATEFUN_ALLOW_UNKNOWN_EVENTS" {
			return "true"
		}
		return ""
	}
	ctx, cancel := context.WithCancel(testContext(t))
	exit := make(chan int, 1)
	go func() { exit <- statefun.Run(ctx, args, allow, &served, &served, entity) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(served.String(), "serving gRPC") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-exit; code != 0 {
		t.Errorf("serve with $STATEFUN_ALLOW_UNKNOWN_EVENTS=true exited with %d, want 0:\n%s", code, &served)
	}
	if got := served.String(); !strings.Contains(got, "serving gRPC") || !strings.Contains(got, "unknown_events=ItemTeleported") {
		t.Errorf("serve with $STATEFUN_ALLOW_UNKNOWN_EVENTS=true said:\n%s\nwant it to serve and warn about ItemTeleported", got)
	}
}
