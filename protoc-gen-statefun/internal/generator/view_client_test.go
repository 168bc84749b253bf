package generator_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/testdata/view"
)

// These tests run the client generated for the views of testdata/view
// against a hand-written server of the same gRPC service: the server side
// is the runtime's (QueryView, StreamView), the paging and streaming loops
// of the client are the generator's.

// orderPages serves GetCustomerOrders from a fixed list of orders, pageSize
// at a time, the page token being the index of the page's first order.
type orderPages struct {
	view.UnimplementedOrdersByCustomerServiceServer
	orders   []*view.Order
	pageSize int
	// failAt fails the call whose page token is this, when set.
	failAt string
	mu     sync.Mutex
	calls  []*view.GetCustomerOrdersRequest // guarded by mu
	// streamErr ends StreamLargeOrders after the orders, when set.
	streamErr error
}

func (s *orderPages) GetCustomerOrders(_ context.Context, req *view.GetCustomerOrdersRequest) (*view.GetCustomerOrdersResponse, error) {
	s.mu.Lock()
	s.calls = append(s.calls, proto.Clone(req).(*view.GetCustomerOrdersRequest))
	s.mu.Unlock()
	if s.failAt != "" && req.GetPageToken() == s.failAt {
		return nil, status.Error(codes.Unavailable, "page unavailable")
	}
	start := 0
	if req.GetPageToken() != "" {
		n, err := strconv.Atoi(req.GetPageToken())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "page token %q", req.GetPageToken())
		}
		start = n
	}
	end := min(start+s.pageSize, len(s.orders))
	res := &view.GetCustomerOrdersResponse{Orders: s.orders[start:end]}
	if end < len(s.orders) {
		res.NextPageToken = strconv.Itoa(end)
	}
	return res, nil
}

func (s *orderPages) StreamLargeOrders(req *view.StreamLargeOrdersRequest, stream grpc.ServerStreamingServer[view.Order]) error {
	for _, o := range s.orders {
		if o.GetTotalCents() < req.GetMinTotalCents() {
			continue
		}
		if err := stream.Send(o); err != nil {
			return err
		}
	}
	return s.streamErr
}

// dialView serves srv in process and returns the generated view client.
func dialView(t *testing.T, srv view.OrdersByCustomerServiceServer) *view.OrdersByCustomerViewClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	view.RegisterOrdersByCustomerServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient("passthrough:///view",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return view.NewOrdersByCustomerViewClient(cc)
}

func orders(n int) []*view.Order {
	out := make([]*view.Order, n)
	for i := range out {
		out[i] = &view.Order{CustomerId: fmt.Sprintf("c%d", i), TotalCents: int64(i)}
	}
	return out
}

func customerIDs(rows []*view.Order) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.GetCustomerId()
	}
	return ids
}

func TestViewClientReadsEveryPage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := &orderPages{orders: orders(7), pageSize: 3}
	client := dialView(t, srv)

	req := &view.GetCustomerOrdersRequest{CustomerId: "c", PageSize: 3}
	var got []*view.Order
	for row, err := range client.GetCustomerOrdersAll(ctx, req) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, row)
	}
	if want := customerIDs(srv.orders); fmt.Sprint(customerIDs(got)) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v", customerIDs(got), want)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var tokens []string
	for _, c := range srv.calls {
		tokens = append(tokens, c.GetPageToken())
		if c.GetCustomerId() != "c" || c.GetPageSize() != 3 {
			t.Errorf("page request %v lost the query's fields", c)
		}
	}
	if fmt.Sprint(tokens) != fmt.Sprint([]string{"", "3", "6"}) {
		t.Errorf("page tokens asked for %q, want the first page and then each next_page_token", tokens)
	}
	if req.GetPageToken() != "" {
		t.Errorf("the caller's request was changed: page_token %q", req.GetPageToken())
	}
}

func TestViewClientStopsWhereTheCallerStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := &orderPages{orders: orders(7), pageSize: 3}
	client := dialView(t, srv)
	n := 0
	for _, err := range client.GetCustomerOrdersAll(ctx, &view.GetCustomerOrdersRequest{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 2 {
			break
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.calls) != 1 {
		t.Errorf("%d pages asked for after the caller stopped within the first, want 1", len(srv.calls))
	}
}

func TestViewClientEndsWithAPageError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := &orderPages{orders: orders(7), pageSize: 3, failAt: "3"}
	client := dialView(t, srv)
	var rows int
	var errs []error
	for row, err := range client.GetCustomerOrdersAll(ctx, &view.GetCustomerOrdersRequest{}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if row == nil {
			t.Fatal("a nil row without an error")
		}
		rows++
	}
	if rows != 3 || len(errs) != 1 || status.Code(errs[0]) != codes.Unavailable {
		t.Errorf("got %d rows and errors %v; want the first page's 3 rows, then the second page's Unavailable, once", rows, errs)
	}
}

func TestViewClientStreamsRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := &orderPages{orders: orders(5)}
	client := dialView(t, srv)
	var got []*view.Order
	for row, err := range client.StreamLargeOrders(ctx, &view.StreamLargeOrdersRequest{MinTotalCents: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, row)
	}
	if fmt.Sprint(customerIDs(got)) != fmt.Sprint([]string{"c2", "c3", "c4"}) {
		t.Errorf("streamed %v, want c2, c3 and c4", customerIDs(got))
	}

	srv = &orderPages{orders: orders(2), streamErr: status.Error(codes.Internal, "store failed")}
	client = dialView(t, srv)
	var rows int
	var last error
	for _, err := range client.StreamLargeOrders(ctx, &view.StreamLargeOrdersRequest{}) {
		if err != nil {
			last = err
			continue
		}
		rows++
	}
	if rows != 2 || status.Code(last) != codes.Internal {
		t.Errorf("got %d rows, then %v; want 2 rows, then the stream's Internal error", rows, last)
	}
}
