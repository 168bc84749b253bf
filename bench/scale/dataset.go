// Package scale measures statefun with many stored entities: it writes a
// data set of shopping carts straight into the Postgres store's tables
// (Load), then runs the shopping cart server on it and measures cold
// loads, replay, memory and passivation (Run). Command
// bench/cmd/scaleload drives it; `make bench-scale` runs that.
package scale

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// DatasetVersion changes whenever the rows a Dataset writes change (the
// carts' contents, the IDs, which carts have a snapshot): a database that
// holds another version is loaded again, not reused.
const DatasetVersion = 1

// Dataset is a set of shopping carts, each with its whole history of
// ItemAdded events stored, and every other cart with a snapshot. Carts
// 0..Entities-1 are measured; two more (ProbeIDs) are for checking that
// the server reads the rows as its own and appends to them, so that the
// measured carts are never written.
type Dataset struct {
	Entities        int
	EventsPerEntity int
}

// catalogue is the number of SKUs the carts draw from.
const catalogue = 1000

// The SKUs of a cart: few distinct products, each added many times, so
// that a cart with 100 events is a cart of a few lines (a cart of 100
// distinct lines would hold 10 KB in memory and 1M of them would not fit
// on a benchmark machine beside Postgres).
func linesOf(i int) int { return 3 + i%6 }

// CartID names cart i.
func CartID(i int) string { return fmt.Sprintf("cart-%07d", i) }

// HasSnapshot says whether cart i has a snapshot: every other cart, so
// that both kinds are spread over the whole ID range (and the table).
func HasSnapshot(i int) bool { return i%2 == 0 }

// Size is the number of carts written: the measured ones and the probes.
func (d Dataset) Size() int { return d.Entities + 2 }

// ProbeIDs are the indexes of the two probe carts: one with a snapshot,
// one without.
func (d Dataset) ProbeIDs() [2]int {
	if HasSnapshot(d.Entities) {
		return [2]int{d.Entities, d.Entities + 1}
	}
	return [2]int{d.Entities + 1, d.Entities}
}

// Event is event seq (1-based) of cart i.
func Event(i, seq int) *cartv1.ItemAdded {
	k := linesOf(i)
	line := (seq - 1) % k
	return &cartv1.ItemAdded{
		Sku:      fmt.Sprintf("sku-%03d", (i*31+line*97)%catalogue),
		Quantity: int32(1 + (i+seq)%3),
	}
}

// EncodeEvent encodes an event as the runtime does before it commits it.
func EncodeEvent(e *cartv1.ItemAdded) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(e)
}

// Apply applies an ItemAdded to a cart exactly as the shopping cart
// example's OnItemAdded does: the quantity goes to the SKU's line, or to a
// new line at the end.
func Apply(cart *cartv1.Cart, e *cartv1.ItemAdded) {
	for _, it := range cart.GetItems() {
		if it.GetSku() == e.GetSku() {
			it.Quantity += e.GetQuantity()
			return
		}
	}
	cart.Items = append(cart.Items, &cartv1.LineItem{Sku: e.GetSku(), Quantity: e.GetQuantity()})
}

// State is cart i after its first n events.
func State(i, n int) *cartv1.Cart {
	cart := &cartv1.Cart{}
	for seq := 1; seq <= n; seq++ {
		Apply(cart, Event(i, seq))
	}
	return cart
}

// EncodeSnapshot encodes a state as the runtime does when it takes a
// snapshot.
func EncodeSnapshot(cart *cartv1.Cart) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(cart)
}
