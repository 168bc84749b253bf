package generator

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// repoRoot is the module root, relative to this package's directory.
const repoRoot = "../../.."

// compileRequest compiles proto files in process, as buf or protoc would,
// and returns the CodeGeneratorRequest a plugin would receive for them.
// sources maps extra in-memory files (path to content); files are also
// looked up under testdata and the annotations.
func compileRequest(t *testing.T, sources map[string]string, files ...string) *pluginpb.CodeGeneratorRequest {
	t.Helper()
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(sources)},
			&protocompile.SourceResolver{ImportPaths: []string{
				filepath.Join(repoRoot, "testdata"),
				filepath.Join(repoRoot, "annotations"),
				filepath.Join(repoRoot, "third_party", "googleapis"),
			}},
		}),
		// Extra option locations, as buf records them, so that errors point at
		// the field inside an option value, not only at the option statement.
		// (buf records a list literal's elements as one entry; see
		// positionOfElement and TestEventPositionAsBufRecordsIt.)
		SourceInfoMode: protocompile.SourceInfoStandard | protocompile.SourceInfoExtraOptionLocations,
	}
	compiled, err := compiler.Compile(context.Background(), files...)
	if err != nil {
		t.Fatalf("compile %v: %v", files, err)
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		Parameter:      proto.String("module=github.com/statefun-go/statefun"),
	}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, f := range compiled {
		add(f)
	}
	// Round-trip through the wire format, as the request reaches a real
	// plugin: options are then decoded with the statefun extensions that
	// this binary links in.
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out := new(pluginpb.CodeGeneratorRequest)
	if err := proto.Unmarshal(wire, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// testPlugin sets up the plugin for a request the way protoc-gen-statefun does.
func testPlugin(t *testing.T, req *pluginpb.CodeGeneratorRequest) *protogen.Plugin {
	t.Helper()
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatalf("protogen: %v", err)
	}
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	plugin.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	plugin.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2023
	return plugin
}

// run runs the generator on a request the way protoc-gen-statefun does.
func run(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	plugin := testPlugin(t, req)
	if _, err := Generate(plugin); err != nil {
		plugin.Error(err)
	}
	return plugin.Response()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
