package access

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestCompileErrors checks that each mistake in an access rule is refused
// with the part that is wrong (as a path for the generator and in words)
// and how to fix it.
func TestCompileErrors(t *testing.T) {
	t.Parallel()
	req := withdrawRequest(t)
	tests := []struct {
		name   string
		access string
		path   protoreflect.SourcePath
		want   string
	}{
		{
			name:   "rule without a principal",
			access: `allow: {} allow: { anyone: true }`,
			path:   protoreflect.SourcePath{1, 0},
			want:   `allow[0]: allows no one: it sets no principal; set one of anyone: true, token: { ... } or service: "..."`,
		},
		{
			name:   "anyone false",
			access: `allow: { anyone: true } allow: { anyone: false }`,
			path:   protoreflect.SourcePath{1, 1, 1},
			want:   `allow[1].anyone: is false, which allows no one; write anyone: true to let every caller in, or remove the rule`,
		},
		{
			name:   "empty service name",
			access: `allow: { service: "" }`,
			path:   protoreflect.SourcePath{1, 0, 3},
			want:   `allow[0].service: is empty; name a service of the deployment (the --service-name it runs under), or "*" for any of them`,
		},
		{
			name:   "invalid service name",
			access: `allow: { service: "Lockout Service" }`,
			path:   protoreflect.SourcePath{1, 0, 3},
			want:   `allow[0].service: "Lockout Service" is not a service name; use lowercase letters, digits, '.', '_' and '-', starting with a letter (the --service-name of the calling service), or "*" for any service of the deployment`,
		},
		{
			name:   "empty issuer",
			access: `allow: { token: { issuers: ["https://a.example", ""] } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 1, 1},
			want:   `allow[0].token.issuers[1]: is empty; name an issuer the server trusts (the token's "iss"), or remove the entry to accept any of them`,
		},
		{
			name:   "empty audience",
			access: `allow: { token: { audiences: [""] } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 2, 0},
			want:   `allow[0].token.audiences[0]: is empty; name an audience the token's "aud" must include, or remove the entry`,
		},
		{
			name:   "claim without a name",
			access: `allow: { token: { claims: { equals: "x" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 3, 0, 1},
			want:   `allow[0].token.claims[0].name: is empty; name the claim, such as "sub" or "realm_access.roles" (a dotted path into nested objects)`,
		},
		{
			name:   "claim path with an empty segment",
			access: `allow: { token: { claims: { name: "realm_access..roles" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 3, 0, 1},
			want:   `allow[0].token.claims[0].name: claim path "realm_access..roles" has an empty segment; separate the names of nested objects with single dots, such as "realm_access.roles"`,
		},
		{
			name:   "claim path ending in a dot",
			access: `allow: { token: { claims: { name: "roles." } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 3, 0, 1},
			want:   `allow[0].token.claims[0].name: claim path "roles." has an empty segment; separate the names of nested objects with single dots, such as "realm_access.roles"`,
		},
		{
			name:   "empty equals",
			access: `allow: { token: { claims: { name: "role" equals: "" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 3, 0, 2},
			want:   `allow[0].token.claims[0].equals: is empty; give the value claim "role" must have, or remove equals to require only that the token carries it`,
		},
		{
			name:   "empty pattern",
			access: `allow: { token: { claims: { name: "role" pattern: "" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 3, 0, 3},
			want:   `allow[0].token.claims[0].pattern: is empty; give the RE2 expression claim "role" must match, or remove pattern to require only that the token carries it`,
		},
		{
			name:   "pattern that does not compile",
			access: `allow: { anyone: true } allow: { token: { claims: [{ name: "sub" }, { name: "email" pattern: "[a-z+@acme" }] } }`,
			path:   protoreflect.SourcePath{1, 1, 2, 3, 1, 3},
			want:   "allow[1].token.claims[1].pattern: \"[a-z+@acme\" is not a valid RE2 regular expression (error parsing regexp: missing closing ]: `[a-z+@acme`); fix it (it matches the whole value: no ^ or $ needed)",
		},
		{
			name:   "field binding without a field",
			access: `allow: { token: { fields: { claim: "sub" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: is empty; name the request field that must equal claim "sub", such as "account_id" or "key.user_id"`,
		},
		{
			name:   "field binding to an unknown field",
			access: `allow: { token: { fields: { field: "acount_id" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: message bank.v1.WithdrawRequest has no field acount_id; name one of its fields (key, account_id, amount, big, flag, tags, labels, blob, ratio, currency, small, fixed, name)`,
		},
		{
			name:   "field binding to an unknown nested field",
			access: `allow: { token: { fields: { field: "key.user" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: message bank.v1.Key has no field user; name one of its fields (user_id, branch)`,
		},
		{
			name:   "field path with an empty segment",
			access: `allow: { token: { fields: { field: "key..user_id" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field path "key..user_id" has an empty segment; separate the names of nested message fields with single dots, such as "key.user_id"`,
		},
		{
			name:   "field path through a scalar",
			access: `allow: { token: { fields: { field: "account_id.value" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field account_id of bank.v1.WithdrawRequest has type string, not a message, so "account_id.value" cannot reach into it; bind "account_id" itself or a path through message fields`,
		},
		{
			name:   "field binding to a message",
			access: `allow: { token: { fields: { field: "key" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field key of bank.v1.WithdrawRequest is a message (bank.v1.Key); bind one of its fields, such as "key.user_id"`,
		},
		{
			name:   "field binding to a repeated field",
			access: `allow: { token: { fields: { field: "tags" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field tags of bank.v1.WithdrawRequest is repeated; bind a single string, integer or bool field`,
		},
		{
			name:   "field binding to a map",
			access: `allow: { token: { fields: { field: "labels" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field labels of bank.v1.WithdrawRequest is a map; bind a single string, integer or bool field`,
		},
		{
			name:   "field binding to bytes",
			access: `allow: { token: { fields: { field: "blob" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field blob of bank.v1.WithdrawRequest has type bytes, which cannot equal a claim; bind a string, integer or bool field`,
		},
		{
			name:   "field binding to a double",
			access: `allow: { token: { fields: { field: "ratio" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field ratio of bank.v1.WithdrawRequest has type double, which cannot equal a claim; bind a string, integer or bool field`,
		},
		{
			name:   "field binding to an enum",
			access: `allow: { token: { fields: { field: "currency" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 1},
			want:   `allow[0].token.fields[0].field: field currency of bank.v1.WithdrawRequest has type enum, which cannot equal a claim; bind a string, integer or bool field`,
		},
		{
			name:   "field binding to a claim path with an empty segment",
			access: `allow: { token: { fields: { field: "account_id" claim: ".sub" } } }`,
			path:   protoreflect.SourcePath{1, 0, 2, 4, 0, 2},
			want:   `allow[0].token.fields[0].claim: claim path ".sub" has an empty segment; separate the names of nested objects with single dots, such as "realm_access.roles"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(access(t, tt.access), req)
			if err == nil {
				t.Fatalf("compiled (%s); want error %q", p.Describe(), tt.want)
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RuleError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
			if !slices.Equal(re.Path, tt.path) {
				t.Errorf("path: got %v, want %v", re.Path, tt.path)
			}
		})
	}
}

// TestCompileReportsEveryMistake checks that the mistakes of several rules
// come back together, so that the generator reports them in one run.
func TestCompileReportsEveryMistake(t *testing.T) {
	t.Parallel()
	_, err := Compile(access(t, `allow: { service: "" } allow: { token: { issuers: [""] claims: { name: "" } } }`), withdrawRequest(t))
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v joins no errors", err)
	}
	if n := len(joined.Unwrap()); n != 3 {
		t.Errorf("got %d errors, want 3: %v", n, err)
	}
}

// TestCompileValid checks rules that are right compile, including an empty
// allow list (deny everyone), a token rule with no conditions (any valid
// token) and a service access with no request to bind (nil).
func TestCompileValid(t *testing.T) {
	t.Parallel()
	req := withdrawRequest(t)
	for _, text := range []string{
		``,
		`allow: { token: {} }`,
		`allow: { service: "*" }`,
		`allow: { service: "lockout.v2_x-y" }`,
		`allow: { token: { claims: { name: "https://acme.example/roles" equals: "admin" } } }`,
		`allow: { token: { fields: [{ field: "key.user_id" }, { field: "key.branch" claim: "branch" }, { field: "big" claim: "b" }, { field: "flag" claim: "f" }, { field: "small" claim: "s" }, { field: "fixed" claim: "x" }, { field: "name" claim: "n" }] } }`,
	} {
		if _, err := Compile(access(t, text), req); err != nil {
			t.Errorf("Compile(%s): %v", text, err)
		}
	}
	if _, err := Compile(access(t, `allow: { token: { fields: { field: "anything" } } }`), nil); err != nil {
		t.Errorf("Compile without a request: %v", err)
	}
}
