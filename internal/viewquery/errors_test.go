package viewquery

import (
	"errors"
	"strings"
	"testing"
)

// TestCompileErrors pins each mistake's message and where it points: the
// generator turns Offset into file.proto:line:col, so an offset that
// drifts points the user at the wrong token.
func TestCompileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		src    string
		offset int
		msg    string
	}{
		{"", 0, "a view query starts with SELECT * FROM carts; found the end of the query"},
		{"DELETE FROM carts", 0, "a view query starts with SELECT * FROM carts; found \"DELETE\""},
		{"SELECT customer_id FROM carts", 7, "a view query returns whole rows: write SELECT *, found \"customer_id\" after SELECT"},
		{"SELECT * carts", 9, "expected FROM carts after SELECT *, found \"carts\""},
		{"SELECT * FROM", 13, "expected the view's name after FROM, as in FROM carts; found the end of the query"},
		{"SELECT * FROM (", 14, "expected the view's name after FROM, as in FROM carts; found \"(\""},
		{"SELECT * FROM cart", 14, "FROM cart: this view is named \"carts\"; write FROM carts"},
		{"SELECT * FROM carts WHRE quantity = 1", 20, "expected WHERE, ORDER BY, LIMIT or the end of the query; found \"WHRE\""},
		{"SELECT * FROM carts WHERE", 25, "expected a condition, such as customer_id = :customer_id; found the end of the query"},
		{"SELECT * FROM carts WHERE custmer_id = 'x'", 26, "unknown field \"custmer_id\" in row message shop.v1.CartRow; did you mean customer_id? (fields: customer_id, status, quantity, total_cents, lines, big, fixed, weight, price, gift, digest, created_at, ttl, address, items, labels, attrs, delta, seen_at, order, ...)"},
		{"SELECT * FROM carts WHERE customerId = 'x'", 26, "unknown field \"customerId\" in row message shop.v1.CartRow; did you mean customer_id? (queries name fields as the .proto file does)"},
		{"SELECT * FROM carts WHERE zzz = 'x'", 26, "unknown field \"zzz\" in row message shop.v1.CartRow; fields: customer_id, status, quantity, total_cents, lines, big, fixed, weight, price, gift, digest, created_at, ttl, address, items, labels, attrs, delta, seen_at, order, ..."},
		{"SELECT * FROM carts WHERE address.cty = 'x'", 34, "unknown field \"cty\" in shop.v1.Address (address); did you mean city? (fields: city, zip, geo)"},
		{"SELECT * FROM carts WHERE address = 'x'", 26, "field address is a message shop.v1.Address; use one of its fields, such as address.city"},
		{"SELECT * FROM carts WHERE nothing = 'x'", 26, "field nothing is a message shop.v1.Empty, which cannot be compared"},
		{"SELECT * FROM carts WHERE customer_id.x = 'x'", 38, "field customer_id is a string, not a message: it has no field \"x\""},
		{"SELECT * FROM carts WHERE created_at.seconds = 1", 37, "field created_at is a google.protobuf.Timestamp, compared as a whole; remove .seconds"},
		{"SELECT * FROM carts WHERE attrs = 'x'", 26, "field attrs is a map, and maps cannot be queried; use a repeated message field instead"},
		{"SELECT * FROM carts WHERE big = 1", 26, "field big is a uint64, which may not fit the signed 64-bit integers of a view column; make it an int64, or a uint32"},
		{"SELECT * FROM carts WHERE fixed = 1", 26, "field fixed is a fixed64, which may not fit the signed 64-bit integers of a view column; make it an int64, or a uint32"},
		{"SELECT * FROM carts WHERE items = 1", 26, "field items is a message shop.v1.Item; use one of its fields, such as items.sku"},
		{"SELECT * FROM carts WHERE address. = 1", 35, "expected a field name after '.', found \"=\""},
		{"SELECT * FROM carts WHERE quantity", 34, "expected a comparison operator (=, !=, <>, <, <=, >, >=) after quantity; found the end of the query"},
		{"SELECT * FROM carts WHERE gift AND quantity = 1", 31, "expected a comparison operator after gift, as in gift = true; found \"AND\""},
		{"SELECT * FROM carts WHERE quantity =", 36, "expected a literal ('text', 12, 1.5, true) or a :parameter to compare quantity with; found the end of the query"},
		{"SELECT * FROM carts WHERE quantity = total_cents", 37, "cannot compare quantity with \"total_cents\": compare a field with a literal ('text', 12, 1.5, true) or a :parameter"},
		{"SELECT * FROM carts WHERE status = STATUS_OPEN", 35, "write enum values in quotes: 'STATUS_OPEN'"},
		{"SELECT * FROM carts WHERE 'x' = customer_id", 26, "a comparison starts with a row field, as in customer_id = :customer_id; found \"'x'\""},
		{"SELECT * FROM carts WHERE :customer_id = customer_id", 26, "a comparison starts with a row field, as in customer_id = :customer_id; found \":customer_id\""},
		{"SELECT * FROM carts WHERE customer_id = 1", 40, "field customer_id is a string; compare it with text in single quotes, such as 'abc', or a :parameter"},
		{"SELECT * FROM carts WHERE quantity = 'x'", 37, "field quantity is an int32; compare it with an integer, such as 12, or a :parameter"},
		{"SELECT * FROM carts WHERE quantity = 1.5", 37, "field quantity is an int32; compare it with an integer, such as 12, or a :parameter"},
		{"SELECT * FROM carts WHERE quantity = true", 37, "field quantity is an int32; compare it with an integer, such as 12, or a :parameter"},
		{"SELECT * FROM carts WHERE total_cents = 9223372036854775808", 40, "integer 9223372036854775808 is out of range: integers are 64-bit"},
		{"SELECT * FROM carts WHERE status = true", 35, "field status is an enum shop.v1.Status; compare it with an enum value name such as 'STATUS_OPEN' or a number"},
		{"SELECT * FROM carts WHERE status = 1.5", 35, "field status is an enum shop.v1.Status; compare it with an enum value name such as 'STATUS_OPEN' or a number"},
		{"SELECT * FROM carts WHERE status = 'STATUS_OPN'", 35, "'STATUS_OPN' is not a value of enum shop.v1.Status; values: STATUS_UNSPECIFIED, STATUS_OPEN, STATUS_CLOSED"},
		{"SELECT * FROM carts WHERE status = 4294967296", 35, "4294967296 is not an enum number: enum numbers are 32-bit"},
		{"SELECT * FROM carts WHERE price = 'x'", 34, "field price is a double; compare it with a number, such as 1.5, or a :parameter"},
		{"SELECT * FROM carts WHERE price = 1e999", 34, "number 1e999 is out of range"},
		{"SELECT * FROM carts WHERE weight = 1e300", 35, "number 1e300 is out of range for float field weight"},
		{"SELECT * FROM carts WHERE gift = 1", 33, "field gift is a bool; compare it with true or false"},
		{"SELECT * FROM carts WHERE digest = 'x'", 35, "field digest is bytes; compare it with a bytes :parameter, not a literal"},
		{"SELECT * FROM carts WHERE created_at > 5", 39, "field created_at is a google.protobuf.Timestamp; compare it with a :parameter of the same type, not a literal"},
		{"SELECT * FROM carts WHERE ttl > 5", 32, "field ttl is a google.protobuf.Duration; compare it with a :parameter of the same type, not a literal"},
		{"SELECT * FROM carts WHERE customer_id = :customer", 40, "parameter :customer is not a field of request shop.v1.ByCustomerRequest; fields: customer_id, page_size, status, color, min_total, min_price, min_weight, gift, digest, since, max_ttl, filter, ids, big, page_token, count, tags"},
		{"SELECT * FROM carts WHERE customer_id = :filter.cty", 48, "parameter :filter.cty is not a field: shop.v1.Filter has no field \"cty\"; did you mean city? (fields: city, status, zips)"},
		{"SELECT * FROM carts WHERE customer_id = :ids", 40, "parameter :ids is a repeated field; a parameter holds one value"},
		{"SELECT * FROM carts WHERE customer_id = :filter.zips", 48, "parameter :filter.zips is a repeated field; a parameter holds one value"},
		{"SELECT * FROM carts WHERE customer_id = :tags", 40, "parameter :tags is a map, and maps cannot be queried; use a repeated message field instead"},
		{"SELECT * FROM carts WHERE customer_id = :filter", 40, "parameter :filter is a message shop.v1.Filter; use one of its fields, such as :filter.city"},
		{"SELECT * FROM carts WHERE customer_id = :big", 40, "parameter :big is a uint64, which may not fit the signed 64-bit integers of a view column; make it an int64, or a uint32"},
		{"SELECT * FROM carts WHERE customer_id = :page_size", 40, "parameter :page_size is an int32, but field customer_id is a string; compare it with a string request field"},
		{"SELECT * FROM carts WHERE quantity = :customer_id", 37, "parameter :customer_id is a string, but field quantity is an int32; compare it with an integer request field (int32, int64, ...)"},
		{"SELECT * FROM carts WHERE quantity = :status", 37, "parameter :status is an enum shop.v1.Status, but field quantity is an int32; compare it with an integer request field (int32, int64, ...)"},
		{"SELECT * FROM carts WHERE status = :color", 35, "parameter :color is an enum shop.v1.Color, but field status is an enum shop.v1.Status; compare it with a request field of enum shop.v1.Status or an integer"},
		{"SELECT * FROM carts WHERE price = :min_total", 34, "parameter :min_total is an int64, but field price is a double; compare it with a double or float request field"},
		{"SELECT * FROM carts WHERE created_at > :max_ttl", 39, "parameter :max_ttl is a google.protobuf.Duration, but field created_at is a google.protobuf.Timestamp; compare it with a request field of type google.protobuf.Timestamp"},
		{"SELECT * FROM carts WHERE created_at > :min_total", 39, "parameter :min_total is an int64, but field created_at is a google.protobuf.Timestamp; compare it with a request field of type google.protobuf.Timestamp"},
		{"SELECT * FROM carts WHERE gift = :customer_id", 33, "parameter :customer_id is a string, but field gift is a bool; compare it with a bool request field"},
		{"SELECT * FROM carts WHERE digest = :customer_id", 35, "parameter :customer_id is a string, but field digest is bytes; compare it with a bytes request field"},
		{"SELECT * FROM carts WHERE customer_id = :since.seconds", 47, "parameter :since is a google.protobuf.Timestamp, compared as a whole; remove .seconds"},
		{"SELECT * FROM carts WHERE customer_id = :customer_id.x", 53, "parameter :customer_id is a string, not a message: it has no field \"x\""},
		{"SELECT * FROM carts WHERE (quantity = 1", 39, "expected AND, OR or ) to close the parenthesis; found the end of the query"},
		{"SELECT * FROM carts WHERE (quantity = 1 customer_id", 40, "expected AND, OR or ) to close the parenthesis; found \"customer_id\""},
		{"SELECT * FROM carts WHERE quantity = 1 customer_id = 'x'", 39, "expected AND, OR, ORDER BY, LIMIT or the end of the query; found \"customer_id\""},
		{"SELECT * FROM carts WHERE NOT", 29, "expected a condition, such as customer_id = :customer_id; found the end of the query"},
		{"SELECT * FROM carts WHERE quantity = 1 AND", 42, "expected a condition, such as customer_id = :customer_id; found the end of the query"},
		{"SELECT * FROM carts WHERE quantity = 1 OR OR", 42, "expected a condition, such as customer_id = :customer_id; found \"OR\""},
		{"SELECT * FROM carts ORDER quantity", 26, "expected BY after ORDER; found \"quantity\""},
		{"SELECT * FROM carts ORDER BY", 28, "expected a row field to sort by; found the end of the query"},
		{"SELECT * FROM carts ORDER BY items.sku", 29, "cannot ORDER BY items.sku: it is in the repeated field items, so a row has many of it"},
		{"SELECT * FROM carts ORDER BY labels", 29, "cannot ORDER BY labels: it is a repeated field"},
		{"SELECT * FROM carts ORDER BY quantity, quantity DESC", 39, "ORDER BY quantity twice; sort by each field once"},
		{"SELECT * FROM carts ORDER BY quantity DESC customer_id", 43, "expected ',', ASC, DESC, LIMIT or the end of the query; found \"customer_id\""},
		{"SELECT * FROM carts ORDER BY 'x'", 29, "expected a row field to sort by; found \"'x'\""},
		{"SELECT * FROM carts LIMIT 0", 26, "LIMIT must be at least 1, found 0"},
		{"SELECT * FROM carts LIMIT -1", 26, "LIMIT must be at least 1, found -1"},
		{"SELECT * FROM carts LIMIT 2.5", 26, "LIMIT takes a whole number, found 2.5"},
		{"SELECT * FROM carts LIMIT 99999999999", 26, "LIMIT 99999999999 is too large; the most is 2147483647"},
		{"SELECT * FROM carts LIMIT 99999999999999999999999", 26, "LIMIT 99999999999999999999999 is too large; the most is 2147483647"},
		{"SELECT * FROM carts LIMIT", 25, "expected a number or an integer :parameter after LIMIT; found the end of the query"},
		{"SELECT * FROM carts LIMIT :customer_id", 26, "LIMIT :customer_id: the parameter is a string; LIMIT needs an integer request field, such as int32 page_size"},
		{"SELECT * FROM carts LIMIT :status", 26, "LIMIT :status: the parameter is an enum shop.v1.Status; LIMIT needs an integer request field, such as int32 page_size"},
		{"SELECT * FROM carts LIMIT :pagesize", 26, "parameter :pagesize is not a field of request shop.v1.ByCustomerRequest; did you mean page_size? (fields: customer_id, page_size, status, color, min_total, min_price, min_weight, gift, digest, since, max_ttl, filter, ids, big, page_token, count, tags)"},
		{"SELECT * FROM carts LIMIT 5 OFFSET 5", 28, "expected the end of the query; found \"OFFSET\""},
		{"SELECT * FROM carts LIMIT 5 WHERE quantity = 1", 28, "unexpected WHERE: the clauses come in the order WHERE, ORDER BY, LIMIT, each at most once"},
		{"SELECT * FROM carts ORDER BY quantity WHERE quantity = 1", 38, "unexpected WHERE: the clauses come in the order WHERE, ORDER BY, LIMIT, each at most once"},
		{"SELECT * FROM carts WHERE customer_id = 'abc", 40, "string not closed: end it with ' (and write '' for a quote inside it)"},
		{"SELECT * FROM carts WHERE customer_id = \"abc\"", 40, "double quotes do not make a string here; write text in single quotes: 'text'"},
		{"SELECT * FROM carts WHERE customer_id = 'a';", 43, "unexpected ';': a view query is a single SELECT; remove the ';'"},
		{"SELECT * FROM carts WHERE quantity ! 1", 35, "unexpected '!': write != for not equal, or NOT before a condition"},
		{"SELECT * FROM carts WHERE quantity = 12abc", 37, "\"12abc\" is not a number; write integers as 12 or -3 and decimals as 1.5 or 2e-3"},
		{"SELECT * FROM carts WHERE quantity = 1.x", 37, "\"1.x\" is not a number; write integers as 12 or -3 and decimals as 1.5 or 2e-3"},
		{"SELECT * FROM carts WHERE quantity = : x", 37, "':' starts a parameter and must be followed by a request field name, as in :customer_id"},
		{"SELECT * FROM carts WHERE quantity = 1 é", 39, "unexpected character 'é'"},
		{"SELECT * FROM carts WHERE quantity == 1", 36, "expected a literal ('text', 12, 1.5, true) or a :parameter to compare quantity with; found \"=\""},
		{"SELECT * FROM carts WHERE quantity = - 1", 37, "unexpected '-': write a negative number without a space, as in -3"},
		{"SELECT * FROM carts WHERE " + strings.Repeat("(", maxDepth+1) + "quantity = 1" + strings.Repeat(")", maxDepth+1), 26 + maxDepth, "conditions nest deeper than 100 NOTs and parentheses; simplify the query"},
		{"SELECT * FROM carts WHERE " + strings.Repeat("NOT ", maxDepth+1) + "gift = true", 26 + 4*maxDepth, "conditions nest deeper than 100 NOTs and parentheses; simplify the query"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			t.Parallel()
			q, err := Compile(tc.src, "carts", rowDesc(t), reqDesc(t))
			if err == nil {
				t.Fatalf("Compile(%q) = %+v, want an error", tc.src, q)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Compile(%q): %T %v, want a *Error", tc.src, err, err)
			}
			if e.Msg != tc.msg {
				t.Errorf("message:\n got %q\nwant %q", e.Msg, tc.msg)
			}
			if e.Offset != tc.offset {
				t.Errorf("offset %d (at %q), want %d (at %q)", e.Offset, tc.src[e.Offset:], tc.offset, tc.src[tc.offset:])
			}
		})
	}
}

// TestCompileDepthLimit checks the nesting limit is a limit, not a ban:
// maxDepth levels compile.
func TestCompileDepthLimit(t *testing.T) {
	t.Parallel()
	src := "SELECT * FROM carts WHERE " + strings.Repeat("NOT ", maxDepth-1) + "(gift = true)"
	if _, err := Compile(src, "carts", rowDesc(t), reqDesc(t)); err != nil {
		t.Fatalf("%d levels: %v", maxDepth, err)
	}
}

// TestCompileWithoutRequest: a query RPC's request may be absent from the
// generator's view (nil); a query without parameters still compiles, and
// one with a parameter says why it cannot.
func TestCompileWithoutRequest(t *testing.T) {
	t.Parallel()
	if _, err := Compile("SELECT * FROM carts WHERE quantity = 1 LIMIT 5", "carts", rowDesc(t), nil); err != nil {
		t.Fatalf("no parameters: %v", err)
	}
	_, err := Compile("SELECT * FROM carts WHERE quantity = :page_size", "carts", rowDesc(t), nil)
	want := &Error{Offset: 37, Msg: "parameter :page_size: this query has no request message to take it from"}
	if e := (*Error)(nil); !errors.As(err, &e) || *e != *want {
		t.Fatalf("got %#v, want %#v", err, want)
	}
	_, err = Compile("SELECT * FROM carts", "carts", nil, nil)
	if e := (*Error)(nil); !errors.As(err, &e) || e.Offset != 0 {
		t.Fatalf("nil row: got %#v, want a *Error at 0", err)
	}
}
