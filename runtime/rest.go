package statefun

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// restQueryGuard stands in front of the REST routes that vanguard serves
// from the methods' google.api.http options, and refuses a query parameter
// that sets a field the route's path or body already binds.
//
// Vanguard fills a request from the body, then the path variables, then
// the query string, each overriding the one before, so that
// GET /v1/carts/c1?cart_id=c2 would address cart c2: the entity key in
// the path, which a proxy may have authorized, would not be the one
// used. google.api.http defines query parameters as the fields bound by
// neither the path nor the body, and so does this guard.
type restQueryGuard struct {
	next   http.Handler
	routes []restRoute
}

// restRoute is one google.api.http binding of a method.
type restRoute struct {
	method   string // HTTP method
	name     string // "GET /v1/carts/{cart_id}", for messages
	segments []string
	multiple map[int]bool   // indexes of "**" segments
	vars     map[int]string // index of a variable's first segment to the field path it binds
	verb     string         // the ":verb" suffix, without the colon
	body     string         // "", "*" or a top-level field
	input    protoreflect.MessageDescriptor
}

// newRESTQueryGuard reads the routes of every service grpcServer has.
func newRESTQueryGuard(next http.Handler, grpcServer *grpc.Server) *restQueryGuard {
	g := &restQueryGuard{next: next}
	for name := range grpcServer.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			rule, ok := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
			if !ok || rule == nil {
				continue
			}
			for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
				if route, ok := parseRESTRoute(r, md.Input()); ok {
					g.routes = append(g.routes, route)
				}
			}
		}
	}
	return g
}

func parseRESTRoute(rule *annotations.HttpRule, input protoreflect.MessageDescriptor) (restRoute, bool) {
	r := restRoute{input: input, body: rule.GetBody(), vars: map[int]string{}, multiple: map[int]bool{}}
	var template string
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		r.method, template = http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		r.method, template = http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		r.method, template = http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		r.method, template = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		r.method, template = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		r.method, template = p.Custom.GetKind(), p.Custom.GetPath()
	default:
		return r, false
	}
	r.name = r.method + " " + template
	if !strings.HasPrefix(template, "/") {
		return r, false
	}
	// The verb follows the last colon outside a variable.
	if i := strings.LastIndexByte(template, ':'); i > strings.LastIndexByte(template, '}') {
		template, r.verb = template[:i], template[i+1:]
	}
	// A variable may span segments ({name=shelves/*}): split outside braces.
	var segs []string
	depth, start := 0, 1
	for i := 1; i <= len(template); i++ {
		switch {
		case i == len(template) || (template[i] == '/' && depth == 0):
			segs = append(segs, template[start:i])
			start = i + 1
		case template[i] == '{':
			depth++
		case template[i] == '}':
			depth--
		}
	}
	for _, seg := range segs {
		if !strings.HasPrefix(seg, "{") {
			if seg == "**" {
				r.multiple[len(r.segments)] = true
			}
			r.segments = append(r.segments, seg)
			continue
		}
		field, sub, hasSub := strings.Cut(strings.Trim(seg, "{}"), "=")
		if !hasSub {
			sub = "*"
		}
		r.vars[len(r.segments)] = field
		for _, s := range strings.Split(sub, "/") {
			if s == "**" {
				r.multiple[len(r.segments)] = true
			}
			r.segments = append(r.segments, s)
		}
	}
	return r, true
}

// matches reports whether the request's method and path fit the route.
func (r restRoute) matches(method, path string) bool {
	if method != r.method {
		return false
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if r.verb != "" {
		last := parts[len(parts)-1]
		i := strings.LastIndexByte(last, ':')
		if i < 0 || last[i+1:] != r.verb {
			return false
		}
		parts[len(parts)-1] = last[:i]
	}
	for i, seg := range r.segments {
		if r.multiple[i] {
			return true // "**" takes the rest
		}
		if i >= len(parts) || (seg != "*" && seg != parts[i]) {
			return false
		}
	}
	return len(parts) == len(r.segments)
}

// binder names what binds the field at path (proto names, "ref.serial") in
// this route, or returns "" when a query parameter may set it.
func (r restRoute) binder(path string) string {
	for _, v := range r.vars {
		if v == path {
			return "path"
		}
	}
	top, _, _ := strings.Cut(path, ".")
	if r.body == "*" || r.body == top {
		return "body"
	}
	return ""
}

func (g *restQueryGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery == "" || isRPCPath(r.URL.Path) {
		g.next.ServeHTTP(w, r)
		return
	}
	var matched []restRoute
	for _, route := range g.routes {
		if route.matches(r.Method, r.URL.Path) {
			matched = append(matched, route)
		}
	}
	if len(matched) == 0 {
		g.next.ServeHTTP(w, r) // vanguard answers 404 or 405
		return
	}
	for param := range r.URL.Query() {
		known := false
		for _, route := range matched {
			path, ok := protoFieldPath(route.input, param)
			if !ok {
				continue
			}
			known = true
			if by := route.binder(path); by != "" {
				writeRESTError(w, fmt.Sprintf("query parameter %s sets field %s of %s, which the %s of %s binds; leave it out of the query", param, path, route.input.FullName(), by, route.name))
				return
			}
		}
		if !known {
			// Vanguard reports this as UNKNOWN (HTTP 500), a server fault.
			md := matched[0].input
			writeRESTError(w, fmt.Sprintf("query parameter %s is not a field of %s; the fields are: %s", param, md.FullName(), fieldNames(md)))
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

// protoFieldPath turns a query parameter's field path, in JSON or proto
// names as vanguard accepts them, into proto names.
func protoFieldPath(md protoreflect.MessageDescriptor, param string) (string, bool) {
	var names []string
	for part := range strings.SplitSeq(param, ".") {
		if md == nil {
			return "", false
		}
		fd := md.Fields().ByJSONName(part)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(part))
		}
		if fd == nil {
			return "", false
		}
		names = append(names, string(fd.Name()))
		md = fd.Message()
	}
	return strings.Join(names, "."), true
}

// writeRESTError answers as vanguard answers a REST call that fails with
// INVALID_ARGUMENT: HTTP 400 and a google.rpc.Status as JSON.
func writeRESTError(w http.ResponseWriter, msg string) {
	body, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{3, msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}
