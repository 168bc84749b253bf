package generator

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
)

// Field numbers of google/api/http.proto, to point at a route's parts.
const (
	httpExtension                 = 72295728 // (google.api.http) on MethodOptions
	httpRulePatternGet            = 2
	httpRulePatternPut            = 3
	httpRulePatternPost           = 4
	httpRulePatternDelete         = 5
	httpRulePatternPatch          = 6
	httpRuleBodyField             = 7
	httpRulePatternCustom         = 8
	httpRuleAdditionalBindingsFld = 11
)

// route is one HTTP binding of a method: the rule of its (google.api.http)
// option, or one of that rule's additional_bindings.
type route struct {
	rule *annotations.HttpRule
	// path is the source path of the rule below the method descriptor,
	// for positions.
	path []int32
}

// verbAndTemplate returns the route's HTTP method and path template, and
// the field number that holds them; an empty template when the rule has
// no pattern.
func (r route) verbAndTemplate() (verb, template string, field int32) {
	switch p := r.rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return "GET", p.Get, httpRulePatternGet
	case *annotations.HttpRule_Put:
		return "PUT", p.Put, httpRulePatternPut
	case *annotations.HttpRule_Post:
		return "POST", p.Post, httpRulePatternPost
	case *annotations.HttpRule_Delete:
		return "DELETE", p.Delete, httpRulePatternDelete
	case *annotations.HttpRule_Patch:
		return "PATCH", p.Patch, httpRulePatternPatch
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath(), httpRulePatternCustom
	}
	return "", "", 0
}

func httpRule(meth *protogen.Method) *annotations.HttpRule {
	opts := meth.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, annotations.E_Http) {
		return nil
	}
	return proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
}

// pathVariable matches a variable of a path template, {field.path} or
// {field.path=segments}, capturing the field path.
var pathVariable = regexp.MustCompile(`\{([^}=]*)(?:=[^}]*)?\}`)

// checkRoutes checks the REST routes of a method of an entity or a
// workflow (kind): every path variable names a field of the request, and
// the key reaches the request through the path or the body, since a query
// parameter is easy to leave out and nothing in the route would say it is
// needed. The
// transcoder in front of the server (vanguard) refuses at startup what it
// cannot route; these checks move that to generation, with a position.
func (m *model) checkRoutes(name, kind string, mm *method) {
	rule := httpRule(mm.method)
	if rule == nil {
		return
	}
	base := []int32{methodOptionsField, httpExtension}
	routes := []route{{rule: rule, path: base}}
	for i, b := range rule.GetAdditionalBindings() {
		routes = append(routes, route{rule: b, path: append(append([]int32(nil), base...), httpRuleAdditionalBindingsFld, int32(i))})
	}
	for _, r := range routes {
		m.checkRoute(name, kind, mm, r)
	}
}

func (m *model) checkRoute(name, kind string, mm *method, r route) {
	desc := mm.method.Desc
	req := mm.method.Input
	verb, template, patternField := r.verbAndTemplate()
	at := func(field int32) position {
		return positionOf(desc, append(append([]int32(nil), r.path...), field)...)
	}
	if template == "" {
		m.diags.add(positionOf(desc, r.path...),
			"REST route of %s has no path; set one of get, put, post, delete or patch to a path such as \"/v1/things/{id}\", or remove the (google.api.http) option", name)
		return
	}
	routeName := verb + " " + template
	bound := map[string]bool{}
	for _, v := range pathVariable.FindAllStringSubmatch(template, -1) {
		field := strings.TrimSpace(v[1])
		if problem := fieldPathProblem(req, field); problem != "" {
			m.diags.add(at(patternField),
				"REST route %s of %s has path variable {%s}, but %s; name a field of %s that holds one value (%s)",
				routeName, name, field, problem, req.Desc.Name(), fieldList(req))
			continue
		}
		bound[field] = true
	}
	body := r.rule.GetBody()
	if body != "" && body != "*" && fieldByName(req, body) == nil {
		m.diags.add(at(httpRuleBodyField),
			"REST route %s of %s sends body %q, but %s has no field %s; use \"*\" (the whole request) or a field of %s (%s)",
			routeName, name, body, req.Desc.Name(), body, req.Desc.Name(), fieldList(req))
		return
	}
	for _, k := range mm.key {
		if body == "*" || body == string(k.path[0].Desc.Name()) || bound[k.name()] {
			continue
		}
		m.diags.add(at(patternField),
			"REST route %s of %s does not bind the %s key %s; put {%s} in the path or send it in the body",
			routeName, name, kind, k.name(), k.name())
	}
}

// fieldPathProblem says what is wrong with a path variable's field path
// ("device.serial") in msg, or returns "" when it names a single
// non-repeated field, as the transcoder requires.
func fieldPathProblem(msg *protogen.Message, path string) string {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		f := fieldByName(msg, part)
		switch {
		case f == nil:
			return fmt.Sprintf("%s has no field %s", msg.Desc.Name(), part)
		case f.Desc.IsList() || f.Desc.IsMap():
			return fmt.Sprintf("field %s of %s is repeated", part, msg.Desc.Name())
		case i < len(parts)-1 && f.Message == nil:
			return fmt.Sprintf("field %s of %s is not a message", part, msg.Desc.Name())
		}
		msg = f.Message
	}
	return ""
}

func fieldByName(msg *protogen.Message, name string) *protogen.Field {
	for _, f := range msg.Fields {
		if string(f.Desc.Name()) == name {
			return f
		}
	}
	return nil
}

// fieldList names msg's fields for a suggestion.
func fieldList(msg *protogen.Message) string {
	if len(msg.Fields) == 0 {
		return "it has no fields"
	}
	names := make([]string, len(msg.Fields))
	for i, f := range msg.Fields {
		names[i] = string(f.Desc.Name())
	}
	return "its fields: " + strings.Join(names, ", ")
}
