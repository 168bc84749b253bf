package statefun_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/testdata/compositekey"
	"github.com/statefun-go/statefun/testdata/consumer"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// adminClient serves rt's admin API on an in-process gRPC server.
func adminClient(t *testing.T, rt *statefun.Runtime) statefunv1.AdminServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	rt.RegisterAdmin(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///admin",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return statefunv1.NewAdminServiceClient(conn)
}

// TestAdminAPI: the admin API answers over gRPC what the console shows,
// pages history with next_after_seq, and refuses bad requests with the
// code and the field at fault.
func TestAdminAPI(t *testing.T) {
	rt := newRuntime(t, statefun.WithConsumers(consumer.NewCartAudit(&gatedAudit{})))
	fillCart(t, rt)
	ctx := context.Background()
	if _, err := compositekey.NewSeatEntityClient(rt.ClientConn()).Reserve(ctx, &compositekey.ReserveRequest{Flight: "LH/1", Row: 12, Letter: "C", Passenger: "Ada"}); err != nil {
		t.Fatal(err)
	}
	admin := adminClient(t, rt)

	types, err := admin.ListEntityTypes(ctx, &statefunv1.ListEntityTypesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var cartType *statefunv1.EntityType
	for _, et := range types.GetEntityTypes() {
		if et.GetEntityType() == cart.ShoppingCartEntityType {
			cartType = et
		}
	}
	if cartType.GetKind() != "event-sourced" || cartType.GetService() != "statefun.testdata.eventsourced.ShoppingCart" || strings.Join(cartType.GetKeyFields(), ",") != "cart_id" {
		t.Errorf("cart's entity type = %v", cartType)
	}

	got, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: cart.ShoppingCartEntityType, Id: "c1", Seq: 2})
	if err != nil {
		t.Fatal(err)
	}
	if c := decodeCart(t, got.GetStateJson()); got.GetSeq() != 2 || got.GetLatest() != 6 || len(c.GetItems()) != 2 {
		t.Errorf("GetEntity at 2 = %v; want seq 2 of 6 with items a and b", got)
	}
	seat, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: compositekey.SeatEntityType, KeyValues: []string{"LH/1", "12", "C"}})
	if err != nil || !strings.Contains(seat.GetStateJson(), "Ada") || seat.GetId() != statefun.JoinKey("LH/1", "12", "C") {
		t.Errorf("GetEntity by key values = %v, %v; want the reserved seat", seat, err)
	}

	var seqs []int64
	after := int64(0)
	for pages := 0; ; pages++ {
		if pages > 6 {
			t.Fatalf("paging did not end: seqs %v", seqs)
		}
		page, err := admin.ListEvents(ctx, &statefunv1.ListEventsRequest{EntityType: cart.ShoppingCartEntityType, Id: "c1", AfterSeq: after, PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.GetEvents()) > 2 {
			t.Fatalf("page of %d events, asked for 2", len(page.GetEvents()))
		}
		for _, e := range page.GetEvents() {
			seqs = append(seqs, e.GetSeq())
			if e.GetStoredAt() == nil {
				t.Errorf("event %d has no stored time", e.GetSeq())
			}
		}
		if page.GetNextAfterSeq() == 0 {
			break
		}
		after = page.GetNextAfterSeq()
	}
	if len(seqs) != 6 || seqs[0] != 1 || seqs[5] != 6 {
		t.Errorf("paged seqs %v, want 1 to 6", seqs)
	}

	consumers, err := admin.ListConsumers(ctx, &statefunv1.ListConsumersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range consumers.GetConsumers() {
		names = append(names, c.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), consumer.CartAuditConsumerName) {
		t.Errorf("consumers %v lack %q", names, consumer.CartAuditConsumerName)
	}

	for _, tt := range []struct {
		name string
		call func() error
		code codes.Code
		want []string // in the message
	}{
		{"unknown entity", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: cart.ShoppingCartEntityType, Id: "nobody"})
			return err
		}, codes.NotFound, []string{"nobody"}},
		{"unknown entity's events", func() error {
			_, err := admin.ListEvents(ctx, &statefunv1.ListEventsRequest{EntityType: cart.ShoppingCartEntityType, Id: "nobody"})
			return err
		}, codes.NotFound, []string{"nobody"}},
		{"unknown type", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: "no-such", Id: "c1"})
			return err
		}, codes.InvalidArgument, []string{"entity_type", cart.ShoppingCartEntityType, compositekey.SeatEntityType}},
		{"seq beyond latest", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: cart.ShoppingCartEntityType, Id: "c1", Seq: 9})
			return err
		}, codes.InvalidArgument, []string{"seq", "latest", "6"}},
		{"negative seq", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: cart.ShoppingCartEntityType, Id: "c1", Seq: -1})
			return err
		}, codes.InvalidArgument, []string{"seq"}},
		{"id and key values", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: cart.ShoppingCartEntityType, Id: "c1", KeyValues: []string{"c1"}})
			return err
		}, codes.InvalidArgument, []string{"id", "key_values"}},
		{"no id", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: cart.ShoppingCartEntityType})
			return err
		}, codes.InvalidArgument, []string{"id"}},
		{"too few key values", func() error {
			_, err := admin.GetEntity(ctx, &statefunv1.GetEntityRequest{EntityType: compositekey.SeatEntityType, KeyValues: []string{"LH/1"}})
			return err
		}, codes.InvalidArgument, []string{"key_values", "flight, row, letter"}},
		{"negative page size", func() error {
			_, err := admin.ListEvents(ctx, &statefunv1.ListEventsRequest{EntityType: cart.ShoppingCartEntityType, Id: "c1", PageSize: -1})
			return err
		}, codes.InvalidArgument, []string{"page_size"}},
	} {
		err := tt.call()
		st := status.Convert(err)
		if st.Code() != tt.code {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(st.Message(), w) {
				t.Errorf("%s: message %q does not mention %q", tt.name, st.Message(), w)
			}
		}
	}
}
