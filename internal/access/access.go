// Package access compiles the access rules of statefun RPCs
// ((statefun.v1.access) on a service, (statefun.v1.method).access on a
// method) and checks callers against them. The generator uses it to refuse
// a bad rule at generate time (file.proto:line:col) and to document who may
// call each RPC; the runtime uses it to decide every call, so the two never
// disagree on what a rule means.
//
// The package never sees a token: the server validates it and describes the
// caller as a Caller. Denials name the rules a caller did not meet, never the
// caller's claims, its token or the request's values, since they are sent
// back to a caller that may be anyone.
package access

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// Kind is how a caller identified itself.
type Kind int

const (
	// Anonymous is a caller without a token.
	Anonymous Kind = iota
	// Token is a caller with a valid bearer token of a trusted issuer.
	Token
	// Service is another statefun service of the deployment, with a token
	// signed by the deployment's shared secret.
	Service
)

// Caller is who makes a call, as the server established it.
type Caller struct {
	Kind Kind
	// Service is the caller's service name (Kind Service).
	Service string
	// Issuer is the token's "iss" (Kind Token).
	Issuer string
	// Audience is the token's "aud" (Kind Token).
	Audience []string
	// Claim returns a claim of the token by dotted path ("realm_access.roles"),
	// with values as encoding/json decodes them with UseNumber: string,
	// json.Number, bool, []any or map[string]any (Kind Token). Nil means
	// the token has no claims.
	Claim func(path string) (any, bool)
}

// Policy is the compiled access of one method. A nil Policy allows every
// caller: it is the policy of a method whose file declares no access. A
// Policy is safe for concurrent use.
type Policy struct {
	// method is the full method name ("/pkg.Service/Method") for denials;
	// empty for a policy compiled on its own.
	method string
	rules  []rule
	// denyByDefault: the method has no access of its own or of its service,
	// but its file declares access elsewhere.
	denyByDefault bool
	hasTokenRule  bool
	description   string
}

type rule struct {
	anyone  bool
	service string // "" unless a service rule; "*" for any service
	token   *tokenRule
}

type tokenRule struct {
	issuers   []string
	audiences []string
	claims    []claimRule
	fields    []fieldBinding
}

type claimRule struct {
	name    string
	equals  string
	pattern *regexp.Regexp // anchored; nil unless a pattern is set
	// present: no value is set, only the claim's presence is required.
	present bool
	// patternText is the pattern as written, for descriptions.
	patternText string
}

// fieldBinding requires the request field at path to equal claim.
type fieldBinding struct {
	field string // as written: "key.user_id"
	claim string
	path  []protoreflect.FieldDescriptor
}

// Field numbers of the Access messages, for RuleError.Path.
const (
	accessAllowField     = 1
	ruleAnyoneField      = 1
	ruleTokenField       = 2
	ruleServiceField     = 3
	tokenIssuersField    = 1
	tokenAudiencesField  = 2
	tokenClaimsField     = 3
	tokenFieldsField     = 4
	claimNameField       = 1
	claimEqualsField     = 2
	claimPatternField    = 3
	fieldClaimFieldField = 1
	fieldClaimClaimField = 2
)

// RuleError is a mistake in an access rule.
type RuleError struct {
	// Path leads from the Access message to the wrong part as field numbers
	// and list indexes, like a protoreflect.SourcePath: {1, 1, 2, 3, 0, 3}
	// is allow[1].token.claims[0].pattern. The generator appends it to the
	// option's source path to point at the mistake.
	Path protoreflect.SourcePath
	// Where names the same part for people: "allow[1].token.claims[0].pattern".
	Where string
	// Msg says what is wrong and how to fix it.
	Msg string
}

func (e *RuleError) Error() string {
	if e.Where == "" {
		return e.Msg
	}
	return e.Where + ": " + e.Msg
}

// servicePattern is the form of a deployment's service names (--service-name).
var servicePattern = regexp.MustCompile(`^[a-z][a-z0-9._-]*$`)

// Compile checks a against the method's request message and compiles it.
// Every mistake is a *RuleError; several are joined (errors.Join). An empty
// allow list is valid: it denies every caller.
//
// A nil request checks the rules' own shape only; field bindings then
// never match (the generator uses this for a service's access that every
// method replaces).
func Compile(a *statefunv1.Access, request protoreflect.MessageDescriptor) (*Policy, error) {
	if a == nil {
		return nil, &RuleError{Msg: "no access to compile"}
	}
	c := compiler{request: request}
	p := &Policy{}
	for i, r := range a.GetAllow() {
		if cr, ok := c.rule(i, r); ok {
			p.rules = append(p.rules, cr)
			p.hasTokenRule = p.hasTokenRule || cr.token != nil
		}
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	p.description = p.describe()
	return p, nil
}

// compiler collects the mistakes of one Access.
type compiler struct {
	request protoreflect.MessageDescriptor
	errs    []error
}

func (c *compiler) fail(path protoreflect.SourcePath, where, format string, args ...any) {
	c.errs = append(c.errs, &RuleError{Path: path, Where: where, Msg: fmt.Sprintf(format, args...)})
}

func (c *compiler) rule(i int, r *statefunv1.AccessRule) (rule, bool) {
	at := protoreflect.SourcePath{accessAllowField, int32(i)}
	where := fmt.Sprintf("allow[%d]", i)
	switch p := r.GetPrincipal().(type) {
	case *statefunv1.AccessRule_Anyone:
		if !p.Anyone {
			c.fail(append(at, ruleAnyoneField), where+".anyone",
				"is false, which allows no one; write anyone: true to let every caller in, or remove the rule")
			return rule{}, false
		}
		return rule{anyone: true}, true
	case *statefunv1.AccessRule_Service:
		switch {
		case p.Service == "":
			c.fail(append(at, ruleServiceField), where+".service",
				`is empty; name a service of the deployment (the --service-name it runs under), or "*" for any of them`)
			return rule{}, false
		case p.Service != "*" && !servicePattern.MatchString(p.Service):
			c.fail(append(at, ruleServiceField), where+".service",
				`%q is not a service name; use lowercase letters, digits, '.', '_' and '-', starting with a letter (the --service-name of the calling service), or "*" for any service of the deployment`, p.Service)
			return rule{}, false
		}
		return rule{service: p.Service}, true
	case *statefunv1.AccessRule_Token:
		t, ok := c.token(append(at, ruleTokenField), where+".token", p.Token)
		return rule{token: t}, ok
	default:
		c.fail(at, where,
			`allows no one: it sets no principal; set one of anyone: true, token: { ... } or service: "..."`)
		return rule{}, false
	}
}

func (c *compiler) token(at protoreflect.SourcePath, where string, t *statefunv1.TokenRule) (*tokenRule, bool) {
	n := len(c.errs)
	tr := &tokenRule{issuers: t.GetIssuers(), audiences: t.GetAudiences()}
	for j, iss := range t.GetIssuers() {
		if iss == "" {
			c.fail(with(at, tokenIssuersField, int32(j)), fmt.Sprintf("%s.issuers[%d]", where, j),
				"is empty; name an issuer the server trusts (the token's \"iss\"), or remove the entry to accept any of them")
		}
	}
	for j, aud := range t.GetAudiences() {
		if aud == "" {
			c.fail(with(at, tokenAudiencesField, int32(j)), fmt.Sprintf("%s.audiences[%d]", where, j),
				"is empty; name an audience the token's \"aud\" must include, or remove the entry")
		}
	}
	for j, cl := range t.GetClaims() {
		if cr, ok := c.claim(with(at, tokenClaimsField, int32(j)), fmt.Sprintf("%s.claims[%d]", where, j), cl); ok {
			tr.claims = append(tr.claims, cr)
		}
	}
	for j, fc := range t.GetFields() {
		if fb, ok := c.field(with(at, tokenFieldsField, int32(j)), fmt.Sprintf("%s.fields[%d]", where, j), fc); ok {
			tr.fields = append(tr.fields, fb)
		}
	}
	return tr, len(c.errs) == n
}

// with returns path extended by more, without sharing path's array.
func with(path protoreflect.SourcePath, more ...int32) protoreflect.SourcePath {
	return append(append(protoreflect.SourcePath(nil), path...), more...)
}

func (c *compiler) claim(at protoreflect.SourcePath, where string, cl *statefunv1.ClaimRule) (claimRule, bool) {
	if problem := claimPathProblem(cl.GetName()); problem != "" {
		c.fail(with(at, claimNameField), where+".name", "%s", problem)
		return claimRule{}, false
	}
	cr := claimRule{name: cl.GetName()}
	switch v := cl.GetValue().(type) {
	case *statefunv1.ClaimRule_Equals:
		if v.Equals == "" {
			c.fail(with(at, claimEqualsField), where+".equals",
				"is empty; give the value claim %q must have, or remove equals to require only that the token carries it", cr.name)
			return claimRule{}, false
		}
		cr.equals = v.Equals
	case *statefunv1.ClaimRule_Pattern:
		if v.Pattern == "" {
			c.fail(with(at, claimPatternField), where+".pattern",
				"is empty; give the RE2 expression claim %q must match, or remove pattern to require only that the token carries it", cr.name)
			return claimRule{}, false
		}
		if _, err := regexp.Compile(v.Pattern); err != nil {
			c.fail(with(at, claimPatternField), where+".pattern",
				"%q is not a valid RE2 regular expression (%v); fix it (it matches the whole value: no ^ or $ needed)", v.Pattern, err)
			return claimRule{}, false
		}
		// Anchored at both ends, so that "admin" does not admit "not-admin".
		cr.pattern = regexp.MustCompile(`^(?:` + v.Pattern + `)$`)
		cr.patternText = v.Pattern
	default:
		cr.present = true
	}
	return cr, true
}

// claimPathProblem says what is wrong with a claim's dotted path, or "".
func claimPathProblem(path string) string {
	if path == "" {
		return `is empty; name the claim, such as "sub" or "realm_access.roles" (a dotted path into nested objects)`
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return fmt.Sprintf(`claim path %q has an empty segment; separate the names of nested objects with single dots, such as "realm_access.roles"`, path)
		}
	}
	return ""
}

func (c *compiler) field(at protoreflect.SourcePath, where string, fc *statefunv1.FieldClaim) (fieldBinding, bool) {
	fb := fieldBinding{field: fc.GetField(), claim: fc.GetClaim()}
	if fb.claim == "" {
		fb.claim = "sub"
	} else if problem := claimPathProblem(fb.claim); problem != "" {
		c.fail(with(at, fieldClaimClaimField), where+".claim", "%s", problem)
		return fieldBinding{}, false
	}
	if fb.field == "" {
		c.fail(with(at, fieldClaimFieldField), where+".field",
			"is empty; name the request field that must equal claim %q, such as \"account_id\" or \"key.user_id\"", fb.claim)
		return fieldBinding{}, false
	}
	if c.request == nil {
		return fb, true // checked for shape only; never matches (Compile)
	}
	path, problem := resolveField(c.request, fb.field)
	if problem != "" {
		c.fail(with(at, fieldClaimFieldField), where+".field", "%s", problem)
		return fieldBinding{}, false
	}
	fb.path = path
	return fb, true
}

// resolveField finds the field at a dotted path of proto names below msg,
// or says why it cannot be bound to a claim.
func resolveField(msg protoreflect.MessageDescriptor, path string) ([]protoreflect.FieldDescriptor, string) {
	segs := strings.Split(path, ".")
	var out []protoreflect.FieldDescriptor
	for i, seg := range segs {
		if seg == "" {
			return nil, fmt.Sprintf(`field path %q has an empty segment; separate the names of nested message fields with single dots, such as "key.user_id"`, path)
		}
		fd := msg.Fields().ByName(protoreflect.Name(seg))
		if fd == nil {
			return nil, fmt.Sprintf("message %s has no field %s; name one of its fields (%s)", msg.FullName(), seg, fieldNames(msg))
		}
		out = append(out, fd)
		last := i == len(segs)-1
		switch {
		case fd.IsMap():
			return nil, fmt.Sprintf("field %s of %s is a map; bind a single string, integer or bool field", seg, msg.FullName())
		case fd.IsList():
			return nil, fmt.Sprintf("field %s of %s is repeated; bind a single string, integer or bool field", seg, msg.FullName())
		case !last && fd.Message() == nil:
			return nil, fmt.Sprintf("field %s of %s has type %s, not a message, so %q cannot reach into it; bind %q itself or a path through message fields",
				seg, msg.FullName(), fd.Kind(), path, strings.Join(segs[:i+1], "."))
		case !last:
			msg = fd.Message()
		case fd.Message() != nil:
			return nil, fmt.Sprintf("field %s of %s is a message (%s); bind one of its fields, such as %q",
				seg, msg.FullName(), fd.Message().FullName(), path+"."+firstFieldName(fd.Message()))
		case !bindableKind(fd.Kind()):
			return nil, fmt.Sprintf("field %s of %s has type %s, which cannot equal a claim; bind a string, integer or bool field", seg, msg.FullName(), fd.Kind())
		}
	}
	return out, ""
}

func fieldNames(msg protoreflect.MessageDescriptor) string {
	fields := msg.Fields()
	if fields.Len() == 0 {
		return "it has none"
	}
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = string(fields.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

func firstFieldName(msg protoreflect.MessageDescriptor) string {
	if msg.Fields().Len() == 0 {
		return "field"
	}
	return string(msg.Fields().Get(0).Name())
}

// bindableKind reports whether a field of kind k can equal a claim: its
// value has one obvious string form. Enums do not (their name or their
// number?), nor do floats and bytes.
func bindableKind(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind, protoreflect.BoolKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}
