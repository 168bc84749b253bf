package access

// NeedsToken reports whether a rule of the policy allows callers with a
// token: a server must validate tokens for it to allow anyone.
func (p *Policy) NeedsToken() bool { return p != nil && p.hasTokenRule }

// NeedsService reports whether a rule of the policy allows other
// services: a server must hold the deployment's secret for it to allow
// any.
func (p *Policy) NeedsService() bool {
	if p == nil {
		return false
	}
	for _, r := range p.rules {
		if r.service != "" {
			return true
		}
	}
	return false
}
