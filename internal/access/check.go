package access

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Denial is a refused call.
type Denial struct {
	// Unauthenticated: the call carried no token and a token rule could have
	// allowed one (UNAUTHENTICATED); otherwise PERMISSION_DENIED.
	Unauthenticated bool
	// Msg names the rules the caller did not meet. It never holds the
	// caller's claims, its token or the request's values: it goes back to
	// the caller.
	Msg string
}

// Check decides a call of the policy's method by c with request req. It
// returns nil when a rule allows the caller. A nil Policy allows everyone.
func (p *Policy) Check(c Caller, req protoreflect.Message) *Denial {
	if p == nil {
		return nil
	}
	for i := range p.rules {
		if p.rules[i].unmet(&c, req).kind == met {
			return nil
		}
	}
	return p.deny(&c, req)
}

// unmetKind is the first condition of a rule a caller failed.
type unmetKind int

const (
	met unmetKind = iota
	notService
	notToken
	wrongIssuer
	wrongAudience
	claimMissing
	claimMismatch
	fieldClaimMissing
	fieldMismatch
)

type unmet struct {
	kind unmetKind
	// index is the claim or field binding that failed.
	index int
}

func (r *rule) unmet(c *Caller, req protoreflect.Message) unmet {
	switch {
	case r.anyone:
		return unmet{}
	case r.service != "":
		if c.Kind != Service || r.service != "*" && r.service != c.Service {
			return unmet{kind: notService}
		}
		return unmet{}
	}
	t := r.token
	if c.Kind != Token {
		return unmet{kind: notToken}
	}
	if len(t.issuers) > 0 && !slices.Contains(t.issuers, c.Issuer) {
		return unmet{kind: wrongIssuer}
	}
	if len(t.audiences) > 0 && !slices.ContainsFunc(c.Audience, func(aud string) bool { return slices.Contains(t.audiences, aud) }) {
		return unmet{kind: wrongAudience}
	}
	for i := range t.claims {
		cr := &t.claims[i]
		v, ok := claim(c, cr.name)
		switch {
		case !ok:
			return unmet{kind: claimMissing, index: i}
		case !cr.present && !cr.holds(v):
			return unmet{kind: claimMismatch, index: i}
		}
	}
	for i := range t.fields {
		fb := &t.fields[i]
		v, ok := claim(c, fb.claim)
		switch {
		case !ok:
			return unmet{kind: fieldClaimMissing, index: i}
		case !fb.holds(v, req):
			return unmet{kind: fieldMismatch, index: i}
		}
	}
	return unmet{}
}

// claim returns a claim of the caller's token; a null claim is missing.
func claim(c *Caller, path string) (any, bool) {
	if c.Claim == nil {
		return nil, false
	}
	v, ok := c.Claim(path)
	return v, ok && v != nil
}

// holds reports whether claim value v has the rule's value; an array
// claim has it when any element has.
func (cr *claimRule) holds(v any) bool {
	if s, ok := claimString(v); ok {
		return cr.matches(s)
	}
	switch vs := v.(type) {
	case []any:
		for _, e := range vs {
			if s, ok := claimString(e); ok && cr.matches(s) {
				return true
			}
		}
	case []string:
		for _, s := range vs {
			if cr.matches(s) {
				return true
			}
		}
	}
	return false
}

func (cr *claimRule) matches(s string) bool {
	if cr.pattern != nil {
		return cr.pattern.MatchString(s)
	}
	return s == cr.equals
}

// claimString is the string form of a scalar claim: strings as they are,
// numbers as written in the token, bools as "true" and "false".
func claimString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return string(v), true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	case float64:
		// A token decoded without UseNumber.
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

// holds reports whether the request's field equals claim value v (any
// element of an array claim).
func (fb *fieldBinding) holds(v any, req protoreflect.Message) bool {
	if req == nil || fb.path == nil {
		return false
	}
	leaf, value, ok := fb.value(req)
	if !ok {
		return false
	}
	if s, ok := claimString(v); ok {
		return fieldEquals(leaf, value, s)
	}
	switch vs := v.(type) {
	case []any:
		for _, e := range vs {
			if s, ok := claimString(e); ok && fieldEquals(leaf, value, s) {
				return true
			}
		}
	case []string:
		for _, s := range vs {
			if fieldEquals(leaf, value, s) {
				return true
			}
		}
	}
	return false
}

// value reads the bound field of req. An unset message on the way reads
// as empty, so its fields have their zero values. A request of another
// descriptor than the one compiled against (a dynamic message, say) is
// read by field number.
func (fb *fieldBinding) value(req protoreflect.Message) (protoreflect.FieldDescriptor, protoreflect.Value, bool) {
	m := req
	for i, fd := range fb.path {
		if m.Descriptor() != fd.ContainingMessage() {
			other := m.Descriptor().Fields().ByNumber(fd.Number())
			if other == nil || other.Kind() != fd.Kind() || other.Cardinality() != fd.Cardinality() {
				return nil, protoreflect.Value{}, false
			}
			fd = other
		}
		if i == len(fb.path)-1 {
			return fd, m.Get(fd), true
		}
		m = m.Get(fd).Message()
	}
	return nil, protoreflect.Value{}, false
}

// fieldEquals reports whether field value v, of field fd, renders as s:
// integers in base 10, bools as "true" and "false".
func fieldEquals(fd protoreflect.FieldDescriptor, v protoreflect.Value, s string) bool {
	var buf [24]byte
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String() == s
	case protoreflect.BoolKind:
		if v.Bool() {
			return s == "true"
		}
		return s == "false"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return string(strconv.AppendInt(buf[:0], v.Int(), 10)) == s
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return string(strconv.AppendUint(buf[:0], v.Uint(), 10)) == s
	}
	return false
}

// maxListedRules bounds the rules a denial lists.
const maxListedRules = 4

// deny explains why no rule allowed c.
func (p *Policy) deny(c *Caller, req protoreflect.Message) *Denial {
	prefix := "access"
	if p.method != "" {
		prefix = "access of " + p.method
	}
	switch {
	case p.denyByDefault:
		return &Denial{Msg: prefix + ": " + denyByDefaultText}
	case len(p.rules) == 0:
		return &Denial{Msg: prefix + ": its access allows no caller (its allow list is empty)"}
	case c.Kind == Anonymous && p.hasTokenRule:
		return &Denial{Unauthenticated: true, Msg: prefix + ": the call needs a bearer token (an Authorization: Bearer header with a JWT the server trusts) and carried none"}
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(": the caller meets none of its rules: ")
	for i := range p.rules {
		if i == maxListedRules {
			fmt.Fprintf(&b, "; and %d more", len(p.rules)-maxListedRules)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		r := &p.rules[i]
		fmt.Fprintf(&b, "allow[%d] ", i)
		b.WriteString(r.need(c, r.unmet(c, req)))
	}
	return &Denial{Msg: b.String()}
}

const denyByDefaultText = "denied to every caller: the RPC has no access rule, and its file declares access for others (deny by default); " +
	"allow callers with option (statefun.v1.method).access on the RPC, or (statefun.v1.access) on its service"

// need says what rule r needs that caller c lacks (u). It names claims and
// fields, never their values or the rule's: the caller reads it.
func (r *rule) need(c *Caller, u unmet) string {
	switch u.kind {
	case notService:
		what := fmt.Sprintf("needs service %q", r.service)
		if r.service == "*" {
			what = "needs a service of the deployment"
		}
		switch c.Kind {
		case Service:
			return what + ", and the caller is another service"
		case Token:
			return what + ", and the caller is a token holder"
		default:
			return what + ", and the caller is anonymous"
		}
	case notToken:
		if c.Kind == Service {
			return "needs a token, and the caller is a service"
		}
		return "needs a token, and the call carried none"
	case wrongIssuer:
		return "needs a token from one of the rule's issuers"
	case wrongAudience:
		return "needs a token for one of the rule's audiences"
	case claimMissing:
		return fmt.Sprintf("needs a token with claim %q, which the caller's lacks", r.token.claims[u.index].name)
	case claimMismatch:
		cr := r.token.claims[u.index]
		if cr.pattern != nil {
			return fmt.Sprintf("needs claim %q of the token to match the rule's pattern, and the caller's does not", cr.name)
		}
		return fmt.Sprintf("needs claim %q of the token to equal the rule's value, and the caller's does not", cr.name)
	case fieldClaimMissing:
		fb := r.token.fields[u.index]
		return fmt.Sprintf("needs a token whose claim %q equals the request's %s, and the caller's lacks the claim", fb.claim, fb.field)
	case fieldMismatch:
		fb := r.token.fields[u.index]
		return fmt.Sprintf("needs a token whose claim %q equals the request's %s, and it does not", fb.claim, fb.field)
	}
	return "is met" // not reached: deny runs only when no rule is met
}
