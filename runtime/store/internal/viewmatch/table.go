package viewmatch

import (
	"fmt"
	"slices"

	"github.com/statefun-go/statefun/runtime/store"
)

// Table is the rows of one view version in memory, with an index per
// column: for a plain column a sorted one, by (value, entity ID) (see
// sortedIndex), and for a repeated column a map from each element's
// value to the live rows holding it. Query plans each query on them:
// see plan.
//
// The memory store keeps whole rows in a Table; the embedded store keeps
// rows without their payloads (Row is then nil for live rows too, and
// Live tells them from tombstones) and reads the payloads of a page from
// its file. A Table is not safe for concurrent use: its store locks.
type Table struct {
	Def  store.ViewDef
	rows map[string]*entry
	// live counts the live rows: the cost of reading every row, which
	// the planner weighs the indexes against.
	live int
	// sorted holds the index of each plain column, nil for a repeated one.
	sorted []sortedIndex
	// eq holds per repeated column (nil for a plain one): Key(element)
	// -> the live rows holding it.
	eq []map[any]*elementRows
	// payloads are the live rows' payloads, when the store keeps them
	// here (the memory store; the embedded store reads them from its
	// file, and its rows are 24 bytes smaller for not having the field).
	payloads map[string][]byte
}

// elementRows are the live rows holding one element value in a repeated
// column, and the value, which rows holding an equal string or bytes
// element share.
type elementRows struct {
	value any
	ids   map[string]struct{}
}

// entry is a row. Its columns are the indexes' too: a row's values are
// stored once, and rows with equal string or bytes values share one (see
// sortedIndex.canonical and elementRows).
type entry struct {
	seq     int64
	live    bool
	columns []any
}

// NewTable returns an empty table of def's rows.
func NewTable(def store.ViewDef) *Table {
	t := &Table{
		Def:    def,
		rows:   map[string]*entry{},
		sorted: make([]sortedIndex, len(def.Columns)),
		eq:     make([]map[any]*elementRows, len(def.Columns)),
	}
	for i, c := range def.Columns {
		if c.Repeated {
			t.eq[i] = map[any]*elementRows{}
		} else {
			t.sorted[i] = newSortedIndex(i, c.Kind)
		}
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
	var row []byte
	if keepRow && r.Row != nil {
		row = slices.Clone(r.Row)
		if row == nil {
			row = []byte{}
		}
	}
	t.set(r.EntityID, r.Seq, r.Row != nil, row, Clone(r.Columns))
}

// Load stores a row read back from disk, as Put would but without the
// Seq check (the store's file holds one row per entity already) and
// without a copy: the table keeps columns, which the caller must not
// use again.
func (t *Table) Load(id string, seq int64, live bool, columns []any) {
	t.set(id, seq, live, nil, columns)
}

// set stores a row whose slices the table owns from now on.
func (t *Table) set(id string, seq int64, live bool, row []byte, columns []any) {
	if old, ok := t.rows[id]; ok && old.live {
		t.unindex(id, old)
	}
	e := &entry{seq: seq, live: live}
	if live {
		e.columns = columns
		t.index(id, e)
		if row != nil {
			if t.payloads == nil {
				t.payloads = map[string][]byte{}
			}
			t.payloads[id] = row
		}
	}
	t.rows[id] = e
}

func (t *Table) index(id string, e *entry) {
	t.live++
	for i, v := range e.columns {
		if i >= len(t.sorted) {
			break
		}
		if x := t.sorted[i]; x != nil {
			e.columns[i] = x.canonical(v)
			x.insert(e.columns[i], id, e)
			continue
		}
		switch list := v.(type) {
		case []string:
			for j, el := range list {
				list[j] = t.addElement(i, el, id).(string)
			}
		case [][]byte:
			for j, el := range list {
				if shared := t.addElement(i, el, id).([]byte); len(el) > 0 {
					list[j] = shared // nil and empty are equal, not the same
				}
			}
		default:
			Elements(v, func(el any) { t.addElement(i, el, id) })
		}
	}
}

// addElement records that row id holds el in repeated column i, and
// returns the value equal to el that the table keeps for it.
func (t *Table) addElement(i int, el any, id string) any {
	k := Key(el)
	rows := t.eq[i][k]
	if rows == nil {
		rows = &elementRows{value: el, ids: map[string]struct{}{}}
		t.eq[i][k] = rows
	}
	rows.ids[id] = struct{}{}
	return rows.value
}

func (t *Table) unindex(id string, e *entry) {
	t.live--
	delete(t.payloads, id)
	for i, v := range e.columns {
		if i >= len(t.sorted) {
			break
		}
		if x := t.sorted[i]; x != nil {
			x.remove(v, id)
			continue
		}
		Elements(v, func(el any) {
			k := Key(el)
			if rows := t.eq[i][k]; rows != nil {
				delete(rows.ids, id)
				if len(rows.ids) == 0 {
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
	return store.ViewRow{EntityID: id, Seq: e.seq, Row: slices.Clone(t.payloads[id]), Columns: Clone(e.columns)}
}

// Query returns the live rows that match q, in q's order, at most
// q.Limit of them, with copies of their slices. The query must have
// passed CheckQuery. Queries may run concurrently with each other, not
// with Put or Load.
func (t *Table) Query(q store.ViewQuery) []store.ViewRow {
	page, _ := t.query(q)
	out := make([]store.ViewRow, len(page))
	for i, r := range page {
		out[i] = t.row(r.id, r.e)
	}
	return out
}

// QueryIDs is Query for a store that reads the rows themselves: it
// returns only the entity IDs of the page, copying nothing.
func (t *Table) QueryIDs(q store.ViewQuery) []string {
	page, _ := t.query(q)
	out := make([]string, len(page))
	for i, r := range page {
		out[i] = r.id
	}
	return out
}

// query returns the page of q in order, and counts the rows it matched
// against the condition: what the tests check the plans by.
func (t *Table) query(q store.ViewQuery) (_ []topRow, examined int) {
	// Room for a page up front: a page grown by append would allocate a
	// dozen times per query.
	best := &topRows{order: q.Order, limit: q.Limit, rows: make([]topRow, 0, min(q.Limit, 1024))}
	consider := func(id string, e *entry) {
		examined++
		if Match(q.Where, e.columns) && After(q.Order, q.After, e.columns, id) {
			best.offer(id, e)
		}
	}
	p := t.plan(q)
	switch {
	case p.walk:
		t.walk(q, p.lo, p.hi, best, consider)
	case p.all:
		for id, e := range t.rows {
			if e.live {
				consider(id, e)
			}
		}
	case len(p.probes) == 1:
		t.read(p.probes[0], func(id string, e *entry) bool {
			consider(id, e)
			return true
		})
	default:
		// Probes of an OR may name a row twice.
		seen := map[string]struct{}{}
		for _, pr := range p.probes {
			t.read(pr, func(id string, e *entry) bool {
				if _, ok := seen[id]; !ok {
					seen[id] = struct{}{}
					consider(id, e)
				}
				return true
			})
		}
	}
	slices.SortFunc(best.rows, func(a, b topRow) int { return CompareRows(q.Order, a.e.columns, a.id, b.e.columns, b.id) })
	return best.rows, examined
}

// walk reads the rows of the first order column's index from lo to hi
// in the query's direction, and stops at the end of the first group of
// rows equal in that column after which best holds Limit rows: every
// row after that group sorts after all of them. Within a group the
// index's ID order is not the query's (later order columns, a
// descending walk), so a group is read whole and best sorts it.
func (t *Table) walk(q store.ViewQuery, lo, hi bound, best *topRows, consider func(string, *entry)) {
	column := q.Order[0].Column
	var group any
	started := false
	t.sorted[column].scan(lo, hi, q.Order[0].Desc, func(id string, e *entry) bool {
		v := e.columns[column]
		if !started || Compare(v, group) != 0 {
			if len(best.rows) >= best.limit {
				return false
			}
			group, started = v, true
		}
		consider(id, e)
		return true
	})
}

// read calls fn with the live rows a probe names, until fn returns
// false.
func (t *Table) read(p probe, fn func(id string, e *entry) bool) {
	if p.ranged {
		t.sorted[p.column].scan(p.lo, p.hi, false, fn)
		return
	}
	rows := t.eq[p.column][Key(p.value)]
	if rows == nil {
		return
	}
	for id := range rows.ids {
		if !fn(id, t.rows[id]) {
			return
		}
	}
}

// topRows keeps the first limit rows offered, in a heap whose root is the
// last of them: an offered row that sorts before the root replaces it.
// It is written out rather than on container/heap, whose interface
// boxes every row it pushes.
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
		h.rows = append(h.rows, topRow{id, e})
		h.up(len(h.rows) - 1)
		return
	}
	root := h.rows[0]
	if Less(h.order, e.columns, id, root.e.columns, root.id) {
		h.rows[0] = topRow{id, e}
		h.down(0)
	}
}

// after reports whether row i sorts after row j: the heap's order.
func (h *topRows) after(i, j int) bool {
	return Less(h.order, h.rows[j].e.columns, h.rows[j].id, h.rows[i].e.columns, h.rows[i].id)
}

func (h *topRows) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.after(i, parent) {
			return
		}
		h.rows[i], h.rows[parent] = h.rows[parent], h.rows[i]
		i = parent
	}
}

func (h *topRows) down(i int) {
	for {
		last := i
		if l := 2*i + 1; l < len(h.rows) && h.after(l, last) {
			last = l
		}
		if r := 2*i + 2; r < len(h.rows) && h.after(r, last) {
			last = r
		}
		if last == i {
			return
		}
		h.rows[i], h.rows[last] = h.rows[last], h.rows[i]
		i = last
	}
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
