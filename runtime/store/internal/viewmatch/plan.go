package viewmatch

import (
	"math"
	"slices"

	"github.com/statefun-go/statefun/runtime/store"
)

// A plan says which rows a query reads, each then matched against the
// whole condition and cursor:
//
//   - walk: the first order column's index, in the order's direction,
//     from the cursor (and within the condition's bounds on that column),
//     stopping once Limit rows matched and their tie group is complete.
//     It reads about Limit/selectivity rows, sorting none beyond Limit.
//   - probes: the rows that probes of the indexes name (a range of a
//     plain column's sorted index, an element of a repeated column's
//     map), together a superset of the rows that match: the condition's
//     narrowest access, by count.
//   - all: every row.
//
// Counting the rows of a range costs a read of them, so estimates stop
// at the count beyond which the answer would not change (see probes):
// planning never costs more than a few times the plan it picks.
type plan struct {
	walk   bool
	lo, hi bound
	probes []probe
	all    bool
}

// probe names the live rows whose plain column lies in lo..hi (ranged),
// or whose repeated column holds an element equal to value.
type probe struct {
	column int
	ranged bool
	lo, hi bound
	value  any
}

func (t *Table) plan(q store.ViewQuery) plan {
	n := t.live
	if len(q.Order) == 0 || t.sorted[q.Order[0].Column] == nil {
		if probes, _, ok := t.probes(q.Where, n); ok {
			return plan{probes: probes}
		}
		return plan{all: true}
	}
	// Probes of k rows cost k reads and a heap; a walk costs about
	// Limit × n / matches reads, and matches ≤ k, so probes win only
	// when k² ≤ Limit × n.
	enough := int(min(float64(n), math.Sqrt(float64(q.Limit)*float64(n))))
	column := q.Order[0].Column
	probes, _, ok := t.probes(q.Where, enough)
	if ok && (len(probes) != 1 || !probes[0].ranged || probes[0].column != column) {
		return plan{probes: probes}
	}
	// A range of the order column is best read in order; otherwise the
	// walk reads that column's bounds from the condition all the same.
	lo, hi := bound{}, bound{}
	for _, c := range andTerms(q.Where) {
		if c.Column == column && isComparison(c.Op) {
			l, h := comparisonRange(c)
			lo, hi = tighterLo(lo, l), tighterHi(hi, h)
		}
	}
	if q.After != nil {
		from := bound{set: true, v: q.After.Values[0], inclusive: true}
		if q.Order[0].Desc {
			hi = tighterHi(hi, from)
		} else {
			lo = tighterLo(lo, from)
		}
	}
	return plan{walk: true, lo: lo, hi: hi}
}

// probes returns probes that together name every row matching c, and
// how many rows they name, when that is fewer than limit (counted up to
// limit); false when c is nil or cannot be narrowed so (a NOT, a !=, an
// OR with a branch that cannot, a range of a repeated column).
func (t *Table) probes(c *store.ViewCond, limit int) ([]probe, int, bool) {
	if c == nil {
		return nil, 0, false
	}
	switch c.Op {
	case store.ViewAnd:
		return t.andProbes(c, limit)
	case store.ViewOr:
		var all []probe
		size := 0
		for i := range c.Args {
			branch, n, ok := t.probes(&c.Args[i], limit-size)
			if !ok {
				return nil, 0, false
			}
			all, size = append(all, branch...), size+n
		}
		// An OR of nothing matches nothing: no probe, and that is exact.
		return all, size, size < limit
	}
	if !isComparison(c.Op) || c.Column < 0 || c.Column >= len(t.sorted) {
		return nil, 0, false
	}
	var p probe
	switch {
	case t.sorted[c.Column] != nil:
		lo, hi := comparisonRange(c)
		p = probe{column: c.Column, ranged: true, lo: lo, hi: hi}
	case c.Op == store.ViewEq:
		p = probe{column: c.Column, value: c.Value}
	default:
		return nil, 0, false
	}
	n := t.count(p, limit)
	return []probe{p}, n, n < limit
}

// andProbes takes the narrowest of an AND's accesses: each plain
// column's range (the intersection of the AND's comparisons of it), and
// the probes of each other operand.
func (t *Table) andProbes(c *store.ViewCond, limit int) ([]probe, int, bool) {
	var best []probe
	found := false
	terms := andTerms(c)
	// Operands other than plain comparisons first: a repeated column's
	// equality is counted for free, and lowers the limit the ranges are
	// counted to.
	for _, term := range terms {
		if isComparison(term.Op) && term.Column >= 0 && term.Column < len(t.sorted) && t.sorted[term.Column] != nil {
			continue
		}
		if probes, n, ok := t.probes(term, limit); ok {
			best, found, limit = probes, true, n
		}
	}
	ranges := map[int]*probe{}
	var columns []int
	for _, term := range terms {
		if !isComparison(term.Op) || term.Column < 0 || term.Column >= len(t.sorted) || t.sorted[term.Column] == nil {
			continue
		}
		lo, hi := comparisonRange(term)
		p := ranges[term.Column]
		if p == nil {
			p = &probe{column: term.Column, ranged: true}
			ranges[term.Column] = p
			columns = append(columns, term.Column)
		}
		p.lo, p.hi = tighterLo(p.lo, lo), tighterHi(p.hi, hi)
	}
	slices.Sort(columns) // a plan that does not depend on map order
	for _, column := range columns {
		p := *ranges[column]
		if n := t.count(p, limit); n < limit {
			best, found, limit = []probe{p}, true, n
		}
	}
	return best, limit, found
}

// andTerms returns the operands of c's top-level AND, nested ANDs
// flattened, or c alone.
func andTerms(c *store.ViewCond) []*store.ViewCond {
	if c == nil {
		return nil
	}
	if c.Op != store.ViewAnd {
		return []*store.ViewCond{c}
	}
	var out []*store.ViewCond
	for i := range c.Args {
		out = append(out, andTerms(&c.Args[i])...)
	}
	return out
}

func isComparison(op store.ViewOp) bool {
	switch op {
	case store.ViewEq, store.ViewLt, store.ViewLe, store.ViewGt, store.ViewGe:
		return true
	}
	return false
}

// comparisonRange returns the values a comparison (not !=) admits.
func comparisonRange(c *store.ViewCond) (lo, hi bound) {
	switch c.Op {
	case store.ViewEq:
		return bound{set: true, v: c.Value, inclusive: true}, bound{set: true, v: c.Value, inclusive: true}
	case store.ViewLt:
		return bound{}, bound{set: true, v: c.Value}
	case store.ViewLe:
		return bound{}, bound{set: true, v: c.Value, inclusive: true}
	case store.ViewGt:
		return bound{set: true, v: c.Value}, bound{}
	case store.ViewGe:
		return bound{set: true, v: c.Value, inclusive: true}, bound{}
	}
	return bound{}, bound{}
}

// tighterLo returns the tighter of two lower bounds: the greater, or at
// equal values the exclusive one.
func tighterLo(a, b bound) bound { return tighter(a, b, 1) }

// tighterHi returns the tighter of two upper bounds: the smaller, or at
// equal values the exclusive one.
func tighterHi(a, b bound) bound { return tighter(a, b, -1) }

// tighter returns the tighter of two bounds on one side: a when a's
// value is further in direction dir (1 for lower bounds, -1 for upper
// ones), or equal and exclusive; an unset bound is no bound.
func tighter(a, b bound, dir int) bound {
	switch {
	case !a.set:
		return b
	case !b.set:
		return a
	}
	switch c := dir * Compare(a.v, b.v); {
	case c > 0:
		return a
	case c < 0:
		return b
	case !a.inclusive:
		return a
	}
	return b
}

// count returns the number of rows p names, or limit when it names
// that many or more, having read no more than limit of them.
func (t *Table) count(p probe, limit int) int {
	if !p.ranged {
		rows := t.eq[p.column][Key(p.value)]
		if rows == nil {
			return 0
		}
		return min(len(rows.ids), limit)
	}
	n := 0
	if limit > 0 {
		t.sorted[p.column].scan(p.lo, p.hi, false, func(string, *entry) bool {
			n++
			return n < limit
		})
	}
	return n
}
