package generator

import (
	"context"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// The plugin must never panic, must report every mistake at its place in
// the user's files, and what it generates must compile next to what
// protoc-gen-go and protoc-gen-go-grpc write for the same files (see
// typecheck_test.go), whatever it is given. Two fuzz targets feed it:
// proto source text (structure-aware: mutations stay close to real
// protos, and the compiler sorts out what does not parse) and the raw
// bytes of a FileDescriptorProto (what a buggy or hostile protoc could
// send: options that no compiler would accept). Seeds are the golden
// cases under testdata and the cases of testdata/fuzz.
//
//	go test -run '^$' -fuzz '^FuzzGenerateFromSource$' -fuzztime 30s ./protoc-gen-statefun/internal/generator

const fuzzFile = "fuzz/input.proto"

func FuzzGenerateFromSource(f *testing.F) {
	for _, src := range goldenSources(f) {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		defer watchdog(src)()
		req := compileFuzzRequest(src)
		if req == nil {
			return // not a valid proto file: the compiler's business
		}
		checkGenerate(t, req, src)
	})
}

func FuzzGenerateFromDescriptor(f *testing.F) {
	for _, src := range goldenSources(f) {
		if req := compileFuzzRequest(src); req != nil {
			b, err := proto.Marshal(req.ProtoFile[len(req.ProtoFile)-1])
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer watchdog(fmt.Sprintf("%x", b))()
		fd := new(descriptorpb.FileDescriptorProto)
		if proto.Unmarshal(b, fd) != nil {
			return
		}
		deps := dependencies()
		req := &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{fd.GetName()}, Parameter: proto.String("paths=source_relative")}
		for _, name := range fd.GetDependency() {
			dep, ok := deps[name]
			if !ok {
				return
			}
			req.ProtoFile = append(req.ProtoFile, dep...)
		}
		req.ProtoFile = append(req.ProtoFile, fd)
		checkGenerate(t, roundTrip(t, req), fmt.Sprintf("%x", b))
	})
}

// checkGenerate runs the generator as protoc-gen-statefun does and fails
// on a panic, on an error line that does not start with the place it is
// about, on generated code that is not Go, on package-level names the clash
// check does not know of, and on generated code that does not type-check
// with what protoc-gen-go and protoc-gen-go-grpc write for the request.
func checkGenerate(t *testing.T, req *pluginpb.CodeGeneratorRequest, input string) {
	t.Helper()
	plugin, ok := newPlugin(req)
	if !ok {
		return // protogen refused the request: not ours to judge
	}
	var genErr error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("the generator panicked: %v\ninput:\n%s", p, input)
			}
		}()
		_, genErr = Generate(plugin)
	}()
	if genErr != nil {
		files := map[string]bool{}
		for _, fd := range req.GetProtoFile() {
			files[fd.GetName()] = true
		}
		for _, line := range strings.Split(genErr.Error(), "\n") {
			file, _, found := strings.Cut(line, ":")
			if !found || !files[file] {
				t.Fatalf("error line %q does not start with the file it is about\ninput:\n%s", line, input)
			}
			if !diagnosticLine.MatchString(line) {
				t.Fatalf("error line %q is not file.proto[:line:col]: message\ninput:\n%s", line, input)
			}
		}
		return
	}
	generated := plugin.Response().GetFile()
	for _, f := range generated {
		if _, err := parser.ParseFile(token.NewFileSet(), f.GetName(), f.GetContent(), parser.AllErrors); err != nil {
			t.Fatalf("generated %s is not valid Go: %v\ninput:\n%s", f.GetName(), err, input)
		}
	}
	if err := checkDeclarations(plugin, generated); err != nil {
		t.Fatalf("%v\ninput:\n%s", err, input)
	}
	if _, err := typeCheckGenerated(req, plugin, generated); err != nil {
		t.Fatalf("generated code does not compile: %v\ninput:\n%s", err, input)
	}
}

// watchdog crashes the fuzz worker, with every goroutine's stack, when one
// input takes longer than any should: the fuzzer has no timeout of its
// own, and a hang is a bug as much as a panic is.
func watchdog(input string) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(time.Minute):
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("one input ran for a minute\ninput:\n%s\n%s", input, buf[:runtime.Stack(buf, true)]))
		}
	}()
	return func() { close(done) }
}

var diagnosticLine = regexp.MustCompile(`^[^:\s]+\.proto(:\d+:\d+)?: \S`)

// newPlugin builds the protogen plugin; a panic in protogen itself (the
// library, not this generator) counts as a refusal.
func newPlugin(req *pluginpb.CodeGeneratorRequest) (plugin *protogen.Plugin, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, false
	}
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL | pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	plugin.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	plugin.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2023
	return plugin, true
}

// compileFuzzRequest compiles src as fuzzFile, importing from testdata and
// the annotations as the golden tests do, and returns the plugin request,
// or nil if src does not compile.
func compileFuzzRequest(src string) *pluginpb.CodeGeneratorRequest {
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
			&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(map[string]string{fuzzFile: src})},
			&protocompile.SourceResolver{ImportPaths: []string{
				filepath.Join(repoRoot, "testdata"),
				filepath.Join(repoRoot, "annotations"),
				filepath.Join(repoRoot, "third_party", "googleapis"),
			}},
		}),
		SourceInfoMode: protocompile.SourceInfoStandard | protocompile.SourceInfoExtraOptionLocations,
	}
	compiled, err := compiler.Compile(context.Background(), fuzzFile)
	if err != nil {
		return nil
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{fuzzFile}, Parameter: proto.String("paths=source_relative")}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := 0; i < fd.Imports().Len(); i++ {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	add(compiled[0])
	out := new(pluginpb.CodeGeneratorRequest)
	wire, err := proto.Marshal(req)
	if err != nil || proto.Unmarshal(wire, out) != nil {
		return nil
	}
	return out
}

// roundTrip sends req through the wire format, as protoc does: options are
// then decoded with the statefun extensions this binary links in.
func roundTrip(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorRequest {
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Skip("request does not encode")
	}
	out := new(pluginpb.CodeGeneratorRequest)
	if err := proto.Unmarshal(wire, out); err != nil {
		t.Skip("request does not decode")
	}
	return out
}

var (
	depsOnce sync.Once
	deps     map[string][]*descriptorpb.FileDescriptorProto
)

// dependencies maps every file a golden case may import to that file and
// its own imports, in dependency order, for requests built from fuzzed
// descriptors.
func dependencies() map[string][]*descriptorpb.FileDescriptorProto {
	depsOnce.Do(func() {
		deps = map[string][]*descriptorpb.FileDescriptorProto{}
		// Every golden file and the well-known types, imported at once.
		var src strings.Builder
		src.WriteString("syntax = \"proto3\";\noption go_package = \"example.com/deps;deps\";\n")
		for _, name := range []string{"any", "duration", "empty", "struct", "timestamp", "wrappers"} {
			fmt.Fprintf(&src, "import \"google/protobuf/%s.proto\";\n", name)
		}
		root := filepath.Join(repoRoot, "testdata")
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".proto") {
				rel, _ := filepath.Rel(root, path)
				fmt.Fprintf(&src, "import %q;\n", filepath.ToSlash(rel))
			}
			return err
		})
		req := compileFuzzRequest(src.String())
		if req == nil {
			panic("the dependencies of the fuzz targets do not compile")
		}
		byName := map[string]*descriptorpb.FileDescriptorProto{}
		for _, fd := range req.ProtoFile {
			byName[fd.GetName()] = fd
		}
		var closure func(name string, seen map[string]bool, out *[]*descriptorpb.FileDescriptorProto)
		closure = func(name string, seen map[string]bool, out *[]*descriptorpb.FileDescriptorProto) {
			if seen[name] {
				return
			}
			seen[name] = true
			for _, d := range byName[name].GetDependency() {
				closure(d, seen, out)
			}
			*out = append(*out, byName[name])
		}
		for name := range byName {
			if name == fuzzFile {
				continue
			}
			var files []*descriptorpb.FileDescriptorProto
			closure(name, map[string]bool{}, &files)
			deps[name] = files
		}
	})
	return deps
}

// goldenSources returns the text of every .proto file under testdata.
func goldenSources(f *testing.F) []string {
	f.Helper()
	var srcs []string
	err := filepath.WalkDir(filepath.Join(repoRoot, "testdata"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".proto") {
			return err
		}
		b, err := os.ReadFile(path)
		srcs = append(srcs, string(b))
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	return srcs
}
