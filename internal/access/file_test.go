package access

import (
	"strings"
	"testing"
)

const accountProto = `syntax = "proto3";
package bank.v1;
import "statefun/v1/annotations.proto";
import "bank.proto";

service Account {
  option (statefun.v1.entity) = { type: "account" state: "Empty" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "account_id" } } } };
  rpc Withdraw(WithdrawRequest) returns (Empty);
  rpc Open(WithdrawRequest) returns (Empty) {
    option (statefun.v1.method).access = { allow: { anyone: true } };
  }
}

service Audit {
  option (statefun.v1.entity) = { type: "audit" state: "Empty" key_value: {} };
  rpc Record(WithdrawRequest) returns (Empty);
  rpc Lock(WithdrawRequest) returns (Empty) {
    option (statefun.v1.method).access = { allow: { service: "lockout" } };
  }
}

// Not callable: no policies.
service Plain {
  rpc Ping(Empty) returns (Empty);
}
`

const openProto = `syntax = "proto3";
package bank.v1;
import "statefun/v1/annotations.proto";
import "bank.proto";

service Ledger {
  option (statefun.v1.entity) = { type: "ledger" state: "Empty" key_value: {} };
  rpc Post(WithdrawRequest) returns (Empty);
}
`

// TestForFile checks the effective policy of each RPC: a method's own
// access replaces its service's, and once a file declares access an RPC
// without any is denied to everyone.
func TestForFile(t *testing.T) {
	t.Parallel()
	reg := compileFiles(t, map[string]string{"bank.proto": bankProto, "account.proto": accountProto, "open.proto": openProto})
	policies, err := ForFile(reg.file(t, "account.proto"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/bank.v1.Account/Withdraw": `a token whose "sub" equals account_id`,
		"/bank.v1.Account/Open":     `anyone`,
		"/bank.v1.Audit/Record":     `nobody (denied by default)`,
		"/bank.v1.Audit/Lock":       `service "lockout"`,
	}
	if len(policies) != len(want) {
		t.Errorf("got policies for %d methods, want %d: %v", len(policies), len(want), policies)
	}
	for method, desc := range want {
		p, ok := policies[method]
		if !ok {
			t.Errorf("no policy for %s", method)
			continue
		}
		if got := p.Describe(); got != desc {
			t.Errorf("%s: Describe() = %q, want %q", method, got, desc)
		}
	}

	d := policies["/bank.v1.Audit/Record"].Check(lockout, nil)
	if d == nil || d.Unauthenticated {
		t.Fatalf("a method denied by default gave %+v; want PERMISSION_DENIED", d)
	}
	for _, part := range []string{"access of /bank.v1.Audit/Record", "deny by default", "(statefun.v1.method).access", "(statefun.v1.access)"} {
		if !strings.Contains(d.Msg, part) {
			t.Errorf("denial %q does not say %q", d.Msg, part)
		}
	}
	md := reg.message(t, "bank.v1.WithdrawRequest")
	d = policies["/bank.v1.Account/Withdraw"].Check(tokenCaller(map[string]any{"sub": "a"}), request(t, md, map[string]any{"account_id": "b"}))
	if d == nil || !strings.HasPrefix(d.Msg, "access of /bank.v1.Account/Withdraw: ") {
		t.Errorf("denial %+v does not name the method", d)
	}

	open, err := ForFile(reg.file(t, "open.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := open["/bank.v1.Ledger/Post"]; !ok || p != nil {
		t.Errorf("a file without access gave Post the policy %v (present %v); want nil: open to anyone", p, ok)
	}

	one, err := ForService(reg.file(t, "account.proto").Services().ByName("Audit"))
	if err != nil {
		t.Fatal(err)
	}
	if got := one["/bank.v1.Audit/Record"].Describe(); len(one) != 2 || got != "nobody (denied by default)" {
		t.Errorf("ForService(Audit) = %v, Record %q; want its two methods, Record denied by default", one, got)
	}
}

// TestForFileRefusesAccessOnNonCallableServices checks that access on a
// consumer or on a plain service, and a wrong rule, fail to load.
func TestForFileRefusesAccessOnNonCallableServices(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct{ proto, want string }{
		"consumer": {
			proto: `service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "X" };
  option (statefun.v1.access) = { allow: { anyone: true } };
  rpc On(Empty) returns (Empty);
}`,
			want: "service bank.v1.Audit declares access, but it is not an entity, a workflow or a view",
		},
		"plain method": {
			proto: `service Plain {
  rpc Ping(Empty) returns (Empty) { option (statefun.v1.method).access = { allow: { anyone: true } }; }
}`,
			want: "method bank.v1.Plain.Ping declares access, but its service is not an entity, a workflow or a view",
		},
		"bad rule": {
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "Empty" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "nope" } } } };
  rpc Withdraw(WithdrawRequest) returns (Empty);
}`,
			want: "access of /bank.v1.Account/Withdraw: allow[0].token.fields[0].field: message bank.v1.WithdrawRequest has no field nope",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := "syntax = \"proto3\";\npackage bank.v1;\nimport \"statefun/v1/annotations.proto\";\nimport \"bank.proto\";\n" + tt.proto
			reg := compileFiles(t, map[string]string{"bank.proto": bankProto, "x.proto": src})
			_, err := ForFile(reg.file(t, "x.proto"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ForFile error %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// TestDescribe checks the one-line descriptions of who may call.
func TestDescribe(t *testing.T) {
	t.Parallel()
	md := withdrawRequest(t)
	for text, want := range map[string]string{
		``:                        `nobody (the allow list is empty)`,
		`allow: { anyone: true }`: `anyone`,
		`allow: { service: "*" }`: `any service of the deployment`,
		`allow: { token: {} }`:    `a token`,
		`allow: { token: { claims: { name: "admin" equals: "true" } } }`:                                                                                 `a token with claim "admin" = "true"`,
		`allow: { token: { fields: { field: "account_id" } } }`:                                                                                          `a token whose "sub" equals account_id`,
		`allow: { token: { issuers: ["a", "b"] audiences: ["x"] claims: { name: "roles" } } }`:                                                           `a token from issuer "a" or "b" for audience "x" with claim "roles"`,
		`allow: { token: { claims: { name: "email" pattern: ".*@acme" } fields: { field: "key.user_id" claim: "uid" } } } allow: { service: "lockout" }`: `a token with claim "email" matching /.*@acme/ and whose "uid" equals key.user_id, or service "lockout"`,
	} {
		p, err := Compile(access(t, text), md)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Describe(); got != want {
			t.Errorf("Describe(%s) = %q, want %q", text, got, want)
		}
	}
}
