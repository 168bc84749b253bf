package access

import (
	"encoding/json"
	"strings"
	"testing"
)

var (
	anonymous = Caller{Kind: Anonymous}
	lockout   = Caller{Kind: Service, Service: "lockout"}
)

// TestCheck checks who each kind of rule allows, and how it refuses the
// others: UNAUTHENTICATED for a call without a token that a token could
// have made, PERMISSION_DENIED otherwise.
func TestCheck(t *testing.T) {
	t.Parallel()
	md := withdrawRequest(t)
	const (
		allowed = iota
		unauthenticated
		permissionDenied
	)
	tests := []struct {
		name   string
		access string
		caller Caller
		req    map[string]any
		want   int
		// msg is a part the denial's message must contain.
		msg string
	}{
		{name: "anyone allows the anonymous", access: `allow: { anyone: true }`, caller: anonymous},
		{name: "anyone allows a service", access: `allow: { anyone: true }`, caller: lockout},
		{name: "empty allow list denies even a token", access: ``, caller: tokenCaller(nil), want: permissionDenied, msg: "allow list is empty"},

		{name: "any service allows a service", access: `allow: { service: "*" }`, caller: lockout},
		{name: "any service denies a token", access: `allow: { service: "*" }`, caller: tokenCaller(nil), want: permissionDenied, msg: "allow[0] needs a service of the deployment, and the caller is a token holder"},
		{name: "service rule refuses the anonymous with PERMISSION_DENIED", access: `allow: { service: "lockout" }`, caller: anonymous, want: permissionDenied, msg: "the caller is anonymous"},
		{name: "named service allows it", access: `allow: { service: "lockout" }`, caller: lockout},
		{name: "named service denies another", access: `allow: { service: "lockout" }`, caller: Caller{Kind: Service, Service: "reports"}, want: permissionDenied, msg: `allow[0] needs service "lockout", and the caller is another service`},

		{name: "token rule allows any token", access: `allow: { token: {} }`, caller: tokenCaller(nil)},
		{name: "token rule refuses the anonymous as unauthenticated", access: `allow: { token: {} }`, caller: anonymous, want: unauthenticated, msg: "needs a bearer token"},
		{name: "token rule denies a service", access: `allow: { token: {} }`, caller: lockout, want: permissionDenied, msg: "allow[0] needs a token, and the caller is a service"},
		{name: "issuer listed", access: `allow: { token: { issuers: ["https://other.example", "https://issuer.example"] } }`, caller: tokenCaller(nil)},
		{name: "issuer not listed", access: `allow: { token: { issuers: ["https://other.example"] } }`, caller: tokenCaller(nil), want: permissionDenied, msg: "from one of the rule's issuers"},
		{name: "audience intersects", access: `allow: { token: { audiences: ["ops", "bank"] } }`, caller: tokenCaller(nil)},
		{name: "audience disjoint", access: `allow: { token: { audiences: ["ops"] } }`, caller: tokenCaller(nil), want: permissionDenied, msg: "for one of the rule's audiences"},

		{name: "claim present", access: `allow: { token: { claims: { name: "admin" } } }`, caller: tokenCaller(map[string]any{"admin": false})},
		{name: "claim missing", access: `allow: { token: { claims: { name: "admin" } } }`, caller: tokenCaller(nil), want: permissionDenied, msg: `needs a token with claim "admin", which the caller's lacks`},
		{name: "null claim is missing", access: `allow: { token: { claims: { name: "admin" } } }`, caller: tokenCaller(map[string]any{"admin": nil}), want: permissionDenied, msg: `claim "admin"`},
		{name: "claim equals a string", access: `allow: { token: { claims: { name: "role" equals: "teller" } } }`, caller: tokenCaller(map[string]any{"role": "teller"})},
		{name: "claim differs", access: `allow: { token: { claims: { name: "role" equals: "teller" } } }`, caller: tokenCaller(map[string]any{"role": "tellers"}), want: permissionDenied, msg: `needs claim "role" of the token to equal the rule's value`},
		{name: "claim equals a number as written", access: `allow: { token: { claims: { name: "level" equals: "3" } } }`, caller: tokenCaller(map[string]any{"level": json.Number("3")})},
		{name: "claim number written otherwise", access: `allow: { token: { claims: { name: "level" equals: "3" } } }`, caller: tokenCaller(map[string]any{"level": json.Number("3.0")}), want: permissionDenied},
		{name: "claim equals a bool", access: `allow: { token: { claims: { name: "admin" equals: "true" } } }`, caller: tokenCaller(map[string]any{"admin": true})},
		{name: "claim bool false", access: `allow: { token: { claims: { name: "admin" equals: "true" } } }`, caller: tokenCaller(map[string]any{"admin": false}), want: permissionDenied},
		{name: "array claim with the value", access: `allow: { token: { claims: { name: "roles" equals: "teller" } } }`, caller: tokenCaller(map[string]any{"roles": []any{"clerk", "teller"}})},
		{name: "array claim without the value", access: `allow: { token: { claims: { name: "roles" equals: "teller" } } }`, caller: tokenCaller(map[string]any{"roles": []any{"clerk", json.Number("1")}}), want: permissionDenied},
		{name: "object claim never equals", access: `allow: { token: { claims: { name: "role" equals: "teller" } } }`, caller: tokenCaller(map[string]any{"role": map[string]any{"name": "teller"}}), want: permissionDenied},
		{name: "pattern matches the whole value", access: `allow: { token: { claims: { name: "email" pattern: "[a-z.]+@acme\\.example" } } }`, caller: tokenCaller(map[string]any{"email": "ann.lee@acme.example"})},
		{name: "pattern is anchored at the end", access: `allow: { token: { claims: { name: "email" pattern: "[a-z.]+@acme\\.example" } } }`, caller: tokenCaller(map[string]any{"email": "ann@acme.example.evil"}), want: permissionDenied, msg: `needs claim "email" of the token to match the rule's pattern`},
		{name: "pattern is anchored at the start", access: `allow: { token: { claims: { name: "role" pattern: "admin|teller" } } }`, caller: tokenCaller(map[string]any{"role": "not-admin"}), want: permissionDenied},
		{name: "pattern alternatives are anchored as a group", access: `allow: { token: { claims: { name: "role" pattern: "admin|teller" } } }`, caller: tokenCaller(map[string]any{"role": "teller"})},
		{name: "pattern on an array claim", access: `allow: { token: { claims: { name: "roles" pattern: "tell.*" } } }`, caller: tokenCaller(map[string]any{"roles": []any{"clerk", "teller"}})},
		{name: "every claim must hold", access: `allow: { token: { claims: [{ name: "role" equals: "teller" }, { name: "branch" }] } }`, caller: tokenCaller(map[string]any{"role": "teller"}), want: permissionDenied, msg: `claim "branch"`},

		{name: "field equals sub", access: `allow: { token: { fields: { field: "account_id" } } }`, caller: tokenCaller(map[string]any{"sub": "acc-1"}), req: map[string]any{"account_id": "acc-1"}},
		{name: "field differs from sub", access: `allow: { token: { fields: { field: "account_id" } } }`, caller: tokenCaller(map[string]any{"sub": "acc-1"}), req: map[string]any{"account_id": "acc-2"}, want: permissionDenied, msg: `needs a token whose claim "sub" equals the request's account_id, and it does not`},
		{name: "field bound to a missing claim", access: `allow: { token: { fields: { field: "account_id" claim: "acct" } } }`, caller: tokenCaller(map[string]any{"sub": "acc-1"}), req: map[string]any{"account_id": "acc-1"}, want: permissionDenied, msg: `the caller's lacks the claim`},
		{name: "nested field equals sub", access: `allow: { token: { fields: { field: "key.user_id" } } }`, caller: tokenCaller(map[string]any{"sub": "u-7"}), req: map[string]any{"key.user_id": "u-7"}},
		{name: "unset nested message reads as empty", access: `allow: { token: { fields: { field: "key.user_id" } } }`, caller: tokenCaller(map[string]any{"sub": "u-7"}), want: permissionDenied},
		{name: "unset nested integer is zero", access: `allow: { token: { fields: { field: "key.branch" claim: "branch" } } }`, caller: tokenCaller(map[string]any{"branch": json.Number("0")})},
		{name: "int64 field in base 10", access: `allow: { token: { fields: { field: "amount" claim: "n" } } }`, caller: tokenCaller(map[string]any{"n": json.Number("-42")}), req: map[string]any{"amount": int64(-42)}},
		{name: "int64 field against a string claim", access: `allow: { token: { fields: { field: "amount" claim: "n" } } }`, caller: tokenCaller(map[string]any{"n": "-42"}), req: map[string]any{"amount": int64(-42)}},
		{name: "int64 field differs", access: `allow: { token: { fields: { field: "amount" claim: "n" } } }`, caller: tokenCaller(map[string]any{"n": json.Number("42")}), req: map[string]any{"amount": int64(-42)}, want: permissionDenied},
		{name: "uint64 field", access: `allow: { token: { fields: { field: "big" claim: "n" } } }`, caller: tokenCaller(map[string]any{"n": json.Number("18446744073709551615")}), req: map[string]any{"big": uint64(18446744073709551615)}},
		{name: "sint32 field", access: `allow: { token: { fields: { field: "small" claim: "n" } } }`, caller: tokenCaller(map[string]any{"n": json.Number("-7")}), req: map[string]any{"small": int32(-7)}},
		{name: "bool field", access: `allow: { token: { fields: { field: "flag" claim: "f" } } }`, caller: tokenCaller(map[string]any{"f": true}), req: map[string]any{"flag": true}},
		{name: "bool field differs", access: `allow: { token: { fields: { field: "flag" claim: "f" } } }`, caller: tokenCaller(map[string]any{"f": true}), want: permissionDenied},
		{name: "field equals any element of an array claim", access: `allow: { token: { fields: { field: "account_id" claim: "accounts" } } }`, caller: tokenCaller(map[string]any{"accounts": []any{"acc-1", "acc-2"}}), req: map[string]any{"account_id": "acc-2"}},
		{name: "field in no element of an array claim", access: `allow: { token: { fields: { field: "account_id" claim: "accounts" } } }`, caller: tokenCaller(map[string]any{"accounts": []any{"acc-1"}}), req: map[string]any{"account_id": "acc-2"}, want: permissionDenied},

		{name: "any rule allows", access: `allow: { service: "lockout" } allow: { token: { claims: { name: "admin" } } }`, caller: lockout},
		{name: "second rule allows a token", access: `allow: { service: "lockout" } allow: { token: { claims: { name: "admin" } } }`, caller: tokenCaller(map[string]any{"admin": true})},
		{name: "a denial lists every rule", access: `allow: { service: "lockout" } allow: { token: { claims: { name: "admin" } } }`, caller: tokenCaller(nil), want: permissionDenied,
			msg: `access: the caller meets none of its rules: allow[0] needs service "lockout", and the caller is a token holder; allow[1] needs a token with claim "admin", which the caller's lacks`},
		{name: "anonymous with a service rule and a token rule needs a token", access: `allow: { service: "lockout" } allow: { token: {} }`, caller: anonymous, want: unauthenticated},
		{name: "a long denial is bounded", access: strings.Repeat(`allow: { service: "a" } `, 9), caller: lockout, want: permissionDenied, msg: "; and 5 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(access(t, tt.access), md)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Check(tt.caller, request(t, md, tt.req))
			switch {
			case tt.want == allowed && d != nil:
				t.Fatalf("denied (%s); want allowed", d.Msg)
			case tt.want == allowed:
				return
			case d == nil:
				t.Fatalf("allowed; want denied")
			case d.Unauthenticated != (tt.want == unauthenticated):
				t.Errorf("Unauthenticated = %v; want %v (%s)", d.Unauthenticated, tt.want == unauthenticated, d.Msg)
			}
			if !strings.Contains(d.Msg, tt.msg) {
				t.Errorf("denial %q does not say %q", d.Msg, tt.msg)
			}
		})
	}
}

// TestCheckRequestOfAnotherDescriptor checks that a field binding reads a
// request whose descriptor is not the one the policy was compiled against
// (a dynamic message from another registry) by field number.
func TestCheckRequestOfAnotherDescriptor(t *testing.T) {
	t.Parallel()
	p, err := Compile(access(t, `allow: { token: { fields: { field: "key.user_id" } } }`), withdrawRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	other := withdrawRequest(t)
	if d := p.Check(tokenCaller(map[string]any{"sub": "u-7"}), request(t, other, map[string]any{"key.user_id": "u-7"})); d != nil {
		t.Errorf("denied: %s", d.Msg)
	}
	if d := p.Check(tokenCaller(map[string]any{"sub": "u-7"}), request(t, other, map[string]any{"key.user_id": "u-8"})); d == nil {
		t.Error("allowed another user's request")
	}
	if d := p.Check(tokenCaller(map[string]any{"sub": ""}), nil); d == nil {
		t.Error("allowed a call without a request")
	}
}

// TestNilPolicyAllowsEveryone checks the policy of a file without access.
func TestNilPolicyAllowsEveryone(t *testing.T) {
	t.Parallel()
	var p *Policy
	for _, c := range []Caller{anonymous, lockout, tokenCaller(nil)} {
		if d := p.Check(c, nil); d != nil {
			t.Errorf("nil policy denied %v: %s", c.Kind, d.Msg)
		}
	}
}

// TestDenialsHoldNoValues checks that no denial repeats a claim value, a
// request field value, an issuer or an audience of the caller: denials go
// back to callers, and may be logged.
func TestDenialsHoldNoValues(t *testing.T) {
	t.Parallel()
	md := withdrawRequest(t)
	secrets := []string{"zq-claim-7731", "zq-field-9182", "zq-issuer-5530", "zq-aud-2219", "zq-service-4471", "77314455"}
	callers := []Caller{
		anonymous,
		{Kind: Service, Service: "zq-service-4471"},
		{Kind: Token, Issuer: "zq-issuer-5530", Audience: []string{"zq-aud-2219"}, Claim: func(string) (any, bool) { return "zq-claim-7731", true }},
		{Kind: Token, Issuer: "zq-issuer-5530", Claim: func(string) (any, bool) { return []any{"zq-claim-7731", json.Number("77314455")}, true }},
		{Kind: Token, Issuer: "zq-issuer-5530", Claim: func(string) (any, bool) { return nil, false }},
	}
	req := request(t, md, map[string]any{"account_id": "zq-field-9182", "key.user_id": "zq-field-9182", "amount": int64(77314455)})
	denials := 0
	for _, text := range []string{
		``,
		`allow: { service: "lockout" }`,
		`allow: { service: "*" }`,
		`allow: { token: { issuers: ["https://issuer.example"] } }`,
		`allow: { token: { audiences: ["bank"] } }`,
		`allow: { token: { claims: { name: "role" equals: "teller" } } }`,
		`allow: { token: { claims: { name: "role" pattern: "tell.*" } } }`,
		`allow: { token: { fields: { field: "account_id" } } }`,
		`allow: { token: { fields: { field: "amount" claim: "n" } } }`,
		`allow: { token: { fields: { field: "key.user_id" claim: "uid" } } } allow: { service: "lockout" } allow: { token: { claims: { name: "x" } } }`,
	} {
		p, err := Compile(access(t, text), md)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range callers {
			d := p.Check(c, req)
			if d == nil {
				continue
			}
			denials++
			for _, s := range secrets {
				if strings.Contains(d.Msg, s) {
					t.Errorf("denial %q shows the caller's or the request's value %q", d.Msg, s)
				}
			}
		}
	}
	if denials < 45 {
		t.Errorf("only %d of 50 checks denied; the test needs denials to look at", denials)
	}
}

// TestCheckAllocatesNothingWhenAllowing checks that the check every call
// makes costs no garbage when it allows.
func TestCheckAllocatesNothingWhenAllowing(t *testing.T) {
	md := withdrawRequest(t)
	p, err := Compile(access(t, `allow: { service: "lockout" } allow: { token: { audiences: ["bank"] claims: [{ name: "role" pattern: "teller|clerk" }, { name: "roles" equals: "x" }] fields: [{ field: "key.user_id" }, { field: "amount" claim: "n" }] } }`), md)
	if err != nil {
		t.Fatal(err)
	}
	c := tokenCaller(map[string]any{"sub": "u-7", "role": "clerk", "roles": []any{"a", "x"}, "n": json.Number("1234567")})
	req := request(t, md, map[string]any{"key.user_id": "u-7", "amount": int64(1234567)})
	if d := p.Check(c, req); d != nil {
		t.Fatalf("denied: %s", d.Msg)
	}
	if n := testing.AllocsPerRun(100, func() { p.Check(c, req) }); n != 0 {
		t.Errorf("Check allocates %v times per allowed call; want 0", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	md := withdrawRequest(b)
	p, err := Compile(access(b, `allow: { service: "lockout" } allow: { token: { audiences: ["bank"] claims: { name: "role" pattern: "teller|clerk" } fields: { field: "key.user_id" } } }`), md)
	if err != nil {
		b.Fatal(err)
	}
	c := tokenCaller(map[string]any{"sub": "u-7", "role": "clerk"})
	req := request(b, md, map[string]any{"key.user_id": "u-7"})
	for _, bc := range []struct {
		name   string
		caller Caller
	}{
		{"service", lockout},
		{"token", c},
		{"denied", anonymous},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Check(bc.caller, req)
			}
		})
	}
}
