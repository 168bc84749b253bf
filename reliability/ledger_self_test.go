package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	"github.com/statefun-go/statefun/runtime/store"
)

// recorder is a testing.TB that keeps the failures it is given, to test
// the checks themselves.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestLedgerCheckCatches proves that ledger.check sees each broken
// guarantee, so that a passing crash test means something.
func TestLedgerCheckCatches(t *testing.T) {
	t.Parallel()
	event := func(cart string, seq int64, sku string) store.Event {
		payload, err := proto.Marshal(&cartv1.ItemAdded{Sku: sku, Quantity: quantityOf(sku)})
		if err != nil {
			t.Fatal(err)
		}
		return store.Event{Entity: store.Ref{Type: cartType, ID: cart}, Seq: seq, EventType: "ItemAdded", Payload: payload}
	}
	ledgerOf := func(cmds ...*command) *ledger {
		l := newLedger()
		for _, c := range cmds {
			c.quantity = quantityOf(c.sku)
			l.cmds[c.sku] = c
		}
		return l
	}
	acked := func(cart, sku string, sent, done time.Duration) *command {
		return &command{cart: cart, sku: sku, sent: sent, done: done, acked: true}
	}
	for _, tc := range []struct {
		name string
		l    *ledger
		h    history
		want string
	}{
		{"lost", ledgerOf(acked("c", "a", 1, 2), acked("c", "b", 3, 4)), history{"c": {event("c", 1, "a")}}, "is not in the store"},
		{"duplicated", ledgerOf(acked("c", "a", 1, 2)), history{"c": {event("c", 1, "a"), event("c", 2, "a")}}, "stored twice"},
		{"gap", ledgerOf(acked("c", "a", 1, 2), acked("c", "b", 3, 4)), history{"c": {event("c", 1, "a"), event("c", 3, "b")}}, "gap"},
		{"reordered", ledgerOf(acked("c", "a", 1, 2), acked("c", "b", 3, 4)), history{"c": {event("c", 1, "b"), event("c", 2, "a")}}, "yet is stored after it"},
		{"phantom", ledgerOf(), history{"c": {event("c", 1, "x")}}, "which no command sent"},
		{"misplaced", ledgerOf(acked("d", "a", 1, 2)), history{"c": {event("c", 1, "a")}}, "misplaced"},
		{"refused yet stored", ledgerOf(&command{cart: "c", sku: "a", sent: 1, done: 2, code: codes.Aborted}), history{"c": {event("c", 1, "a")}}, "promises it was not stored"},
		{"damaged", ledgerOf(acked("c", "a", 1, 2)), history{"c": {{Entity: store.Ref{Type: cartType, ID: "c"}, Seq: 1, EventType: "ItemAdded", Payload: []byte{0xff}}}}, "does not decode"},
	} {
		r := &recorder{TB: t}
		tc.l.check(r, tc.h)
		if !strings.Contains(strings.Join(r.errors, "\n"), tc.want) {
			t.Errorf("%s: check reported %q, want a failure saying %q", tc.name, r.errors, tc.want)
		}
	}

	// And a consistent history passes, concurrent commands in either order.
	r := &recorder{TB: t}
	v := ledgerOf(acked("c", "a", 1, 5), acked("c", "b", 2, 6), &command{cart: "c", sku: "u", sent: 3, done: 7, code: codes.Unavailable}).
		check(r, history{"c": {event("c", 1, "b"), event("c", 2, "u"), event("c", 3, "a")}})
	if len(r.errors) > 0 || v.Lost != 0 || v.UnackedPresent != 1 || v.Found != 2 {
		t.Errorf("consistent history: %v, %q", v, r.errors)
	}
}
