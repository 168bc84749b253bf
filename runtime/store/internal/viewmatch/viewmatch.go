// Package viewmatch evaluates view queries in memory: the conditions,
// order and cursors of store.ViewQuery over rows held as Go values. The
// memory and embedded stores share it, so that they cannot disagree with
// each other, and it checks rows and queries against their ViewDef for
// every store, Postgres included, so that a mistyped value is refused
// the same way everywhere.
//
// Its order is the one Postgres gives the same values: strings and bytes
// byte by byte (Postgres: bytea, or text COLLATE "C"), false before true,
// and for floats -0 equal to 0 and NaN equal to itself and above every
// other value.
package viewmatch

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"strings"

	"github.com/statefun-go/statefun/runtime/store"
)

// Compare compares two values of one kind (string, []byte, int64,
// float64 or bool): -1, 0 or +1. Values of different types, which
// CheckRows and CheckQuery keep out of a store, order by type.
func Compare(a, b any) int {
	switch a := a.(type) {
	case string:
		if b, ok := b.(string); ok {
			return strings.Compare(a, b)
		}
	case []byte:
		if b, ok := b.([]byte); ok {
			return bytes.Compare(a, b)
		}
	case int64:
		if b, ok := b.(int64); ok {
			return cmp.Compare(a, b)
		}
	case float64:
		if b, ok := b.(float64); ok {
			return compareFloat(a, b)
		}
	case bool:
		if b, ok := b.(bool); ok {
			switch {
			case a == b:
				return 0
			case b:
				return -1
			}
			return 1
		}
	}
	return cmp.Compare(typeRank(a), typeRank(b))
}

// compareFloat orders floats as Postgres does: NaN equals NaN and sorts
// above everything else (Go's cmp.Compare puts it below), and -0 = 0.
func compareFloat(a, b float64) int {
	aNaN, bNaN := math.IsNaN(a), math.IsNaN(b)
	switch {
	case aNaN && bNaN:
		return 0
	case aNaN:
		return 1
	case bNaN:
		return -1
	}
	return cmp.Compare(a, b)
}

func typeRank(v any) int {
	switch v.(type) {
	case string:
		return 1
	case []byte:
		return 2
	case int64:
		return 3
	case float64:
		return 4
	case bool:
		return 5
	}
	return 0
}

// Match reports whether a row with the given column values satisfies c;
// a nil c matches every row.
func Match(c *store.ViewCond, columns []any) bool {
	if c == nil {
		return true
	}
	return match(c, columns)
}

func match(c *store.ViewCond, columns []any) bool {
	switch c.Op {
	case store.ViewAnd:
		for i := range c.Args {
			if !match(&c.Args[i], columns) {
				return false
			}
		}
		return true
	case store.ViewOr:
		for i := range c.Args {
			if match(&c.Args[i], columns) {
				return true
			}
		}
		return false
	case store.ViewNot:
		return len(c.Args) == 1 && !match(&c.Args[0], columns)
	}
	if c.Column < 0 || c.Column >= len(columns) {
		return false
	}
	holds := func(v any) bool { return compareHolds(c.Op, Compare(v, c.Value)) }
	switch list := columns[c.Column].(type) {
	case []string:
		return anyHolds(list, holds)
	case [][]byte:
		return anyHolds(list, holds)
	case []int64:
		return anyHolds(list, holds)
	case []float64:
		return anyHolds(list, holds)
	case []bool:
		return anyHolds(list, holds)
	}
	return holds(columns[c.Column])
}

// anyHolds is a comparison with a repeated column: it holds when it holds
// for any element, so an empty list matches no comparison (not even !=).
func anyHolds[T any](list []T, holds func(any) bool) bool {
	for _, v := range list {
		if holds(v) {
			return true
		}
	}
	return false
}

func compareHolds(op store.ViewOp, c int) bool {
	switch op {
	case store.ViewEq:
		return c == 0
	case store.ViewNe:
		return c != 0
	case store.ViewLt:
		return c < 0
	case store.ViewLe:
		return c <= 0
	case store.ViewGt:
		return c > 0
	case store.ViewGe:
		return c >= 0
	}
	return false
}

// CompareRows compares two rows in the order of a query: by each of its
// Order columns, then by entity ID ascending.
func CompareRows(order []store.ViewOrder, aColumns []any, aID string, bColumns []any, bID string) int {
	for _, o := range order {
		c := Compare(aColumns[o.Column], bColumns[o.Column])
		if o.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return strings.Compare(aID, bID)
}

// Less reports whether row a comes before row b in the order of a query.
func Less(order []store.ViewOrder, aColumns []any, aID string, bColumns []any, bID string) bool {
	return CompareRows(order, aColumns, aID, bColumns, bID) < 0
}

// After reports whether a row comes after the cursor in the order of a
// query; every row does when the cursor is nil.
func After(order []store.ViewOrder, cursor *store.ViewCursor, columns []any, entityID string) bool {
	if cursor == nil {
		return true
	}
	for i, o := range order {
		c := Compare(columns[o.Column], cursor.Values[i])
		if o.Desc {
			c = -c
		}
		if c != 0 {
			return c > 0
		}
	}
	return entityID > cursor.EntityID
}

// CheckDef refuses a ViewDef that no store could keep.
func CheckDef(def store.ViewDef) error {
	switch {
	case def.Name == "":
		return fmt.Errorf("view of %q has no name; name it", def.EntityType)
	case def.Version < 1 || def.Version > math.MaxInt32:
		return fmt.Errorf("view %q has version %d; versions count from 1, up to %d", def.Name, def.Version, math.MaxInt32)
	case def.EntityType == "":
		return fmt.Errorf("view %q version %d has no source entity type; name it", def.Name, def.Version)
	}
	seen := map[string]bool{}
	for i, c := range def.Columns {
		if c.Kind < store.ViewString || c.Kind > store.ViewBytes {
			return fmt.Errorf("view %q version %d: column %d (%q) has unknown kind %v", def.Name, def.Version, i, c.Name, c.Kind)
		}
		if c.Name == "" || seen[c.Name] {
			return fmt.Errorf("view %q version %d: column %d has an empty or repeated name %q; name each column once", def.Name, def.Version, i, c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

// CheckRows refuses rows that do not fit def: a column value of the wrong
// type, a live row without its columns, two rows of one entity.
func CheckRows(def store.ViewDef, rows []store.ViewRow) error {
	ids := make(map[string]bool, len(rows))
	for _, r := range rows {
		if ids[r.EntityID] {
			return fmt.Errorf("update view %q version %d: two rows of entity %q in one update; send the newest only", def.Name, def.Version, r.EntityID)
		}
		ids[r.EntityID] = true
		if r.Row == nil {
			if len(r.Columns) > 0 {
				return fmt.Errorf("update view %q version %d: the tombstone of entity %q has column values; a tombstone has none", def.Name, def.Version, r.EntityID)
			}
			continue
		}
		if len(r.Columns) != len(def.Columns) {
			return fmt.Errorf("update view %q version %d: the row of entity %q has %d column values, the view has %d columns", def.Name, def.Version, r.EntityID, len(r.Columns), len(def.Columns))
		}
		for i, c := range def.Columns {
			if !fits(c, r.Columns[i]) {
				return fmt.Errorf("update view %q version %d: column %q of entity %q holds a %T, want %s", def.Name, def.Version, c.Name, r.EntityID, r.Columns[i], goType(c))
			}
		}
	}
	return nil
}

// CheckQuery refuses a query that does not fit def: a column out of
// range, a value of the wrong type, an order by a repeated column, a
// cursor that does not match the order, a limit below 1.
func CheckQuery(def store.ViewDef, q store.ViewQuery) error {
	where := func(format string, args ...any) error {
		return fmt.Errorf("query view %q version %d: %s", def.Name, def.Version, fmt.Sprintf(format, args...))
	}
	if q.Limit < 1 {
		return where("limit %d; ask for at least one row", q.Limit)
	}
	if q.Where != nil {
		if err := checkCond(def, q.Where); err != nil {
			return where("%v", err)
		}
	}
	for _, o := range q.Order {
		if o.Column < 0 || o.Column >= len(def.Columns) {
			return where("order by column %d; the view has %d columns", o.Column, len(def.Columns))
		}
		if def.Columns[o.Column].Repeated {
			return where("order by repeated column %q; a list has no one value to sort by", def.Columns[o.Column].Name)
		}
	}
	if q.After != nil {
		if len(q.After.Values) != len(q.Order) {
			return where("the cursor has %d values for %d order columns; pass the cursor of a page of this query", len(q.After.Values), len(q.Order))
		}
		for i, o := range q.Order {
			c := def.Columns[o.Column]
			if !fits(store.ViewColumn{Kind: c.Kind}, q.After.Values[i]) {
				return where("cursor value %d is a %T, column %q holds %s; pass the cursor of a page of this query", i, q.After.Values[i], c.Name, goType(store.ViewColumn{Kind: c.Kind}))
			}
		}
	}
	return nil
}

func checkCond(def store.ViewDef, c *store.ViewCond) error {
	switch c.Op {
	case store.ViewAnd, store.ViewOr:
		for i := range c.Args {
			if err := checkCond(def, &c.Args[i]); err != nil {
				return err
			}
		}
		return nil
	case store.ViewNot:
		if len(c.Args) != 1 {
			return fmt.Errorf("NOT with %d operands; give it one", len(c.Args))
		}
		return checkCond(def, &c.Args[0])
	case store.ViewEq, store.ViewNe, store.ViewLt, store.ViewLe, store.ViewGt, store.ViewGe:
	default:
		return fmt.Errorf("unknown operator %v", c.Op)
	}
	if c.Column < 0 || c.Column >= len(def.Columns) {
		return fmt.Errorf("condition on column %d; the view has %d columns", c.Column, len(def.Columns))
	}
	col := def.Columns[c.Column]
	element := store.ViewColumn{Kind: col.Kind}
	if !fits(element, c.Value) {
		return fmt.Errorf("column %q %v a %T; compare it with %s", col.Name, c.Op, c.Value, goType(element))
	}
	return nil
}

// fits reports whether v is a value of column c.
func fits(c store.ViewColumn, v any) bool {
	var ok bool
	switch c.Kind {
	case store.ViewString:
		if c.Repeated {
			_, ok = v.([]string)
		} else {
			_, ok = v.(string)
		}
	case store.ViewInt:
		if c.Repeated {
			_, ok = v.([]int64)
		} else {
			_, ok = v.(int64)
		}
	case store.ViewFloat:
		if c.Repeated {
			_, ok = v.([]float64)
		} else {
			_, ok = v.(float64)
		}
	case store.ViewBool:
		if c.Repeated {
			_, ok = v.([]bool)
		} else {
			_, ok = v.(bool)
		}
	case store.ViewBytes:
		if c.Repeated {
			_, ok = v.([][]byte)
		} else {
			_, ok = v.([]byte)
		}
	}
	return ok
}

func goType(c store.ViewColumn) string {
	t := map[store.ViewKind]string{store.ViewString: "string", store.ViewInt: "int64", store.ViewFloat: "float64", store.ViewBool: "bool", store.ViewBytes: "[]byte"}[c.Kind]
	if c.Repeated {
		return "[]" + t
	}
	return t
}

// Key returns a comparable key of a column value (one element's, for a
// repeated column) for an equality index: values with equal keys are
// exactly the values Compare finds equal.
func Key(v any) any {
	switch v := v.(type) {
	case []byte:
		// A string key keeps bytes apart from strings by the type tag.
		return bytesKey(v)
	case float64:
		switch {
		case math.IsNaN(v):
			return floatKey(math.Float64bits(math.NaN()))
		case v == 0:
			return floatKey(0) // -0 = 0
		}
		return floatKey(math.Float64bits(v))
	}
	return v
}

type (
	bytesKey string
	floatKey uint64
)

// Elements calls fn with each value of a column: the value itself, or
// each element of a repeated column.
func Elements(v any, fn func(any)) {
	switch list := v.(type) {
	case []string:
		for _, e := range list {
			fn(e)
		}
	case [][]byte:
		for _, e := range list {
			fn(e)
		}
	case []int64:
		for _, e := range list {
			fn(e)
		}
	case []float64:
		for _, e := range list {
			fn(e)
		}
	case []bool:
		for _, e := range list {
			fn(e)
		}
	default:
		fn(v)
	}
}

// Clone copies the column values, so that a store keeps none of its
// caller's slices.
func Clone(columns []any) []any {
	if columns == nil {
		return nil
	}
	out := make([]any, len(columns))
	for i, v := range columns {
		switch v := v.(type) {
		case []byte:
			out[i] = bytes.Clone(v)
		case []string:
			out[i] = append([]string(nil), v...)
		case [][]byte:
			c := make([][]byte, len(v))
			for j, b := range v {
				c[j] = bytes.Clone(b)
			}
			out[i] = c
		case []int64:
			out[i] = append([]int64(nil), v...)
		case []float64:
			out[i] = append([]float64(nil), v...)
		case []bool:
			out[i] = append([]bool(nil), v...)
		default:
			out[i] = v
		}
	}
	return out
}
