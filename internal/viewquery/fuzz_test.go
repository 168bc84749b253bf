package viewquery

import (
	"errors"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
)

// FuzzCompile: whatever the query text, Compile never panics and either
// fails with a *Error that points inside the text, or returns a query
// that binds to any request of its type and whose columns extract from
// any row, with every condition naming a column of the definition.
//
//	go test -run '^$' -fuzz '^FuzzCompile$' -fuzztime 30s ./internal/viewquery
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		"SELECT * FROM carts",
		"select * from carts where customer_id = :customer_id order by created_at desc limit :page_size",
		"SELECT * FROM carts WHERE status = 'STATUS_OPEN' OR NOT (quantity >= -3 AND price < 1.5e3) LIMIT 10",
		"SELECT * FROM carts WHERE items.sku = 'a''b' AND labels <> :filter.city ORDER BY address.geo.lat, gift ASC",
		"SELECT * FROM carts WHERE created_at > :since AND ttl <= :max_ttl AND digest = :digest AND weight != :min_weight",
		"SELECT * FROM carts WHERE NOT not = true AND order = 'x' ORDER BY order DESC",
		"SELECT * FROM carts WHERE status = :status AND status != :page_size AND seen_at > :since",
		"SELECT * FROM carts WHERE (((gift = false)))",
		"SELECT * FROM carts WHERE customer_id = 'abc",
		"SELECT * FROM carts WHERE quantity = 12abc",
		"SELECT * FROM carts-by-customer WHERE x = 1;",
		"SELECT * FROM carts WHERE :customer_id = 'x'",
		"SELECT * FROM carts LIMIT 99999999999999999999",
		"SELECT * FROM carts WHERE attrs = 'x' OR big = 1",
		"SELECT * FROM carts WHERE quantity = 1 é",
		"",
	} {
		f.Add(seed)
	}
	row, req := rowDesc(f), reqDesc(f)
	f.Fuzz(func(t *testing.T, src string) {
		q, err := Compile(src, "carts", row, req)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Compile(%q): %T %v, want a *Error", src, err, err)
			}
			if e.Offset < 0 || e.Offset > len(src) {
				t.Fatalf("Compile(%q): offset %d outside the query (length %d): %s", src, e.Offset, len(src), e.Msg)
			}
			if e.Msg == "" {
				t.Fatalf("Compile(%q): an error without a message at %d", src, e.Offset)
			}
			return
		}
		def := store.ViewDef{Name: "carts", Version: 1, Columns: q.Columns}
		vq, err := q.Bind(def, newMessage(t, req, `customer_id: "c" page_size: 3 since { seconds: 9 }`), 10, nil)
		if err != nil {
			t.Fatalf("Bind(%q): %v", src, err)
		}
		if vq.Where != nil {
			checkColumns(t, src, def, *vq.Where)
		}
		for _, o := range vq.Order {
			if o.Column < 0 || o.Column >= len(def.Columns) || def.Columns[o.Column].Repeated {
				t.Fatalf("Bind(%q): order by column %d of %v", src, o.Column, def.Columns)
			}
		}
		if _, err := q.Limit(newMessage(t, req, "page_size: 3")); err != nil {
			t.Fatalf("Limit(%q): %v", src, err)
		}
		values := Extract(q.Columns, newMessage(t, row, `items { sku: "a" } address { geo { lat: 1 } }`))
		for i, c := range q.Columns {
			if c.Repeated {
				continue
			}
			if !isKind(values[i], c.Kind) {
				t.Fatalf("Extract(%q): column %s is %T, want %s", src, c.Name, values[i], c.Kind)
			}
		}
	})
}

// checkColumns fails unless every comparison in c names a column of def
// with a value of its kind.
func checkColumns(t *testing.T, src string, def store.ViewDef, c store.ViewCond) {
	t.Helper()
	switch c.Op {
	case store.ViewAnd, store.ViewOr, store.ViewNot:
		if c.Op == store.ViewNot && len(c.Args) != 1 || len(c.Args) == 0 {
			t.Fatalf("Bind(%q): %s with %d arguments", src, c.Op, len(c.Args))
		}
		for _, a := range c.Args {
			checkColumns(t, src, def, a)
		}
		return
	}
	if c.Column < 0 || c.Column >= len(def.Columns) {
		t.Fatalf("Bind(%q): column %d of %d", src, c.Column, len(def.Columns))
	}
	if col := def.Columns[c.Column]; !isKind(c.Value, col.Kind) {
		t.Fatalf("Bind(%q): value %#v for %s column %s", src, c.Value, col.Kind, col.Name)
	}
}
