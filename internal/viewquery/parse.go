package viewquery

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/statefun-go/statefun/runtime/store"
)

// maxDepth bounds the nesting of NOT and parentheses, so that no query
// text can exhaust the stack of the generator or the runtime.
const maxDepth = 100

// cond is a checked condition. A comparison's operand is a literal,
// already of its column's Go type, or a request field, read by Bind.
type cond struct {
	op    store.ViewOp
	args  []*cond
	col   int // index in Query.Columns
	value any
	param *fieldPath
	// float32 rounds the operand to float32 precision: the column holds a
	// float field, widened, so 0.1 must become float32(0.1) to equal it.
	float32 bool
}

// keywords are the words that, where a condition should start, are more
// likely a slip (WHERE a = 1 AND ORDER BY a) than a row field's name.
var keywords = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "AND": true, "OR": true,
	"ORDER": true, "BY": true, "ASC": true, "DESC": true, "LIMIT": true,
}

var ops = map[string]store.ViewOp{
	"=":  store.ViewEq,
	"!=": store.ViewNe,
	"<>": store.ViewNe,
	"<":  store.ViewLt,
	"<=": store.ViewLe,
	">":  store.ViewGt,
	">=": store.ViewGe,
}

// parser is a recursive-descent parser that checks as it goes: each
// field and operand is resolved where it is read, so that an error
// points at it and Columns come out in the order of first use.
type parser struct {
	src   string
	view  string
	tok   token
	row   resolver
	req   resolver
	q     *Query
	depth int
}

func (p *parser) next() *Error {
	t, err := lex(p.src, p.tok.end)
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// is reports whether the current token is the keyword kw. Keywords are
// not reserved: a row field may be named order or limit, since the
// grammar always knows whether it expects a field or a keyword.
func (p *parser) is(kw string) bool {
	return p.tok.kind == tIdent && strings.EqualFold(p.tok.text, kw)
}

func (p *parser) errorf(format string, args ...any) *Error {
	return &Error{Offset: p.tok.off, Msg: fmt.Sprintf(format, args...)}
}

// found describes the current token for an error message.
func (p *parser) found() string {
	if p.tok.kind == tEOF {
		return "the end of the query"
	}
	text := p.src[p.tok.off:p.tok.end]
	if len(text) > 40 {
		text = text[:40] + "..."
	}
	return strconv.Quote(text)
}

func (p *parser) parseQuery() *Error {
	var err *Error
	if p.tok, err = lex(p.src, 0); err != nil {
		return err
	}
	if !p.is("SELECT") {
		return p.errorf("a view query starts with SELECT * FROM %s; found %s", p.view, p.found())
	}
	if err := p.next(); err != nil {
		return err
	}
	if p.tok.kind != tStar {
		return p.errorf("a view query returns whole rows: write SELECT *, found %s after SELECT", p.found())
	}
	if err := p.next(); err != nil {
		return err
	}
	if !p.is("FROM") {
		return p.errorf("expected FROM %s after SELECT *, found %s", p.view, p.found())
	}
	if p.tok, err = lexName(p.src, p.tok.end); err != nil {
		return err
	}
	if p.tok.kind != tName {
		return p.errorf("expected the view's name after FROM, as in FROM %s; found %s", p.view, p.found())
	}
	if p.tok.text != p.view {
		return p.errorf("FROM %s: this view is named %q; write FROM %s", p.tok.text, p.view, p.view)
	}
	if err := p.next(); err != nil {
		return err
	}
	expected := "WHERE, ORDER BY, LIMIT or the end of the query"
	if p.is("WHERE") {
		if err := p.next(); err != nil {
			return err
		}
		where, err := p.parseOr()
		if err != nil {
			return err
		}
		p.q.where = where
		expected = "AND, OR, ORDER BY, LIMIT or the end of the query"
	}
	if p.is("ORDER") {
		if err := p.parseOrderBy(); err != nil {
			return err
		}
		expected = "',', ASC, DESC, LIMIT or the end of the query"
	}
	if p.is("LIMIT") {
		if err := p.parseLimit(); err != nil {
			return err
		}
		expected = "the end of the query"
	}
	if p.tok.kind == tEOF {
		return nil
	}
	if p.is("WHERE") || p.is("ORDER") || p.is("LIMIT") {
		return p.errorf("unexpected %s: the clauses come in the order WHERE, ORDER BY, LIMIT, each at most once", strings.ToUpper(p.tok.text))
	}
	return p.errorf("expected %s; found %s", expected, p.found())
}

func (p *parser) parseOr() (*cond, *Error) {
	first, err := p.parseAnd()
	if err != nil || !p.is("OR") {
		return first, err
	}
	or := &cond{op: store.ViewOr, args: []*cond{first}}
	for p.is("OR") {
		if err := p.next(); err != nil {
			return nil, err
		}
		c, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		or.args = append(or.args, c)
	}
	return or, nil
}

func (p *parser) parseAnd() (*cond, *Error) {
	first, err := p.parseUnary()
	if err != nil || !p.is("AND") {
		return first, err
	}
	and := &cond{op: store.ViewAnd, args: []*cond{first}}
	for p.is("AND") {
		if err := p.next(); err != nil {
			return nil, err
		}
		c, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		and.args = append(and.args, c)
	}
	return and, nil
}

func (p *parser) parseUnary() (*cond, *Error) {
	nests := p.tok.kind == tLParen || p.is("NOT") && !p.fieldNamedNot()
	if !nests {
		return p.parseComparison()
	}
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errorf("conditions nest deeper than %d NOTs and parentheses; simplify the query", maxDepth)
	}
	if p.tok.kind == tIdent {
		if err := p.next(); err != nil {
			return nil, err
		}
		c, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &cond{op: store.ViewNot, args: []*cond{c}}, nil
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	c, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tRParen {
		return nil, p.errorf("expected AND, OR or ) to close the parenthesis; found %s", p.found())
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	return c, nil
}

// fieldNamedNot tells NOT the keyword from a row field named not: a
// field is followed by an operator or a '.'.
func (p *parser) fieldNamedNot() bool {
	t, err := lex(p.src, p.tok.end)
	return err == nil && (t.kind == tOp || t.kind == tDot)
}

// parsePath reads ident {'.' ident}, the current token being an ident.
func (p *parser) parsePath() ([]segment, *Error) {
	segs := []segment{{name: p.tok.text, off: p.tok.off}}
	if err := p.next(); err != nil {
		return nil, err
	}
	for p.tok.kind == tDot {
		if err := p.next(); err != nil {
			return nil, err
		}
		if p.tok.kind != tIdent {
			return nil, p.errorf("expected a field name after '.', found %s", p.found())
		}
		segs = append(segs, segment{name: p.tok.text, off: p.tok.off})
		if err := p.next(); err != nil {
			return nil, err
		}
	}
	return segs, nil
}

// parseParam reads a :parameter path and resolves it in the request.
func (p *parser) parseParam() (*fieldPath, int, *Error) {
	off := p.tok.off
	segs, err := p.parsePath()
	if err != nil {
		return nil, off, err
	}
	if p.req.md == nil {
		return nil, off, &Error{Offset: off, Msg: fmt.Sprintf("parameter :%s: this query has no request message to take it from", segs[0].name)}
	}
	fp, err := p.req.resolve(segs)
	if err != nil {
		return nil, off, err
	}
	return &fp, off, nil
}

func (p *parser) addColumn(fp fieldPath) int {
	for i, c := range p.q.Columns {
		if c.Name == fp.name {
			return i
		}
	}
	p.q.Columns = append(p.q.Columns, fp.column())
	return len(p.q.Columns) - 1
}

func (p *parser) parseComparison() (*cond, *Error) {
	switch p.tok.kind {
	case tIdent:
		if keywords[strings.ToUpper(p.tok.text)] && p.row.md.Fields().ByName(protoreflect.Name(p.tok.text)) == nil {
			return nil, p.errorf("expected a condition, such as customer_id = :customer_id; found %s", p.found())
		}
	case tString, tInt, tFloat, tParam:
		return nil, p.errorf("a comparison starts with a row field, as in customer_id = :customer_id; found %s", p.found())
	default:
		return nil, p.errorf("expected a condition, such as customer_id = :customer_id; found %s", p.found())
	}
	segs, err := p.parsePath()
	if err != nil {
		return nil, err
	}
	fp, err := p.row.resolve(segs)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tOp {
		if fp.class == leafBool {
			return nil, p.errorf("expected a comparison operator after %s, as in %s = true; found %s", fp.name, fp.name, p.found())
		}
		return nil, p.errorf("expected a comparison operator (=, !=, <>, <, <=, >, >=) after %s; found %s", fp.name, p.found())
	}
	c := &cond{op: ops[p.tok.text], float32: fp.leaf().Kind() == protoreflect.FloatKind}
	if err := p.next(); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tParam:
		param, off, err := p.parseParam()
		if err != nil {
			return nil, err
		}
		if msg := paramMismatch(fp, param); msg != "" {
			return nil, &Error{Offset: off, Msg: msg}
		}
		c.param = param
	case tString, tInt, tFloat:
		v, err := p.literal(fp, c.float32)
		if err != nil {
			return nil, err
		}
		c.value = v
		if err := p.next(); err != nil {
			return nil, err
		}
	case tIdent:
		switch {
		case strings.EqualFold(p.tok.text, "true"), strings.EqualFold(p.tok.text, "false"):
			v, err := p.literal(fp, false)
			if err != nil {
				return nil, err
			}
			c.value = v
			if err := p.next(); err != nil {
				return nil, err
			}
		case fp.class == leafEnum && fp.leaf().Enum().Values().ByName(protoreflect.Name(p.tok.text)) != nil:
			return nil, p.errorf("write enum values in quotes: '%s'", p.tok.text)
		default:
			return nil, p.errorf("cannot compare %s with %s: compare a field with a literal ('text', 12, 1.5, true) or a :parameter", fp.name, p.found())
		}
	default:
		return nil, p.errorf("expected a literal ('text', 12, 1.5, true) or a :parameter to compare %s with; found %s", fp.name, p.found())
	}
	c.col = p.addColumn(fp)
	return c, nil
}

// literal converts the current token, a literal, to the Go type of fp's
// column.
func (p *parser) literal(fp fieldPath, round32 bool) (any, *Error) {
	t := p.tok
	isBool := t.kind == tIdent
	switch fp.class {
	case leafString:
		if t.kind == tString {
			return t.text, nil
		}
		return nil, p.errorf("field %s is a string; compare it with text in single quotes, such as 'abc', or a :parameter", fp.name)
	case leafInt:
		if t.kind == tInt {
			return p.int64()
		}
		return nil, p.errorf("field %s is %s; compare it with an integer, such as 12, or a :parameter", fp.name, typeName(fp.leaf()))
	case leafEnum:
		enum := fp.leaf().Enum()
		switch t.kind {
		case tString:
			v := enum.Values().ByName(protoreflect.Name(t.text))
			if v == nil {
				return nil, p.errorf("'%s' is not a value of enum %s; values: %s", t.text, enum.FullName(), enumValues(enum))
			}
			return int64(v.Number()), nil
		case tInt:
			n, err := p.int64()
			if err != nil {
				return nil, err
			}
			if n < math.MinInt32 || n > math.MaxInt32 {
				return nil, p.errorf("%s is not an enum number: enum numbers are 32-bit", t.text)
			}
			return n, nil
		}
		return nil, p.errorf("field %s is an enum %s; compare it with an enum value name such as '%s' or a number", fp.name, enum.FullName(), exampleEnumValue(enum))
	case leafFloat:
		var f float64
		switch t.kind {
		case tInt:
			n, err := p.int64()
			if err != nil {
				return nil, err
			}
			f = float64(n)
		case tFloat:
			var err error
			if f, err = strconv.ParseFloat(t.text, 64); err != nil {
				return nil, p.errorf("number %s is out of range", t.text)
			}
		default:
			return nil, p.errorf("field %s is %s; compare it with a number, such as 1.5, or a :parameter", fp.name, typeName(fp.leaf()))
		}
		if round32 {
			if math.IsInf(float64(float32(f)), 0) {
				return nil, p.errorf("number %s is out of range for float field %s", t.text, fp.name)
			}
			f = float64(float32(f))
		}
		return f, nil
	case leafBool:
		if isBool {
			return strings.EqualFold(t.text, "true"), nil
		}
		return nil, p.errorf("field %s is a bool; compare it with true or false", fp.name)
	case leafBytes:
		return nil, p.errorf("field %s is bytes; compare it with a bytes :parameter, not a literal", fp.name)
	}
	// Timestamps and durations: a literal would need a format of its own,
	// and a parameter already has one.
	return nil, p.errorf("field %s is a %s; compare it with a :parameter of the same type, not a literal", fp.name, fp.leaf().Message().FullName())
}

func (p *parser) int64() (int64, *Error) {
	n, err := strconv.ParseInt(p.tok.text, 10, 64)
	if err != nil {
		return 0, p.errorf("integer %s is out of range: integers are 64-bit", p.tok.text)
	}
	return n, nil
}

func enumValues(enum protoreflect.EnumDescriptor) string {
	values := enum.Values()
	names := make([]string, values.Len())
	for i := range names {
		names[i] = string(values.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

// exampleEnumValue is a value worth showing in a message: the first
// after the conventional *_UNSPECIFIED zero.
func exampleEnumValue(enum protoreflect.EnumDescriptor) string {
	values := enum.Values()
	if values.Len() > 1 && values.Get(0).Number() == 0 {
		return string(values.Get(1).Name())
	}
	return string(values.Get(0).Name())
}

// paramMismatch says why a parameter cannot be compared with a column,
// or returns "".
func paramMismatch(col fieldPath, param *fieldPath) string {
	ok := false
	want := ""
	switch col.class {
	case leafEnum:
		ok = param.class == leafInt || param.class == leafEnum && param.leaf().Enum().FullName() == col.leaf().Enum().FullName()
		want = "a request field of enum " + string(col.leaf().Enum().FullName()) + " or an integer"
	case leafInt:
		ok = param.class == leafInt
		want = "an integer request field (int32, int64, ...)"
	case leafString:
		ok = param.class == leafString
		want = "a string request field"
	case leafFloat:
		ok = param.class == leafFloat
		want = "a double or float request field"
	case leafBool:
		ok = param.class == leafBool
		want = "a bool request field"
	case leafBytes:
		ok = param.class == leafBytes
		want = "a bytes request field"
	case leafTimestamp, leafDuration:
		ok = param.class == col.class
		want = "a request field of type " + string(col.leaf().Message().FullName())
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("parameter :%s is %s, but field %s is %s; compare it with %s", param.name, typeName(param.leaf()), col.name, typeName(col.leaf()), want)
}

func (p *parser) parseOrderBy() *Error {
	if err := p.next(); err != nil {
		return err
	}
	if !p.is("BY") {
		return p.errorf("expected BY after ORDER; found %s", p.found())
	}
	for {
		if err := p.next(); err != nil {
			return err
		}
		if p.tok.kind != tIdent {
			return p.errorf("expected a row field to sort by; found %s", p.found())
		}
		off := p.tok.off
		segs, err := p.parsePath()
		if err != nil {
			return err
		}
		fp, err := p.row.resolve(segs)
		if err != nil {
			return err
		}
		if fp.repeated {
			msg := fmt.Sprintf("cannot ORDER BY %s: it is a repeated field", fp.name)
			if fp.through != fp.name {
				msg = fmt.Sprintf("cannot ORDER BY %s: it is in the repeated field %s, so a row has many of it", fp.name, fp.through)
			}
			return &Error{Offset: off, Msg: msg}
		}
		col := p.addColumn(fp)
		for _, o := range p.q.order {
			if o.Column == col {
				return &Error{Offset: off, Msg: fmt.Sprintf("ORDER BY %s twice; sort by each field once", fp.name)}
			}
		}
		order := store.ViewOrder{Column: col}
		switch {
		case p.is("ASC"):
			if err := p.next(); err != nil {
				return err
			}
		case p.is("DESC"):
			order.Desc = true
			if err := p.next(); err != nil {
				return err
			}
		}
		p.q.order = append(p.q.order, order)
		if p.tok.kind != tComma {
			return nil
		}
	}
}

// maxLimit keeps a literal LIMIT an int on every platform.
const maxLimit = math.MaxInt32

func (p *parser) parseLimit() *Error {
	if err := p.next(); err != nil {
		return err
	}
	switch p.tok.kind {
	case tInt:
		n, err := strconv.ParseInt(p.tok.text, 10, 64)
		if err != nil || n > maxLimit {
			return p.errorf("LIMIT %s is too large; the most is %d", p.tok.text, maxLimit)
		}
		if n < 1 {
			return p.errorf("LIMIT must be at least 1, found %s", p.tok.text)
		}
		p.q.limit = int(n)
		return p.next()
	case tParam:
		param, off, err := p.parseParam()
		if err != nil {
			return err
		}
		if param.class != leafInt {
			return &Error{Offset: off, Msg: fmt.Sprintf("LIMIT :%s: the parameter is %s; LIMIT needs an integer request field, such as int32 page_size", param.name, typeName(param.leaf()))}
		}
		p.q.limitParam = param
		return nil
	case tFloat:
		return p.errorf("LIMIT takes a whole number, found %s", p.tok.text)
	}
	return p.errorf("expected a number or an integer :parameter after LIMIT; found %s", p.found())
}
