package embedded_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// TestViewsSurviveReopen: rows, tombstones, readiness and drops are in
// the file, and a reopened store rebuilds its indexes from it.
func TestViewsSurviveReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def := store.ViewDef{Name: "shop.carts", Version: 1, EntityType: "cart", Columns: []store.ViewColumn{
		{Name: "city", Kind: store.ViewString},
		{Name: "total", Kind: store.ViewFloat},
		{Name: "skus", Kind: store.ViewBytes, Repeated: true},
	}}
	old := def
	old.Name = "shop.old"
	row := func(id string, seq int64, city string, total float64, skus ...[]byte) store.ViewRow {
		return store.ViewRow{EntityID: id, Seq: seq, Row: []byte("row " + id), Columns: []any{city, total, skus}}
	}

	s := open(t, dir, embedded.WithNoSync(true))
	for _, d := range []store.ViewDef{def, old} {
		if err := s.EnsureView(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	rows := []store.ViewRow{
		row("a", 3, "oslo", 1.5, []byte{1}),
		row("b", 1, "rome", -2, []byte{}, []byte{0xff}),
		row("", 1, "oslo", 0), // the empty ID is an ID
		{EntityID: "c", Seq: 9},
	}
	if err := s.UpdateViewRows(ctx, def, rows); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkViewReady(ctx, def); err != nil {
		t.Fatal(err)
	}
	if err := s.DropView(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, embedded.WithNoSync(true))
	defer s.Close()
	loaded, err := s.LoadViewRows(ctx, def, []string{"a", "b", "", "c"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range rows {
		got, ok := loaded[want.EntityID]
		if !ok || got.Seq != want.Seq || !bytes.Equal(got.Row, want.Row) || (got.Row == nil) != (want.Row == nil) || len(got.Columns) != len(want.Columns) {
			t.Errorf("row %q after reopening: %+v, want %+v", want.EntityID, got, want)
		}
	}
	if skus := loaded["b"].Columns[2].([][]byte); len(skus) != 2 || len(skus[0]) != 0 || !bytes.Equal(skus[1], []byte{0xff}) {
		t.Errorf("repeated bytes after reopening: %q", skus)
	}
	var got []string
	oslo := store.ViewCond{Op: store.ViewEq, Column: 0, Value: "oslo"}
	if err := s.QueryView(ctx, def, store.ViewQuery{Where: &oslo, Limit: 10}, func(r store.ViewRow) error {
		got = append(got, r.EntityID+":"+string(r.Row))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != ":row ,a:row a" {
		t.Errorf("query after reopening: %q", got)
	}
	// The tombstone still fences older rows.
	if err := s.UpdateViewRows(ctx, def, []store.ViewRow{row("c", 8, "oslo", 0)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.LoadViewRows(ctx, def, []string{"c"}); r["c"].Seq != 9 || r["c"].Row != nil {
		t.Errorf("tombstone after reopening and an older row: %+v", r["c"])
	}
	versions, err := s.ViewVersions(ctx, def.Name)
	if err != nil || len(versions) != 1 || !versions[0].Ready || !slices.Equal(versions[0].Def.Columns, def.Columns) {
		t.Errorf("versions after reopening: %+v %v, want version 1 ready", versions, err)
	}
	if versions, err := s.ViewVersions(ctx, old.Name); err != nil || len(versions) != 0 {
		t.Errorf("a dropped view after reopening: %+v %v", versions, err)
	}
}

func TestViewsOnClosedStore(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), embedded.WithNoSync(true))
	def := store.ViewDef{Name: "v", Version: 1, EntityType: "cart"}
	if err := s.EnsureView(ctx, def); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.QueryView(ctx, def, store.ViewQuery{Limit: 1}, func(store.ViewRow) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("QueryView after Close: %v, want store.ErrClosed", err)
	}
	if err := s.UpdateViewRows(ctx, def, []store.ViewRow{{EntityID: "a", Seq: 1, Row: []byte{}, Columns: []any{}}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("UpdateViewRows after Close: %v, want store.ErrClosed", err)
	}
}
