package viewquery_test

// An external test package: the generated testdata import the runtime,
// which imports viewquery.

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/statefun-go/statefun/internal/viewquery"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/testdata/wellknown"
)

// TestGeneratedMessages runs a query through the types the runtime meets:
// generated messages, with the real timestamppb and anypb.
func TestGeneratedMessages(t *testing.T) {
	t.Parallel()
	row := (&wellknown.Trail{}).ProtoReflect().Descriptor()
	req := (&wellknown.PutRequest{}).ProtoReflect().Descriptor()
	q, err := viewquery.Compile("SELECT * FROM trails WHERE updated >= :at AND entries.type_url = :user_id ORDER BY updated DESC", "trails", row, req)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 13, 0, 0, 42, time.UTC)
	got, err := q.Bind(store.ViewDef{Name: "trails", Version: 1, Columns: q.Columns},
		(&wellknown.PutRequest{UserId: "type.googleapis.com/x.Y", At: timestamppb.New(at)}).ProtoReflect(), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := store.ViewQuery{
		Where: &store.ViewCond{Op: store.ViewAnd, Args: []store.ViewCond{
			{Op: store.ViewGe, Column: 0, Value: at.UnixNano()},
			{Op: store.ViewEq, Column: 1, Value: "type.googleapis.com/x.Y"},
		}},
		Order: []store.ViewOrder{{Column: 0, Desc: true}},
		Limit: 5,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Bind (-want +got):\n%s", diff)
	}
	trail := &wellknown.Trail{
		Entries: []*anypb.Any{{TypeUrl: "a/b"}, {TypeUrl: "c/d"}},
		Updated: timestamppb.New(at),
	}
	if diff := cmp.Diff([]any{at.UnixNano(), []string{"a/b", "c/d"}}, viewquery.Extract(q.Columns, trail.ProtoReflect())); diff != "" {
		t.Errorf("Extract (-want +got):\n%s", diff)
	}
}
