package viewquery

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tName // a view name, lexed only after FROM: it may hold '-' and '.'
	tString
	tInt
	tFloat
	tParam // ':' and the identifier right after it (text); a path continues with tDot tIdent
	tStar
	tLParen
	tRParen
	tComma
	tDot
	tOp
)

// token is one lexeme: src[off:end]. text is an identifier, an operator,
// a number as written, or a string literal's value (each doubled quote
// made one).
type token struct {
	kind     tokKind
	off, end int
	text     string
}

// lex returns the token that starts at or after pos. The parser pulls
// tokens one at a time, so that FROM can ask for a view name instead
// (lexName) and NOT can look one token ahead without a token buffer.
func lex(src string, pos int) (token, *Error) {
	pos = skipSpace(src, pos)
	if pos >= len(src) {
		return token{kind: tEOF, off: len(src), end: len(src)}, nil
	}
	c := src[pos]
	switch {
	case isIdentStart(c):
		end := pos + 1
		for end < len(src) && isIdentPart(src[end]) {
			end++
		}
		return token{kind: tIdent, off: pos, end: end, text: src[pos:end]}, nil
	case isDigit(c) || c == '-' && pos+1 < len(src) && isDigit(src[pos+1]):
		return lexNumber(src, pos)
	case c == '\'':
		return lexString(src, pos)
	case c == ':':
		if pos+1 >= len(src) || !isIdentStart(src[pos+1]) {
			return token{}, &Error{Offset: pos, Msg: "':' starts a parameter and must be followed by a request field name, as in :customer_id"}
		}
		end := pos + 2
		for end < len(src) && isIdentPart(src[end]) {
			end++
		}
		return token{kind: tParam, off: pos, end: end, text: src[pos+1 : end]}, nil
	case c == '*':
		return token{kind: tStar, off: pos, end: pos + 1, text: "*"}, nil
	case c == '(':
		return token{kind: tLParen, off: pos, end: pos + 1, text: "("}, nil
	case c == ')':
		return token{kind: tRParen, off: pos, end: pos + 1, text: ")"}, nil
	case c == ',':
		return token{kind: tComma, off: pos, end: pos + 1, text: ","}, nil
	case c == '.':
		return token{kind: tDot, off: pos, end: pos + 1, text: "."}, nil
	case c == '=':
		return token{kind: tOp, off: pos, end: pos + 1, text: "="}, nil
	case c == '!':
		if pos+1 < len(src) && src[pos+1] == '=' {
			return token{kind: tOp, off: pos, end: pos + 2, text: "!="}, nil
		}
		return token{}, &Error{Offset: pos, Msg: "unexpected '!': write != for not equal, or NOT before a condition"}
	case c == '<':
		if pos+1 < len(src) && (src[pos+1] == '=' || src[pos+1] == '>') {
			return token{kind: tOp, off: pos, end: pos + 2, text: src[pos : pos+2]}, nil
		}
		return token{kind: tOp, off: pos, end: pos + 1, text: "<"}, nil
	case c == '>':
		if pos+1 < len(src) && src[pos+1] == '=' {
			return token{kind: tOp, off: pos, end: pos + 2, text: ">="}, nil
		}
		return token{kind: tOp, off: pos, end: pos + 1, text: ">"}, nil
	case c == '"':
		return token{}, &Error{Offset: pos, Msg: `double quotes do not make a string here; write text in single quotes: 'text'`}
	case c == '-':
		return token{}, &Error{Offset: pos, Msg: "unexpected '-': write a negative number without a space, as in -3"}
	case c == ';':
		return token{}, &Error{Offset: pos, Msg: "unexpected ';': a view query is a single SELECT; remove the ';'"}
	}
	r, _ := utf8.DecodeRuneInString(src[pos:])
	return token{}, &Error{Offset: pos, Msg: fmt.Sprintf("unexpected character %q", r)}
}

// lexName returns the view name that follows FROM: the characters of a
// view's stable name (letters, digits, '_', '.', '-'), which are more
// than an identifier's. Anything else is lexed as usual, for the parser
// to complain about.
func lexName(src string, pos int) (token, *Error) {
	pos = skipSpace(src, pos)
	end := pos
	for end < len(src) && (isIdentPart(src[end]) || src[end] == '-' || src[end] == '.') {
		end++
	}
	if end == pos || !isIdentPart(src[pos]) {
		return lex(src, pos)
	}
	return token{kind: tName, off: pos, end: end, text: src[pos:end]}, nil
}

func lexNumber(src string, pos int) (token, *Error) {
	end := pos
	if src[end] == '-' {
		end++
	}
	end = skipDigits(src, end)
	kind := tInt
	if end+1 < len(src) && src[end] == '.' && isDigit(src[end+1]) {
		kind = tFloat
		end = skipDigits(src, end+1)
	}
	if end < len(src) && (src[end] == 'e' || src[end] == 'E') {
		exp := end + 1
		if exp < len(src) && (src[exp] == '+' || src[exp] == '-') {
			exp++
		}
		if exp < len(src) && isDigit(src[exp]) {
			kind = tFloat
			end = skipDigits(src, exp)
		}
	}
	if end < len(src) && (isIdentPart(src[end]) || src[end] == '.') {
		bad := end
		for bad < len(src) && (isIdentPart(src[bad]) || src[bad] == '.') {
			bad++
		}
		return token{}, &Error{Offset: pos, Msg: fmt.Sprintf("%q is not a number; write integers as 12 or -3 and decimals as 1.5 or 2e-3", src[pos:bad])}
	}
	return token{kind: kind, off: pos, end: end, text: src[pos:end]}, nil
}

func lexString(src string, pos int) (token, *Error) {
	var b strings.Builder
	i := pos + 1
	for i < len(src) {
		if src[i] != '\'' {
			b.WriteByte(src[i])
			i++
			continue
		}
		if i+1 < len(src) && src[i+1] == '\'' {
			b.WriteByte('\'')
			i += 2
			continue
		}
		return token{kind: tString, off: pos, end: i + 1, text: b.String()}, nil
	}
	return token{}, &Error{Offset: pos, Msg: "string not closed: end it with ' (and write '' for a quote inside it)"}
}

func skipSpace(src string, pos int) int {
	for pos < len(src) {
		switch src[pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			pos++
		default:
			return pos
		}
	}
	return pos
}

func skipDigits(src string, pos int) int {
	for pos < len(src) && isDigit(src[pos]) {
		pos++
	}
	return pos
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }
