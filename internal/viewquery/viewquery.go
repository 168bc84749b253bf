// Package viewquery parses and checks the queries of views, and binds a
// request to a checked query. The generator uses it to refuse a bad query
// at generate time (file.proto:line:col); the runtime uses it to run the
// same query, so the two never disagree on what a query means.
//
// The language, a subset of SQL over a view's row message:
//
//	SELECT * FROM <view> [WHERE <cond>] [ORDER BY <field> [ASC|DESC], ...] [LIMIT <n> | LIMIT :<param>]
//
//	<cond>    := <cond> OR <cond> | <cond> AND <cond> | NOT <cond> | ( <cond> ) | <field> <op> <operand>
//	<op>      := = | != | <> | < | <= | > | >=
//	<field>   := a row field, or a dotted path into nested messages: customer_id, address.city, items.sku
//	<operand> := 'text' | 12 | -3 | 1.5 | true | false | :<request field path>
//
// Keywords are case-insensitive. AND binds tighter than OR. A field on a
// path through a repeated field (items.sku) compares each element: the
// comparison holds when it holds for any. Enum fields compare with enum
// value names ('STATUS_OPEN') or numbers; google.protobuf.Timestamp and
// Duration fields with parameters of the same type.
//
// Operands must fit their field: text for strings; integers for integer
// fields (uint64 and fixed64 fields cannot be queried: their values may
// not fit a signed 64-bit column); numbers for float and double fields;
// true or false for bools; bytes, timestamps and durations only through
// parameters. A parameter is a singular request field of the same kind
// (for an enum field, the same enum or an integer). A float field is
// compared in float precision: 0.1 matches the float 0.1, which is not
// the double 0.1. Keywords are not reserved: a row field may be named
// order or not.
package viewquery

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/statefun-go/statefun/runtime/store"
)

// Error is a query that does not parse or check: Offset is the byte offset
// in the query text where the problem is, so that the generator can point
// at file.proto:line:col.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// ErrInvalidArgument is wrapped by the errors of Limit and Bind that are
// the caller's doing (a negative page size, a cursor from another query),
// for the runtime to answer INVALID_ARGUMENT rather than INTERNAL.
var ErrInvalidArgument = errors.New("invalid argument")

// Query is a parsed, checked query, ready to be bound to requests. It is
// safe for concurrent use: binding reads it and nothing else.
type Query struct {
	// Columns are the row fields the query filters or sorts by: the
	// view's columns are the union of its queries' (Merge).
	Columns []store.ViewColumn

	request    protoreflect.MessageDescriptor
	where      *cond
	order      []store.ViewOrder // Column indexes Columns
	limit      int               // a literal LIMIT, or 0
	limitParam *fieldPath        // LIMIT :param
	params     bool              // the query reads the request
}

// Compile parses src and checks it against the view's name, its row
// message and the query RPC's request message: every field exists and
// compares with its operand's type, every parameter names a request
// field, ORDER BY names no repeated field, LIMIT is positive.
func Compile(src, view string, row, request protoreflect.MessageDescriptor) (*Query, error) {
	if row == nil {
		return nil, &Error{Msg: "no row message to check the query against"}
	}
	q := &Query{request: request}
	p := &parser{
		src:  src,
		view: view,
		row:  resolver{md: row},
		req:  resolver{md: request, param: true},
		q:    q,
	}
	if err := p.parseQuery(); err != nil {
		return nil, err
	}
	q.params = q.limitParam != nil || usesParams(q.where)
	return q, nil
}

func usesParams(c *cond) bool {
	if c == nil {
		return false
	}
	if c.param != nil {
		return true
	}
	for _, a := range c.args {
		if usesParams(a) {
			return true
		}
	}
	return false
}

// Merge returns the columns of a view with the given queries: each
// distinct field once, in the order of first use.
func Merge(queries ...*Query) []store.ViewColumn {
	var cols []store.ViewColumn
	seen := map[string]bool{}
	for _, q := range queries {
		if q == nil {
			continue
		}
		for _, c := range q.Columns {
			if !seen[c.Name] {
				seen[c.Name] = true
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// Limit is the query's LIMIT for req: a literal, a request field's value,
// or 0 when the query has none.
func (q *Query) Limit(req protoreflect.Message) (int, error) {
	if q.limitParam == nil {
		return q.limit, nil
	}
	if err := q.checkRequest(req); err != nil {
		return 0, err
	}
	n := paramValue(req, q.limitParam).(int64)
	if n < 0 {
		return 0, fmt.Errorf("%w: LIMIT :%s is %d; a page size cannot be negative", ErrInvalidArgument, q.limitParam.name, n)
	}
	return int(min(n, math.MaxInt)), nil
}

// Bind returns the store query for req, its conditions bound to the
// request's field values, against the columns of def (which must hold
// q.Columns). limit is the page size; after, the cursor of the previous
// page, or nil.
func (q *Query) Bind(def store.ViewDef, req protoreflect.Message, limit int, after *store.ViewCursor) (store.ViewQuery, error) {
	if limit < 1 {
		return store.ViewQuery{}, fmt.Errorf("limit %d: a page holds at least 1 row", limit)
	}
	if err := q.checkRequest(req); err != nil {
		return store.ViewQuery{}, err
	}
	cols := make([]int, len(q.Columns))
	for i, c := range q.Columns {
		j := -1
		for k, d := range def.Columns {
			if d.Name == c.Name {
				j = k
				break
			}
		}
		if j < 0 {
			return store.ViewQuery{}, fmt.Errorf("view %s version %d has no column %s: that version was built for other queries; raise the view's version so that it is rebuilt with the columns of its queries", def.Name, def.Version, c.Name)
		}
		if d := def.Columns[j]; d != c {
			return store.ViewQuery{}, fmt.Errorf("view %s version %d stores column %s as %s, but the query needs %s: the row message changed; raise the view's version", def.Name, def.Version, c.Name, describeColumn(d), describeColumn(c))
		}
		cols[i] = j
	}
	vq := store.ViewQuery{Limit: limit, After: after}
	if q.where != nil {
		where := bindCond(q.where, cols, req)
		vq.Where = &where
	}
	for _, o := range q.order {
		vq.Order = append(vq.Order, store.ViewOrder{Column: cols[o.Column], Desc: o.Desc})
	}
	if after != nil {
		if len(after.Values) != len(vq.Order) {
			return store.ViewQuery{}, fmt.Errorf("%w: the cursor has %d sort values, but the query sorts by %d; it belongs to another query", ErrInvalidArgument, len(after.Values), len(vq.Order))
		}
		for i, o := range vq.Order {
			col := def.Columns[o.Column]
			if !isKind(after.Values[i], col.Kind) {
				return store.ViewQuery{}, fmt.Errorf("%w: the cursor's value for %s is %T, want %T; it belongs to another query", ErrInvalidArgument, col.Name, after.Values[i], zero(col.Kind))
			}
		}
	}
	return vq, nil
}

// checkRequest refuses a request of another type than the query was
// compiled for: its fields would be read by the wrong descriptors.
func (q *Query) checkRequest(req protoreflect.Message) error {
	if !q.params {
		return nil
	}
	if req == nil {
		return fmt.Errorf("the query reads parameters from a %s, and the request is nil", q.request.FullName())
	}
	if got := req.Descriptor().FullName(); got != q.request.FullName() {
		return fmt.Errorf("the request is a %s, but the query was compiled for %s", got, q.request.FullName())
	}
	return nil
}

func bindCond(c *cond, cols []int, req protoreflect.Message) store.ViewCond {
	switch c.op {
	case store.ViewAnd, store.ViewOr, store.ViewNot:
		args := make([]store.ViewCond, len(c.args))
		for i, a := range c.args {
			args[i] = bindCond(a, cols, req)
		}
		return store.ViewCond{Op: c.op, Args: args}
	}
	v := c.value
	if c.param != nil {
		v = paramValue(req, c.param)
		if f, ok := v.(float64); ok && c.float32 {
			v = float64(float32(f))
		}
	}
	return store.ViewCond{Op: c.op, Column: cols[c.col], Value: v}
}

// paramValue reads a request field through its path of singular fields;
// an unset message on the way reads as empty, so its fields as zero.
func paramValue(req protoreflect.Message, fp *fieldPath) any {
	m := req
	for _, fd := range fp.fields[:len(fp.fields)-1] {
		m = m.Get(fd).Message()
	}
	leaf := fp.leaf()
	return leafValue(leaf, fp.class, m.Get(leaf))
}

func describeColumn(c store.ViewColumn) string {
	if c.Repeated {
		return "repeated " + c.Kind.String()
	}
	return c.Kind.String()
}

func isKind(v any, kind store.ViewKind) bool {
	var ok bool
	switch kind {
	case store.ViewString:
		_, ok = v.(string)
	case store.ViewInt:
		_, ok = v.(int64)
	case store.ViewFloat:
		_, ok = v.(float64)
	case store.ViewBool:
		_, ok = v.(bool)
	case store.ViewBytes:
		_, ok = v.([]byte)
	}
	return ok
}

// Extract returns row's value of each column, for ViewRow.Columns: the Go
// types store.ViewKind names, a slice for a repeated column.
//
// An unset message on a column's path reads as empty: its fields give
// their zero values, its repeated fields no elements. A column that is
// not a field of row (which Compile never makes) gives its zero value.
func Extract(columns []store.ViewColumn, row protoreflect.Message) []any {
	out := make([]any, len(columns))
	md := row.Descriptor()
	for i, c := range columns {
		var vals []any
		if fields, class, ok := lookup(md, c.Name); ok && class.kind() == c.Kind {
			walk(row, fields, class, func(v any) { vals = append(vals, v) })
		}
		switch {
		case c.Repeated:
			out[i] = slice(c.Kind, vals)
		case len(vals) > 0:
			out[i] = vals[0]
		default:
			out[i] = zero(c.Kind)
		}
	}
	return out
}

// lookup finds the fields of a column name; Compile has checked it, so
// it needs none of resolve's messages.
func lookup(md protoreflect.MessageDescriptor, name string) ([]protoreflect.FieldDescriptor, leafClass, bool) {
	names := strings.Split(name, ".")
	fields := make([]protoreflect.FieldDescriptor, len(names))
	for i, n := range names {
		if md == nil {
			return nil, 0, false
		}
		fd := md.Fields().ByName(protoreflect.Name(n))
		if fd == nil || fd.IsMap() {
			return nil, 0, false
		}
		fields[i] = fd
		md = fd.Message()
	}
	class, ok := classOf(fields[len(fields)-1])
	return fields, class, ok
}

// walk calls emit with each value of the path in m: one for a path of
// singular fields, one per element for a path through repeated ones.
func walk(m protoreflect.Message, fields []protoreflect.FieldDescriptor, class leafClass, emit func(any)) {
	fd := fields[0]
	last := len(fields) == 1
	if !fd.IsList() {
		if last {
			emit(leafValue(fd, class, m.Get(fd)))
		} else {
			walk(m.Get(fd).Message(), fields[1:], class, emit)
		}
		return
	}
	list := m.Get(fd).List()
	for i := 0; i < list.Len(); i++ {
		if last {
			emit(leafValue(fd, class, list.Get(i)))
		} else {
			walk(list.Get(i).Message(), fields[1:], class, emit)
		}
	}
}

func slice(kind store.ViewKind, vals []any) any {
	switch kind {
	case store.ViewString:
		return typed[string](vals)
	case store.ViewInt:
		return typed[int64](vals)
	case store.ViewFloat:
		return typed[float64](vals)
	case store.ViewBool:
		return typed[bool](vals)
	case store.ViewBytes:
		return typed[[]byte](vals)
	}
	return nil
}

func typed[T any](vals []any) []T {
	out := make([]T, len(vals))
	for i, v := range vals {
		out[i] = v.(T)
	}
	return out
}

func zero(kind store.ViewKind) any {
	switch kind {
	case store.ViewString:
		return ""
	case store.ViewInt:
		return int64(0)
	case store.ViewFloat:
		return float64(0)
	case store.ViewBool:
		return false
	case store.ViewBytes:
		return []byte{}
	}
	return nil
}
