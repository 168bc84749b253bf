package viewquery

import (
	"context"
	"sync"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// shopProto has a field of every kind a query can meet, and a few it
// must refuse (uint64, fixed64, maps).
const shopProto = `
syntax = "proto3";
package shop.v1;

import "google/protobuf/duration.proto";
import "google/protobuf/timestamp.proto";

enum Status {
  STATUS_UNSPECIFIED = 0;
  STATUS_OPEN = 1;
  STATUS_CLOSED = 2;
}

enum Color {
  COLOR_UNSPECIFIED = 0;
  COLOR_RED = 1;
}

message Geo { double lat = 1; }

message Address {
  string city = 1;
  string zip = 2;
  Geo geo = 3;
}

message Item {
  string sku = 1;
  int32 quantity = 2;
  repeated string tags = 3;
}

message Empty {}

message CartRow {
  string customer_id = 1;
  Status status = 2;
  int32 quantity = 3;
  int64 total_cents = 4;
  uint32 lines = 5;
  uint64 big = 6;
  fixed64 fixed = 7;
  float weight = 8;
  double price = 9;
  bool gift = 10;
  bytes digest = 11;
  google.protobuf.Timestamp created_at = 12;
  google.protobuf.Duration ttl = 13;
  Address address = 14;
  repeated Item items = 15;
  repeated string labels = 16;
  map<string, string> attrs = 17;
  sint64 delta = 18;
  repeated google.protobuf.Timestamp seen_at = 19;
  string order = 20;
  bool not = 21;
  repeated Status past_statuses = 22;
  Empty nothing = 23;
  fixed32 checksum = 24;
}

message Filter {
  string city = 1;
  Status status = 2;
  repeated string zips = 3;
}

message ByCustomerRequest {
  string customer_id = 1;
  int32 page_size = 2;
  Status status = 3;
  Color color = 4;
  int64 min_total = 5;
  double min_price = 6;
  float min_weight = 7;
  bool gift = 8;
  bytes digest = 9;
  google.protobuf.Timestamp since = 10;
  google.protobuf.Duration max_ttl = 11;
  Filter filter = 12;
  repeated string ids = 13;
  uint64 big = 14;
  string page_token = 15;
  uint32 count = 16;
  map<string, string> tags = 17;
}

message OtherRequest { string customer_id = 1; }
`

var (
	shopOnce  sync.Once
	shopFile  protoreflect.FileDescriptor
	shopError error
)

// shop compiles shopProto once per test binary: the fuzz target needs
// the descriptors on every input.
func shop(t testing.TB) protoreflect.FileDescriptor {
	t.Helper()
	shopOnce.Do(func() {
		compiler := protocompile.Compiler{
			Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
				Accessor: protocompile.SourceAccessorFromMap(map[string]string{"shop.proto": shopProto}),
			}),
		}
		files, err := compiler.Compile(context.Background(), "shop.proto")
		if err != nil {
			shopError = err
			return
		}
		shopFile = files[0]
	})
	if shopError != nil {
		t.Fatalf("compile shop.proto: %v", shopError)
	}
	return shopFile
}

func message(t testing.TB, name string) protoreflect.MessageDescriptor {
	t.Helper()
	md := shop(t).Messages().ByName(protoreflect.Name(name))
	if md == nil {
		t.Fatalf("no message %s in shop.proto", name)
	}
	return md
}

func rowDesc(t testing.TB) protoreflect.MessageDescriptor { return message(t, "CartRow") }
func reqDesc(t testing.TB) protoreflect.MessageDescriptor { return message(t, "ByCustomerRequest") }

// newMessage returns a message of md holding the fields of text, in the
// protobuf text format.
func newMessage(t testing.TB, md protoreflect.MessageDescriptor, text string) protoreflect.Message {
	t.Helper()
	m := dynamicpb.NewMessage(md)
	if err := prototext.Unmarshal([]byte(text), m); err != nil {
		t.Fatalf("%s from %q: %v", md.FullName(), text, err)
	}
	return m
}
