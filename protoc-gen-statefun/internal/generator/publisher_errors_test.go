package generator

import (
	"strings"
	"testing"
)

// eventingSource is an event-sourced entity for the publishers and
// subscriptions of TestPublisherErrors and TestSubscriptionErrors;
// appended to header, it ends on line 12, so a proto written after it
// starts on line 13.
const eventingSource = `service Order {
  option (statefun.v1.entity) = { type: "order" state: "State" event_sourced: { events: ["Placed", "Shipped"] } };
  rpc Place(PlaceRequest) returns (State);
}
message PlaceRequest { string id = 1 [(statefun.v1.field).key = true]; }
message State { string customer_id = 1; }
message Placed { option (statefun.v1.event) = {}; string customer_id = 1; }
message Shipped { option (statefun.v1.event) = {}; }
`

// errorCase is a proto appended to header and eventingSource, and the
// one error it must be reported with.
type errorCase struct {
	name  string
	proto string // line 13 is its first line
	extra map[string]string
	want  string
}

// runErrorCases checks that each case fails with exactly its error, and
// generates nothing.
func runErrorCases(t *testing.T, tests []errorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sources := map[string]string{"bad.proto": header + eventingSource + tt.proto}
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

// TestPublisherErrors checks that each misuse of the publisher options is
// reported with the file, line and column of the mistake and says how to
// fix it.
func TestPublisherErrors(t *testing.T) {
	t.Parallel()
	runErrorCases(t, []errorCase{
		{
			name: "publisher without a name",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:3: publisher OrderEvents has no name; set (statefun.v1.publisher).name to a stable name its position is stored under, for example name: "order-events"`,
		},
		{
			name: "invalid publisher name",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "Order Events" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:38: publisher name "Order Events" of OrderEvents is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters (for example "order-events")`,
		},
		{
			name: "publisher name reserved for the runtime",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "statefun-orders" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:38: publisher name "statefun-orders" of OrderEvents starts with "statefun", which is reserved for the runtime's own consumers; choose another name`,
		},
		{
			name: "publisher without a source",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:3: publisher OrderEvents has no source; set (statefun.v1.publisher).source to the event-sourced entity service whose events it publishes`,
		},
		{
			name: "publisher source not found",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Ordr" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:59: source "Ordr" of publisher OrderEvents not found; name an entity service of package acme.v1, import the file that declares it, or give its fully qualified name`,
		},
		{
			name: "publisher of a service that is not an entity",
			proto: `service Plain {
  rpc Get(PlaceRequest) returns (State);
}
service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Plain" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:17:59: source acme.v1.Plain of publisher OrderEvents is not an entity; name a service with option (statefun.v1.entity) and event_sourced`,
		},
		{
			name: "publisher of a workflow",
			proto: `service Transfer {
  option (statefun.v1.workflow) = { type: "transfer" state: "State" steps: {name: "withdraw"} };
  rpc Start(PlaceRequest) returns (State) { option (statefun.v1.method).start = true; }
}
service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Transfer" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:18:59: source acme.v1.Transfer of publisher OrderEvents is a workflow, which has no events to publish; name an event-sourced entity`,
		},
		{
			name: "publisher of a key-value entity",
			proto: `service Profile {
  option (statefun.v1.entity) = { type: "profile" state: "State" key_value: {} };
  rpc Get(PlaceRequest) returns (State);
}
service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Profile" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:18:59: source acme.v1.Profile of publisher OrderEvents is a key-value entity, which has no events to publish; name an event-sourced entity, or publish from a consumer of one`,
		},
		{
			name: "published message that is not an event of the source",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" events: ["Placed", "State"] to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:94: acme.v1.State, listed in publisher OrderEvents, is not an event of entity Order; list events of Order: acme.v1.Placed, acme.v1.Shipped`,
		},
		{
			name: "published event not found",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" events: ["Plced"] to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:84: event message "Plced" of publisher OrderEvents not found; list events of entity Order: acme.v1.Placed, acme.v1.Shipped`,
		},
		{
			name: "published event listed twice",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" events: ["Placed", "Placed"] to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:14:94: event acme.v1.Placed is listed twice in publisher OrderEvents; list each event once`,
		},
		{
			name: "publisher without a destination",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" };
}`,
			want: `bad.proto:14:3: publisher OrderEvents has no destination; set to: { nats_subject: "..." } or to: { kafka_topic: "..." } in (statefun.v1.publisher)`,
		},
		{
			name: "publisher with an empty destination",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: {} };
}`,
			want: `bad.proto:14:75: publisher OrderEvents has no destination; set to: { nats_subject: "..." } or to: { kafka_topic: "..." } in (statefun.v1.publisher)`,
		},
		{
			name: "empty NATS subject",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "" } };
}`,
			want: `bad.proto:14:81: NATS subject of publisher OrderEvents is empty; set to: { nats_subject: "..." } to the NATS subject to publish to`,
		},
		{
			name: "empty Kafka topic",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { kafka_topic: "" } };
}`,
			want: `bad.proto:14:81: Kafka topic of publisher OrderEvents is empty; set to: { kafka_topic: "..." } to the Kafka topic to publish to`,
		},
		{
			name: "NATS subject with a wildcard",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders.*" } };
}`,
			want: `bad.proto:14:81: NATS subject "orders.*" of publisher OrderEvents is not valid: it contains the wildcard '*', but a message is published to one subject; name the subject in full, such as "orders.placed"`,
		},
		{
			name: "NATS subject with the rest wildcard",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders.>" } };
}`,
			want: `bad.proto:14:81: NATS subject "orders.>" of publisher OrderEvents is not valid: it contains the wildcard '>', but a message is published to one subject; name the subject in full, such as "orders.placed"`,
		},
		{
			name: "NATS subject with a space",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders placed" } };
}`,
			want: `bad.proto:14:81: NATS subject "orders placed" of publisher OrderEvents is not valid: it contains ' '; NATS subjects have no spaces or control characters, so write tokens separated by single dots, such as "orders.placed"`,
		},
		{
			name: "NATS subject with an empty token",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders..placed" } };
}`,
			want: `bad.proto:14:81: NATS subject "orders..placed" of publisher OrderEvents is not valid: it has an empty token (a leading, trailing or doubled '.'); write tokens separated by single dots, such as "orders.placed"`,
		},
		{
			name: "Kafka topic with an illegal character",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { kafka_topic: "orders/placed" } };
}`,
			want: `bad.proto:14:81: Kafka topic "orders/placed" of publisher OrderEvents is not valid: it contains '/'; Kafka topics use only letters, digits, '.', '_' and '-', such as "orders.placed"`,
		},
		{
			name: "Kafka topic too long",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { kafka_topic: "` + strings.Repeat("o", 250) + `" } };
}`,
			want: `bad.proto:14:81: Kafka topic "` + strings.Repeat("o", 250) + `" of publisher OrderEvents is not valid: it is 250 characters long, and Kafka allows at most 249`,
		},
		{
			name: "Kafka topic named dot",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { kafka_topic: ".." } };
}`,
			want: `bad.proto:14:81: Kafka topic ".." of publisher OrderEvents is not valid: Kafka does not allow "." or ".." as a topic name; use letters, digits, '.', '_' and '-', such as "orders.placed"`,
		},
		{
			name: "publisher with methods",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
  rpc Get(PlaceRequest) returns (State);
}`,
			want: `bad.proto:15:3: publisher OrderEvents declares method Get; remove it: a publisher has no RPCs, the runtime runs it`,
		},
		{
			name: "publisher that is also an entity",
			proto: `service OrderEvents {
  option (statefun.v1.entity) = { type: "order-events" state: "State" key_value: {} };
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
  rpc Get(PlaceRequest) returns (State);
}`,
			want: `bad.proto:15:3: service OrderEvents has both (statefun.v1.entity) and (statefun.v1.publisher); a service is an entity or a publisher, so split it in two`,
		},
		{
			name: "publisher that is also a consumer",
			proto: `service OrderEvents {
  option (statefun.v1.consumer) = { name: "order-events" source: "Order" };
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:15:3: service OrderEvents has both (statefun.v1.consumer) and (statefun.v1.publisher); a service is a consumer or a publisher, so split it in two`,
		},
		{
			name: "publisher that is also a view",
			proto: `service OrderEvents {
  option (statefun.v1.view) = { name: "order-events" source: "Order" row: "State" };
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:15:3: service OrderEvents has both (statefun.v1.view) and (statefun.v1.publisher); a service is a view or a publisher, so split it in two`,
		},
		{
			name: "publisher that is also a workflow",
			proto: `service OrderEvents {
  option (statefun.v1.workflow) = { type: "transfer" state: "State" steps: {name: "withdraw"} };
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:15:3: service OrderEvents has both (statefun.v1.workflow) and (statefun.v1.publisher); a service is a workflow or a publisher, so split it in two`,
		},
		{
			name: "two publishers of one name",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}
service OrderLog {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { kafka_topic: "orders" } };
}`,
			want: `bad.proto:17:38: publisher name "order-events" of service OrderLog is already used by publisher OrderEvents (bad.proto:13:1); publishers and consumers store their positions under their names, so give each its own`,
		},
		{
			name: "publisher named like a consumer",
			proto: `import "google/protobuf/empty.proto";
service Audit {
  option (statefun.v1.consumer) = { name: "order-events" source: "Order" };
  rpc OnPlaced(Placed) returns (google.protobuf.Empty);
}
service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:19:38: publisher name "order-events" of service OrderEvents is already used by consumer Audit (bad.proto:14:1); publishers and consumers store their positions under their names, so give each its own`,
		},
		{
			name: "message named like the publisher name constant",
			proto: `service OrderEvents {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}
message OrderEventsPublisherName {}`,
			want: `bad.proto:13:1: generated Go name OrderEventsPublisherName (the publisher name constant of publisher OrderEvents) clashes with message acme.v1.OrderEventsPublisherName (bad.proto:16:1); rename message OrderEventsPublisherName or service OrderEvents`,
		},
		{
			name: "publisher constructor named like the entity's",
			proto: `service OrderService {
  option (statefun.v1.publisher) = { name: "order-events" source: "Order" to: { nats_subject: "orders" } };
}`,
			want: `bad.proto:13:1: generated Go name NewOrder (the constructor of publisher OrderService) clashes with the constructor of entity Order (bad.proto:5:1); rename service Order or service OrderService`,
		},
	})
}

// TestSubscriptionErrors checks that each misuse of
// (statefun.v1.method).subscribe is reported with the file, line and
// column of the mistake and says how to fix it.
func TestSubscriptionErrors(t *testing.T) {
	t.Parallel()
	// stock is an entity with one subscribed method, whose subscription
	// each case writes.
	stock := func(subscribe string) string {
		return `service Stock {
  option (statefun.v1.entity) = { type: "stock" state: "State" key_value: {} };
  rpc Reserve(PlaceRequest) returns (State) {
    option (statefun.v1.method).subscribe = { ` + subscribe + ` };
  }
}`
	}
	runErrorCases(t, []errorCase{
		{
			name: "subscribed method of a consumer",
			proto: `import "google/protobuf/empty.proto";
service Audit {
  option (statefun.v1.consumer) = { name: "audit" source: "Order" };
  rpc OnPlaced(Placed) returns (google.protobuf.Empty) {
    option (statefun.v1.method).subscribe = { from: { nats_subject: "orders" } };
  }
}`,
			want: `bad.proto:17:5: method Audit.OnPlaced sets (statefun.v1.method).subscribe, which applies to entity methods only; remove it: the runtime calls a consumer's methods with its source's events`,
		},
		{
			name: "subscribed method of a view",
			proto: `service ByCustomer {
  option (statefun.v1.view) = { name: "by_customer" source: "Order" row: "State" };
  rpc Get(Req) returns (Res) {
    option (statefun.v1.method) = { query: "SELECT * FROM by_customer" subscribe: { from: { nats_subject: "orders" } } };
  }
}
message Req {}
message Res { repeated State rows = 1; }`,
			want: `bad.proto:16:72: method ByCustomer.Get sets (statefun.v1.method).subscribe, which applies to entity methods only; remove it: a view's rows follow its source's events, and its methods only read`,
		},
		{
			name: "subscribed method of a workflow",
			proto: `service Transfer {
  option (statefun.v1.workflow) = { type: "transfer" state: "State" steps: {name: "withdraw"} };
  rpc Start(PlaceRequest) returns (State) {
    option (statefun.v1.method) = { start: true subscribe: { from: { nats_subject: "orders" } } };
  }
}`,
			want: `bad.proto:16:49: method Transfer.Start sets (statefun.v1.method).subscribe, which applies to entity methods only; remove it, or subscribe a method of an entity (a service with (statefun.v1.entity)) that calls the workflow`,
		},
		{
			name: "subscribed method of a plain service",
			proto: `service Plain {
  rpc Get(PlaceRequest) returns (State) {
    option (statefun.v1.method).subscribe = { from: { nats_subject: "orders" } };
  }
}`,
			want: `bad.proto:15:5: method Plain.Get subscribes to a topic, but service Plain is not an entity; add option (statefun.v1.entity) to the service, or remove the subscription`,
		},
		{
			name: "subscribed read-only method",
			proto: `service Stock {
  option (statefun.v1.entity) = { type: "stock" state: "State" key_value: {} };
  rpc Get(PlaceRequest) returns (State) {
    option (statefun.v1.method) = { read_only: true subscribe: { from: { nats_subject: "orders" } } };
  }
}`,
			want: `bad.proto:16:53: method Stock.Get is read_only, but it subscribes to a topic: each message it is called for is a change to the entity; remove read_only, or remove the subscription`,
		},
		{
			name: "subscribed streaming method",
			proto: `service Stock {
  option (statefun.v1.entity) = { type: "stock" state: "State" key_value: {} };
  rpc Watch(PlaceRequest) returns (stream State) {
    option (statefun.v1.method).subscribe = { from: { nats_subject: "orders" } };
  }
}`,
			want: `bad.proto:15:3: method Stock.Watch is streaming, but it subscribes to a topic: a subscribed method is called with one message and returns one reply; make it unary`,
		},
		{
			name:  "subscription without a topic",
			proto: stock(`group: "stock"`),
			want:  `bad.proto:16:5: the subscription of Stock.Reserve has no topic; set from: { nats_subject: "..." } or from: { kafka_topic: "..." } in (statefun.v1.method).subscribe`,
		},
		{
			name:  "subscription with an empty broker",
			proto: stock(`from: {}`),
			want:  `bad.proto:16:47: the subscription of Stock.Reserve has no topic; set from: { nats_subject: "..." } or from: { kafka_topic: "..." } in (statefun.v1.method).subscribe`,
		},
		{
			name:  "subscription to an empty NATS subject",
			proto: stock(`from: { nats_subject: "" }`),
			want:  `bad.proto:16:55: NATS subject of the subscription of Stock.Reserve is empty; set from: { nats_subject: "..." } to the NATS subject to read`,
		},
		{
			name:  "subscription to an empty Kafka topic",
			proto: stock(`from: { kafka_topic: "" }`),
			want:  `bad.proto:16:55: Kafka topic of the subscription of Stock.Reserve is empty; set from: { kafka_topic: "..." } to the Kafka topic to read`,
		},
		{
			name:  "subscription to a NATS subject with a partial wildcard",
			proto: stock(`from: { nats_subject: "orders.pl*" } dead_letter: "dead"`),
			want:  `bad.proto:16:55: NATS subject "orders.pl*" of the subscription of Stock.Reserve is not valid: token "pl*" mixes a wildcard with other characters; '*' stands for one whole token and '>' for the rest of the subject, such as "orders.*.placed" or "orders.>"`,
		},
		{
			name:  "subscription to a NATS subject with the rest wildcard in the middle",
			proto: stock(`from: { nats_subject: "orders.>.placed" } dead_letter: "dead"`),
			want:  `bad.proto:16:55: NATS subject "orders.>.placed" of the subscription of Stock.Reserve is not valid: '>' is not its last token; '>' matches the rest of the subject, so it comes last, such as "orders.>"`,
		},
		{
			name:  "subscription to a NATS subject with an empty token",
			proto: stock(`from: { nats_subject: ".orders" }`),
			want:  `bad.proto:16:55: NATS subject ".orders" of the subscription of Stock.Reserve is not valid: it has an empty token (a leading, trailing or doubled '.'); write tokens separated by single dots, such as "orders.placed"`,
		},
		{
			name:  "subscription to an invalid Kafka topic",
			proto: stock(`from: { kafka_topic: "orders placed" }`),
			want:  `bad.proto:16:55: Kafka topic "orders placed" of the subscription of Stock.Reserve is not valid: it contains ' '; Kafka topics use only letters, digits, '.', '_' and '-', such as "orders.placed"`,
		},
		{
			name:  "too many attempts",
			proto: stock(`from: { kafka_topic: "orders" } max_attempts: 1001`),
			want:  `bad.proto:16:79: max_attempts 1001 of the subscription of Stock.Reserve is over 1000; a message that fails that often will not succeed, so use at most 1000 (0 means 10), and let the rest go to the dead-letter Kafka topic`,
		},
		{
			name:  "NATS dead letter with a wildcard",
			proto: stock(`from: { nats_subject: "orders" } dead_letter: "dead.*"`),
			want:  `bad.proto:16:80: dead-letter NATS subject "dead.*" of the subscription of Stock.Reserve is not valid: it contains the wildcard '*', but a message is published to one subject; name the subject in full, such as "orders.placed"`,
		},
		{
			name:  "invalid Kafka dead letter",
			proto: stock(`from: { kafka_topic: "orders" } dead_letter: "dead letters"`),
			want:  `bad.proto:16:79: dead-letter Kafka topic "dead letters" of the subscription of Stock.Reserve is not valid: it contains ' '; Kafka topics use only letters, digits, '.', '_' and '-', such as "orders.placed"`,
		},
		{
			name:  "dead letter is the topic",
			proto: stock(`from: { kafka_topic: "orders" } dead_letter: "orders"`),
			want:  `bad.proto:16:79: dead-letter Kafka topic of the subscription of Stock.Reserve is the Kafka topic it reads, so a message it cannot handle would come back to it forever; choose another, or remove dead_letter for "orders.dead-letter"`,
		},
		{
			name:  "dead letter matched by the subject",
			proto: stock(`from: { nats_subject: "orders.>" } dead_letter: "orders.dead"`),
			want:  `bad.proto:16:82: dead-letter NATS subject "orders.dead" of the subscription of Stock.Reserve is matched by "orders.>", the subject it reads, so a message it cannot handle would come back to it; choose a subject outside "orders.>"`,
		},
		{
			name:  "wildcard subject without a dead letter",
			proto: stock(`from: { nats_subject: "orders.*.placed" }`),
			want:  `bad.proto:16:55: the subscription of Stock.Reserve reads the wildcard NATS subject "orders.*.placed", so it needs a dead-letter subject of its own: the default, "orders.*.placed.dead-letter", has wildcards too; set dead_letter to a subject without wildcards that "orders.*.placed" does not match`,
		},
		{
			name:  "Kafka topic too long for its default dead letter",
			proto: stock(`from: { kafka_topic: "` + strings.Repeat("o", 240) + `" }`),
			want:  `bad.proto:16:55: the subscription of Stock.Reserve reads Kafka topic "` + strings.Repeat("o", 240) + `", so its default dead-letter Kafka topic, "` + strings.Repeat("o", 240) + `.dead-letter", is not valid (it is 252 characters long, and Kafka allows at most 249); set dead_letter to a shorter one`,
		},
		{
			name:  "invalid NATS group",
			proto: stock(`from: { nats_subject: "orders" } group: "stock.reservations"`),
			want:  `bad.proto:16:80: group "stock.reservations" of the subscription of Stock.Reserve is not valid: it contains '.'; JetStream stores the subscription's progress under it as a durable consumer name (letters, digits, '-' and '_'), so choose one without`,
		},
		{
			name: "two methods of one entity in one group",
			proto: `service Stock {
  option (statefun.v1.entity) = { type: "stock" state: "State" key_value: {} };
  rpc Reserve(PlaceRequest) returns (State) {
    option (statefun.v1.method).subscribe = { from: { kafka_topic: "orders" } group: "stock" };
  }
  rpc Release(PlaceRequest) returns (State) {
    option (statefun.v1.method).subscribe = { from: { kafka_topic: "orders" } group: "stock" };
  }
}`,
			want: `bad.proto:19:79: methods Stock.Release and Stock.Reserve (bad.proto:15:3) both read Kafka topic "orders" in group "stock", so each message would reach only one of them; give one of them its own group`,
		},
		{
			name: "methods of two entities in one group",
			proto: `service Stock {
  option (statefun.v1.entity) = { type: "stock" state: "State" key_value: {} };
  rpc Reserve(PlaceRequest) returns (State) {
    option (statefun.v1.method).subscribe = { from: { nats_subject: "orders" } group: "shared" };
  }
}
service Billing {
  option (statefun.v1.entity) = { type: "billing" state: "State" key_value: {} };
  rpc Bill(PlaceRequest) returns (State) {
    option (statefun.v1.method).subscribe = { from: { nats_subject: "orders" } group: "shared" };
  }
}`,
			want: `bad.proto:22:80: methods Billing.Bill and Stock.Reserve (bad.proto:15:3) both read NATS subject "orders" in group "shared", so each message would reach only one of them; give one of them its own group`,
		},
		{
			name: "request without a key, not subscribed",
			proto: `service Stock {
  option (statefun.v1.entity) = { type: "stock" state: "State" key_value: {} };
  rpc Reserve(Placed) returns (State) {
    option (statefun.v1.method).subscribe = { from: { nats_subject: "orders" } };
  }
  rpc Count(Placed) returns (State);
}`,
			want: `bad.proto:18:3: request Placed of Stock.Count has no entity key; mark the field that identifies the Stock with [(statefun.v1.field).key = true]`,
		},
	})
}
