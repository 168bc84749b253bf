package access

import (
	"fmt"
	"strings"
)

// Describe returns who may call the policy's method, in one line, for doc
// comments and logs: `anyone`, `a token with claim "admin" = "true"`,
// `a token whose "sub" equals account_id`, `service "lockout"`,
// `nobody (denied by default)`. Unlike a Denial, it shows the rules'
// values.
func (p *Policy) Describe() string {
	if p == nil {
		return "anyone (its file declares no access)"
	}
	return p.description
}

func (p *Policy) describe() string {
	switch {
	case p.denyByDefault:
		return "nobody (denied by default)"
	case len(p.rules) == 0:
		return "nobody (the allow list is empty)"
	}
	parts := make([]string, len(p.rules))
	for i := range p.rules {
		parts[i] = p.rules[i].describe()
	}
	return strings.Join(parts, ", or ")
}

func (r *rule) describe() string {
	switch {
	case r.anyone:
		return "anyone"
	case r.service == "*":
		return "any service of the deployment"
	case r.service != "":
		return fmt.Sprintf("service %q", r.service)
	}
	t := r.token
	var b strings.Builder
	b.WriteString("a token")
	if len(t.issuers) > 0 {
		b.WriteString(" from issuer " + quoteAlternatives(t.issuers))
	}
	if len(t.audiences) > 0 {
		b.WriteString(" for audience " + quoteAlternatives(t.audiences))
	}
	var conds []string
	for _, cr := range t.claims {
		switch {
		case cr.present:
			conds = append(conds, fmt.Sprintf("with claim %q", cr.name))
		case cr.pattern != nil:
			// Slashes rather than quotes: a quoted pattern doubles its
			// backslashes.
			conds = append(conds, fmt.Sprintf("with claim %q matching /%s/", cr.name, cr.patternText))
		default:
			conds = append(conds, fmt.Sprintf("with claim %q = %q", cr.name, cr.equals))
		}
	}
	for _, fb := range t.fields {
		conds = append(conds, fmt.Sprintf("whose %q equals %s", fb.claim, fb.field))
	}
	if len(conds) > 0 {
		b.WriteString(" " + strings.Join(conds, " and "))
	}
	return b.String()
}

// quoteAlternatives renders ["a", "b"] as `"a" or "b"`.
func quoteAlternatives(vs []string) string {
	quoted := make([]string, len(vs))
	for i, v := range vs {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(quoted, " or ")
}
