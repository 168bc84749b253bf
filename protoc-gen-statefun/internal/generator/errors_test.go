package generator

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

const header = `syntax = "proto3";
package acme.v1;
import "statefun/v1/annotations.proto";
option go_package = "example.com/acme/v1;acmev1";
`

// TestErrors checks that each misuse of the options is reported with the
// file, line and column of the mistake and says how to fix it.
func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		proto string // appended to header; line 5 is its first line
		extra map[string]string
		want  string
	}{
		{
			name: "no key field in a request",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string cart_id = 1; }
message State {}`,
			want: `bad.proto:7:3: request GetRequest of Cart.Get has no entity key; mark the field that identifies the Cart with [(statefun.v1.field).key = true]`,
		},
		{
			name: "key field of unsupported type",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { bytes cart_id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:9:40: key field cart_id of GetRequest has type bytes, which cannot be a key; use string or an integer type`,
		},
		{
			name: "repeated key field",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { repeated string ids = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:9:46: key field ids of GetRequest is repeated; a key field must be a single string or integer`,
		},
		{
			name: "key field in a oneof",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest {
  oneof by {
    string id = 1 [(statefun.v1.field).key = true];
    string name = 2;
  }
}
message State {}`,
			want: `bad.proto:11:19: key field id of GetRequest is in oneof by; move it out of the oneof, because every request must carry the key`,
		},
		{
			name: "nested key message without key fields",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message Ref { string id = 1; }
message GetRequest { Ref ref = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:10:34: key field ref of GetRequest is a Ref, which has no key fields; mark the fields of Ref that form the key with [(statefun.v1.field).key = true]`,
		},
		{
			name: "nested key that contains itself",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(Node) returns (State);
}
message Node { Node parent = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:9:32: key field parent of Node refers back to Node; a nested key cannot contain itself`,
		},
		{
			name: "requests with different key shapes",
			proto: `service Seat {
  option (statefun.v1.entity) = { type: "seat" state: "State" key_value: {} };
  rpc Reserve(ReserveRequest) returns (State);
  rpc Get(GetRequest) returns (State);
}
message ReserveRequest {
  string flight = 1 [(statefun.v1.field).key = true];
  string seat = 2 [(statefun.v1.field).key = true];
}
message GetRequest { string flight = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:8:3: request GetRequest of Seat.Get has 1 key fields, but ReserveRequest of Reserve has 2; every request of an entity must carry the same key`,
		},
		{
			name: "state message that does not exist",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "Crt" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:48: state message "Crt" of entity Cart not found; define it in package acme.v1, import the file that defines it, or give its fully qualified name`,
		},
		{
			name: "no state",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:3: entity Cart has no state; set (statefun.v1.entity).state to the name of its state message`,
		},
		{
			name: "event message that does not exist",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added", "Removd"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}`,
			want: `bad.proto:6:98: event message "Removd" of entity Cart not found; define it in package acme.v1 or give its fully qualified name`,
		},
		{
			name: "event listed twice",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added", "acme.v1.Added"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}`,
			want: `bad.proto:6:98: event acme.v1.Added is listed twice in entity Cart; list each event once`,
		},
		{
			name: "state listed as an event",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added", "State"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}`,
			want: `bad.proto:6:98: event acme.v1.State of entity Cart is its state message; the state is stored in snapshots, not as an event: define a separate event message that says what changed (such as ItemAdded), list it, and apply it to the state in its On method`,
		},
		{
			name: "event no entity lists",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added { option (statefun.v1.event) = {}; }
message Removed {
  option (statefun.v1.event) = {};
  string sku = 1;
}`,
			want: `bad.proto:13:3: message Removed is marked as an event but no entity lists it in events; add it to an entity's event_sourced.events, or remove the (statefun.v1.event) option`,
		},
		{
			name: "nested event no entity lists, next to a key-value entity",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {
  message Changed { option (statefun.v1.event) = {}; }
}`,
			want: `bad.proto:11:21: message Changed is marked as an event but no entity lists it in events; add it to an entity's event_sourced.events, or remove the (statefun.v1.event) option`,
		},
		{
			name: "no events",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:63: event-sourced entity Cart lists no events; name its event messages in event_sourced: { events: ["ItemAdded", ...] }`,
		},
		{
			name: "two events stored under one name",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added", "Put"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}
message Put { option (statefun.v1.event) = { type: "Added" }; }`,
			want: `bad.proto:6:98: events acme.v1.Added and acme.v1.Put of entity Cart are both stored as "Added"; set a distinct (statefun.v1.event).type on one of them`,
		},
		{
			name: "invalid event type name",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added { option (statefun.v1.event) = { type: "item added" }; }`,
			want: `bad.proto:11:48: event type "item added" of Added is not valid; use letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters`,
		},
		{
			name: "event in another Go package",
			extra: map[string]string{"other.proto": `syntax = "proto3";
package other.v1;
option go_package = "example.com/other/v1;otherv1";
message Added {}`},
			proto: `import "other.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["other.v1.Added"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:89: event other.v1.Added of entity Cart is in Go package "example.com/other/v1", but the entity is in "example.com/acme/v1"; events must be in the entity's Go package, so that only they can be emitted (move the message or give its file the same go_package)`,
		},
		{
			name: "no entity type",
			proto: `service Cart {
  option (statefun.v1.entity) = { state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:3: entity Cart has no type; set (statefun.v1.entity).type to a stable name stored with its data, for example type: "cart"`,
		},
		{
			name: "invalid entity type",
			proto: `service ShoppingCart {
  option (statefun.v1.entity) = { type: "Shopping Cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:35: entity type "Shopping Cart" of ShoppingCart is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example "shopping-cart")`,
		},
		{
			name: "duplicate entity types",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
service Basket {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:10:35: entity type "cart" of service Basket is already used by service Cart (bad.proto:5:1); give each entity its own type name`,
		},
		{
			name: "no kind",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:3: entity Cart has no kind; set event_sourced: { events: [...] } or key_value: {} in (statefun.v1.entity)`,
		},
		{
			name: "passivation timeout not positive",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} passivation_timeout: { seconds: -5 } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:77: passivation_timeout of entity Cart must be a positive duration; remove it to use the server's default`,
		},
		{
			name: "streaming method",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Watch(GetRequest) returns (stream State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:3: method Cart.Watch is streaming; entity methods must be unary (one request, one reply), so move it to a service without (statefun.v1.entity)`,
		},
		{
			name: "method option on a service that is not an entity",
			proto: `service Catalog {
  rpc Search(SearchRequest) returns (SearchResponse) { option (statefun.v1.method).read_only = true; }
}
message SearchRequest {}
message SearchResponse {}`,
			want: `bad.proto:6:56: method Catalog.Search has (statefun.v1.method) options, but service Catalog is neither an entity nor a workflow; add option (statefun.v1.entity) or (statefun.v1.workflow) to the service, or remove the method options`,
		},
		{
			name: "consumer without a name",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { source: "User" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}`,
			want: `bad.proto:15:3: consumer Detector has no name; set (statefun.v1.consumer).name to a stable name its position is stored under, for example name: "detector"`,
		},
		{
			name: "consumer source not found",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "Usr" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}`,
			want: `bad.proto:15:54: source "Usr" of consumer Detector not found; name an entity service of package acme.v1, import the file that declares it, or give its fully qualified name`,
		},
		{
			name: "consumer source not an entity",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "Plain" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}
service Plain { rpc Ping(LoginFailed) returns (google.protobuf.Empty); }`,
			want: `bad.proto:15:54: source acme.v1.Plain of consumer Detector is not an entity; name a service with option (statefun.v1.entity)`,
		},
		{
			name: "consumer of a key-value entity",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "Profile" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}
service Profile {
  option (statefun.v1.entity) = { type: "profile" state: "State" key_value: {} };
  rpc Get(LoginRequest) returns (State);
}`,
			want: `bad.proto:15:54: source acme.v1.Profile of consumer Detector is a key-value entity, which has no events to consume; consume an event-sourced entity`,
		},
		{
			name: "consumer method takes a message that is not an event",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  rpc Login(LoginRequest) returns (google.protobuf.Empty);
}`,
			want: `bad.proto:16:3: method Detector.Login takes acme.v1.LoginRequest, which is not an event of entity User; its request type must be one of its events: acme.v1.LoggedIn, acme.v1.LoginFailed`,
		},
		{
			name: "consumer method does not return Empty",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  rpc OnLoginFailed(LoginFailed) returns (State);
}`,
			want: `bad.proto:16:3: method Detector.OnLoginFailed returns acme.v1.State; a consumer's methods return google.protobuf.Empty`,
		},
		{
			name: "two consumer methods for one event",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
  rpc AlsoOnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}`,
			want: `bad.proto:17:3: methods OnLoginFailed and AlsoOnLoginFailed both handle acme.v1.LoginFailed; handle each event in one method`,
		},
		{
			name: "entity and consumer on one service",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  option (statefun.v1.entity) = { type: "detector" state: "State" key_value: {} };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}`,
			want: `bad.proto:15:3: service Detector has both (statefun.v1.entity) and (statefun.v1.consumer); a service is an entity or a consumer, so split it in two`,
		},
		{
			name: "duplicate consumer names",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty);
}
service Auditor {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  rpc OnLoggedIn(LoggedIn) returns (google.protobuf.Empty);
}`,
			want: `bad.proto:19:37: consumer name "detector" of service Auditor is already used by service Detector (bad.proto:14:1); give each consumer its own name`,
		},
		{
			name: "method options on a consumer",
			proto: `import "google/protobuf/empty.proto";
service User {
  option (statefun.v1.entity) = { type: "user" state: "State" event_sourced: { events: ["LoggedIn", "LoginFailed"] } };
  rpc Login(LoginRequest) returns (State);
}
message LoginRequest { string user_id = 1 [(statefun.v1.field).key = true]; }
message State {}
message LoggedIn {}
message LoginFailed {}
service Detector {
  option (statefun.v1.consumer) = { name: "detector" source: "User" };
  rpc OnLoginFailed(LoginFailed) returns (google.protobuf.Empty) { option (statefun.v1.method).read_only = true; }
}`,
			want: `bad.proto:16:68: method Detector.OnLoginFailed has (statefun.v1.method) options, which apply to entity, workflow and view methods only; remove them`,
		},
		{
			name: "reserved event type name",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added { option (statefun.v1.event) = { type: "statefun.call" }; }`,
			want: `bad.proto:11:48: event type "statefun.call" of Added starts with "statefun.", which is reserved for the runtime's own records; choose another name`,
		},
		{
			name: "a consumed event with a bad type name is reported once",
			proto: `import "google/protobuf/empty.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added"] } };
  rpc Get(GetRequest) returns (State);
}
service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "Cart" };
  rpc OnAdded(Added) returns (google.protobuf.Empty);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added { option (statefun.v1.event) = { type: "item added" }; }`,
			want: `bad.proto:16:48: event type "item added" of Added is not valid; use letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters`,
		},
		{
			name: "message named like the event interface of an entity",
			proto: `service LedgerService {
  option (statefun.v1.entity) = { type: "ledger" state: "Book" event_sourced: { events: ["Posted"] } };
  rpc Post(PostRequest) returns (Book);
}
message PostRequest { string ledger_id = 1 [(statefun.v1.field).key = true]; }
message Book {}
message Posted {}
message LedgerEvent {}`,
			want: `bad.proto:5:1: generated Go name LedgerEvent (the event interface of entity LedgerService) clashes with message acme.v1.LedgerEvent (bad.proto:12:1); rename message LedgerEvent or service LedgerService`,
		},
		{
			name: "message named like the client of an entity",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message CartEntityClient {}`,
			want: `bad.proto:5:1: generated Go name CartEntityClient (the client of entity Cart) clashes with message acme.v1.CartEntityClient (bad.proto:11:1); rename message CartEntityClient or service Cart`,
		},
		{
			name: "message in another file of the Go package named like a generated name",
			extra: map[string]string{"other.proto": `syntax = "proto3";
package acme.v1;
option go_package = "example.com/acme/v1;acmev1";
message CartTestKit {}`},
			proto: `import "other.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:1: generated Go name CartTestKit (the testkit of entity Cart) clashes with message acme.v1.CartTestKit (other.proto:4:1); rename message CartTestKit or service Cart`,
		},
		{
			name: "entity in an imported file of the Go package with the same Go names",
			extra: map[string]string{"other.proto": `syntax = "proto3";
package acme.v1;
import "statefun/v1/annotations.proto";
option go_package = "example.com/acme/v1;acmev1";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "Basket" key_value: {} };
  rpc Open(OpenRequest) returns (Basket);
}
message OpenRequest { string id = 1 [(statefun.v1.field).key = true]; }
message Basket {}`},
			proto: `import "other.proto";
service CartService {
  option (statefun.v1.entity) = { type: "cart-v2" state: "Basket" key_value: {} };
  rpc Get(OpenRequest) returns (Basket);
}`,
			want: `bad.proto:6:1: generated Go names CartEntityType, CartHandler, CartContext, NewCart, cartServer, CartEntityClient, NewCartEntityClient, CartTestKit, NewCartTestKit and CartTestResult of entity CartService clash with the names of entity Cart (other.proto:5:1); rename service Cart or service CartService`,
		},
		{
			name: "nested message whose Go name is a generated name",
			proto: `service Shop_Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Shop { message CartHandler {} }`,
			want: `bad.proto:5:1: generated Go name Shop_CartHandler (the handler interface of entity Shop_Cart) clashes with message acme.v1.Shop.CartHandler (bad.proto:11:16); rename message CartHandler or service Shop_Cart`,
		},
		{
			name: "enum named like a generated name",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
enum CartContext { CART_CONTEXT_UNSPECIFIED = 0; }`,
			want: `bad.proto:5:1: generated Go name CartContext (the command context of entity Cart) clashes with enum acme.v1.CartContext (bad.proto:11:1); rename enum CartContext or service Cart`,
		},
		{
			name: "service whose gRPC names are generated names of an entity",
			proto: `service Ledger {
  option (statefun.v1.entity) = { type: "ledger" state: "Book" key_value: {} };
  rpc Get(GetRequest) returns (Book);
}
service LedgerEntity { rpc Ping(GetRequest) returns (Book); }
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message Book {}`,
			want: `bad.proto:5:1: generated Go names LedgerEntityClient and NewLedgerEntityClient of entity Ledger clash with the names protoc-gen-go-grpc declares for service acme.v1.LedgerEntity (bad.proto:9:1); rename service LedgerEntity or service Ledger`,
		},
		{
			name: "two entities with the same Go names",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
service CartService {
  option (statefun.v1.entity) = { type: "cart-v2" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:9:1: generated Go names CartEntityType, CartHandler, CartContext, NewCart, cartServer, CartEntityClient, NewCartEntityClient, CartTestKit, NewCartTestKit, CartTestResult, cartGetKey and CartGetCall of entity CartService clash with the names of entity Cart (bad.proto:5:1); rename service Cart or service CartService`,
		},
		{
			name: "consumer with the Go names of an entity",
			proto: `import "google/protobuf/empty.proto";
service CartService {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added"] } };
  rpc Add(AddRequest) returns (State);
}
service Cart {
  option (statefun.v1.consumer) = { name: "cart-audit" source: "CartService" };
  rpc OnAdded(Added) returns (google.protobuf.Empty);
}
message AddRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}`,
			want: `bad.proto:10:1: generated Go names CartHandler, CartContext and NewCart of consumer Cart clash with the names of entity CartService (bad.proto:6:1); rename service CartService or service Cart`,
		},
		{
			name: "method named like the method that applies an event",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added"] } };
  rpc OnAdded(AddRequest) returns (State);
}
message AddRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}`,
			want: `bad.proto:7:3: generated method CartHandler.OnAdded (the handler of method Cart.OnAdded) clashes with CartEventHandler.OnAdded, which CartHandler embeds (it applies event acme.v1.Added, bad.proto:11:1); rename method Cart.OnAdded or message Added`,
		},
		{
			name: "method named like the gRPC server base",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc UnimplementedCartServer(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:3: generated method cartServer.UnimplementedCartServer (the gRPC handler of method Cart.UnimplementedCartServer) clashes with the field UnimplementedCartServer that cartServer embeds; rename method Cart.UnimplementedCartServer`,
		},
		{
			name: "REST route that does not bind the key",
			proto: `import "google/api/annotations.proto";
service ShoppingCartService {
  option (statefun.v1.entity) = { type: "cart" state: "Cart" key_value: {} };
  rpc GetCart(GetCartRequest) returns (Cart) {
    option (google.api.http) = { get: "/v1/carts" };
  }
}
message GetCartRequest { string cart_id = 1 [(statefun.v1.field).key = true]; }
message Cart {}`,
			want: `bad.proto:9:34: REST route GET /v1/carts of ShoppingCartService.GetCart does not bind the entity key cart_id; put {cart_id} in the path or send it in the body`,
		},
		{
			name: "REST route that binds only a part of a composite key",
			proto: `import "google/api/annotations.proto";
service Seat {
  option (statefun.v1.entity) = { type: "seat" state: "State" key_value: {} };
  rpc Reserve(ReserveRequest) returns (State) {
    option (google.api.http) = {
      post: "/v1/flights/{flight}/seats"
      body: "passenger"
    };
  }
}
message ReserveRequest {
  string flight = 1 [(statefun.v1.field).key = true];
  string seat = 2 [(statefun.v1.field).key = true];
  string passenger = 3;
}
message State {}`,
			want: `bad.proto:10:7: REST route POST /v1/flights/{flight}/seats of Seat.Reserve does not bind the entity key seat; put {seat} in the path or send it in the body`,
		},
		{
			name: "REST route whose additional binding does not bind the key",
			proto: `import "google/api/annotations.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State) {
    option (google.api.http) = {
      get: "/v1/carts/{id}"
      additional_bindings { get: "/v1/cart" }
    };
  }
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:29: REST route GET /v1/cart of Cart.Get does not bind the entity key id; put {id} in the path or send it in the body`,
		},
		{
			name: "REST route with a path variable that names no field",
			proto: `import "google/api/annotations.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Remove(RemoveRequest) returns (State) {
    option (google.api.http) = { delete: "/v1/carts/{id}/items/{item}" };
  }
}
message RemoveRequest {
  string id = 1 [(statefun.v1.field).key = true];
  string sku = 2;
}
message State {}`,
			want: `bad.proto:9:34: REST route DELETE /v1/carts/{id}/items/{item} of Cart.Remove has path variable {item}, but RemoveRequest has no field item; name a field of RemoveRequest that holds one value (its fields: id, sku)`,
		},
		{
			name: "REST route with a path variable on a repeated field",
			proto: `import "google/api/annotations.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Remove(RemoveRequest) returns (State) {
    option (google.api.http) = { delete: "/v1/carts/{id}/items/{skus}" };
  }
}
message RemoveRequest {
  string id = 1 [(statefun.v1.field).key = true];
  repeated string skus = 2;
}
message State {}`,
			want: `bad.proto:9:34: REST route DELETE /v1/carts/{id}/items/{skus} of Cart.Remove has path variable {skus}, but field skus of RemoveRequest is repeated; name a field of RemoveRequest that holds one value (its fields: id, skus)`,
		},
		{
			name: "REST route whose body names no field",
			proto: `import "google/api/annotations.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Add(AddRequest) returns (State) {
    option (google.api.http) = {
      post: "/v1/carts/{id}/items"
      body: "item"
    };
  }
}
message AddRequest {
  string id = 1 [(statefun.v1.field).key = true];
  string sku = 2;
}
message State {}`,
			want: `bad.proto:11:7: REST route POST /v1/carts/{id}/items of Cart.Add sends body "item", but AddRequest has no field item; use "*" (the whole request) or a field of AddRequest (its fields: id, sku)`,
		},
		{
			name: "REST route without a path",
			proto: `import "google/api/annotations.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Add(AddRequest) returns (State) {
    option (google.api.http) = { body: "*" };
  }
}
message AddRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:9:5: REST route of Cart.Add has no path; set one of get, put, post, delete or patch to a path such as "/v1/things/{id}", or remove the (google.api.http) option`,
		},
		{
			name: "workflow without a type",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:3: workflow Transfer has no type; set (statefun.v1.workflow).type to a stable name stored with its data, for example type: "transfer"`,
		},
		{
			name: "invalid workflow type",
			proto: `service MoneyTransfer {
  option (statefun.v1.workflow) = {
    type: "Money Transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:5: workflow type "Money Transfer" of MoneyTransfer is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example "money-transfer")`,
		},
		{
			name: "workflow type used by an entity",
			proto: `service Account {
  option (statefun.v1.entity) = { type: "transfer" state: "State" key_value: {} };
  rpc Get(StartRequest) returns (State);
}
service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:5: workflow type "transfer" of service Transfer is already used by service Account (bad.proto:5:1); entities and workflows share one namespace of type names, so give each its own`,
		},
		{
			name: "workflow state not found",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "Stat"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:8:5: state message "Stat" of workflow Transfer not found; define it in package acme.v1, import the file that defines it, or give its fully qualified name`,
		},
		{
			name: "workflow without steps",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:6:3: workflow Transfer has no steps; declare them in (statefun.v1.workflow), one entry each, such as steps: {name: "first_step"}; each is a method of its handler`,
		},
		{
			name: "invalid step name",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {name: "AwaitApproval"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:8: step name "AwaitApproval" of workflow Transfer is not valid; use lowercase letters, digits and '_', starting with a letter, at most 64 characters (for example "await_approval")`,
		},
		{
			name: "step without a name",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {timeout: {seconds: 5}}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:7: step 2 of workflow Transfer has no name; set its name, such as name: "charge_card"`,
		},
		{
			name: "step declared twice",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {name: "deposit"},
      {name: "withdraw"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:12:8: step withdraw is declared twice in workflow Transfer; give each step its own name`,
		},
		{
			name: "failover that is not a step",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {
        name: "deposit"
        retry: {max_attempts: 3, failover: "refnd"}
      },
      {name: "refund"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:13:34: failover "refnd" of step deposit of workflow Transfer is not one of its steps; name one of: withdraw, deposit, refund`,
		},
		{
			name: "step that fails over to itself",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {
        name: "deposit"
        retry: {max_attempts: 3, failover: "deposit"}
      }
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:13:34: step deposit of workflow Transfer fails over to itself; name another step (a compensation), or remove failover to let the workflow fail once attempts are used up`,
		},
		{
			name: "workflow failover that is not a step",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}, {name: "refund", retry: {}}]
    retry: {max_attempts: 3, failover: "refnd"}
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:10:30: failover "refnd" of the retry policy of workflow Transfer is not one of its steps; name one of: withdraw, refund`,
		},
		{
			name: "failover step that takes the workflow's policy",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {name: "refund"}
    ]
    retry: {max_attempts: 3, failover: "refund"}
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:7: step refund of workflow Transfer takes the workflow's retry policy, whose failover is refund itself; give step refund a retry policy of its own, so that its last failed attempt ends the workflow instead of running it again`,
		},
		{
			name: "failover without max_attempts",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {
        name: "deposit"
        retry: {failover: "refund"}
      },
      {name: "refund"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:12:17: failover of the retry policy of step deposit of workflow Transfer never runs: max_attempts is 0 (no limit), so the step is retried forever; set max_attempts`,
		},
		{
			name: "step timeout not positive",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {
        name: "deposit"
        timeout: {}
      }
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:13:9: timeout of step deposit of workflow Transfer must be a positive duration; remove it to use the workflow's step_timeout`,
		},
		{
			name: "workflow step_timeout not positive",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
    step_timeout: {seconds: -1}
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:10:5: step_timeout of workflow Transfer must be a positive duration; remove it to use the runtime's default (30 seconds)`,
		},
		{
			name: "backoff not positive",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
    retry: {
      max_attempts: 3
      initial_backoff: {nanos: -5}
    }
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:12:7: initial_backoff of the retry policy of workflow Transfer must be a positive duration; remove it to use the default`,
		},
		{
			name: "initial backoff longer than max backoff",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {
        name: "withdraw"
        retry: {
          initial_backoff: {seconds: 120}
          max_backoff: {seconds: 60}
        }
      }
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:13:11: initial_backoff of the retry policy of step withdraw of workflow Transfer (2m) is longer than its max_backoff (1m); make it shorter, or raise max_backoff`,
		},
		{
			name: "workflow passivation timeout not positive",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
    passivation_timeout: {}
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:10:5: passivation_timeout of workflow Transfer must be a positive duration; remove it to use the server's default`,
		},
		{
			name: "workflow without a start method",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Approve(StartRequest) returns (State);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:5:1: workflow Transfer has no start method; mark the RPC that starts it with option (statefun.v1.method).start = true`,
		},
		{
			name: "method that is both start and read_only",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method) = { start: true read_only: true }; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:45: method Transfer.Start is both start and read_only; a start method changes the workflow, so remove one of the two`,
		},
		{
			name: "start on an entity method",
			proto: `service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" key_value: {} };
  rpc Open(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:44: method Cart.Open sets (statefun.v1.method).start, which applies to workflow methods only; remove it, or make Cart a workflow with (statefun.v1.workflow)`,
		},
		{
			name: "streaming workflow method",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
  rpc Watch(StartRequest) returns (stream State);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:12:3: method Transfer.Watch is streaming; workflow methods must be unary (one request, one reply), so move it to a service without (statefun.v1.workflow)`,
		},
		{
			name: "workflow request without a key",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
  rpc Approve(ApproveRequest) returns (State);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message ApproveRequest { string id = 1; }
message State {}`,
			want: `bad.proto:12:3: request ApproveRequest of Transfer.Approve has no workflow key; mark the field that identifies the Transfer with [(statefun.v1.field).key = true]`,
		},
		{
			name: "workflow requests with different key shapes",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
  rpc Approve(ApproveRequest) returns (State);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message ApproveRequest {
  string id = 1 [(statefun.v1.field).key = true];
  string by = 2 [(statefun.v1.field).key = true];
}
message State {}`,
			want: `bad.proto:12:3: request ApproveRequest of Transfer.Approve has 2 key fields, but StartRequest of Start has 1; every request of a workflow must carry the same key`,
		},
		{
			name: "entity and workflow on one service",
			proto: `service Transfer {
  option (statefun.v1.entity) = { type: "transfer" state: "State" key_value: {} };
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:3: service Transfer has both (statefun.v1.entity) and (statefun.v1.workflow); a service is an entity or a workflow, so split it in two`,
		},
		{
			name: "consumer and workflow on one service",
			proto: `import "google/protobuf/empty.proto";
service Transfer {
  option (statefun.v1.consumer) = { name: "transfer" source: "Transfer" };
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (google.protobuf.Empty);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:7:3: service Transfer has both (statefun.v1.workflow) and (statefun.v1.consumer); a service is a workflow or a consumer, so split it in two`,
		},
		{
			name: "consumer of a workflow",
			proto: `import "google/protobuf/empty.proto";
service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "Transfer" };
  rpc OnStart(StartRequest) returns (google.protobuf.Empty);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:15:51: source acme.v1.Transfer of consumer Audit is a workflow, which has no events to consume; consume an event-sourced entity, or have a step of the workflow call the service that should act`,
		},
		{
			name: "step named like an RPC",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {name: "approve"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
  rpc Approve(StartRequest) returns (State);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:8: generated method TransferHandler.Approve (step approve) clashes with the handler of method Transfer.Approve (bad.proto:15:3); rename step approve or method Transfer.Approve`,
		},
		{
			name: "two steps with one Go method",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "pay2_card"},
      {name: "pay2card"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:8: steps pay2_card and pay2card of workflow Transfer both become the Go method TransferHandler.Pay2Card; rename one of them`,
		},
		{
			name: "step named like the step context",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {name: "context"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:11:8: step name "context" of workflow Transfer would name its Go value TransferStepContext, which is the name of its step context; choose another name`,
		},
		{
			name: "entity and workflow with the same Go names",
			proto: `service Transfer {
  option (statefun.v1.entity) = { type: "transfer-record" state: "State" key_value: {} };
  rpc Get(StartRequest) returns (State);
}
service TransferService {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:9:1: generated Go names TransferHandler, TransferContext, NewTransfer, transferServer, TransferTestKit and NewTransferTestKit of workflow TransferService clash with the names of entity Transfer (bad.proto:5:1); rename service Transfer or service TransferService`,
		},
		{
			name: "workflow method named like the gRPC server base",
			proto: `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [{name: "withdraw"}]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
  rpc UnimplementedTransferServer(StartRequest) returns (State);
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
			want: `bad.proto:12:3: generated method transferServer.UnimplementedTransferServer (the gRPC handler of method Transfer.UnimplementedTransferServer) clashes with the field UnimplementedTransferServer that transferServer embeds; rename method Transfer.UnimplementedTransferServer`,
		},
		{
			name: "REST route of a workflow method that does not bind the key",
			proto: `import "google/api/annotations.proto";
service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: {name: "withdraw"}
  };
  rpc Start(StartRequest) returns (State) {
    option (statefun.v1.method).start = true;
    option (google.api.http) = { post: "/v1/transfers" body: "amount" };
  }
}
message StartRequest {
  string id = 1 [(statefun.v1.field).key = true];
  int64 amount = 2;
}
message State {}`,
			want: `bad.proto:14:34: REST route POST /v1/transfers of Transfer.Start does not bind the workflow key id; put {id} in the path or send it in the body`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sources := map[string]string{"bad.proto": header + tt.proto}
			for k, v := range tt.extra {
				sources[k] = v
			}
			res := run(t, compileRequest(t, sources, "bad.proto"))
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

// TestErrorsAllReported checks that one run reports every mistake, in file
// order, so that a user does not fix them one run at a time.
func TestErrorsAllReported(t *testing.T) {
	t.Parallel()
	src := header + `service Cart {
  option (statefun.v1.entity) = { state: "Missing" key_value: {} };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1; }
message State {}`
	res := run(t, compileRequest(t, map[string]string{"bad.proto": src}, "bad.proto"))
	lines := strings.Split(res.GetError(), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 errors (type, state, key), got %d:\n%s", len(lines), res.GetError())
	}
	for i, prefix := range []string{"bad.proto:6:3: entity Cart has no type", "bad.proto:6:35: state message \"Missing\"", "bad.proto:7:3: request GetRequest"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
}

// TestRoutesThatCarryTheKey: each way a REST route may bind the entity key
// passes: a path variable, the whole request as the body, the key's
// top-level field as the body, and a path variable inside a nested key.
func TestRoutesThatCarryTheKey(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"path":                  `get: "/v1/seats/{flight}/{seat}"`,
		"path with a segment":   `get: "/v1/{flight=flights/*}/seats/{seat}"`,
		"whole body":            `post: "/v1/seats:reserve" body: "*"`,
		"path and whole body":   `post: "/v1/flights/{flight}/seats" body: "*"`,
		"key field as the body": `post: "/v1/flights/{flight}/seats" body: "seat"`,
		"custom verb":           `custom: { kind: "HEAD" path: "/v1/seats/{flight}/{seat}" }`,
		"additional binding":    `get: "/v1/seats/{flight}/{seat}" additional_bindings { post: "/v1/seats:get" body: "*" }`,
	}
	for name, route := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := header + `import "google/api/annotations.proto";
service Seat {
  option (statefun.v1.entity) = { type: "seat" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State) {
    option (google.api.http) = { ` + route + ` };
  }
}
message GetRequest {
  string flight = 1 [(statefun.v1.field).key = true];
  string seat = 2 [(statefun.v1.field).key = true];
}
message State {}`
			if res := run(t, compileOK(t, src)); res.Error != nil {
				t.Errorf("route %s: %s", route, res.GetError())
			}
		})
	}
	t.Run("nested key", func(t *testing.T) {
		t.Parallel()
		for _, route := range []string{`get: "/v1/devices/{ref.serial}"`, `post: "/v1/devices" body: "ref"`} {
			src := header + `import "google/api/annotations.proto";
service Device {
  option (statefun.v1.entity) = { type: "device" state: "State" key_value: {} };
  rpc Get(GetRequest) returns (State) {
    option (google.api.http) = { ` + route + ` };
  }
}
message Ref { string serial = 1 [(statefun.v1.field).key = true]; }
message GetRequest { Ref ref = 1 [(statefun.v1.field).key = true]; }
message State {}`
			if res := run(t, compileOK(t, src)); res.Error != nil {
				t.Errorf("route %s: %s", route, res.GetError())
			}
		}
	})
}

// compileOK compiles src as ok.proto for a run that must succeed: without
// the module= parameter, which its go_package is not under.
func compileOK(t *testing.T, src string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	req := compileRequest(t, map[string]string{"ok.proto": src}, "ok.proto")
	req.Parameter = nil
	return req
}

// An event may be listed by an entity in another file of the request; a
// file of events generated without any entity of its Go package cannot be
// judged, so it passes.
func TestEventsListedInAnotherFile(t *testing.T) {
	t.Parallel()
	sources := map[string]string{
		"events.proto": header + `message Added { option (statefun.v1.event) = {}; }
message Removed { option (statefun.v1.event) = {}; }`,
		"cart.proto": header + `import "events.proto";
service Cart {
  option (statefun.v1.entity) = { type: "cart" state: "State" event_sourced: { events: ["Added", "Removed"] } };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`,
	}
	for _, files := range [][]string{{"events.proto", "cart.proto"}, {"events.proto"}, {"cart.proto"}} {
		req := compileRequest(t, sources, files...)
		req.Parameter = nil // the files are not under the default module=
		if res := run(t, req); res.Error != nil {
			t.Errorf("generate %v: %s", files, res.GetError())
		}
	}
}

// TestEventPositionAsBufRecordsIt: buf records a list literal inside an
// option once, under its first element's index and spanning the whole
// `events: [...]` entry, and nothing for the other elements. A mistake in
// any element is reported at that entry, not at the option statement.
func TestEventPositionAsBufRecordsIt(t *testing.T) {
	t.Parallel()
	src := header + `service Cart {
  option (statefun.v1.entity) = {
    type: "cart"
    state: "State"
    event_sourced: {
      events: ["Added",
               "Removd"]
    }
  };
  rpc Get(GetRequest) returns (State);
}
message GetRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}
message Added {}`
	req := compileRequest(t, map[string]string{"bad.proto": src}, "bad.proto")
	eventSourced := []int32{6, 0, serviceOptionsField, statefunExtension, entityEventSourcedField} // service[0].options.(entity).event_sourced
	for _, f := range req.ProtoFile {
		if f.GetName() != "bad.proto" {
			continue
		}
		var kept []*descriptorpb.SourceCodeInfo_Location
		for _, loc := range f.SourceCodeInfo.Location {
			if !slices.Equal(loc.Path[:min(len(loc.Path), len(eventSourced))], eventSourced) {
				kept = append(kept, loc)
			}
		}
		// Lines and columns are 0-based: events: starts at 11:7.
		kept = append(kept, &descriptorpb.SourceCodeInfo_Location{
			Path: append(slices.Clone(eventSourced), eventSourcedEventsField, 0),
			Span: []int32{10, 6, 11, 24},
		})
		f.SourceCodeInfo.Location = kept
	}
	want := `bad.proto:11:7: event message "Removd" of entity Cart not found; define it in package acme.v1 or give its fully qualified name`
	if got := run(t, req).GetError(); got != want {
		t.Errorf("error:\n got: %s\nwant: %s", got, want)
	}
}

// TestStepPositionAsBufRecordsIt: buf records the steps of a workflow
// written as a list literal (steps: [{...}, {...}]) once, under the first
// step's index and spanning the whole entry, and nothing inside it. A
// mistake in any step is reported at that entry; written one entry per
// step, each step has a location of its own.
func TestStepPositionAsBufRecordsIt(t *testing.T) {
	t.Parallel()
	src := header + `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "State"
    steps: [
      {name: "withdraw"},
      {name: "Deposit"}
    ]
  };
  rpc Start(StartRequest) returns (State) { option (statefun.v1.method).start = true; }
}
message StartRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State {}`
	req := compileRequest(t, map[string]string{"bad.proto": src}, "bad.proto")
	steps := []int32{6, 0, serviceOptionsField, workflowExtension, workflowStepsField} // service[0].options.(workflow).steps
	for _, f := range req.ProtoFile {
		if f.GetName() != "bad.proto" {
			continue
		}
		var kept []*descriptorpb.SourceCodeInfo_Location
		for _, loc := range f.SourceCodeInfo.Location {
			if !slices.Equal(loc.Path[:min(len(loc.Path), len(steps))], steps) {
				kept = append(kept, loc)
			}
		}
		// Lines and columns are 0-based: steps: starts at 9:5.
		kept = append(kept, &descriptorpb.SourceCodeInfo_Location{
			Path: append(slices.Clone(steps), 0),
			Span: []int32{8, 4, 11, 5},
		})
		f.SourceCodeInfo.Location = kept
	}
	want := `bad.proto:9:5: step name "Deposit" of workflow Transfer is not valid; use lowercase letters, digits and '_', starting with a letter, at most 64 characters (for example "deposit")`
	if got := run(t, req).GetError(); got != want {
		t.Errorf("error:\n got: %s\nwant: %s", got, want)
	}
}
