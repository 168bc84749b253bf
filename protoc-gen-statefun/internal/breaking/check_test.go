package breaking

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// header is the start of cart.proto in every case; base follows it, so its
// first line is line 4.
const header = `syntax = "proto3";
package acme.v1;
import "statefun/v1/annotations.proto";
`

// base is the old version of cart.proto unless a case gives its own.
const base = `service Cart {
  option (statefun.v1.entity) = {
    type: "cart"
    state: "State"
    event_sourced: { events: ["ItemAdded", "CheckedOut"] }
  };
}
message State {
  repeated Line lines = 1;
  Status status = 2;
  map<string, int32> counts = 3;
}
message Line { string sku = 1; int32 quantity = 2; }
enum Status {
  STATUS_UNSPECIFIED = 0;
  STATUS_OPEN = 1;
  STATUS_CLOSED = 2;
  reserved 3;
}
message ItemAdded {
  option (statefun.v1.event) = {};
  string sku = 1;
  int32 quantity = 2;
  Money price = 3;
  reserved 4;
}
message Money { int64 units = 1; }
message CheckedOut {}
message Other { int64 units = 1; }
`

// withLegacy is base with a proto2 message stored in an event.
var withLegacy = "import \"legacy.proto\";\n" + strings.Replace(base, "message CheckedOut {}", "message CheckedOut { Legacy legacy = 1; }", 1)

// edit returns base with each pair of (old, new) strings replaced once,
// and fails when an old string is not in base, so that a case cannot
// silently test nothing.
func edit(t *testing.T, replacements ...string) string {
	t.Helper()
	s := base
	for i := 0; i+1 < len(replacements); i += 2 {
		if !strings.Contains(s, replacements[i]) {
			t.Fatalf("edit: %q is not in the base proto", replacements[i])
		}
		s = strings.Replace(s, replacements[i], replacements[i+1], 1)
	}
	return s
}

// compileSources compiles in-memory files the way the command compiles a
// directory: the statefun options come from the descriptors linked in.
func compileSources(t *testing.T, sources map[string]string) *protoregistry.Files {
	t.Helper()
	files, err := compile(context.Background(),
		&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(sources)},
		slices.Sorted(maps.Keys(sources)))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return files
}

func check(t *testing.T, oldBody, newBody string, oldExtra, newExtra map[string]string) []string {
	t.Helper()
	sources := func(body string, extra map[string]string) map[string]string {
		m := map[string]string{"cart.proto": header + body}
		maps.Copy(m, extra)
		return m
	}
	var got []string
	for _, f := range Check(compileSources(t, sources(oldBody, oldExtra)), compileSources(t, sources(newBody, newExtra))) {
		got = append(got, f.String())
	}
	return got
}

// TestBreakingChanges checks that each change that breaks stored data is
// refused with the exact position and message, and is the only finding.
func TestBreakingChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		old                string // default base
		new                func(t *testing.T) string
		oldExtra, newExtra map[string]string
		want               string
	}{
		{
			name: "entity type changed",
			new:  func(t *testing.T) string { return edit(t, `type: "cart"`, `type: "basket"`) },
			want: `cart.proto:6:5: the type of entity acme.v1.Cart changed from "cart" to "basket", but its stored data is kept under "cart"; set type: "cart" again; a new type starts with no data`,
		},
		{
			name: "entity type removed",
			new:  func(t *testing.T) string { return edit(t, `type: "cart"`, ``) },
			want: `cart.proto:5:3: the type "cart" of entity acme.v1.Cart was removed, but its stored data is kept under that type; set type: "cart" again; a new type starts with no data`,
		},
		{
			name: "entity removed with its service",
			new: func(t *testing.T) string {
				return edit(t, `service Cart {
  option (statefun.v1.entity) = {
    type: "cart"
    state: "State"
    event_sourced: { events: ["ItemAdded", "CheckedOut"] }
  };
}
`, ``)
			},
			want: `cart.proto:2:1: entity "cart" (service acme.v1.Cart, cart.proto:4:1 in the old version) was removed, but its stored data stays in the store and names it; keep service acme.v1.Cart with option (statefun.v1.entity) and type: "cart" (the service may be renamed or moved if it keeps the type)`,
		},
		{
			name: "entity option removed from its service",
			new: func(t *testing.T) string {
				return edit(t, `  option (statefun.v1.entity) = {
    type: "cart"
    state: "State"
    event_sourced: { events: ["ItemAdded", "CheckedOut"] }
  };
`, ``)
			},
			want: `cart.proto:4:1: entity "cart" (service acme.v1.Cart, cart.proto:4:1 in the old version) was removed, but its stored data stays in the store and names it; keep service acme.v1.Cart with option (statefun.v1.entity) and type: "cart" (the service may be renamed or moved if it keeps the type)`,
		},
		{
			name: "entity switched from event_sourced to key_value",
			new: func(t *testing.T) string {
				return edit(t, `event_sourced: { events: ["ItemAdded", "CheckedOut"] }`, `key_value: {}`)
			},
			want: `cart.proto:8:5: entity "cart" changed from event_sourced to key_value, but its stored data is in the event_sourced form; keep it event_sourced; to change how it is stored, declare a new entity with a new type and move the data over`,
		},
		{
			name: "event type changed in the event option",
			new: func(t *testing.T) string {
				return edit(t, `option (statefun.v1.event) = {};`, `option (statefun.v1.event) = { type: "item-added" };`)
			},
			want: `cart.proto:24:34: event acme.v1.ItemAdded of entity "cart" is now stored as "item-added", but stored histories hold it as "ItemAdded"; set option (statefun.v1.event) = { type: "ItemAdded" } on ItemAdded`,
		},
		{
			name: "event type removed from the event option",
			old:  strings.Replace(base, `option (statefun.v1.event) = {};`, `option (statefun.v1.event) = { type: "item-added" };`, 1),
			new:  func(*testing.T) string { return base },
			want: `cart.proto:24:3: event acme.v1.ItemAdded of entity "cart" is now stored as "ItemAdded", but stored histories hold it as "item-added"; set option (statefun.v1.event) = { type: "item-added" } on ItemAdded`,
		},
		{
			name: "event message renamed without keeping its type",
			new: func(t *testing.T) string {
				return edit(t, `events: ["ItemAdded"`, `events: ["ItemPut"`, `message ItemAdded {`, `message ItemPut {`)
			},
			want: `cart.proto:8:5: event type "ItemAdded" of entity "cart" (message acme.v1.ItemAdded, cart.proto:23:1 in the old version) is no longer stored by any of its events, but stored histories contain it; if you renamed the message, set option (statefun.v1.event) = { type: "ItemAdded" } on it; otherwise restore ItemAdded and keep it listed`,
		},
		{
			name: "event removed from the events list",
			new:  func(t *testing.T) string { return edit(t, `["ItemAdded", "CheckedOut"]`, `["ItemAdded"]`) },
			want: `cart.proto:8:5: event "CheckedOut" (message acme.v1.CheckedOut) was removed from the events of entity "cart", but stored histories may contain it; keep CheckedOut listed in event_sourced.events and stop emitting it instead`,
		},
		{
			name: "event field int32 to int64",
			new:  func(t *testing.T) string { return edit(t, `int32 quantity = 2;`+"\n", `int64 quantity = 2;`+"\n") },
			want: `cart.proto:26:3: field quantity = 2 of acme.v1.ItemAdded changed type from int32 to int64, but event "ItemAdded" of entity "cart" holds int32 values under that number; keep it int32; for a value of another type, add a field with a new number and reserve 2`,
		},
		{
			name: "event field string to bytes",
			new:  func(t *testing.T) string { return edit(t, "  string sku = 1;\n", "  bytes sku = 1;\n") },
			want: `cart.proto:25:3: field sku = 1 of acme.v1.ItemAdded changed type from string to bytes, but event "ItemAdded" of entity "cart" holds string values under that number; keep it string; for a value of another type, add a field with a new number and reserve 1`,
		},
		{
			name: "state field singular to repeated",
			new:  func(t *testing.T) string { return edit(t, `Status status = 2;`, `repeated Status status = 2;`) },
			want: `cart.proto:13:3: field status = 2 of acme.v1.State changed type from acme.v1.Status to repeated acme.v1.Status, but the state of entity "cart" holds acme.v1.Status values under that number; keep it acme.v1.Status; for a value of another type, add a field with a new number and reserve 2`,
		},
		{
			name: "state map value type changed",
			new:  func(t *testing.T) string { return edit(t, `map<string, int32> counts`, `map<string, uint32> counts`) },
			want: `cart.proto:14:3: field counts = 3 of acme.v1.State changed type from map<string, int32> to map<string, uint32>, but the state of entity "cart" holds map<string, int32> values under that number; keep it map<string, int32>; for a value of another type, add a field with a new number and reserve 3`,
		},
		{
			name: "nested field now another existing message",
			new:  func(t *testing.T) string { return edit(t, `Money price = 3;`, `Other price = 3;`) },
			want: `cart.proto:27:3: field price = 3 of acme.v1.ItemAdded changed type from acme.v1.Money to acme.v1.Other, but event "ItemAdded" of entity "cart" holds acme.v1.Money values under that number; keep it acme.v1.Money; for a value of another type, add a field with a new number and reserve 3`,
		},
		{
			name: "field changed in a message nested in an event",
			new: func(t *testing.T) string {
				return edit(t, `message Money { int64 units = 1; }`, `message Money { sint64 units = 1; }`)
			},
			want: `cart.proto:30:17: field units = 1 of acme.v1.Money changed type from int64 to sint64, but event "ItemAdded" of entity "cart" holds int64 values under that number; keep it int64; for a value of another type, add a field with a new number and reserve 1`,
		},
		{
			name: "field changed in a renamed message nested in the state",
			new: func(t *testing.T) string {
				return edit(t, `repeated Line lines`, `repeated LineItem lines`, `message Line { string sku = 1; int32 quantity = 2; }`, `message LineItem { string sku = 1; double quantity = 2; }`)
			},
			want: `cart.proto:16:36: field quantity = 2 of acme.v1.LineItem changed type from int32 to double, but the state of entity "cart" holds int32 values under that number; keep it int32; for a value of another type, add a field with a new number and reserve 2`,
		},
		{
			name: "event field removed without reserving",
			new:  func(t *testing.T) string { return edit(t, "  int32 quantity = 2;\n", "") },
			want: `cart.proto:23:1: field quantity = 2 of acme.v1.ItemAdded (cart.proto:26:3 in the old version) was removed without reserving its number, but event "ItemAdded" of entity "cart" is stored with it; add reserved 2; and reserved "quantity"; to ItemAdded, so that no later field reads the old data as its own`,
		},
		{
			name: "field removed from a message nested in the state",
			new:  func(t *testing.T) string { return edit(t, ` int32 quantity = 2; }`, ` }`) },
			want: `cart.proto:16:1: field quantity = 2 of acme.v1.Line (cart.proto:16:32 in the old version) was removed without reserving its number, but the state of entity "cart" is stored with it; add reserved 2; and reserved "quantity"; to Line, so that no later field reads the old data as its own`,
		},
		{
			name: "reserved field number reused",
			new:  func(t *testing.T) string { return edit(t, `reserved 4;`+"\n}", `string note = 4;`+"\n}") },
			want: `cart.proto:28:3: field note = 4 of acme.v1.ItemAdded reuses number 4, which the old version reserved for a removed field, and event "ItemAdded" of entity "cart" may hold that field; give note a number never used before and keep 4 reserved`,
		},
		{
			name: "reserved field number dropped",
			new:  func(t *testing.T) string { return edit(t, `  reserved 4;`+"\n}", "}") },
			want: `cart.proto:23:1: reserved field number 4 of acme.v1.ItemAdded was dropped, but event "ItemAdded" of entity "cart" may hold the removed field under it, and a new field could take the number; keep reserved 4; in ItemAdded`,
		},
		{
			name: "two stored fields put into one oneof",
			new: func(t *testing.T) string {
				return edit(t, "  string sku = 1;\n  int32 quantity = 2;\n", "  oneof what {\n    string sku = 1;\n    int32 quantity = 2;\n  }\n")
			},
			want: `cart.proto:27:5: field quantity = 2 of acme.v1.ItemAdded joined oneof what with field sku = 1, but event "ItemAdded" of entity "cart" may hold both, and decoding keeps only one; keep sku and quantity out of one oneof; a oneof may group new fields only`,
		},
		{
			name:     "field became required",
			old:      withLegacy,
			new:      func(*testing.T) string { return withLegacy },
			oldExtra: map[string]string{"legacy.proto": "syntax = \"proto2\";\npackage acme.v1;\nmessage Legacy { optional int32 n = 1; }\n"},
			newExtra: map[string]string{"legacy.proto": "syntax = \"proto2\";\npackage acme.v1;\nmessage Legacy { required int32 n = 1; }\n"},
			want:     `legacy.proto:3:18: field n = 1 of acme.v1.Legacy became required, but event "CheckedOut" of entity "cart" may lack it, and then fails to decode; keep it optional`,
		},
		{
			name: "enum value removed without reserving",
			new:  func(t *testing.T) string { return edit(t, "  STATUS_CLOSED = 2;\n", "") },
			want: `cart.proto:17:1: value STATUS_CLOSED = 2 of enum acme.v1.Status (cart.proto:20:3 in the old version) was removed without reserving its number, but the state of entity "cart" may hold it; add reserved 2; and reserved "STATUS_CLOSED"; to Status, so that no later value takes the number`,
		},
		{
			name: "enum value number changed",
			new:  func(t *testing.T) string { return edit(t, "  STATUS_CLOSED = 2;\n", "  STATUS_CLOSED = 5;\n") },
			want: `cart.proto:20:3: value STATUS_CLOSED of enum acme.v1.Status changed number from 2 to 5, but the state of entity "cart" holds the number 2; keep STATUS_CLOSED = 2; for a new value, add a name with a new number`,
		},
		{
			name: "reserved enum number reused",
			new: func(t *testing.T) string {
				return edit(t, "  reserved 3;\n}\nmessage ItemAdded", "  STATUS_LOST = 3;\n}\nmessage ItemAdded")
			},
			want: `cart.proto:21:3: value STATUS_LOST = 3 of enum acme.v1.Status reuses number 3, which the old version reserved for a removed value, and the state of entity "cart" may hold that value; give STATUS_LOST a number never used before and keep 3 reserved`,
		},
		{
			name: "reserved enum number dropped",
			new: func(t *testing.T) string {
				return edit(t, "  reserved 3;\n}\nmessage ItemAdded", "}\nmessage ItemAdded")
			},
			want: `cart.proto:17:1: reserved number 3 of enum acme.v1.Status was dropped, but the state of entity "cart" may hold the removed value under it, and a new value could take the number; keep reserved 3; in Status`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old := tt.old
			if old == "" {
				old = base
			}
			got := check(t, old, tt.new(t), tt.oldExtra, tt.newExtra)
			if diff := cmp.Diff([]string{tt.want}, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAllowedChanges checks that changes which keep stored data readable
// pass.
func TestAllowedChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		new  func(t *testing.T) string
	}{
		{"no change", func(*testing.T) string { return base }},
		{"field added", func(t *testing.T) string { return edit(t, "  reserved 4;\n", "  reserved 4;\n  string note = 5;\n") }},
		{"event added", func(t *testing.T) string {
			return edit(t, `"CheckedOut"]`, `"CheckedOut", "Reopened"]`) + "message Reopened {}\n"
		}},
		{"entity added", func(t *testing.T) string {
			return base + `service Wishlist {
  option (statefun.v1.entity) = { type: "wishlist" state: "Other" key_value: {} };
}
`
		}},
		{"event message renamed keeping its type", func(t *testing.T) string {
			return edit(t, `events: ["ItemAdded"`, `events: ["ItemPut"`, "message ItemAdded {\n  option (statefun.v1.event) = {};",
				"message ItemPut {\n  option (statefun.v1.event) = { type: \"ItemAdded\" };")
		}},
		{"field renamed", func(t *testing.T) string { return edit(t, `int32 quantity = 2;`+"\n", `int32 count = 2;`+"\n") }},
		{"field removed with its number and name reserved", func(t *testing.T) string {
			return edit(t, "  int32 quantity = 2;\n", "", "  reserved 4;\n", "  reserved 2, 4;\n  reserved \"quantity\";\n")
		}},
		{"field removed, reserved, and a new field on a new number", func(t *testing.T) string {
			return edit(t, "  int32 quantity = 2;\n", "  int64 quantity_v2 = 5;\n", "  reserved 4;\n", "  reserved 2, 4;\n")
		}},
		{"state message renamed", func(t *testing.T) string {
			return edit(t, `state: "State"`, `state: "CartState"`, `message State {`, `message CartState {`)
		}},
		{"nested message renamed", func(t *testing.T) string {
			return edit(t, `repeated Line lines`, `repeated LineItem lines`, `message Line {`, `message LineItem {`)
		}},
		{"service renamed keeping its entity type", func(t *testing.T) string { return edit(t, `service Cart {`, `service Basket {`) }},
		{"field moved out of a oneof, new fields in a oneof", func(t *testing.T) string {
			return edit(t, "  reserved 4;\n", "  reserved 4;\n  oneof note {\n    string text = 5;\n    bytes blob = 6;\n  }\n")
		}},
		{"proto3 optional added", func(t *testing.T) string { return edit(t, "  string sku = 1;\n", "  optional string sku = 1;\n") }},
		{"enum value renamed", func(t *testing.T) string { return edit(t, `STATUS_CLOSED = 2;`, `STATUS_DONE = 2;`) }},
		{"enum value removed with its number reserved", func(t *testing.T) string {
			return edit(t, "  STATUS_CLOSED = 2;\n", "", "  reserved 3;\n}\nmessage ItemAdded", "  reserved 2 to 3;\n}\nmessage ItemAdded")
		}},
		{"unstored message changed", func(t *testing.T) string {
			return edit(t, `message Other { int64 units = 1; }`, `message Other { string units = 1; }`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := check(t, base, tt.new(t), nil, nil); len(got) != 0 {
				t.Errorf("findings for an allowed change:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// workflowBase is the old version of cart.proto in the workflow cases; its
// first line is line 4.
const workflowBase = `service Transfer {
  option (statefun.v1.workflow) = {
    type: "transfer"
    state: "TransferState"
    steps: {name: "withdraw"}
    steps: {name: "deposit"}
  };
}
message TransferState {
  string from = 1;
  int64 amount = 2;
}
`

// TestBreakingWorkflowChanges: what a workflow's stored histories name
// (its type and steps) and hold (its state) is refused to change, like an
// entity's; new steps and a renamed service are not.
func TestBreakingWorkflowChanges(t *testing.T) {
	t.Parallel()
	edit := func(t *testing.T, pairs ...string) string {
		t.Helper()
		s := workflowBase
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("edit: %q is not in the workflow base proto", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	refused := []struct {
		name string
		new  func(t *testing.T) string
		want string
	}{
		{
			name: "workflow type changed",
			new:  func(t *testing.T) string { return edit(t, `type: "transfer"`, `type: "payment"`) },
			want: `cart.proto:6:5: the type of workflow acme.v1.Transfer changed from "transfer" to "payment", but its stored histories are kept under "transfer"; set type: "transfer" again; a new type starts with no workflows`,
		},
		{
			name: "workflow removed with its service",
			new: func(t *testing.T) string {
				service, _, _ := strings.Cut(workflowBase, "message")
				return edit(t, service, "")
			},
			want: `cart.proto:2:1: workflow "transfer" (service acme.v1.Transfer, cart.proto:4:1 in the old version) was removed, but its stored histories stay in the store and name it; keep service acme.v1.Transfer with option (statefun.v1.workflow) and type: "transfer" (the service may be renamed or moved if it keeps the type)`,
		},
		{
			name: "step renamed",
			new:  func(t *testing.T) string { return edit(t, `{name: "deposit"}`, `{name: "credit"}`) },
			want: `cart.proto:8:5: step "deposit" was removed from workflow "transfer", but stored workflows may be at it, and one at a step that is gone fails when the step is due; keep step "deposit", its method ending with a GoTo to the step that replaces it, until no workflow can be at it`,
		},
		{
			name: "state field type changed",
			new:  func(t *testing.T) string { return edit(t, `int64 amount = 2;`, `string amount = 2;`) },
			want: `cart.proto:14:3: field amount = 2 of acme.v1.TransferState changed type from int64 to string, but the state of workflow "transfer" holds int64 values under that number; keep it int64; for a value of another type, add a field with a new number and reserve 2`,
		},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := check(t, workflowBase, tt.new(t), nil, nil)
			if diff := cmp.Diff([]string{tt.want}, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
	allowed := []struct {
		name string
		new  func(t *testing.T) string
	}{
		{"step added", func(t *testing.T) string {
			return edit(t, `steps: {name: "deposit"}`, `steps: {name: "deposit"}`+"\n    steps: {name: \"refund\"}")
		}},
		{"service renamed keeping its workflow type", func(t *testing.T) string { return edit(t, `service Transfer {`, `service Payment {`) }},
		{"state message renamed", func(t *testing.T) string {
			return edit(t, `state: "TransferState"`, `state: "Progress"`, `message TransferState {`, `message Progress {`)
		}},
	}
	for _, tt := range allowed {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := check(t, workflowBase, tt.new(t), nil, nil); len(got) != 0 {
				t.Errorf("findings for an allowed change:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// viewBase is the old version of cart.proto in the view cases: base, and
// a view of the cart with rows of its own. Its first line is line 33.
var viewBase = base + `service CartsBySku {
  option (statefun.v1.view) = { name: "carts_by_sku" source: "Cart" row: "CartRow" };
}
message CartRow {
  repeated string skus = 1;
  int64 total = 2;
}
`

// TestBreakingViewChanges: a view's rows are stored under its name and
// version, so its row message is held to the rules of stored messages
// until the version is raised.
func TestBreakingViewChanges(t *testing.T) {
	t.Parallel()
	edit := func(t *testing.T, pairs ...string) string {
		t.Helper()
		s := viewBase
		for i := 0; i+1 < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("edit: %q is not in the view base proto", pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		return s
	}
	refused := []struct {
		name string
		new  func(t *testing.T) string
		want string
	}{
		{
			name: "row field type changed",
			new:  func(t *testing.T) string { return edit(t, `int64 total = 2;`, `string total = 2;`) },
			want: `cart.proto:38:3: field total = 2 of acme.v1.CartRow changed type from int64 to string, but each stored row of view "carts_by_sku" (version 1) holds int64 values under that number; keep it int64; for a value of another type, add a field with a new number and reserve 2; or raise the version of view acme.v1.CartsBySku to 2, which rebuilds its rows from the source's events`,
		},
		{
			name: "row field removed with the version written out",
			new: func(t *testing.T) string {
				return edit(t, `row: "CartRow" };`, `row: "CartRow" version: 1 };`, "  int64 total = 2;\n", "")
			},
			want: `cart.proto:36:1: field total = 2 of acme.v1.CartRow (cart.proto:38:3 in the old version) was removed without reserving its number, but each stored row of view "carts_by_sku" (version 1) is stored with it; add reserved 2; and reserved "total"; to CartRow, so that no later field reads the old data as its own; or raise the version of view acme.v1.CartsBySku to 2, which rebuilds its rows from the source's events`,
		},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := check(t, viewBase, tt.new(t), nil, nil)
			if diff := cmp.Diff([]string{tt.want}, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
	allowed := []struct {
		name string
		new  func(t *testing.T) string
	}{
		{"row field type changed with the version raised", func(t *testing.T) string {
			return edit(t, `row: "CartRow" };`, `row: "CartRow" version: 2 };`, `int64 total = 2;`, `string total = 2;`)
		}},
		{"row changed under a new name", func(t *testing.T) string {
			return edit(t, `name: "carts_by_sku"`, `name: "carts_by_product"`, `int64 total = 2;`, `string total = 2;`)
		}},
		{"view removed", func(t *testing.T) string {
			service, _, _ := strings.Cut(strings.TrimPrefix(viewBase, base), "message")
			return edit(t, service, "")
		}},
		{"row field added", func(t *testing.T) string {
			return edit(t, `int64 total = 2;`, "int64 total = 2;\n  string customer = 3;")
		}},
	}
	for _, tt := range allowed {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := check(t, viewBase, tt.new(t), nil, nil); len(got) != 0 {
				t.Errorf("findings for an allowed change:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}
