package viewmatch

import (
	"container/heap"
	"fmt"
	"slices"

	"github.com/statefun-go/statefun/runtime/store"
)

// Table is the rows of one view version in memory, indexed for equality:
// for each column, a map from each value (each element's, for a repeated
// column) to the live rows holding it. A query whose condition implies
// equalities (EqualityLookups) reads only the rows those maps name; any
// other query reads every row. Either way it keeps only the best Limit
// rows as it goes, so a page costs O(rows read × log Limit), never a sort
// of the whole view.
//
// The memory store keeps whole rows in a Table; the embedded store keeps
// rows without their payloads (Row is then nil for live rows too, and
// Live tells them from tombstones) and reads the payloads of a page from
// its file. A Table is not safe for concurrent use: its store locks.
type Table struct {
	Def  store.ViewDef
	rows map[string]*entry
	// eq holds per column: Key(value) -> entity IDs of the live rows
	// holding it.
	eq []map[any]map[string]struct{}
}

type entry struct {
	seq     int64
	live    bool
	row     []byte
	columns []any
}

// NewTable returns an empty table of def's rows.
func NewTable(def store.ViewDef) *Table {
	t := &Table{Def: def, rows: map[string]*entry{}, eq: make([]map[any]map[string]struct{}, len(def.Columns))}
	for i := range t.eq {
		t.eq[i] = map[any]map[string]struct{}{}
	}
	return t
}

// Len returns the number of rows, tombstones included.
func (t *Table) Len() int { return len(t.rows) }

// Newer reports whether r would replace the stored row of its entity:
// there is none, or r's Seq is greater.
func (t *Table) Newer(r store.ViewRow) bool {
	e, ok := t.rows[r.EntityID]
	return !ok || r.Seq > e.seq
}

// Put stores r if Newer says so, keeping its own copy of r's slices
// (the payload only if keepRow). live tells a row from a tombstone when
// the payload is not kept.
func (t *Table) Put(r store.ViewRow, keepRow bool) {
	if !t.Newer(r) {
		return
	}
	t.set(r.EntityID, r.Seq, r.Row != nil, r.Row, r.Columns, keepRow)
}

// Load stores a row read back from disk, as Put would but without the
// Seq check: the store's file holds one row per entity already.
func (t *Table) Load(id string, seq int64, live bool, columns []any) {
	t.set(id, seq, live, nil, columns, false)
}

func (t *Table) set(id string, seq int64, live bool, row []byte, columns []any, keepRow bool) {
	if old, ok := t.rows[id]; ok && old.live {
		t.unindex(id, old.columns)
	}
	e := &entry{seq: seq, live: live}
	if live {
		e.columns = Clone(columns)
		if keepRow {
			e.row = slices.Clone(row)
			if e.row == nil {
				e.row = []byte{}
			}
		}
		t.index(id, e.columns)
	}
	t.rows[id] = e
}

func (t *Table) index(id string, columns []any) {
	for i, v := range columns {
		Elements(v, func(e any) {
			k := Key(e)
			ids := t.eq[i][k]
			if ids == nil {
				ids = map[string]struct{}{}
				t.eq[i][k] = ids
			}
			ids[id] = struct{}{}
		})
	}
}

func (t *Table) unindex(id string, columns []any) {
	for i, v := range columns {
		Elements(v, func(e any) {
			k := Key(e)
			if ids := t.eq[i][k]; ids != nil {
				delete(ids, id)
				if len(ids) == 0 {
					delete(t.eq[i], k)
				}
			}
		})
	}
}

// Get returns the stored row of an entity, tombstone included, with
// copies of its slices; Row is nil for a live row whose payload the
// table does not keep, and ok is false when the entity has no row.
func (t *Table) Get(id string) (r store.ViewRow, live, ok bool) {
	e, ok := t.rows[id]
	if !ok {
		return store.ViewRow{}, false, false
	}
	return t.row(id, e), e.live, true
}

func (t *Table) row(id string, e *entry) store.ViewRow {
	return store.ViewRow{EntityID: id, Seq: e.seq, Row: slices.Clone(e.row), Columns: Clone(e.columns)}
}

// Query returns the live rows that match q, in q's order, at most
// q.Limit of them, with copies of their slices. The query must have
// passed CheckQuery. Queries may run concurrently with each other, not
// with Put or Load.
func (t *Table) Query(q store.ViewQuery) []store.ViewRow {
	rows, _ := t.query(q)
	return rows
}

// query is Query, and counts the rows it matched against the condition:
// what the tests check the indexes by.
func (t *Table) query(q store.ViewQuery) (_ []store.ViewRow, examined int) {
	best := &topRows{order: q.Order, limit: q.Limit}
	consider := func(id string, e *entry) {
		examined++
		if e.live && Match(q.Where, e.columns) && After(q.Order, q.After, e.columns, id) {
			best.offer(id, e)
		}
	}
	size := func(l Lookup) int { return len(t.eq[l.Column][Key(l.Value)]) }
	if lookups, ok := EqualityLookups(q.Where, size); ok {
		seen := map[string]bool{}
		for _, l := range lookups {
			for id := range t.eq[l.Column][Key(l.Value)] {
				if !seen[id] {
					seen[id] = true
					consider(id, t.rows[id])
				}
			}
		}
	} else {
		for id, e := range t.rows {
			consider(id, e)
		}
	}
	slices.SortFunc(best.rows, func(a, b topRow) int { return CompareRows(q.Order, a.e.columns, a.id, b.e.columns, b.id) })
	out := make([]store.ViewRow, len(best.rows))
	for i, r := range best.rows {
		out[i] = t.row(r.id, r.e)
	}
	return out, examined
}

// topRows keeps the first limit rows offered, in a heap whose root is the
// last of them: an offered row that sorts before the root replaces it.
type topRows struct {
	order []store.ViewOrder
	limit int
	rows  []topRow
}

type topRow struct {
	id string
	e  *entry
}

func (h *topRows) offer(id string, e *entry) {
	if len(h.rows) < h.limit {
		heap.Push(h, topRow{id, e})
		return
	}
	root := h.rows[0]
	if Less(h.order, e.columns, id, root.e.columns, root.id) {
		h.rows[0] = topRow{id, e}
		heap.Fix(h, 0)
	}
}

func (h *topRows) Len() int { return len(h.rows) }
func (h *topRows) Less(i, j int) bool {
	// A max-heap: the row that sorts last is at the root.
	return Less(h.order, h.rows[j].e.columns, h.rows[j].id, h.rows[i].e.columns, h.rows[i].id)
}
func (h *topRows) Swap(i, j int) { h.rows[i], h.rows[j] = h.rows[j], h.rows[i] }
func (h *topRows) Push(x any)    { h.rows = append(h.rows, x.(topRow)) }
func (h *topRows) Pop() any {
	last := h.rows[len(h.rows)-1]
	h.rows = h.rows[:len(h.rows)-1]
	return last
}

// SameDef returns an error when stored, the definition a store holds for
// a view version, differs from def in its source or columns.
func SameDef(stored, def store.ViewDef) error {
	if stored.EntityType == def.EntityType && slices.Equal(stored.Columns, def.Columns) {
		return nil
	}
	return fmt.Errorf("view %q version %d exists with source %q and columns %s, not source %q and columns %s: a change of columns or source needs a new version; raise the view's version",
		def.Name, def.Version, stored.EntityType, describeColumns(stored.Columns), def.EntityType, describeColumns(def.Columns))
}

func describeColumns(cs []store.ViewColumn) string {
	s := "("
	for i, c := range cs {
		if i > 0 {
			s += ", "
		}
		s += c.Name + " " + c.Kind.String()
		if c.Repeated {
			s += " repeated"
		}
	}
	return s + ")"
}
