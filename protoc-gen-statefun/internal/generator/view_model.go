package generator

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/internal/viewquery"
)

// view is a service annotated with (statefun.v1.view), checked and
// resolved.
type view struct {
	service *protogen.Service
	file    *protogen.File
	name    string
	version int
	source  *entity
	row     *protogen.Message
	queries []*viewQuery
}

// stateView reports whether the view's rows are its source's states: kept
// by the source's own event handlers (event-sourced), or its stored values
// themselves (key-value).
func (v *view) stateView() bool { return v.row == v.source.state }

// ofValues reports whether the view's source is a key-value entity, whose
// feed holds its values rather than events.
func (v *view) ofValues() bool { return v.source.kind == keyValue }

// viewQuery is one RPC of a view and the query it answers.
type viewQuery struct {
	method *protogen.Method
	query  string
	// access: as for method.access.
	access string
	// stream is true for a server-streaming RPC, which sends the rows
	// themselves; a unary one returns a page of them.
	stream bool
	// rows is the repeated row field of a unary RPC's response.
	rows *protogen.Field
	// nextPageToken and pageToken are the paging fields of a unary RPC,
	// or nil.
	nextPageToken, pageToken *protogen.Field
}

// paged reports whether the query's client can ask for the page after
// one: its request takes a page_token and its response gives the next.
func (q *viewQuery) paged() bool { return q.pageToken != nil && q.nextPageToken != nil }

func viewOptions(svc *protogen.Service) *statefunv1.ViewOptions {
	opts := svc.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_View) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_View).(*statefunv1.ViewOptions)
}

// readView returns the view a service declares, or nil when it declares
// none. Mistakes are recorded in m.diags.
func (m *model) readView(f *protogen.File, svc *protogen.Service) *view {
	opts := viewOptions(svc)
	if opts == nil || publisherOptions(svc) != nil {
		return nil // readPublisher reports a publisher that is also a view
	}
	name := svc.Desc.Name()
	optsPos := func(path ...int32) position {
		return positionOf(svc.Desc, append([]int32{serviceOptionsField, viewExtension}, path...)...)
	}
	for _, other := range []struct {
		kind string
		set  bool
	}{
		{"entity", entityOptions(svc) != nil},
		{"workflow", workflowOptions(svc) != nil},
		{"consumer", consumerOptions(svc) != nil},
	} {
		if other.set {
			m.diags.add(optsPos(),
				"service %s has both (statefun.v1.%s) and (statefun.v1.view); a service is a%s %s or a view, so split it in two",
				name, other.kind, article(other.kind), other.kind)
			return nil
		}
	}
	v := &view{service: svc, file: f, name: opts.GetName(), version: int(opts.GetVersion())}
	if v.version == 0 {
		v.version = 1
	}
	nameOK := false
	switch {
	case v.name == "":
		m.diags.add(optsPos(viewNameField),
			"view %s has no name; set (statefun.v1.view).name to a stable name its rows are stored under, for example name: %q", name, kebab(baseName(string(name))))
	case !entityTypePattern.MatchString(v.name):
		m.diags.add(optsPos(viewNameField),
			"view name %q of %s is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example %q)", v.name, name, kebab(baseName(string(name))))
	default:
		nameOK = true
	}

	switch {
	case opts.GetSource() == "":
		m.diags.add(optsPos(viewSourceField),
			"view %s has no source; set (statefun.v1.view).source to the entity service whose states or events build its rows", name)
	default:
		sourceSvc := m.resolveService(svc, opts.GetSource())
		switch {
		case sourceSvc == nil:
			m.diags.add(optsPos(viewSourceField),
				"source %q of view %s not found; name an entity service of package %s, import the file that declares it, or give its fully qualified name", opts.GetSource(), name, svc.Desc.ParentFile().Package())
		case workflowOptions(sourceSvc) != nil:
			m.diags.add(optsPos(viewSourceField),
				"source %s of view %s is a workflow, which has no events to build rows from; name an entity", sourceSvc.Desc.FullName(), name)
		case m.entityOf[sourceSvc] == nil:
			m.diags.add(optsPos(viewSourceField),
				"source %s of view %s is not an entity; name a service with option (statefun.v1.entity)", sourceSvc.Desc.FullName(), name)
		case m.entityOf[sourceSvc].state == nil:
			if !m.entityOf[sourceSvc].file.Generate {
				// Its own error is reported only when its file is generated.
				m.diags.add(optsPos(viewSourceField),
					"source %s of view %s has no state message that resolves (%s); fix the state option of the entity",
					sourceSvc.Desc.FullName(), name, positionOf(sourceSvc.Desc))
			}
		default:
			v.source = m.entityOf[sourceSvc]
		}
	}

	switch {
	case opts.GetRow() == "":
		m.diags.add(optsPos(viewRowField),
			"view %s has no row; set (statefun.v1.view).row to its row message: the source's state message, or a message of its own that an updater fills from the source's events", name)
	default:
		v.row = m.resolve(svc, opts.GetRow())
		switch {
		case v.row == nil:
			m.diags.add(optsPos(viewRowField),
				"row message %q of view %s not found; define it in package %s, import the file that defines it, or give its fully qualified name", opts.GetRow(), name, svc.Desc.ParentFile().Package())
		case v.row.Desc.IsMapEntry():
			m.diags.add(optsPos(viewRowField), "row %q of view %s is a map entry; use a message", opts.GetRow(), name)
			v.row = nil
		}
	}

	for _, meth := range svc.Methods {
		q := m.readViewQuery(v, meth)
		if q == nil {
			continue
		}
		v.queries = append(v.queries, q)
		if !nameOK || v.row == nil {
			continue // the query cannot be checked against what is missing
		}
		// The runtime compiles the same queries again for their columns
		// (viewquery.Merge); here they are only checked.
		if _, err := viewquery.Compile(q.query, v.name, v.row.Desc, meth.Input.Desc); err != nil {
			m.reportQueryError(v, q, err)
		}
	}
	if len(svc.Methods) == 0 {
		m.diags.add(positionOf(svc.Desc),
			"view %s has no methods; add an RPC per query, such as rpc GetByCustomer(Request) returns (Response) { option (statefun.v1.method).query = \"SELECT * FROM %s WHERE customer_id = :customer_id\"; }",
			name, viewNameOr(v))
	}
	return v
}

// readViewQuery reads one RPC of a view: its query and the shape of its
// request and response.
func (m *model) readViewQuery(v *view, meth *protogen.Method) *viewQuery {
	svcName := v.service.Desc.Name()
	rpc := fmt.Sprintf("%s.%s", svcName, meth.Desc.Name())
	opts := methodOptions(meth)
	ok := true
	if opts.GetReadOnly() {
		m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodReadOnlyField),
			"method %s sets (statefun.v1.method).read_only, which applies to entity and workflow methods only; remove it: a view's methods only read", rpc)
		ok = false
	}
	if opts.GetStart() {
		m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodStartField),
			"method %s sets (statefun.v1.method).start, which applies to workflow methods only; remove it", rpc)
		ok = false
	}
	if opts.GetSubscribe() != nil {
		m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodSubscribeField),
			"method %s sets (statefun.v1.method).subscribe, which applies to entity methods only; remove it: a view's rows follow its source's events, and its methods only read", rpc)
		ok = false
	}
	if meth.Desc.IsStreamingClient() {
		m.diags.add(positionOf(meth.Desc),
			"method %s streams its requests; a view's method takes one request and returns a page of rows (unary) or streams the rows (server streaming), so remove the stream before its request type", rpc)
		return nil
	}
	q := &viewQuery{method: meth, query: opts.GetQuery(), stream: meth.Desc.IsStreamingServer()}
	if q.query == "" {
		m.diags.add(positionOf(meth.Desc),
			"method %s of view %s has no query; set option (statefun.v1.method).query = \"SELECT * FROM %s WHERE ...\" on it",
			rpc, svcName, viewNameOr(v))
		ok = false
	}
	if v.row != nil {
		if q.stream {
			if meth.Output != v.row {
				m.diags.add(positionOf(meth.Desc),
					"method %s streams %s; a streaming query sends the view's rows, so make it return stream %s", rpc, meth.Output.Desc.FullName(), v.row.Desc.FullName())
				ok = false
			}
		} else if !m.readPageResponse(v, q, rpc) {
			ok = false
		}
	}
	if !m.readPageRequest(q, rpc) {
		ok = false
	}
	if !ok {
		return nil
	}
	return q
}

// readPageResponse checks the response of a unary query: one repeated
// field of rows and, optionally, string next_page_token.
func (m *model) readPageResponse(v *view, q *viewQuery, rpc string) bool {
	resp := q.method.Output
	row := v.row.Desc.Name()
	if resp == v.row {
		m.diags.add(positionOf(q.method.Desc),
			"method %s returns one %s, but a unary query returns a page of rows; return a message with repeated %s rows = 1 (and, optionally, string next_page_token = 2), or make it return stream %s",
			rpc, row, row, row)
		return false
	}
	for _, f := range resp.Fields {
		if f.Desc.IsList() && f.Message == v.row {
			q.rows = f
			break
		}
	}
	if q.rows == nil {
		m.diags.add(positionOf(q.method.Desc),
			"response %s of view query %s has no repeated %s field; add repeated %s rows = 1 to it for the page of rows, or make the method return stream %s",
			resp.Desc.FullName(), rpc, row, row, row)
		return false
	}
	ok := true
	for _, f := range resp.Fields {
		fd := f.Desc
		switch {
		case f == q.rows:
		case fd.Name() == "next_page_token" && fd.Kind() == protoreflect.StringKind && !fd.IsList():
			q.nextPageToken = f
		default:
			m.diags.add(positionOf(fd),
				"field %s of %s, the response of view query %s, is neither the page of rows (%s) nor string next_page_token; remove it: a query's response holds only those",
				fd.Name(), resp.Desc.Name(), rpc, q.rows.Desc.Name())
			ok = false
		}
	}
	return ok
}

// readPageRequest checks the paging fields a query's request may have.
func (m *model) readPageRequest(q *viewQuery, rpc string) bool {
	req := q.method.Input
	ok := true
	for _, f := range req.Fields {
		fd := f.Desc
		switch fd.Name() {
		case "page_token":
			if fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.HasPresence() {
				m.diags.add(positionOf(fd),
					"field page_token of %s, the request of view query %s, must be a plain string (not optional, not repeated): the runtime reads the page to continue from it", req.Desc.Name(), rpc)
				ok = false
				continue
			}
			q.pageToken = f
		case "page_size":
			if fd.Kind() != protoreflect.Int32Kind || fd.IsList() {
				m.diags.add(positionOf(fd),
					"field page_size of %s, the request of view query %s, must be an int32: the runtime reads the page size from it", req.Desc.Name(), rpc)
				ok = false
			}
		}
	}
	if !ok || q.stream {
		return ok
	}
	switch {
	case q.pageToken != nil && q.nextPageToken == nil && q.rows != nil:
		m.diags.add(positionOf(q.pageToken.Desc),
			"request %s of view query %s has page_token, but its response %s has no next_page_token to fill it from; add string next_page_token to %s, or remove page_token",
			req.Desc.Name(), rpc, q.method.Output.Desc.Name(), q.method.Output.Desc.Name())
		return false
	case q.pageToken == nil && q.nextPageToken != nil:
		m.diags.add(positionOf(q.nextPageToken.Desc),
			"response %s of view query %s has next_page_token, but its request %s has no page_token to pass it back in; add string page_token to %s, or remove next_page_token",
			q.method.Output.Desc.Name(), rpc, req.Desc.Name(), req.Desc.Name())
		return false
	}
	return true
}

func viewNameOr(v *view) string {
	if v.name != "" {
		return v.name
	}
	return kebab(baseName(string(v.service.Desc.Name())))
}

// reportQueryError reports a query that does not compile, at the place in
// the .proto file where the problem is when that place can be worked out
// (queryPosition), else at the option with the text the error is about.
func (m *model) reportQueryError(v *view, q *viewQuery, err error) {
	rpc := fmt.Sprintf("%s.%s", v.service.Desc.Name(), q.method.Desc.Name())
	var qe *viewquery.Error
	if !errors.As(err, &qe) {
		m.diags.add(queryOptionPosition(q.method), "query of %s: %v; fix the query", rpc, err)
		return
	}
	offset := min(max(qe.Offset, 0), len(q.query))
	if pos, exact := queryPosition(q.method, q.query, offset); exact {
		m.diags.add(pos, "query of %s: %s", rpc, qe.Msg)
		return
	}
	m.diags.add(queryOptionPosition(q.method), "query of %s: %s, at %s", rpc, qe.Msg, querySnippet(q.query, offset))
}

// querySnippet quotes the query from offset on, shortened, for an error
// that cannot point at its column.
func querySnippet(query string, offset int) string {
	rest := query[offset:]
	if rest == "" {
		return "the end of the query"
	}
	const width = 24
	if len(rest) > width {
		cut := width
		for cut > 0 && rest[cut]&0xc0 == 0x80 {
			cut-- // not inside a UTF-8 sequence
		}
		rest = rest[:cut] + "…"
	}
	return fmt.Sprintf("%q", rest)
}

func queryOptionPosition(meth *protogen.Method) position {
	return positionOf(meth.Desc, methodOptionsField, statefunExtension, methodQueryField)
}

// queryPosition maps a byte offset in a method's query to its line and
// column in the .proto file. Compilers record where the option is written,
// not where its string starts, and the plugin never sees the source text;
// but the option's span ends right after the string literal (and, for
// "option (statefun.v1.method).query = ...;", the semicolon). When the
// literal is one line that needs no escapes, its start is that end minus
// its length. Otherwise (a literal split over lines, escapes) exact is
// false and pos is the option.
func queryPosition(meth *protogen.Method, query string, offset int) (pos position, exact bool) {
	d := meth.Desc
	locs := d.ParentFile().SourceLocations()
	base := locs.ByDescriptor(d).Path
	if base == nil {
		return position{file: d.ParentFile().Path()}, false
	}
	optionPath := append(append(protoreflect.SourcePath(nil), base...), methodOptionsField, statefunExtension)
	field := locs.ByPath(append(optionPath, methodQueryField))
	if field.Path == nil || field.StartLine != field.EndLine {
		return queryOptionPosition(meth), false
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return queryOptionPosition(meth), false
		}
	}
	// "query: ..." inside the option's message value has a location of
	// its own; "option (...).query = ...;" is the statement itself.
	trailing, prefix := 2, len(`option(statefun.v1.method).query="`)
	if whole := locs.ByPath(optionPath); whole.Path != nil {
		trailing, prefix = 1, len(`query:"`)
	}
	start := field.EndColumn - trailing - len(query)
	if start-field.StartColumn < prefix {
		return queryOptionPosition(meth), false // not one literal: split on the line
	}
	return position{file: d.ParentFile().Path(), line: field.StartLine + 1, col: start + offset + 1}, true
}
