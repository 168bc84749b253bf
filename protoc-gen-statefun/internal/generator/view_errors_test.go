package generator

import "testing"

// viewSource is an event-sourced entity for the views of TestViewErrors
// to read; appended to header, it ends on line 10, so a view written
// after it starts on line 11.
const viewSource = `service Order {
  option (statefun.v1.entity) = { type: "order" state: "State" event_sourced: { events: ["Placed"] } };
  rpc Place(PlaceRequest) returns (State);
}
message PlaceRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State { string customer_id = 1; int64 total = 2; repeated string tags = 3; }
`

// TestViewErrors checks that each misuse of the view options is reported
// with the file, line and column of the mistake and says how to fix it.
func TestViewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		proto string // appended to header and viewSource; line 11 is its first line
		extra map[string]string
		want  string
	}{
		{
			name: "view of an imported entity whose state does not resolve",
			proto: `import "other.proto";
service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Other" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			extra: map[string]string{"other.proto": header + `service Other {
  option (statefun.v1.entity) = { type: "other" state: "Missing" event_sourced: { events: ["Done"] } };
  rpc Do(DoRequest) returns (DoRequest);
}
message DoRequest { string id = 1 [(statefun.v1.field).key = true]; }
message Done {}`},
			want: `bad.proto:13:53: source acme.v1.Other of view ByCustomer has no state message that resolves (other.proto:5:1); fix the state option of the entity`,
		},
		{
			name: "view without a name",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:12:3: view ByCustomer has no name; set (statefun.v1.view).name to a stable name its rows are stored under, for example name: "by-customer"`,
		},
		{
			name: "invalid view name",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "By Customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:12:33: view name "By Customer" of ByCustomer is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example "by-customer")`,
		},
		{
			name: "view without a source",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:12:3: view ByCustomer has no source; set (statefun.v1.view).source to the entity service whose states or events build its rows`,
		},
		{
			name: "view source not found",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Ordr" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:12:53: source "Ordr" of view ByCustomer not found; name an entity service of package acme.v1, import the file that declares it, or give its fully qualified name`,
		},
		{
			name: "view of a workflow",
			proto: `service Transfer {
  option (statefun.v1.workflow) = { type: "transfer" state: "State" steps: {name: "withdraw"} };
  rpc Start(PlaceRequest) returns (State) { option (statefun.v1.method).start = true; }
}
service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Transfer" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:16:53: source acme.v1.Transfer of view ByCustomer is a workflow, which has no events to build rows from; name an entity`,
		},
		{
			name: "view of a service that is not an entity",
			proto: `service Plain {
  rpc Get(Req) returns (Res);
}
service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Plain" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:15:53: source acme.v1.Plain of view ByCustomer is not an entity; name a service with option (statefun.v1.entity)`,
		},
		{
			name: "view without a row",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:12:3: view ByCustomer has no row; set (statefun.v1.view).row to its row message: the source's state message, or a message of its own that an updater fills from the source's events`,
		},
		{
			name: "view row not found",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "Stat" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:12:69: row message "Stat" of view ByCustomer not found; define it in package acme.v1, import the file that defines it, or give its fully qualified name`,
		},
		{
			name: "view without methods",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
}`,
			want: `bad.proto:11:1: view ByCustomer has no methods; add an RPC per query, such as rpc GetByCustomer(Request) returns (Response) { option (statefun.v1.method).query = "SELECT * FROM by_customer WHERE customer_id = :customer_id"; }`,
		},
		{
			name: "view method without a query",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res);
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:13:3: method ByCustomer.Get of view ByCustomer has no query; set option (statefun.v1.method).query = "SELECT * FROM by_customer WHERE ..." on it`,
		},
		{
			name: "read_only on a view method",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) {
    option (statefun.v1.method) = { query: "SELECT * FROM by_customer" read_only: true };
  }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:14:72: method ByCustomer.Get sets (statefun.v1.method).read_only, which applies to entity and workflow methods only; remove it: a view's methods only read`,
		},
		{
			name: "start on a view method",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) {
    option (statefun.v1.method) = { query: "SELECT * FROM by_customer" start: true };
  }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:14:72: method ByCustomer.Get sets (statefun.v1.method).start, which applies to workflow methods only; remove it`,
		},
		{
			name: "client-streaming view method",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(stream Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:13:3: method ByCustomer.Get streams its requests; a view's method takes one request and returns a page of rows (unary) or streams the rows (server streaming), so remove the stream before its request type`,
		},
		{
			name: "streaming query that does not send rows",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (stream Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:13:3: method ByCustomer.Get streams acme.v1.Res; a streaming query sends the view's rows, so make it return stream acme.v1.State`,
		},
		{
			name: "unary query without a page of rows",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (State) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}`,
			want: `bad.proto:13:3: method ByCustomer.Get returns one State, but a unary query returns a page of rows; return a message with repeated State rows = 1 (and, optionally, string next_page_token = 2), or make it return stream State`,
		},
		{
			name: "unary query response with another field",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res {
  repeated State rows = 1;
  int32 count = 2;
}`,
			want: `bad.proto:18:3: field count of Res, the response of view query ByCustomer.Get, is neither the page of rows (rows) nor string next_page_token; remove it: a query's response holds only those`,
		},
		{
			name: "unary query response without a repeated row field",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated string customer_ids = 1; }`,
			want: `bad.proto:13:3: response acme.v1.Res of view query ByCustomer.Get has no repeated State field; add repeated State rows = 1 to it for the page of rows, or make the method return stream State`,
		},
		{
			name: "page_token that is not a string",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req { int64 page_token = 1; }
message Res { repeated State rows = 1; string next_page_token = 2; }`,
			want: `bad.proto:15:15: field page_token of Req, the request of view query ByCustomer.Get, must be a plain string (not optional, not repeated): the runtime reads the page to continue from it`,
		},
		{
			name: "page_size that is not an int32",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req { string page_size = 1; }
message Res { repeated State rows = 1; }`,
			want: `bad.proto:15:15: field page_size of Req, the request of view query ByCustomer.Get, must be an int32: the runtime reads the page size from it`,
		},
		{
			name: "page_token without next_page_token",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req { string page_token = 1; }
message Res { repeated State rows = 1; }`,
			want: `bad.proto:15:15: request Req of view query ByCustomer.Get has page_token, but its response Res has no next_page_token to fill it from; add string next_page_token to Res, or remove page_token`,
		},
		{
			name: "next_page_token without page_token",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; string next_page_token = 2; }`,
			want: `bad.proto:16:40: response Res of view query ByCustomer.Get has next_page_token, but its request Req has no page_token to pass it back in; add string page_token to Req, or remove next_page_token`,
		},
		{
			name: "query on an entity method",
			proto: `service Other {
  option (statefun.v1.entity) = { type: "other" state: "State" key_value: {} };
  rpc Get(PlaceRequest) returns (State) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}`,
			want: `bad.proto:13:43: method Other.Get sets (statefun.v1.method).query, which applies to view methods only; remove it, or move the method to a service with (statefun.v1.view)`,
		},
		{
			name: "query on a plain service",
			proto: `service Plain {
  rpc Get(PlaceRequest) returns (State) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}`,
			want: `bad.proto:12:43: method Plain.Get has a query, but service Plain is not a view; add option (statefun.v1.view) to the service, or remove the query`,
		},
		{
			name: "entity and view on one service",
			proto: `service ByCustomer {
  option (statefun.v1.entity) = { type: "other" state: "State" key_value: {} };
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(PlaceRequest) returns (State);
}`,
			want: `bad.proto:13:3: service ByCustomer has both (statefun.v1.entity) and (statefun.v1.view); a service is an entity or a view, so split it in two`,
		},
		{
			name: "consumer and view on one service",
			proto: `service ByCustomer {
  option (statefun.v1.consumer) = { name: "audit" source: "Order" };
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Placed) returns (State);
}`,
			want: `bad.proto:13:3: service ByCustomer has both (statefun.v1.consumer) and (statefun.v1.view); a service is a consumer or a view, so split it in two`,
		},
		{
			name: "duplicate view names",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
service ByTotal {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:16:33: view name "by_customer" of service ByTotal is already used by service ByCustomer (bad.proto:11:1); give each view its own name`,
		},
		{
			name: "query that does not check",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer WHERE customr_id = :customer_id"; }
}
message Req { string customer_id = 1; }
message Res { repeated State rows = 1; }`,
			want: `bad.proto:13:101: query of ByCustomer.Get: unknown field "customr_id" in row message acme.v1.State; did you mean customer_id? (fields: customer_id, total, tags)`,
		},
		{
			name: "query that does not check, in the option's message",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) {
    option (statefun.v1.method) = { query: "SELECT * FROM by_customer WHERE total > 'ten'" };
  }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:14:85: query of ByCustomer.Get: field total is an int64; compare it with an integer, such as 12, or a :parameter`,
		},
		{
			name: "query that does not check, over several lines",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) {
    option (statefun.v1.method).query =
      "SELECT * FROM by_customer"
      " ORDER BY tags";
  }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:14:5: query of ByCustomer.Get: cannot ORDER BY tags: it is a repeated field, at "tags"`,
		},
		{
			name: "query of another view",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_total"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:13:83: query of ByCustomer.Get: FROM by_total: this view is named "by_customer"; write FROM by_customer`,
		},
		{
			name: "view method named like the client's reader of every page",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
  rpc GetAll(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req { string page_token = 1; }
message Res { repeated State rows = 1; string next_page_token = 2; }`,
			want: `bad.proto:14:3: generated method ByCustomerViewClient.GetAll (the client's reader of every page of method ByCustomer.Get) clashes with the client method of method ByCustomer.GetAll; rename one of the two`,
		},
		{
			name: "view method named like the gRPC server base",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc UnimplementedByCustomerServer(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:13:3: generated method byCustomerServer.UnimplementedByCustomerServer (the gRPC handler of method ByCustomer.UnimplementedByCustomerServer) clashes with the field UnimplementedByCustomerServer that byCustomerServer embeds; rename method ByCustomer.UnimplementedByCustomerServer`,
		},
		{
			name: "message named like the view name constant",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) { option (statefun.v1.method).query = "SELECT * FROM by_customer"; }
}
message ByCustomerViewName {}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:11:1: generated Go name ByCustomerViewName (the view name constant of view ByCustomer) clashes with message acme.v1.ByCustomerViewName (bad.proto:15:1); rename message ByCustomerViewName or service ByCustomer`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := header + viewSource + tt.proto + "\nmessage Placed { option (statefun.v1.event) = {}; string customer_id = 1; }\n"
			sources := map[string]string{"bad.proto": src}
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
