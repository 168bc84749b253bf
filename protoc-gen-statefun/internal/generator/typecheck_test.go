package generator

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"
)

// Generated code is checked the way the Go compiler would see it: the
// .statefun.go files together with what protoc-gen-go and
// protoc-gen-go-grpc (the versions pinned in go.mod, run as their own
// executables) write for the same request, type-checked with go/types
// against the export data of their imports. A name the generator declares
// twice, or that one of the other plugins declares too, fails here.

// raceEnabled is set by race_test.go; export data is then listed with
// -race, which finds it in the build cache the race-enabled test binary
// has just filled.
var raceEnabled bool

// typeCheckImports are the packages generated code may import, with their
// dependencies and the golden packages under testdata (which a ...
// pattern skips); a package outside them cannot be checked.
var typeCheckImports = []string{
	"github.com/statefun-go/statefun/runtime",
	"github.com/statefun-go/statefun/gen/...",
	"google.golang.org/grpc",
	"google.golang.org/grpc/codes",
	"google.golang.org/grpc/status",
	"google.golang.org/protobuf/proto",
	"google.golang.org/protobuf/reflect/protoreflect",
	"google.golang.org/protobuf/runtime/protoimpl",
	"google.golang.org/protobuf/types/...",
}

var toolchain struct {
	once    sync.Once
	err     error
	plugins map[string]string // protoc-gen-go and protoc-gen-go-grpc: their executables

	mu       sync.Mutex
	importer types.Importer // caches what it imported; guarded by mu
}

// setUpToolchain builds the two plugins (or finds them in the build cache)
// and lists the export data of typeCheckImports, once per process.
func setUpToolchain() error {
	toolchain.once.Do(func() {
		// go test puts the go command that runs it first in PATH.
		goCmd, err := exec.LookPath("go")
		if err != nil {
			toolchain.err = err
			return
		}
		run := func(args ...string) (string, error) {
			cmd := exec.Command(goCmd, args...)
			cmd.Dir = repoRoot
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
			}
			return string(out), nil
		}
		toolchain.plugins = map[string]string{}
		for _, tool := range []string{"protoc-gen-go", "protoc-gen-go-grpc"} {
			out, err := run("tool", "-n", tool)
			if err != nil {
				toolchain.err = err
				return
			}
			toolchain.plugins[tool] = strings.TrimSpace(out)
		}
		args := []string{"list", "-export", "-deps", "-f", "{{if .Export}}{{.ImportPath}} {{.Export}}{{end}}"}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, typeCheckImports...)
		err = filepath.WalkDir(filepath.Join(repoRoot, "testdata"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if gofiles, _ := filepath.Glob(filepath.Join(path, "*.go")); len(gofiles) > 0 {
					rel, _ := filepath.Rel(repoRoot, path)
					args = append(args, "./"+filepath.ToSlash(rel))
				}
			}
			return err
		})
		if err != nil {
			toolchain.err = err
			return
		}
		out, err := run(args...)
		if err != nil {
			toolchain.err = err
			return
		}
		exports := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if path, file, ok := strings.Cut(line, " "); ok {
				exports[path] = file
			}
		}
		toolchain.importer = importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
			file, ok := exports[path]
			if !ok {
				return nil, errUnknownImport
			}
			return os.Open(file)
		})
	})
	return toolchain.err
}

var errUnknownImport = errors.New("not among the packages the type check knows")

// runPlugin runs a plugin executable on req, as protoc does.
func runPlugin(exe string, req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(exe), err)
	}
	res := new(pluginpb.CodeGeneratorResponse)
	if err := proto.Unmarshal(out, res); err != nil {
		return nil, err
	}
	return res, nil
}

// typeCheckGenerated type-checks the Go package of each file plugin
// generates, with generated (the generator's output for the request) and
// the output of protoc-gen-go and protoc-gen-go-grpc. It returns the type
// errors of the generator's code, or skip (why the package cannot be
// checked: the other plugins refuse the request or do not compile on their
// own, or it imports a package the check does not know).
func typeCheckGenerated(req *pluginpb.CodeGeneratorRequest, plugin *protogen.Plugin, generated []*pluginpb.CodeGeneratorResponse_File) (skip string, err error) {
	if err := setUpToolchain(); err != nil {
		return "", fmt.Errorf("cannot set up the type check: %w", err)
	}
	packages := map[protogen.GoImportPath]bool{}
	for _, f := range plugin.Files {
		if f.Generate {
			packages[f.GoImportPath] = true
		}
	}
	for _, f := range plugin.Files {
		if !f.Generate && packages[f.GoImportPath] {
			return fmt.Sprintf("%s shares Go package %s with a file to generate, but has no generated code here", f.Desc.Path(), f.GoImportPath), nil
		}
	}
	if len(generated) == 0 {
		return "nothing generated", nil
	}
	// The other plugins copy comments verbatim, and refuse the code they
	// write when a fuzzed comment does not survive gofmt; without them,
	// their declarations stay the same.
	bare := proto.Clone(req).(*pluginpb.CodeGeneratorRequest)
	for _, fd := range bare.ProtoFile {
		fd.SourceCodeInfo = nil
	}
	var others []*pluginpb.CodeGeneratorResponse_File
	for _, tool := range []string{"protoc-gen-go", "protoc-gen-go-grpc"} {
		res, err := runPlugin(toolchain.plugins[tool], bare)
		if err != nil {
			return "", err
		}
		if res.Error != nil {
			return tool + " refuses the request: " + res.GetError(), nil
		}
		others = append(others, res.File...)
	}

	toolchain.mu.Lock()
	defer toolchain.mu.Unlock()
	for path := range packages {
		var own, theirs []*pluginpb.CodeGeneratorResponse_File
		for _, f := range plugin.Files {
			if f.Generate && f.GoImportPath == path {
				for _, suffix := range []string{".statefun.go", "_testkit.statefun.go"} {
					if g := responseFile(generated, f.GeneratedFilenamePrefix+suffix); g != nil {
						own = append(own, g)
					}
				}
				for _, suffix := range []string{".pb.go", "_grpc.pb.go"} {
					if g := responseFile(others, f.GeneratedFilenamePrefix+suffix); g != nil {
						theirs = append(theirs, g)
					}
				}
			}
		}
		if len(own) == 0 {
			continue
		}
		if errs := typeCheck(string(path), theirs); len(errs) > 0 {
			return fmt.Sprintf("the output of protoc-gen-go and protoc-gen-go-grpc does not compile on its own: %v", errs[0]), nil
		}
		if errs := typeCheck(string(path), append(theirs, own...)); len(errs) > 0 {
			for _, err := range errs {
				if errors.Is(err, errUnknownImport) || strings.Contains(err.Error(), errUnknownImport.Error()) {
					return "imports a package the type check does not know: " + err.Error(), nil
				}
			}
			return "", errors.Join(errs...)
		}
	}
	return "", nil
}

// typeCheck parses and type-checks files as package path and returns at
// most ten errors.
func typeCheck(path string, files []*pluginpb.CodeGeneratorResponse_File) []error {
	fset := token.NewFileSet()
	var parsed []*ast.File
	for _, f := range files {
		file, err := parser.ParseFile(fset, f.GetName(), f.GetContent(), parser.SkipObjectResolution)
		if err != nil {
			return []error{err}
		}
		parsed = append(parsed, file)
	}
	var errs []error
	conf := types.Config{
		Importer: toolchain.importer,
		Error: func(err error) {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		},
	}
	_, _ = conf.Check(path, fset, parsed, nil)
	return errs
}
