package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// fakeSource is an in-memory Source whose data the tests change while the
// console is open: events appended, consumers catching up.
type fakeSource struct {
	mu        sync.Mutex
	types     []EntityType
	entities  map[string]*fakeEntity // by type + "\x00" + ID
	consumers []Consumer
	cluster   Cluster
	timers    map[string][]Timer // by type + "\x00" + ID
	views     []View
	fail      error // when set, every read fails with it
}

type fakeEntity struct {
	typ, id string
	items   []cartItem // the state after each event: items[:seq]
	stored  []time.Time
	// hostile makes every state and payload carry markup.
	hostile bool
}

type cartItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Note     string `json:"note,omitempty"`
}

// fakeEpoch is when the fake's first event was stored.
var fakeEpoch = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// hostileText is markup in an ID, a state and a payload; a page that shows
// it unescaped runs the script.
const hostileText = `</pre><script>alert("x")</script><img src=x onerror=alert(1)>`

func newFakeSource() *fakeSource {
	f := &fakeSource{entities: map[string]*fakeEntity{}}
	f.types = []EntityType{
		{Type: "shop.Cart", Kind: "event-sourced", Service: "shop.v1.CartService", KeyFields: []string{"cart_id"}, Cached: 1204, Hits: 98231, Loads: 1877, Evictions: 673},
		{Type: "shop.Profile", Kind: "key-value", Service: "shop.v1.ProfileService", KeyFields: []string{"user_id"}, Cached: 310, Hits: 4410, Loads: 512, Evictions: 202},
		{Type: "shop.Stock", Kind: "event-sourced", Service: "shop.v1.StockService", KeyFields: []string{"warehouse", "sku"}, Cached: 87, Hits: 12044, Loads: 96, Evictions: 9},
	}
	f.addEntity("shop.Cart", "cart-1", 120, false)
	f.addEntity("shop.Cart", "cart-2", 6, false)
	f.addEntity("shop.Stock", joinKey("berlin/north", "sku 7 ü"), 4, false)
	f.addEntity("shop.Cart", hostileText+" a/b ü", 2, true)
	f.consumers = []Consumer{
		{Name: "cart-totals", EntityType: "shop.Cart", Position: "cart-1@118", LagEvents: 42, LagTime: 3500 * time.Millisecond, Retrying: 1, LastError: `handler cart-totals: insert total: ` + hostileText},
		{Name: "runtime/outbox", EntityType: "shop.Cart", Position: "global@20931", LagEvents: 0},
		{Name: "stock-publisher", EntityType: "shop.Stock", Position: "kafka:stock/3@771", LagEvents: 7, LagTime: 2 * time.Minute},
	}
	return f
}

// joinKey joins a composite key's values the way the runtime's JoinKey
// does (which this package cannot import: the runtime imports it).
func joinKey(parts ...string) string {
	escaped := make([]string, len(parts))
	for i, p := range parts {
		escaped[i] = strings.NewReplacer("%", "%25", "/", "%2F").Replace(p)
	}
	return strings.Join(escaped, "/")
}

func (f *fakeSource) addEntity(typ, id string, events int, hostile bool) {
	e := &fakeEntity{typ: typ, id: id, hostile: hostile}
	f.entities[typ+"\x00"+id] = e
	for range events {
		e.append()
	}
}

func (e *fakeEntity) append() {
	n := len(e.items) + 1
	item := cartItem{SKU: fmt.Sprintf("sku-%d", n), Quantity: n%3 + 1}
	if e.hostile {
		item.Note = hostileText
	}
	e.items = append(e.items, item)
	e.stored = append(e.stored, fakeEpoch.Add(time.Duration(n)*1500*time.Millisecond))
}

// appendEvents adds n events to an entity, as a running system would.
func (f *fakeSource) appendEvents(typ, id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entities[typ+"\x00"+id]
	for range n {
		e.append()
	}
}

// catchUp lowers a consumer's lag by n events (to no less than 0).
func (f *fakeSource) catchUp(name string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.consumers {
		c := &f.consumers[i]
		if c.Name != name {
			continue
		}
		c.LagEvents = max(0, c.LagEvents-n)
		if c.LagEvents == 0 {
			c.LagTime, c.Retrying, c.LastError = 0, 0, ""
		}
	}
}

func (f *fakeSource) failWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeSource) EntityTypes(context.Context) ([]EntityType, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return append([]EntityType(nil), f.types...), nil
}

func (f *fakeSource) EntityID(typ string, keyValues []string) (string, error) {
	for _, t := range f.types {
		if t.Type != typ {
			continue
		}
		if len(keyValues) != len(t.KeyFields) {
			return "", fmt.Errorf("%s has %d key fields (%s), got %d values", typ, len(t.KeyFields), strings.Join(t.KeyFields, ", "), len(keyValues))
		}
		return joinKey(keyValues...), nil
	}
	return "", fmt.Errorf("no entity type %q is hosted here", typ)
}

func (f *fakeSource) entity(typ, id string) (*fakeEntity, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	e, ok := f.entities[typ+"\x00"+id]
	if !ok {
		return nil, ErrNotFound
	}
	return e, nil
}

func (f *fakeSource) Entity(_ context.Context, typ, id string, seq int64) (Entity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.entity(typ, id)
	if err != nil {
		return Entity{}, err
	}
	latest := int64(len(e.items))
	if seq == 0 {
		seq = latest
	}
	if seq > latest {
		return Entity{}, fmt.Errorf("%s %s has no version %d; its latest is %d", typ, id, seq, latest)
	}
	state := struct {
		ID    string     `json:"id"`
		Items []cartItem `json:"items"`
	}{ID: id, Items: e.items[:seq]}
	return Entity{Type: typ, ID: id, Seq: seq, Latest: latest, StateJSON: indentJSON(state), SnapshotSeq: seq / 100 * 100}, nil
}

func (f *fakeSource) Events(_ context.Context, typ, id string, afterSeq int64, limit int) ([]Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.entity(typ, id)
	if err != nil {
		return nil, err
	}
	var events []Event
	for seq := afterSeq + 1; seq <= int64(len(e.items)) && len(events) < limit; seq++ {
		events = append(events, Event{
			Seq:         seq,
			Type:        "shop.v1.ItemAdded",
			StoredAt:    e.stored[seq-1],
			PayloadJSON: indentJSON(e.items[seq-1]),
		})
	}
	return events, nil
}

func (f *fakeSource) Timers(_ context.Context, typ, id string) ([]Timer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return f.timers[typ+"\x00"+id], nil
}

func (f *fakeSource) Views(context.Context) ([]View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return f.views, nil
}

func (f *fakeSource) Cluster(context.Context) (Cluster, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return Cluster{}, f.fail
	}
	return f.cluster, nil
}

func (f *fakeSource) Consumers(context.Context) ([]Consumer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return append([]Consumer(nil), f.consumers...), nil
}

// indentJSON writes markup as it is, as protojson does (encoding/json
// would escape it), so the hostile states reach the console raw.
func indentJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

var errFakeStore = errors.New("store unavailable: dial tcp 127.0.0.1:5432: connection refused")
