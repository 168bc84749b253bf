package viewmatch

import (
	"bytes"
	"cmp"
	"strings"

	"github.com/google/btree"

	"github.com/statefun-go/statefun/runtime/store"
)

// A sortedIndex keeps the live rows of one plain column in the order of
// (value, entity ID), so that a range of values, or the whole column in
// either direction, is read without touching the other rows.
//
// It is a B-tree (github.com/google/btree): a view takes its rows in
// batches of thousands at a million rows and more, which a sorted slice
// would pay for with a copy of the whole column per insert, while a
// B-tree inserts and deletes in O(log n), iterates from any value both
// ways, and keeps its items by value in node arrays of up to 63, a few
// pointers per row for the garbage collector to trace, not a node per
// row as a skip list or red-black tree would.
type sortedIndex interface {
	insert(v any, id string, e *entry)
	remove(v any, id string)
	// canonical returns a value of the index equal to v and with v's
	// exact bits, so that rows holding one value can share it; v when
	// none is stored (or the kind is not worth sharing).
	canonical(v any) any
	// scan calls fn with the rows whose value lies between lo and hi, in
	// (value, ID) order, descending if desc, until fn returns false.
	scan(lo, hi bound, desc bool, fn func(id string, e *entry) bool)
}

// bound is one end of a range of values; an unset bound is open.
type bound struct {
	set       bool
	v         any
	inclusive bool
}

// indexItem is a row in a column's index, or a pivot that sorts before
// (e == firstOfValue) or after (e == lastOfValue) every row of its
// value, which the B-tree needs to start an iteration at a value's
// first or last row. The pivots are told by pointer, not by a field, so
// that the items of a million rows are not 8 bytes of padding larger.
type indexItem[T any] struct {
	v  T
	id string
	e  *entry
}

var firstOfValue, lastOfValue = &entry{}, &entry{}

func pivotRank(e *entry) int {
	switch e {
	case firstOfValue:
		return -1
	case lastOfValue:
		return 1
	}
	return 0
}

type columnIndex[T any] struct {
	tree    *btree.BTreeG[indexItem[T]]
	compare func(a, b T) int
	// share says whether rows with equal values share one stored value:
	// worth it for strings and bytes, whose bytes and boxing cost more
	// than the lookup; and safe only where equal means identical (not
	// floats, where -0 = 0).
	share bool
	// column is the column's index in the rows' values.
	column int
}

// indexDegree gives nodes of 31 to 63 items: wide enough that the tree
// is shallow and mostly arrays, small enough that an insert's shift is
// cheap.
const indexDegree = 32

func newColumnIndex[T any](column int, compare func(a, b T) int, share bool) *columnIndex[T] {
	less := func(a, b indexItem[T]) bool {
		if c := compare(a.v, b.v); c != 0 {
			return c < 0
		}
		if ra, rb := pivotRank(a.e), pivotRank(b.e); ra != rb {
			return ra < rb
		}
		return a.id < b.id
	}
	return &columnIndex[T]{tree: btree.NewG(indexDegree, less), compare: compare, share: share, column: column}
}

// newSortedIndex returns an empty index for plain column i, of kind k.
func newSortedIndex(i int, k store.ViewKind) sortedIndex {
	switch k {
	case store.ViewString:
		return newColumnIndex(i, strings.Compare, true)
	case store.ViewBytes:
		return newColumnIndex(i, bytes.Compare, true)
	case store.ViewInt:
		return newColumnIndex(i, cmp.Compare[int64], false)
	case store.ViewFloat:
		return newColumnIndex(i, compareFloat, false)
	case store.ViewBool:
		return newColumnIndex(i, compareBool, false)
	}
	return nil
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

func (x *columnIndex[T]) insert(v any, id string, e *entry) {
	tv, ok := v.(T)
	if !ok {
		// CheckRows keeps other types out; a row the index cannot hold
		// would be missed by range queries, so fail loudly.
		panic("viewmatch: a row's column value does not have its column's type")
	}
	x.tree.ReplaceOrInsert(indexItem[T]{v: tv, id: id, e: e})
}

func (x *columnIndex[T]) remove(v any, id string) {
	if tv, ok := v.(T); ok {
		x.tree.Delete(indexItem[T]{v: tv, id: id})
	}
}

func (x *columnIndex[T]) canonical(v any) any {
	tv, ok := v.(T)
	if b, isBytes := v.([]byte); !x.share || !ok || isBytes && len(b) == 0 {
		// An empty []byte saves nothing shared, and nil and empty are
		// equal but not the same value.
		return v
	}
	out := v
	x.tree.AscendGreaterOrEqual(indexItem[T]{v: tv, e: firstOfValue}, func(it indexItem[T]) bool {
		if x.compare(it.v, tv) == 0 {
			out = it.e.columns[x.column]
		}
		return false
	})
	return out
}

func (x *columnIndex[T]) scan(lo, hi bound, desc bool, fn func(id string, e *entry) bool) {
	loV, loOK := boundValue[T](lo)
	hiV, hiOK := boundValue[T](hi)
	if !desc {
		visit := func(it indexItem[T]) bool {
			if hiOK {
				if c := x.compare(it.v, hiV); c > 0 || c == 0 && !hi.inclusive {
					return false
				}
			}
			return fn(it.id, it.e)
		}
		if loOK {
			pivot := firstOfValue
			if !lo.inclusive {
				pivot = lastOfValue
			}
			x.tree.AscendGreaterOrEqual(indexItem[T]{v: loV, e: pivot}, visit)
		} else {
			x.tree.Ascend(visit)
		}
		return
	}
	visit := func(it indexItem[T]) bool {
		if loOK {
			if c := x.compare(it.v, loV); c < 0 || c == 0 && !lo.inclusive {
				return false
			}
		}
		return fn(it.id, it.e)
	}
	if hiOK {
		pivot := lastOfValue
		if !hi.inclusive {
			pivot = firstOfValue
		}
		x.tree.DescendLessOrEqual(indexItem[T]{v: hiV, e: pivot}, visit)
	} else {
		x.tree.Descend(visit)
	}
}

// boundValue returns b's value as a T, or false for an open bound. A
// value of another type (CheckQuery lets none through) leaves the range
// open, which reads more rows but never misses one.
func boundValue[T any](b bound) (T, bool) {
	if !b.set {
		var zero T
		return zero, false
	}
	v, ok := b.v.(T)
	return v, ok
}
