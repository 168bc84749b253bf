package scale

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/bench/internal/procstat"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

func TestEventRowsStreamEveryEventInSeqOrder(t *testing.T) {
	t.Parallel()
	d := Dataset{Entities: 3, EventsPerEntity: 7}
	rows := &eventRows{d: d, i: 1, end: d.Size()}
	var got []string
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		id, seq, payload := string(v[1].([]byte)), v[2].(int64), v[4].([]byte)
		i := 0
		for k := range d.Size() {
			if CartID(k) == id {
				i = k
			}
		}
		var e cartv1.ItemAdded
		if err := proto.Unmarshal(payload, &e); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&e, Event(i, int(seq))) {
			t.Errorf("%s event %d: payload %v, want %v", id, seq, &e, Event(i, int(seq)))
		}
		got = append(got, id+"/"+string(rune('0'+seq)))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Carts 1 to 4 (the measured 1 and 2, and the two probes), 7 each.
	if want := 4 * 7; len(got) != want {
		t.Fatalf("%d rows, want %d: %v", len(got), want, got)
	}
	if got[0] != CartID(1)+"/1" || got[len(got)-1] != CartID(4)+"/7" {
		t.Errorf("rows run from %s to %s, want cart 1 seq 1 to cart 4 seq 7", got[0], got[len(got)-1])
	}
}

func TestSnapshotDecodesToTheReplayedState(t *testing.T) {
	t.Parallel()
	for i := range 12 {
		want := State(i, 100)
		payload, err := EncodeSnapshot(want)
		if err != nil {
			t.Fatal(err)
		}
		var got cartv1.Cart
		if err := proto.Unmarshal(payload, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, want) {
			t.Errorf("cart %d: snapshot decodes to %v, replay makes %v", i, &got, want)
		}
		if n := len(want.GetItems()); n != linesOf(i) {
			t.Errorf("cart %d has %d lines, want %d", i, n, linesOf(i))
		}
	}
}

func TestProbesAreOneOfEachKind(t *testing.T) {
	t.Parallel()
	for _, n := range []int{4, 5} {
		p := Dataset{Entities: n}.ProbeIDs()
		if !HasSnapshot(p[0]) || HasSnapshot(p[1]) || p[0] < n || p[1] < n {
			t.Errorf("%d carts: probes %v, want one with a snapshot then one without, past the measured carts", n, p)
		}
	}
}

func TestGetCartSpreadTakesTheBucketsOfThePhase(t *testing.T) {
	t.Parallel()
	series := func(le string) string {
		return `statefun_request_duration_seconds_bucket{code="OK",method="/shop.cart.v1.ShoppingCartService/GetCart",le="` + le + `"}`
	}
	parse := func(text string) procstat.Metrics {
		m, err := procstat.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := parse(series("0.001") + " 5\n" + series("0.005") + " 5\n" + series("+Inf") + " 5\n")
	// 100 calls in the phase: 90 under 1 ms, 9 more under 5 ms, 1 above.
	after := parse(series("0.001") + " 95\n" + series("0.005") + " 104\n" + series("+Inf") + " 105\n" +
		`statefun_entities_cached{entity_type="shopping-cart"} 7` + "\n")
	got := getCartSpread(before, after)
	if got == nil || got.Count != 100 || got.P50 != time.Millisecond || got.P99 != 5*time.Millisecond {
		t.Errorf("spread %+v, want 100 calls, p50 ≤ 1ms, p99 ≤ 5ms", got)
	}
	if c := after.Sum("statefun_entities_cached"); c != 7 {
		t.Errorf("cached %v, want 7", c)
	}
}
