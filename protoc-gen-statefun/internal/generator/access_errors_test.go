package generator

import (
	"strings"
	"testing"
)

// accessMessages are the requests and state of the services in
// TestAccessErrors and TestAccessWarnings, appended after each case's
// proto so that its first line is line 5.
const accessMessages = `
message Key { string user_id = 1 [(statefun.v1.field).key = true]; }
message WithdrawRequest {
  Key key = 1 [(statefun.v1.field).key = true];
  int64 cents = 2;
  repeated string tags = 3;
  map<string, string> labels = 4;
  bytes blob = 5;
}
message GetRequest { Key key = 1 [(statefun.v1.field).key = true]; }
message State { int64 cents = 1; }
`

// TestAccessErrors checks that each mistake in an access option is
// reported at the part of the option that is wrong, saying how to fix it.
func TestAccessErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		proto string // appended to header; line 5 is its first line
		want  string
	}{
		{
			name: "rule without a principal",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: {} };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:35: access of service Account: allow[0]: allows no one: it sets no principal; set one of anyone: true, token: { ... } or service: "..."`,
		},
		{
			name: "anyone false on a method",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  rpc Withdraw(WithdrawRequest) returns (State) {
    option (statefun.v1.method).access = { allow: { anyone: false } };
  }
}`,
			want: `bad.proto:8:53: access of Account.Withdraw: allow[0].anyone: is false, which allows no one; write anyone: true to let every caller in, or remove the rule`,
		},
		{
			name: "empty service name",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { anyone: true } allow: { service: "" } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:68: access of service Account: allow[1].service: is empty; name a service of the deployment (the --service-name it runs under), or "*" for any of them`,
		},
		{
			name: "invalid service name",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { service: "Lockout" } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:44: access of service Account: allow[0].service: "Lockout" is not a service name; use lowercase letters, digits, '.', '_' and '-', starting with a letter (the --service-name of the calling service), or "*" for any service of the deployment`,
		},
		{
			name: "empty issuer",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { issuers: ["https://login.example.com", ""] } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:92: access of service Account: allow[0].token.issuers[1]: is empty; name an issuer the server trusts (the token's "iss"), or remove the entry to accept any of them`,
		},
		{
			name: "empty audience",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { audiences: "" } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:53: access of service Account: allow[0].token.audiences[0]: is empty; name an audience the token's "aud" must include, or remove the entry`,
		},
		{
			name: "claim without a name",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { claims: { equals: "admin" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:53: access of service Account: allow[0].token.claims[0].name: is empty; name the claim, such as "sub" or "realm_access.roles" (a dotted path into nested objects)`,
		},
		{
			name: "claim path with an empty segment",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { claims: { name: "realm_access..roles" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.claims[0].name: claim path "realm_access..roles" has an empty segment; separate the names of nested objects with single dots, such as "realm_access.roles"`,
		},
		{
			name: "empty equals",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { claims: { name: "role" equals: "" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:76: access of service Account: allow[0].token.claims[0].equals: is empty; give the value claim "role" must have, or remove equals to require only that the token carries it`,
		},
		{
			name: "empty pattern",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { claims: { name: "role" pattern: "" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:76: access of service Account: allow[0].token.claims[0].pattern: is empty; give the RE2 expression claim "role" must match, or remove pattern to require only that the token carries it`,
		},
		{
			name: "pattern that does not compile",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  rpc Withdraw(WithdrawRequest) returns (State) {
    option (statefun.v1.method).access = { allow: { token: { claims: { name: "email" pattern: "(.*@acme" } } } };
  }
}`,
			want: "bad.proto:8:86: access of Account.Withdraw: allow[0].token.claims[0].pattern: \"(.*@acme\" is not a valid RE2 regular expression (error parsing regexp: missing closing ): `(.*@acme`); fix it (it matches the whole value: no ^ or $ needed)",
		},
		{
			name: "field binding without a field",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { claim: "sub" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:53: access of service Account: allow[0].token.fields[0].field: is empty; name the request field that must equal claim "sub", such as "account_id" or "key.user_id"`,
		},
		{
			name: "field binding to a field one request lacks",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "cents" claim: "max" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
  rpc Get(GetRequest) returns (State) { option (statefun.v1.method).read_only = true; }
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.fields[0].field: message acme.v1.GetRequest has no field cents; name one of its fields (key)`,
		},
		{
			name: "field path through a scalar",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "cents.value" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.fields[0].field: field cents of acme.v1.WithdrawRequest has type int64, not a message, so "cents.value" cannot reach into it; bind "cents" itself or a path through message fields`,
		},
		{
			name: "field binding to a repeated field",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "tags" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.fields[0].field: field tags of acme.v1.WithdrawRequest is repeated; bind a single string, integer or bool field`,
		},
		{
			name: "field binding to a map",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "labels" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.fields[0].field: field labels of acme.v1.WithdrawRequest is a map; bind a single string, integer or bool field`,
		},
		{
			name: "field binding to a message",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "key" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.fields[0].field: field key of acme.v1.WithdrawRequest is a message (acme.v1.Key); bind one of its fields, such as "key.user_id"`,
		},
		{
			name: "field binding to bytes",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "blob" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:63: access of service Account: allow[0].token.fields[0].field: field blob of acme.v1.WithdrawRequest has type bytes, which cannot equal a claim; bind a string, integer or bool field`,
		},
		{
			name: "field bound to a claim path with an empty segment",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "key.user_id" claim: "user." } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
}`,
			want: `bad.proto:7:84: access of service Account: allow[0].token.fields[0].claim: claim path "user." has an empty segment; separate the names of nested objects with single dots, such as "realm_access.roles"`,
		},
		{
			name: "a mistake of a service's access is reported once for all its methods",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { service: "" } };
  rpc Withdraw(WithdrawRequest) returns (State);
  rpc Get(GetRequest) returns (State) { option (statefun.v1.method).read_only = true; }
}`,
			want: `bad.proto:7:44: access of service Account: allow[0].service: is empty; name a service of the deployment (the --service-name it runs under), or "*" for any of them`,
		},
		{
			name: "access on a consumer",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" event_sourced: { events: ["Placed"] } };
  option (statefun.v1.access) = { allow: { anyone: true } };
  rpc Withdraw(WithdrawRequest) returns (State);
}
service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "Account" };
  option (statefun.v1.access) = { allow: { anyone: true } };
  rpc OnPlaced(Placed) returns (google.protobuf.Empty);
}
import "google/protobuf/empty.proto";
message Placed { option (statefun.v1.event) = {}; }`,
			want: `bad.proto:12:3: service Audit is a consumer, which no caller calls: the runtime calls it with its source's events; remove option (statefun.v1.access)`,
		},
		{
			name: "access on a consumer's method",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" event_sourced: { events: ["Placed"] } };
  option (statefun.v1.access) = { allow: { anyone: true } };
  rpc Withdraw(WithdrawRequest) returns (State);
}
service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "Account" };
  rpc OnPlaced(Placed) returns (google.protobuf.Empty) {
    option (statefun.v1.method).access = { allow: { anyone: true } };
  }
}
import "google/protobuf/empty.proto";
message Placed { option (statefun.v1.event) = {}; }`,
			want: `bad.proto:13:5: method Audit.OnPlaced declares (statefun.v1.method).access, but a consumer is called by no caller: the runtime calls it with its source's events; remove the access`,
		},
		{
			name: "access on a publisher",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" event_sourced: { events: ["Placed"] } };
  option (statefun.v1.access) = { allow: { anyone: true } };
  rpc Withdraw(WithdrawRequest) returns (State);
}
service AccountEvents {
  option (statefun.v1.publisher) = { name: "account-events" source: "Account" to: { nats_subject: "accounts" } };
  option (statefun.v1.access) = { allow: { anyone: true } };
}
message Placed { option (statefun.v1.event) = {}; }`,
			want: `bad.proto:12:3: service AccountEvents is a publisher, which has no RPCs to call: the runtime runs it; remove option (statefun.v1.access)`,
		},
		{
			name: "access on a plain service",
			proto: `service Health {
  option (statefun.v1.access) = { allow: { anyone: true } };
  rpc Check(State) returns (State);
}`,
			want: `bad.proto:6:3: service Health declares (statefun.v1.access), but it is not an entity, a workflow or a view, the services statefun serves; remove the option, or make the service one of them with (statefun.v1.entity), (statefun.v1.workflow) or (statefun.v1.view)`,
		},
		{
			name: "access on a plain service's method",
			proto: `service Health {
  rpc Check(State) returns (State) {
    option (statefun.v1.method).access = { allow: { anyone: true } };
  }
}`,
			want: `bad.proto:7:5: method Health.Check declares (statefun.v1.method).access, but service Health is not an entity, a workflow or a view, the services statefun serves; remove the access, or make the service one of them with (statefun.v1.entity), (statefun.v1.workflow) or (statefun.v1.view)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, compileRequest(t, map[string]string{"bad.proto": header + tt.proto + accessMessages}, "bad.proto"))
			if res.Error == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if got := res.GetError(); got != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tt.want)
			}
			if len(res.File) != 0 {
				t.Errorf("generated %d files despite the error", len(res.File))
			}
		})
	}
}

// TestAccessWarnings checks the warnings about access: an entity, workflow
// or view anyone may call because its file declares no access, an RPC
// denied to everyone because its file declares access elsewhere, and an
// access that allows no one. Files only imported are not warned about.
func TestAccessWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		proto string // appended to header; line 5 is its first line
		extra map[string]string
		want  []string
	}{
		{
			name: "a file without access",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" event_sourced: { events: ["Placed"] } };
  rpc Withdraw(WithdrawRequest) returns (State);
}
service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "Account" };
  rpc OnPlaced(Placed) returns (google.protobuf.Empty);
}
import "google/protobuf/empty.proto";
message Placed { option (statefun.v1.event) = {}; }`,
			want: []string{
				`bad.proto:5:1: warning: anyone who reaches the server can call Account; declare who may with option (statefun.v1.access) (allow: { anyone: true } keeps it open and says so)`,
			},
		},
		{
			name: "an RPC denied by default",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  rpc Withdraw(WithdrawRequest) returns (State) {
    option (statefun.v1.method).access = { allow: { token: {} } };
  }
  rpc Get(GetRequest) returns (State) { option (statefun.v1.method).read_only = true; }
}`,
			want: []string{
				`bad.proto:10:3: warning: Account.Get has no access rule and is denied to every caller (the file declares access elsewhere); add option (statefun.v1.method).access to it, or (statefun.v1.access) to service Account`,
			},
		},
		{
			name: "an access that allows no one",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = {};
  rpc Withdraw(WithdrawRequest) returns (State);
  rpc Get(GetRequest) returns (State) {
    option (statefun.v1.method).read_only = true;
    option (statefun.v1.method).access = { allow: [] };
  }
}`,
			want: []string{
				`bad.proto:7:3: warning: the access of Account allows no caller (its allow list is empty), so every call is refused; add allow rules, or remove the RPCs no one may call`,
				`bad.proto:11:5: warning: the access of Account.Get allows no caller (its allow list is empty), so every call is refused; add allow rules, or remove the RPCs no one may call`,
			},
		},
		{
			name: "a file with access everywhere",
			proto: `import "other.proto";
service Account {
  option (statefun.v1.entity) = { type: "account" state: "State" key_value: {} };
  option (statefun.v1.access) = { allow: { token: { fields: { field: "key.user_id" } } } };
  rpc Withdraw(WithdrawRequest) returns (State);
  rpc Get(GetRequest) returns (State) {
    option (statefun.v1.method).read_only = true;
    option (statefun.v1.method).access = { allow: { anyone: true } };
  }
}`,
			// other.proto is imported, not generated: no warning for it.
			extra: map[string]string{"other.proto": header + `service Other {
  option (statefun.v1.entity) = { type: "other" state: "OtherState" key_value: {} };
  rpc Do(OtherState) returns (OtherState);
}
message OtherState { string id = 1 [(statefun.v1.field).key = true]; }`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sources := map[string]string{"bad.proto": header + tt.proto + accessMessages}
			for k, v := range tt.extra {
				sources[k] = v
			}
			plugin := testPlugin(t, compileRequest(t, sources, "bad.proto"))
			warnings, err := Generate(plugin)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range warnings {
				got = append(got, w.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("warnings:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
		})
	}
}
