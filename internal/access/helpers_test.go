package access

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// bankProto is the request messages the tests bind fields of.
const bankProto = `syntax = "proto3";
package bank.v1;
import "statefun/v1/annotations.proto";

enum Currency { CURRENCY_UNSPECIFIED = 0; }
message Key {
  string user_id = 1;
  int64 branch = 2;
}
message WithdrawRequest {
  Key key = 1;
  string account_id = 2;
  int64 amount = 3;
  uint64 big = 4;
  bool flag = 5;
  repeated string tags = 6;
  map<string, string> labels = 7;
  bytes blob = 8;
  double ratio = 9;
  Currency currency = 10;
  sint32 small = 11;
  fixed64 fixed = 12;
  oneof by { string name = 13; }
}
message Empty {}
`

// compileFiles compiles proto sources (path to content) as a plugin or the
// runtime would see them: options decoded with the statefun extensions.
func compileFiles(t testing.TB, sources map[string]string) *registry {
	t.Helper()
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(sources)},
			&protocompile.SourceResolver{ImportPaths: []string{filepath.Join("..", "..", "annotations")}},
		}),
	}
	var names []string
	for name := range sources {
		names = append(names, name)
	}
	compiled, err := compiler.Compile(context.Background(), names...)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range compiled {
		add(f)
	}
	// Through the wire format, so that options are decoded with the
	// statefun extensions linked into this binary.
	wire, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	set = &descriptorpb.FileDescriptorSet{}
	if err := proto.Unmarshal(wire, set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatal(err)
	}
	return &registry{files: files}
}

type registry struct {
	files interface {
		FindFileByPath(string) (protoreflect.FileDescriptor, error)
		FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
	}
}

func (r *registry) message(t testing.TB, name string) protoreflect.MessageDescriptor {
	t.Helper()
	d, err := r.files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MessageDescriptor)
}

func (r *registry) file(t testing.TB, path string) protoreflect.FileDescriptor {
	t.Helper()
	fd, err := r.files.FindFileByPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// withdrawRequest is bank.v1.WithdrawRequest, compiled once per test.
func withdrawRequest(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	return compileFiles(t, map[string]string{"bank.proto": bankProto}).message(t, "bank.v1.WithdrawRequest")
}

// access parses an Access from its text form, as written in a proto option.
func access(t testing.TB, text string) *statefunv1.Access {
	t.Helper()
	a := &statefunv1.Access{}
	if err := prototext.Unmarshal([]byte(text), a); err != nil {
		t.Fatalf("access %q: %v", text, err)
	}
	return a
}

// request builds a message of md from field values by dotted path.
func request(t testing.TB, md protoreflect.MessageDescriptor, values map[string]any) protoreflect.Message {
	t.Helper()
	m := dynamicpb.NewMessage(md)
	for path, v := range values {
		target := protoreflect.Message(m)
		fields, problem := resolveField(md, path)
		if problem != "" {
			t.Fatalf("request field %s: %s", path, problem)
		}
		for _, fd := range fields[:len(fields)-1] {
			target = target.Mutable(fd).Message()
		}
		target.Set(fields[len(fields)-1], protoreflect.ValueOf(v))
	}
	return m
}

// tokenCaller is a caller with a token carrying claims.
func tokenCaller(claims map[string]any) Caller {
	return Caller{Kind: Token, Issuer: "https://issuer.example", Audience: []string{"bank"}, Claim: func(path string) (any, bool) {
		v, ok := claims[path]
		return v, ok
	}}
}
