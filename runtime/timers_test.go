package statefun_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// timerCart is the test cart with timers. Its AddItem reads commands from
// the SKU:
//
//	later:NAME:MS:TARGET   schedule AddItem(TARGET, "fired:NAME") MS from now
//	at:NAME:UNIXMS:TARGET  the same, at a time
//	cancel:NAME            cancel the timer NAME
//	later-fail:NAME        schedule NAME, then fail the command
//	flaky                  fail with UNAVAILABLE the first two deliveries
//
// and records every delivery of a timer it gets.
type timerCart struct {
	cartEntity
	log *deliveries
}

type delivery struct {
	at    time.Time
	cart  string
	sku   string
	timer statefun.FiredTimer
}

type deliveries struct {
	mu     sync.Mutex
	got    []delivery
	flaky  int
	notify chan struct{}
}

func newDeliveries() *deliveries { return &deliveries{notify: make(chan struct{}, 1000)} }

func (d *deliveries) all() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.got...)
}

// wait waits until n deliveries are recorded, for at most 10 seconds.
func (d *deliveries) wait(t *testing.T, n int) []delivery {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if got := d.all(); len(got) >= n {
			return got
		}
		select {
		case <-d.notify:
		case <-deadline:
			t.Fatalf("timed out waiting for %d timer deliveries; got %+v", n, d.all())
		}
	}
}

func (c timerCart) AddItem(ctx *cart.ShoppingCartContext, state *cart.Cart, req *cart.AddItemRequest) (*emptypb.Empty, error) {
	sku := req.GetSku()
	if fired, ok := statefun.TimerOf(ctx.Context()); ok {
		c.log.mu.Lock()
		if sku == "fired:flaky" && c.log.flaky < 2 {
			c.log.flaky++
			c.log.got = append(c.log.got, delivery{at: time.Now(), cart: ctx.EntityID(), sku: "refused", timer: fired})
			c.log.mu.Unlock()
			c.log.notify <- struct{}{}
			return nil, status.Error(codes.Unavailable, "not yet")
		}
		c.log.got = append(c.log.got, delivery{at: time.Now(), cart: ctx.EntityID(), sku: sku, timer: fired})
		c.log.mu.Unlock()
		c.log.notify <- struct{}{}
		ctx.Emit(&cart.ItemAdded{Sku: sku, Quantity: 1})
		return &emptypb.Empty{}, nil
	}
	parts := strings.Split(sku, ":")
	fire := func(name, target string) *statefun.Call {
		return cart.ShoppingCartAddItemCall(&cart.AddItemRequest{CartId: target, Sku: "fired:" + name, Quantity: 1})
	}
	switch parts[0] {
	case "later":
		ms, _ := strconv.Atoi(parts[2])
		ctx.ScheduleCallAfter(parts[1], time.Duration(ms)*time.Millisecond, fire(parts[1], parts[3]))
		return &emptypb.Empty{}, nil
	case "at":
		ms, _ := strconv.ParseInt(parts[2], 10, 64)
		ctx.ScheduleCall(parts[1], time.UnixMilli(ms), fire(parts[1], parts[3]))
		return &emptypb.Empty{}, nil
	case "cancel":
		ctx.CancelTimer(parts[1])
		return &emptypb.Empty{}, nil
	case "later-fail":
		ctx.ScheduleCallAfter(parts[1], 0, fire(parts[1], ctx.EntityID()))
		ctx.Emit(&cart.ItemAdded{Sku: "kept?", Quantity: 1})
		return nil, status.Error(codes.FailedPrecondition, "changed my mind")
	case "bad-name":
		ctx.ScheduleCallAfter("", 0, fire("x", ctx.EntityID()))
		return &emptypb.Empty{}, nil
	}
	return c.cartEntity.AddItem(ctx, state, req)
}

func addItem(t *testing.T, carts *cart.ShoppingCartEntityClient, id, sku string) {
	t.Helper()
	if _, err := carts.AddItem(context.Background(), &cart.AddItemRequest{CartId: id, Sku: sku, Quantity: 1}); err != nil {
		t.Fatalf("AddItem(%s, %q): %v", id, sku, err)
	}
}

func newTimerRuntime(t *testing.T, st store.Store, log *deliveries) *statefun.Runtime {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(timerCart{log: log})}, statefun.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	return rt
}

func pendingTimers(t *testing.T, st store.Store, id string) []string {
	t.Helper()
	ts, err := st.EntityTimers(context.Background(), store.Ref{Type: cart.ShoppingCartEntityType, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tm := range ts {
		names = append(names, tm.Name)
	}
	return names
}

// waitNoTimers waits until id has no pending timer: its deliveries are
// finished.
func waitNoTimers(t *testing.T, st store.Store, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(pendingTimers(t, st, id)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("timers of %s still pending after 10s: %q", id, pendingTimers(t, st, id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTimerFiresWhenDue: a scheduled call is made once it is due, not
// before, with the timer's name, due time and scheduler on its context,
// and the timer is gone once delivered.
func TestTimerFiresWhenDue(t *testing.T) {
	t.Parallel()
	st, log := memory.New(), newDeliveries()
	carts := cart.NewShoppingCartEntityClient(newTimerRuntime(t, st, log).ClientConn())
	before := time.Now()
	addItem(t, carts, "c1", "later:expire:200:c2")
	if got := pendingTimers(t, st, "c1"); fmt.Sprint(got) != "[expire]" {
		t.Fatalf("pending timers after scheduling: %q, want [expire]", got)
	}
	d := log.wait(t, 1)[0]
	if d.cart != "c2" || d.sku != "fired:expire" {
		t.Errorf("delivery to %s of %q, want c2 and fired:expire", d.cart, d.sku)
	}
	want := statefun.FiredTimer{EntityType: cart.ShoppingCartEntityType, EntityID: "c1", Name: "expire", Attempt: 1}
	if got := d.timer; got.EntityType != want.EntityType || got.EntityID != want.EntityID || got.Name != want.Name || got.Attempt != want.Attempt {
		t.Errorf("TimerOf = %+v, want %+v", got, want)
	}
	if due := d.timer.Due; due.Before(before.Add(200*time.Millisecond).Truncate(time.Microsecond)) || d.at.Before(due) {
		t.Errorf("timer due %v, delivered at %v; scheduled at %v for 200ms later", due, d.at, before)
	}
	waitNoTimers(t, st, "c1")
	got, err := carts.GetCart(context.Background(), &cart.GetCartRequest{CartId: "c2"})
	if err != nil || len(got.GetItems()) != 1 || got.GetItems()[0].GetSku() != "fired:expire" {
		t.Errorf("the target after the delivery: %v, %v", got, err)
	}
}

// TestTimerOfFailedCommandIsNotScheduled: a timer is stored with the
// command's changes, so a command that fails schedules nothing.
func TestTimerOfFailedCommandIsNotScheduled(t *testing.T) {
	t.Parallel()
	st, log := memory.New(), newDeliveries()
	carts := cart.NewShoppingCartEntityClient(newTimerRuntime(t, st, log).ClientConn())
	_, err := carts.AddItem(context.Background(), &cart.AddItemRequest{CartId: "c1", Sku: "later-fail:x", Quantity: 1})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = carts.AddItem(context.Background(), &cart.AddItemRequest{CartId: "c1", Sku: "bad-name", Quantity: 1})
	wantCode(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "timer name is empty") {
		t.Errorf("error for an empty timer name does not say so: %v", err)
	}
	// A timer of the same entity scheduled after them fires; had either
	// been stored, it would have fired first (due at once).
	addItem(t, carts, "c1", "later:probe:0:c1")
	if got := log.wait(t, 1); len(got) != 1 || got[0].sku != "fired:probe" {
		t.Errorf("deliveries: %+v, want only the probe", got)
	}
	if got := pendingTimers(t, st, "c1"); len(got) > 1 || (len(got) == 1 && got[0] != "probe") {
		t.Errorf("pending timers: %q", got)
	}
}

// TestTimerReplacedAndCancelled: scheduling a name again replaces its
// timer; a cancelled timer never fires.
func TestTimerReplacedAndCancelled(t *testing.T) {
	t.Parallel()
	st, log := memory.New(), newDeliveries()
	carts := cart.NewShoppingCartEntityClient(newTimerRuntime(t, st, log).ClientConn())
	addItem(t, carts, "c1", "later:x:3600000:a")
	addItem(t, carts, "c1", "later:y:100:b")
	addItem(t, carts, "c1", "cancel:y")
	addItem(t, carts, "c1", "later:x:150:c")
	addItem(t, carts, "c1", "later:z:300:d")
	log.wait(t, 2)
	time.Sleep(200 * time.Millisecond) // room for a wrong delivery
	got := log.all()
	if len(got) != 2 || got[0].cart != "c" || got[1].cart != "d" {
		t.Errorf("deliveries went to %v, want c (x, replaced) then d (z); y was cancelled", got)
	}
	waitNoTimers(t, st, "c1")
}

// TestTimerSurvivesRestart: a timer is stored, not held in memory: one
// scheduled before a restart fires after it.
func TestTimerSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() store.Store {
		st, err := embedded.Open(dir, embedded.WithNoSync(true))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st, log := open(), newDeliveries()
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(timerCart{log: log})}, statefun.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	addItem(t, cart.NewShoppingCartEntityClient(rt.ClientConn()), "c1", "later:after-restart:300:c1")
	closeRuntime(t, rt)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := log.all(); len(got) != 0 {
		t.Fatalf("delivered before the restart: %+v", got)
	}
	st = open()
	t.Cleanup(func() { _ = st.Close() })
	newTimerRuntime(t, st, log)
	if got := log.wait(t, 1); got[0].sku != "fired:after-restart" {
		t.Errorf("delivery after the restart: %+v", got[0])
	}
	waitNoTimers(t, st, "c1")
}

// TestTimerRetriesFailedDelivery: a delivery that fails for a reason a
// retry may cure is retried, with the attempt counted, until it succeeds.
func TestTimerRetriesFailedDelivery(t *testing.T) {
	t.Parallel()
	st, log := memory.New(), newDeliveries()
	rt := newTimerRuntime(t, st, log)
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	addItem(t, carts, "c1", "later:flaky:0:c1")
	got := log.wait(t, 3)
	waitNoTimers(t, st, "c1")
	if m := statefun.TimerMetricsForTest(rt); m["statefun_timers_fired_total"] != 1 || m["statefun_timers_retried_total"] != 2 || m["statefun_timers_refused_total"] != 0 {
		t.Errorf("timer metrics after two failed deliveries and one accepted: %v", m)
	}
	var attempts []int
	for _, d := range got {
		attempts = append(attempts, d.timer.Attempt)
	}
	if fmt.Sprint(attempts) != "[1 2 3]" || got[2].sku != "fired:flaky" {
		t.Errorf("deliveries %+v: attempts %v, want [1 2 3] and the third accepted", got, attempts)
	}
	waitNoTimers(t, st, "c1")
}

// TestTimerDeliveredBeforeACrashIsNotAppliedAgain: a timer whose delivery
// committed, but which the process died before finishing, is delivered
// again after the restart; the first delivery of a timer skips looking up
// its idempotency key, so what keeps its effect from being applied twice
// is the store refusing a second answer to the key. The repeat then
// retries, finds the first answer, and the timer is finished.
func TestTimerDeliveredBeforeACrashIsNotAppliedAgain(t *testing.T) {
	t.Parallel()
	st, log := memory.New(), newDeliveries()
	tm := store.Timer{
		Entity: store.Ref{Type: cart.ShoppingCartEntityType, ID: "scheduler"}, Name: "once", ID: 7,
		Due:  time.Now().Add(-time.Second).Truncate(time.Microsecond),
		Call: statefun.EncodeCallForTest(cart.ShoppingCartAddItemCall(&cart.AddItemRequest{CartId: "c1", Sku: "fired:once", Quantity: 1})),
	}
	// The first delivery, as it committed before the crash: its call,
	// with the timer's idempotency key, applied and answered.
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(timerCart{log: newDeliveries()})}, statefun.WithStore(st))
	if err != nil {
		t.Fatal(err)
	}
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	ctx := metadata.AppendToOutgoingContext(context.Background(), statefun.IdempotencyKeyHeader, statefun.TimerCallKeyForTest(tm))
	if _, err := carts.AddItem(ctx, &cart.AddItemRequest{CartId: "c1", Sku: "fired:once", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	closeRuntime(t, rt)
	// ... and its timer, still pending, never attempted as far as the
	// store knows.
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Commit(cctx, &store.Batch{Timers: []store.TimerChange{{Timer: tm}}}); err != nil {
		t.Fatal(err)
	}

	rt = newTimerRuntime(t, st, log)
	waitNoTimers(t, st, "scheduler")
	got, err := cart.NewShoppingCartEntityClient(rt.ClientConn()).GetCart(cctx, &cart.GetCartRequest{CartId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	quantity := 0
	for _, item := range got.GetItems() {
		if item.GetSku() == "fired:once" {
			quantity += int(item.GetQuantity())
		}
	}
	if quantity != 1 {
		t.Errorf("cart after the redelivery holds %d of the timer's item, want 1 (applied once): %v; deliveries %+v", quantity, got.GetItems(), log.all())
	}
}

// TestTimersFireOnTheirOwnerInACluster: in a cluster each timer is fired
// by the node that holds its shard, once, and a node that leaves hands its
// pending timers to the next owner with the shard.
func TestTimersFireOnTheirOwnerInACluster(t *testing.T) {
	t.Parallel()
	st, log := memory.New(), newDeliveries()
	a := startNodeWith(t, st, 2*time.Second, cart.NewShoppingCart(timerCart{log: log}))
	b := startNodeWith(t, st, 2*time.Second, cart.NewShoppingCart(timerCart{log: log}))
	eventually(t, "the shards to spread", func() bool { return held(a) == 32 && held(b) == 32 })
	const n = 40
	schedule := func(round string) {
		due := time.Now().Add(time.Second).UnixMilli()
		for i := range n {
			addItem(t, a.carts, fmt.Sprintf("c%d", i), fmt.Sprintf("at:%s:%d:%s%d", round, due, round, i))
		}
	}
	check := func(round string, deliveries []delivery, fired uint64) {
		t.Helper()
		seen := map[string]int{}
		for _, d := range deliveries {
			if strings.HasPrefix(d.cart, round) {
				seen[d.cart]++
			}
		}
		if len(seen) != n {
			t.Errorf("%s: deliveries reached %d targets, want %d: %v", round, len(seen), n, seen)
		}
		for target, times := range seen {
			if times != 1 {
				t.Errorf("%s: %s got %d deliveries, want 1", round, target, times)
			}
		}
		// Counted where they were fired: a repeat absorbed by the call's
		// idempotency key shows here, not in the deliveries.
		if fired != n {
			t.Errorf("%s: the nodes fired %d timers between them, want %d: each by its owner, once", round, fired, n)
		}
	}
	firedSoFar := func() uint64 { return a.rt.Stats().Timers.Fired + b.rt.Stats().Timers.Fired }

	// Both nodes up: each fires the timers of its shards.
	schedule("both")
	log.wait(t, n)
	time.Sleep(300 * time.Millisecond) // room for a duplicate
	check("both", log.all(), firedSoFar())
	if a.rt.Stats().Timers.Fired == 0 || b.rt.Stats().Timers.Fired == 0 {
		t.Errorf("fired by a: %d, by b: %d; want both nodes to fire their shards' timers", a.rt.Stats().Timers.Fired, b.rt.Stats().Timers.Fired)
	}

	// One node leaves before the next timers are due: its shards, timers
	// and all, move to the other.
	before := firedSoFar()
	schedule("handed")
	b.stop(t)
	log.wait(t, 2*n)
	time.Sleep(300 * time.Millisecond)
	check("handed", log.all(), firedSoFar()-before)
	for i := range n {
		waitNoTimers(t, st, fmt.Sprintf("c%d", i))
	}
}

// TestTraceTimerContinuesTrace: a timer's delivery continues the trace of
// the command that scheduled it, from the trace context stored with the
// timer, and its request span is the delivery's child. Fails without the
// trace context encoded into the stored call (timers.go, "traceContext").
func TestTraceTimerContinuesTrace(t *testing.T) {
	t.Parallel()
	tp, exp := newTracer(t)
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(timerCart{log: newDeliveries()})}, statefun.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	carts := cart.NewShoppingCartEntityClient(rt.ClientConn())
	addItem(t, carts, "c1", "later:trace:0:c2")
	scheduled := spanOf(t, exp, addItemSpan, "c1").SpanContext.TraceID()
	eventually(t, "the timer's delivery span", func() bool { return len(spansNamed(exp, "statefun.timer.deliver")) == 1 })
	deliver := spansNamed(exp, "statefun.timer.deliver")[0]
	if got := deliver.SpanContext.TraceID(); got != scheduled {
		t.Errorf("the timer was delivered in trace %s, want the scheduling command's %s", got, scheduled)
	}
	wantAttr(t, deliver, "statefun.timer.name", "trace")
	eventually(t, "the target's request span", func() bool { return len(spansNamed(exp, addItemSpan)) == 2 })
	childOf(t, exp, addItemSpan, deliver)
}
