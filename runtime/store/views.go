package store

import (
	"context"
	"fmt"
)

// A view is a table of rows, one per entity of its source entity type at
// most, kept up to date from the source's events by the runtime and
// queried by anything but the entity's key ("open carts of customer X").
// The store keeps the rows and answers the queries; the runtime decides
// what the rows hold.
//
// A row is stored with the values of its columns: the fields of the row
// message that queries filter or sort by, extracted by the runtime. The
// store never decodes a row's payload.

// ViewKind is the type of a view column's values.
type ViewKind int

const (
	// ViewString values are Go strings, compared byte by byte (UTF-8
	// order; Postgres compares them COLLATE "C").
	ViewString ViewKind = iota + 1
	// ViewInt values are int64s: every integer field but uint64, enums (by
	// number), and google.protobuf.Timestamp and Duration fields (in
	// nanoseconds).
	ViewInt
	// ViewFloat values are float64s (float fields are widened). They
	// compare as Postgres compares them: -0 equals 0, and NaN equals
	// NaN and sorts above every other value, +Inf included.
	ViewFloat
	// ViewBool values are bools; false sorts before true.
	ViewBool
	// ViewBytes values are []byte, compared byte by byte.
	ViewBytes
)

func (k ViewKind) String() string {
	switch k {
	case ViewString:
		return "string"
	case ViewInt:
		return "int"
	case ViewFloat:
		return "float"
	case ViewBool:
		return "bool"
	case ViewBytes:
		return "bytes"
	}
	return fmt.Sprintf("ViewKind(%d)", int(k))
}

// ViewColumn is one queried field of a view's rows.
type ViewColumn struct {
	// Name is the field's path in the row message, by proto field names
	// joined with dots: "customer_id", "address.city".
	Name string
	Kind ViewKind
	// Repeated columns hold a list of values (a repeated field, or a path
	// through one): a comparison holds for a row when it holds for any
	// element, and no query sorts by them.
	Repeated bool
}

// ViewDef names one version of a view and says what its rows hold. A new
// version is a new table: rebuilt from the source's history while the
// previous version still serves.
type ViewDef struct {
	// Name is the view's stable name, like an entity type's.
	Name string
	// Version counts the view's versions, from 1.
	Version int
	// EntityType is the source entity type: a row's EntityID is the ID of
	// the entity it was built from.
	EntityType string
	// Columns are the queried fields, indexed by the store so that a query
	// does not read every row. A ViewCond or ViewOrder names a column by
	// its index in Columns.
	Columns []ViewColumn
}

// ViewRow is one row of a view, or the tombstone of a deleted one.
type ViewRow struct {
	// EntityID is the source entity's ID: a view has at most one row per
	// entity, and sorts rows with equal sort values by it, byte by byte.
	EntityID string
	// Seq is the seq of the last source event the row reflects: an update
	// with a Seq not above the stored one changes nothing, so a repeated
	// event never moves a row backwards.
	Seq int64
	// Row is the row message in protobuf binary encoding; nil for a
	// tombstone (the row was deleted at Seq). Tombstones keep their Seq
	// and are never returned by QueryView.
	Row []byte
	// Columns holds the row's value of each of the ViewDef's columns, in
	// order: the column's Go type (see ViewKind) for a plain column, a
	// slice of it ([]string, []int64, ...) for a repeated one; nil for a
	// tombstone.
	Columns []any
}

// ViewOp is the operator of a ViewCond.
type ViewOp int

const (
	// ViewAnd holds when every one of Args holds (none: true).
	ViewAnd ViewOp = iota + 1
	// ViewOr holds when any of Args holds (none: false).
	ViewOr
	// ViewNot holds when its one Arg does not.
	ViewNot
	// ViewEq holds when Column's value equals Value; the comparisons
	// after it compare the same way.
	ViewEq
	// ViewNe is !=.
	ViewNe
	// ViewLt is <.
	ViewLt
	// ViewLe is <=.
	ViewLe
	// ViewGt is >.
	ViewGt
	// ViewGe is >=.
	ViewGe
)

func (op ViewOp) String() string {
	switch op {
	case ViewAnd:
		return "AND"
	case ViewOr:
		return "OR"
	case ViewNot:
		return "NOT"
	case ViewEq:
		return "="
	case ViewNe:
		return "!="
	case ViewLt:
		return "<"
	case ViewLe:
		return "<="
	case ViewGt:
		return ">"
	case ViewGe:
		return ">="
	}
	return fmt.Sprintf("ViewOp(%d)", int(op))
}

// ViewCond is a condition on a row's columns, with its parameters bound.
type ViewCond struct {
	Op ViewOp
	// Args are the operands of AND, OR and NOT.
	Args []ViewCond
	// Column (an index into ViewDef.Columns) and Value are the operands of
	// a comparison. Value has the column's Go type (one element's, for a
	// repeated column, which holds when any element compares so).
	Column int
	Value  any
}

// ViewOrder sorts by one column.
type ViewOrder struct {
	Column int
	Desc   bool
}

// ViewCursor is where a page of results ended: the sort values and entity
// ID of its last row. The next page starts after it.
type ViewCursor struct {
	// Values are the last row's values of the query's Order columns.
	Values   []any
	EntityID string
}

// ViewQuery selects rows of a view.
type ViewQuery struct {
	// Where selects the rows; nil selects all.
	Where *ViewCond
	// Order sorts the rows; rows equal in every Order column (and all
	// rows when Order is empty) are in EntityID order, ascending.
	Order []ViewOrder
	// Limit is the most rows returned; at least 1.
	Limit int
	// After, when set, starts after that row in this order.
	After *ViewCursor
}

// ViewVersion is a stored version of a view, and whether it was ever
// complete: built up to the head of its source's feed once.
type ViewVersion struct {
	Def   ViewDef
	Ready bool
}

// Views keep the rows of views. Each version of a view is created by
// EnsureView, written by the one updater the runtime runs for it, and
// read by any number of queries, on any node.
//
// The methods that take a ViewDef trust it to be the one EnsureView was
// given for its version; LoadViewRows, UpdateViewRows, QueryView and
// MarkViewReady return an error for a version that does not exist (never
// ensured, or dropped). Rows and queries whose values do not have their
// columns' Go types, and queries that sort by a repeated column or whose
// cursor does not fit their order, are refused with an error.
type Views interface {
	// EnsureView creates the storage of def's version of its view, with
	// an index usable by each of its columns, if it does not exist. A
	// version that exists with other columns or another source is an
	// error: a change of columns needs a new version.
	EnsureView(ctx context.Context, def ViewDef) error

	// ViewVersions returns the stored versions of the view name, oldest
	// first.
	ViewVersions(ctx context.Context, name string) ([]ViewVersion, error)

	// MarkViewReady records that def's version was built up to its
	// source's feed head once: from then on it may serve queries.
	MarkViewReady(ctx context.Context, def ViewDef) error

	// DropView deletes a version of a view: its rows and its record. A
	// version that does not exist is no error.
	DropView(ctx context.Context, def ViewDef) error

	// LoadViewRows returns the stored rows of the entities ids, tombstones
	// included, by entity ID; an entity without a row is absent.
	LoadViewRows(ctx context.Context, def ViewDef, ids []string) (map[string]ViewRow, error)

	// UpdateViewRows writes rows, each replacing the stored row of its
	// entity if it has none or its Seq is greater than the stored one's;
	// the others are ignored. All or nothing. At most one row per entity.
	UpdateViewRows(ctx context.Context, def ViewDef, rows []ViewRow) error

	// QueryView calls fn with the rows (never tombstones) that match q, in
	// q's order, at most q.Limit of them. It stops at the first error fn
	// returns, and returns it.
	QueryView(ctx context.Context, def ViewDef, q ViewQuery, fn func(ViewRow) error) error
}
