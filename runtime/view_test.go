package statefun_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/runtime/store/postgres"
	view "github.com/statefun-go/statefun/testdata/view"
)

// orderEntity is the test order. Place takes its time from the customer
// ID when it ends in "@<unix seconds>", so that tests order orders.
type orderEntity struct{}

func (orderEntity) Place(ctx *view.OrderContext, _ *view.Order, req *view.PlaceRequest) (*emptypb.Empty, error) {
	at := time.Unix(1_700_000_000, 0)
	customer := req.GetCustomerId()
	if i := strings.LastIndexByte(customer, '@'); i >= 0 {
		var s int64
		if _, err := fmt.Sscan(customer[i+1:], &s); err == nil {
			at, customer = time.Unix(s, 0), customer[:i]
		}
	}
	ctx.Emit(&view.OrderPlaced{CustomerId: customer, At: timestamppb.New(at)})
	return &emptypb.Empty{}, nil
}

func (orderEntity) AddItem(ctx *view.OrderContext, _ *view.Order, req *view.AddItemRequest) (*emptypb.Empty, error) {
	ctx.Emit(&view.ItemAdded{Sku: req.GetSku(), Quantity: req.GetQuantity(), PriceCents: req.GetPriceCents()})
	return &emptypb.Empty{}, nil
}

func (orderEntity) Ship(ctx *view.OrderContext, _ *view.Order, _ *view.ShipRequest) (*emptypb.Empty, error) {
	ctx.Emit(&view.OrderShipped{})
	return &emptypb.Empty{}, nil
}

func (orderEntity) Cancel(ctx *view.OrderContext, _ *view.Order, _ *view.CancelRequest) (*emptypb.Empty, error) {
	ctx.Emit(&view.OrderCancelled{})
	return &emptypb.Empty{}, nil
}

func (orderEntity) OnOrderPlaced(o *view.Order, e *view.OrderPlaced) {
	o.CustomerId, o.Status, o.PlacedAt = e.GetCustomerId(), view.OrderStatus_ORDER_STATUS_OPEN, e.GetAt()
}

func (orderEntity) OnItemAdded(o *view.Order, e *view.ItemAdded) {
	o.Items = append(o.Items, &view.Order_Item{Sku: e.GetSku(), Quantity: e.GetQuantity()})
	o.TotalCents += int64(e.GetQuantity()) * e.GetPriceCents()
}

func (orderEntity) OnOrderShipped(o *view.Order, _ *view.OrderShipped) {
	o.Status = view.OrderStatus_ORDER_STATUS_SHIPPED
}
func (orderEntity) OnOrderCancelled(o *view.Order, _ *view.OrderCancelled) {
	o.Status = view.OrderStatus_ORDER_STATUS_CANCELLED
}

// summaries is the updater of the order_summaries view: a cancelled
// order's row is deleted.
type summaries struct{}

func (summaries) OnOrderPlaced(ctx *statefun.ViewUpdateContext, row *view.OrderSummary, e *view.OrderPlaced) (*view.OrderSummary, error) {
	row.OrderId, row.CustomerId, row.Status = ctx.EntityID(), e.GetCustomerId(), view.OrderStatus_ORDER_STATUS_OPEN
	return row, nil
}

func (summaries) OnItemAdded(_ *statefun.ViewUpdateContext, row *view.OrderSummary, e *view.ItemAdded) (*view.OrderSummary, error) {
	row.Skus = append(row.Skus, e.GetSku())
	return row, nil
}

func (summaries) OnOrderShipped(_ *statefun.ViewUpdateContext, row *view.OrderSummary, _ *view.OrderShipped) (*view.OrderSummary, error) {
	row.Status = view.OrderStatus_ORDER_STATUS_SHIPPED
	return row, nil
}

func (summaries) OnOrderCancelled(*statefun.ViewUpdateContext, *view.OrderSummary, *view.OrderCancelled) (*view.OrderSummary, error) {
	return nil, nil
}

// viewRuntime starts a runtime with the order entity and both order views.
func viewRuntime(t *testing.T, st store.Store) *statefun.Runtime {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})},
		statefun.WithStore(st), statefun.WithViews(view.NewOrdersByCustomer(orderEntity{}), view.NewOrderSummaries(summaries{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	return rt
}

func placeOrder(t *testing.T, conn grpc.ClientConnInterface, id, customer string, items ...string) {
	t.Helper()
	ctx := testContext(t)
	orders := view.NewOrderEntityClient(conn)
	if _, err := orders.Place(ctx, &view.PlaceRequest{OrderId: id, CustomerId: customer}); err != nil {
		t.Fatal(err)
	}
	for _, sku := range items {
		if _, err := orders.AddItem(ctx, &view.AddItemRequest{OrderId: id, Sku: sku, Quantity: 1, PriceCents: 100}); err != nil {
			t.Fatal(err)
		}
	}
}

// customerOrders returns, by customer, the totals of the orders the view
// answers with, page by page.
func customerOrders(t *testing.T, conn grpc.ClientConnInterface, customer string, pageSize int32) []int64 {
	t.Helper()
	var totals []int64
	for o, err := range view.NewOrdersByCustomerViewClient(conn).GetCustomerOrdersAll(testContext(t), &view.GetCustomerOrdersRequest{CustomerId: customer, PageSize: pageSize}) {
		if err != nil {
			t.Fatal(err)
		}
		totals = append(totals, o.GetTotalCents())
	}
	return totals
}

func skuOrders(t *testing.T, conn grpc.ClientConnInterface, sku string) []string {
	t.Helper()
	resp, err := view.NewOrderSummariesViewClient(conn).FindOrdersWithSku(testContext(t), &view.FindOrdersWithSkuRequest{Sku: sku})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range resp.GetSummaries() {
		ids = append(ids, s.GetOrderId())
	}
	slices.Sort(ids)
	return ids
}

// eventuallyEqual polls got until it equals want, for at most 5 s.
func eventuallyEqual[T any](t *testing.T, what string, want T, got func() T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g := got()
		if fmt.Sprint(g) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %v, want %v (after 5s)", what, g, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestViewFollowsCommands: a view answers with rows built from the
// source's committed events, a state view's by the entity's own event
// handlers and an event view's by its updater, in query order, and a row
// the updater deletes is gone.
func TestViewFollowsCommands(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) store.Store{
		"memory":   func(*testing.T) store.Store { return memory.New() },
		"embedded": openEmbedded,
		"postgres": openPostgres,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rt := viewRuntime(t, open(t))
			conn := rt.ClientConn()
			placeOrder(t, conn, "o1", "ada@100", "apple")
			placeOrder(t, conn, "o2", "ada@300", "apple", "pear", "plum")
			placeOrder(t, conn, "o3", "ada@200", "pear", "pear")
			placeOrder(t, conn, "o4", "bob@400", "apple")

			// Newest first: o2 (300), o3 (200), o1 (100).
			eventuallyEqual(t, "ada's orders", []int64{300, 200, 100}, func() []int64 { return customerOrders(t, conn, "ada", 0) })
			eventuallyEqual(t, "bob's orders", []int64{100}, func() []int64 { return customerOrders(t, conn, "bob", 0) })
			eventuallyEqual(t, "orders with apple", []string{"o1", "o2", "o4"}, func() []string { return skuOrders(t, conn, "apple") })

			orders := view.NewOrderEntityClient(conn)
			ctx := testContext(t)
			if _, err := orders.Ship(ctx, &view.ShipRequest{OrderId: "o1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := orders.Cancel(ctx, &view.CancelRequest{OrderId: "o4"}); err != nil {
				t.Fatal(err)
			}
			// Shipped: left out by the query; cancelled: deleted by the updater.
			eventuallyEqual(t, "open orders with apple", []string{"o2"}, func() []string { return skuOrders(t, conn, "apple") })

			var large []string
			for o, err := range view.NewOrdersByCustomerViewClient(conn).StreamLargeOrders(ctx, &view.StreamLargeOrdersRequest{MinTotalCents: 200}) {
				if err != nil {
					t.Fatal(err)
				}
				large = append(large, fmt.Sprint(o.GetTotalCents()))
			}
			if strings.Join(large, ",") != "300,200" {
				t.Errorf("streamed large orders: %v, want 300,200 (largest first)", large)
			}
		})
	}
}

func openEmbedded(t *testing.T) store.Store {
	st, err := embedded.Open(t.TempDir(), embedded.WithNoSync(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func openPostgres(t *testing.T) store.Store {
	url := benchDatabaseURL()
	schema := "statefun_test_" + strings.ToLower(rand.Text())
	t.Cleanup(func() { dropSchema(url, schema) })
	st, err := postgres.Open(t.Context(), url, postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("open Postgres (start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start, or set STATEFUN_TEST_DATABASE_URL): %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestViewPagesThroughEveryRowOnce: following next_page_token visits every
// matching row once, in order, and a token that is not this query's is
// refused.
func TestViewPagesThroughEveryRowOnce(t *testing.T) {
	t.Parallel()
	rt := viewRuntime(t, memory.New())
	conn := rt.ClientConn()
	var want []int64
	for i := range 23 {
		// Totals 100..2300 placed at 1..23 s: newest first is largest first.
		items := make([]string, i+1)
		for j := range items {
			items[j] = "sku"
		}
		placeOrder(t, conn, fmt.Sprintf("o%02d", i), fmt.Sprintf("ada@%d", i+1), items...)
		want = append([]int64{int64(i+1) * 100}, want...)
	}
	eventuallyEqual(t, "ada's orders in pages of 5", want, func() []int64 { return customerOrders(t, conn, "ada", 5) })

	client := view.NewOrdersByCustomerViewClient(conn)
	ctx := testContext(t)
	first, err := client.GetCustomerOrders(ctx, &view.GetCustomerOrdersRequest{CustomerId: "ada", PageSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetOrders()) != 5 || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %d orders, next token %q; want 5 and a token", len(first.GetOrders()), first.GetNextPageToken())
	}
	for _, tok := range []string{"not a token", first.GetNextPageToken()[:len(first.GetNextPageToken())-2]} {
		_, err := client.GetCustomerOrders(ctx, &view.GetCustomerOrdersRequest{CustomerId: "ada", PageSize: 5, PageToken: tok})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("page token %q: %v, want InvalidArgument", tok, err)
		}
	}
	if _, err := client.GetCustomerOrders(ctx, &view.GetCustomerOrdersRequest{CustomerId: "ada", PageSize: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("page size -1: %v, want InvalidArgument", err)
	}
}

// TestViewRepeatedEventsChangeNothing: an updater that reads its source's
// events again from the start (its position lost, as after a crash before
// it was saved) leaves every row as it was: a row never moves back to an
// older event's.
func TestViewRepeatedEventsChangeNothing(t *testing.T) {
	t.Parallel()
	st := memory.New()
	rt := viewRuntime(t, st)
	conn := rt.ClientConn()
	placeOrder(t, conn, "o1", "ada@1", "apple", "pear")
	placeOrder(t, conn, "o2", "ada@2", "apple")
	if _, err := view.NewOrderEntityClient(conn).Cancel(testContext(t), &view.CancelRequest{OrderId: "o2"}); err != nil {
		t.Fatal(err)
	}
	eventuallyEqual(t, "orders with apple", []string{"o1"}, func() []string { return skuOrders(t, conn, "apple") })
	eventually(t, "every event applied", func() bool { return summaryStats(rt).Updated == 6 })
	closeRuntime(t, rt)

	// The updater starts over from the first event.
	if err := st.SaveConsumerPosition(testContext(t), "statefun.view.order_summaries.v2", "order", ""); err != nil {
		t.Fatal(err)
	}
	rt = viewRuntime(t, st)
	eventually(t, "every event read again", func() bool { return summaryStats(rt).Skipped == 6 })
	if s := summaryStats(rt); s.Updated != 0 {
		t.Errorf("a replay wrote %d rows; it should write none", s.Updated)
	}
	if got := skuOrders(t, rt.ClientConn(), "apple"); fmt.Sprint(got) != "[o1]" {
		t.Errorf("orders with apple after the replay: %v, want [o1] (o2 stays deleted)", got)
	}
	if got := skuOrders(t, rt.ClientConn(), "pear"); fmt.Sprint(got) != "[o1]" {
		t.Errorf("orders with pear after the replay: %v, want [o1]", got)
	}
}

// summaryStats returns the stats of the order_summaries view.
func summaryStats(rt *statefun.Runtime) statefun.ViewStats {
	for _, v := range rt.Stats().Views {
		if v.Name == "order_summaries" {
			return v
		}
	}
	return statefun.ViewStats{}
}

// gatedSummaries is a later version of the order_summaries view whose
// rows say so (each SKU upper-cased), and whose build waits for a gate.
type gatedSummaries struct {
	summaries
	gate chan struct{}
}

func (g gatedSummaries) OnItemAdded(ctx *statefun.ViewUpdateContext, row *view.OrderSummary, e *view.ItemAdded) (*view.OrderSummary, error) {
	select {
	case <-g.gate:
	case <-ctx.Context().Done():
		return nil, ctx.Context().Err()
	}
	row.Skus = append(row.Skus, strings.ToUpper(e.GetSku()))
	return row, nil
}

// summariesServer serves FindOrdersWithSku of a hand-made version of the
// view: the generated server of version 2 is the package's own.
type summariesServer struct {
	view.UnimplementedOrderSummariesServer
	h *statefun.ViewHost
}

func (s summariesServer) FindOrdersWithSku(ctx context.Context, req *view.FindOrdersWithSkuRequest) (*view.FindOrdersWithSkuResponse, error) {
	return statefun.QueryView[*view.FindOrdersWithSkuRequest, *view.FindOrdersWithSkuResponse](ctx, s.h, 0, req)
}

// summariesVersion is the order_summaries view at version, updated by u,
// configured as generated code configures it.
func summariesVersion(version int, u gatedSummaries, extra ...statefun.ViewQueryConfig) *statefun.View {
	return summariesView(version, u, nil, extra...)
}

// summariesView is summariesVersion with more queries (QueryView calls
// them by index, from 1), and the view's host handed to host.
func summariesView(version int, u gatedSummaries, host chan<- *statefun.ViewHost, extra ...statefun.ViewQueryConfig) *statefun.View {
	return statefun.NewView(statefun.ViewConfig{
		Name: "order_summaries", Version: version, EntityType: "order",
		Service: &view.OrderSummaries_ServiceDesc,
		NewRow:  func() proto.Message { return new(view.OrderSummary) },
		Update: func(ctx *statefun.ViewUpdateContext, row proto.Message, eventType string, payload []byte) (proto.Message, error) {
			r := row.(*view.OrderSummary)
			var out *view.OrderSummary
			var err error
			switch eventType {
			case "OrderPlaced":
				e := new(view.OrderPlaced)
				if err := proto.Unmarshal(payload, e); err != nil {
					return nil, err
				}
				out, err = u.OnOrderPlaced(ctx, r, e)
			case "ItemAdded":
				e := new(view.ItemAdded)
				if err := proto.Unmarshal(payload, e); err != nil {
					return nil, err
				}
				out, err = u.OnItemAdded(ctx, r, e)
			default:
				return row, nil
			}
			if out == nil {
				return nil, err
			}
			return out, err
		},
		Queries: append([]statefun.ViewQueryConfig{{
			Method:   "FindOrdersWithSku",
			Query:    "SELECT * FROM order_summaries WHERE skus = :sku AND NOT (status = 'ORDER_STATUS_SHIPPED' OR status = 'ORDER_STATUS_CANCELLED') LIMIT 100",
			Request:  new(view.FindOrdersWithSkuRequest),
			Response: new(view.FindOrdersWithSkuResponse),
		}}, extra...),
		NewService: func(h *statefun.ViewHost) any {
			if host != nil {
				host <- h
			}
			return summariesServer{h: h}
		},
	})
}

// TestViewNewVersionIsBuiltWhileTheOldOneAnswers: a server with a new
// version of a view answers from the last complete version until the new
// one has caught up with the source's events, then from the new one.
func TestViewNewVersionIsBuiltWhileTheOldOneAnswers(t *testing.T) {
	t.Parallel()
	st := memory.New()
	rt := viewRuntime(t, st) // order_summaries version 2
	placeOrder(t, rt.ClientConn(), "o1", "ada", "apple")
	eventuallyEqual(t, "version 2's rows", []string{"o1"}, func() []string { return skuOrders(t, rt.ClientConn(), "apple") })
	eventually(t, "version 2 to be complete", func() bool { return summaryStats(rt).Ready })
	closeRuntime(t, rt)

	gate := make(chan struct{})
	rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(st),
		statefun.WithViews(summariesVersion(3, gatedSummaries{gate: gate})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	// Version 3 is stuck on o1's ItemAdded: version 2 answers.
	time.Sleep(50 * time.Millisecond)
	if s := summaryStats(rt); s.Ready || s.Serving != 2 || s.Version != 3 {
		t.Fatalf("while version 3 is built: %+v, want version 2 serving", s)
	}
	if got := skuOrders(t, rt.ClientConn(), "apple"); fmt.Sprint(got) != "[o1]" {
		t.Errorf("while version 3 is built, orders with apple: %v, want version 2's [o1]", got)
	}
	close(gate)
	eventually(t, "version 3 to be complete", func() bool { return summaryStats(rt).Serving == 3 })
	if got := skuOrders(t, rt.ClientConn(), "APPLE"); fmt.Sprint(got) != "[o1]" {
		t.Errorf("version 3's orders with APPLE: %v, want [o1]", got)
	}
	if got := skuOrders(t, rt.ClientConn(), "apple"); len(got) != 0 {
		t.Errorf("version 3 answers with version 2's rows: %v", got)
	}
}

// TestViewInACluster: the view's updater runs on one node of a cluster,
// and every node answers its queries.
func TestViewInACluster(t *testing.T) {
	t.Parallel()
	st := memory.New()
	nodes := make([]*clusterNode, 2)
	for i := range nodes {
		nodes[i] = startNodeHosting(t, st, 2*time.Second, []*statefun.Entity{view.NewOrder(orderEntity{})},
			statefun.WithViews(view.NewOrdersByCustomer(orderEntity{}), view.NewOrderSummaries(summaries{})))
	}
	for i := range 10 {
		placeOrder(t, nodes[i%2].rt.ClientConn(), fmt.Sprintf("o%d", i), "ada", "apple")
	}
	for _, n := range nodes {
		eventuallyEqual(t, "orders with apple on "+n.addr, []string{"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"},
			func() []string { return skuOrders(t, n.rt.ClientConn(), "apple") })
	}
	var updated []uint64
	for _, n := range nodes {
		updated = append(updated, summaryStats(n.rt).Updated)
	}
	if (updated[0] == 0) == (updated[1] == 0) {
		t.Errorf("rows written per node: %v; want one node to run the view's updater", updated)
	}
}

// TestViewParametersAreValuesNotSQL: a parameter that reads as SQL is
// compared as a value: it matches nothing and changes nothing.
func TestViewParametersAreValuesNotSQL(t *testing.T) {
	t.Parallel()
	rt := viewRuntime(t, openPostgres(t))
	conn := rt.ClientConn()
	placeOrder(t, conn, "o1", "ada", "apple")
	eventuallyEqual(t, "orders with apple", []string{"o1"}, func() []string { return skuOrders(t, conn, "apple") })
	for _, attack := range []string{
		"apple' OR '1'='1",
		"x'); DROP TABLE view_order_summaries_v2; --",
		`apple" OR 1=1 --`,
	} {
		if got := skuOrders(t, conn, attack); len(got) != 0 {
			t.Errorf("sku %q matched %v", attack, got)
		}
	}
	if got := skuOrders(t, conn, "apple"); fmt.Sprint(got) != "[o1]" {
		t.Errorf("after the attempts, orders with apple: %v, want [o1]", got)
	}
}

// byCustomer is a query of order_summaries on a column version 2's
// queries do not use.
var byCustomer = statefun.ViewQueryConfig{
	Method:   "ByCustomer",
	Query:    "SELECT * FROM order_summaries WHERE customer_id = :sku",
	Request:  new(view.FindOrdersWithSkuRequest),
	Response: new(view.FindOrdersWithSkuResponse),
}

// TestViewQueryOnlyAnUnfinishedVersionCanAnswerIsRefused: while a new
// version is built, a query on a field no complete version holds is
// UNAVAILABLE, not answered from the half-built table; once the version is
// complete it answers.
func TestViewQueryOnlyAnUnfinishedVersionCanAnswerIsRefused(t *testing.T) {
	t.Parallel()
	st := memory.New()
	rt := viewRuntime(t, st) // version 2, complete
	placeOrder(t, rt.ClientConn(), "o1", "ada", "apple")
	eventuallyEqual(t, "version 2's rows", []string{"o1"}, func() []string { return skuOrders(t, rt.ClientConn(), "apple") })
	eventually(t, "version 2 to be complete", func() bool { return summaryStats(rt).Ready })
	closeRuntime(t, rt)

	gate, hosts := make(chan struct{}), make(chan *statefun.ViewHost, 1)
	rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(st),
		statefun.WithViews(summariesView(3, gatedSummaries{gate: gate}, hosts, byCustomer)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	h := <-hosts
	ctx := testContext(t)
	_, err = statefun.QueryView[*view.FindOrdersWithSkuRequest, *view.FindOrdersWithSkuResponse](ctx, h, 1, &view.FindOrdersWithSkuRequest{Sku: "ada"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a query on a field only the unfinished version 3 has: %v, want Unavailable", err)
	}
	close(gate)
	eventually(t, "version 3 to be complete", func() bool { return summaryStats(rt).Ready })
	got, err := statefun.QueryView[*view.FindOrdersWithSkuRequest, *view.FindOrdersWithSkuResponse](ctx, h, 1, &view.FindOrdersWithSkuRequest{Sku: "ada"})
	if err != nil || len(got.GetSummaries()) != 1 {
		t.Errorf("ada's orders from version 3: %v, %v; want o1", got, err)
	}
}

// TestViewVersionCreatedAgainIsBuiltFromTheStart: a version that was
// dropped (a newer one replaced it) and is run again (a rollback) is
// built from the whole history, not from where its updater had stopped.
func TestViewVersionCreatedAgainIsBuiltFromTheStart(t *testing.T) {
	t.Parallel()
	st := memory.New()
	rt := viewRuntime(t, st)
	placeOrder(t, rt.ClientConn(), "o1", "ada", "apple")
	eventuallyEqual(t, "version 2's rows", []string{"o1"}, func() []string { return skuOrders(t, rt.ClientConn(), "apple") })
	eventually(t, "version 2 to be complete", func() bool { return summaryStats(rt).Ready })
	closeRuntime(t, rt)

	ctx := testContext(t)
	versions, err := st.ViewVersions(ctx, "order_summaries")
	if err != nil || len(versions) != 1 {
		t.Fatalf("versions %v, %v", versions, err)
	}
	if err := st.DropView(ctx, versions[0].Def); err != nil {
		t.Fatal(err)
	}
	rt = viewRuntime(t, st)
	eventuallyEqual(t, "the rows of version 2, built again", []string{"o1"}, func() []string { return skuOrders(t, rt.ClientConn(), "apple") })
}

// TestViewLimitOverOneAnswerIsRefused: a unary query without paging whose
// LIMIT is over what one answer holds is refused, not cut.
func TestViewLimitOverOneAnswerIsRefused(t *testing.T) {
	t.Parallel()
	hosts := make(chan *statefun.ViewHost, 1)
	rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(memory.New()),
		statefun.WithViews(summariesView(2, gatedSummaries{gate: closedGate()}, hosts, statefun.ViewQueryConfig{
			Method: "Many", Query: "SELECT * FROM order_summaries WHERE skus = :sku LIMIT 5000",
			Request: new(view.FindOrdersWithSkuRequest), Response: new(view.FindOrdersWithSkuResponse),
		})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	_, err = statefun.QueryView[*view.FindOrdersWithSkuRequest, *view.FindOrdersWithSkuResponse](testContext(t), <-hosts, 1, &view.FindOrdersWithSkuRequest{Sku: "apple"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "LIMIT of 5000") {
		t.Errorf("LIMIT 5000 without paging: %v, want FailedPrecondition naming the LIMIT", err)
	}
}

func closedGate() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// poisonViews is a store whose view writes are slow (so that the
// updater's rows meet in batches) and refuse every batch holding the row
// of the entity "poison".
type poisonViews struct{ store.Store }

func (p poisonViews) UpdateViewRows(ctx context.Context, def store.ViewDef, rows []store.ViewRow) error {
	time.Sleep(10 * time.Millisecond)
	for _, r := range rows {
		if r.EntityID == "poison" {
			return errors.New("poisoned")
		}
	}
	return p.Store.UpdateViewRows(ctx, def, rows)
}

// countingSummaries counts how often each order's placement was applied.
type countingSummaries struct {
	summaries
	mu     *sync.Mutex
	placed map[string]int
}

func (c countingSummaries) OnOrderPlaced(ctx *statefun.ViewUpdateContext, row *view.OrderSummary, e *view.OrderPlaced) (*view.OrderSummary, error) {
	c.mu.Lock()
	c.placed[ctx.EntityID()]++
	c.mu.Unlock()
	return c.summaries.OnOrderPlaced(ctx, row, e)
}

// TestViewBadRowFailsAlone: the rows of events handled at the same time
// are written together; when the store refuses such a batch for one row,
// the others are written anyway, each event applied once.
func TestViewBadRowFailsAlone(t *testing.T) {
	t.Parallel()
	counts := countingSummaries{mu: &sync.Mutex{}, placed: map[string]int{}}
	rt, err := statefun.New([]*statefun.Entity{view.NewOrder(orderEntity{})}, statefun.WithStore(poisonViews{memory.New()}),
		statefun.WithViews(view.NewOrderSummaries(counts)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	var wg sync.WaitGroup
	var want []string
	for i := range 12 {
		id := fmt.Sprintf("o%02d", i)
		if i == 5 {
			id = "poison"
		} else {
			want = append(want, id)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			placeOrder(t, rt.ClientConn(), id, "ada", "apple")
		}()
	}
	wg.Wait()
	eventuallyEqual(t, "every order's row but the poisoned one", want, func() []string { return skuOrders(t, rt.ClientConn(), "apple") })
	eventually(t, "the poisoned row to be tried again", func() bool {
		counts.mu.Lock()
		defer counts.mu.Unlock()
		return counts.placed["poison"] >= 2
	})
	counts.mu.Lock()
	defer counts.mu.Unlock()
	for _, id := range want {
		if counts.placed[id] != 1 {
			t.Errorf("order %s placed %d times in the view; a batch refused for another row must not fail it", id, counts.placed[id])
		}
	}
}
