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
package viewquery

import (
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

// Query is a parsed, checked query, ready to be bound to requests.
type Query struct {
	// Columns are the row fields the query filters or sorts by: the
	// view's columns are the union of its queries' (Merge).
	Columns []store.ViewColumn
	// (unexported: the parsed query, bound by Bind)
}

// Compile parses src and checks it against the view's name, its row
// message and the query RPC's request message: every field exists and
// compares with its operand's type, every parameter names a request
// field, ORDER BY names no repeated field, LIMIT is positive.
func Compile(src, view string, row, request protoreflect.MessageDescriptor) (*Query, error) {
	panic("viewquery.Compile: not written yet")
}

// Merge returns the columns of a view with the given queries: each
// distinct field once, in the order of first use.
func Merge(queries ...*Query) []store.ViewColumn {
	panic("viewquery.Merge: not written yet")
}

// Limit is the query's LIMIT for req: a literal, a request field's value,
// or 0 when the query has none.
func (q *Query) Limit(req protoreflect.Message) (int, error) {
	panic("viewquery.Query.Limit: not written yet")
}

// Bind returns the store query for req, its conditions bound to the
// request's field values, against the columns of def (which must hold
// q.Columns). limit is the page size; after, the cursor of the previous
// page, or nil.
func (q *Query) Bind(def store.ViewDef, req protoreflect.Message, limit int, after *store.ViewCursor) (store.ViewQuery, error) {
	panic("viewquery.Query.Bind: not written yet")
}

// Extract returns row's value of each column, for ViewRow.Columns: the Go
// types store.ViewKind names, a slice for a repeated column.
func Extract(columns []store.ViewColumn, row protoreflect.Message) []any {
	panic("viewquery.Extract: not written yet")
}
