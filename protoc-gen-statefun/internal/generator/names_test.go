package generator

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/pluginpb"
)

// TestDeclarationsMatchOutput checks, for every golden case, that the names
// the clash check reads are exactly the package-level names the emitters
// write. The fuzz targets check the same on every input they generate.
func TestDeclarationsMatchOutput(t *testing.T) {
	t.Parallel()
	root := filepath.Join(repoRoot, "testdata")
	cases, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			var files []string
			err := filepath.WalkDir(filepath.Join(root, c.Name()), func(path string, d fs.DirEntry, err error) error {
				if err == nil && strings.HasSuffix(path, ".proto") {
					rel, _ := filepath.Rel(root, path)
					files = append(files, filepath.ToSlash(rel))
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			req := compileRequest(t, nil, files...)
			plugin, err := protogen.Options{}.New(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Generate(plugin); err != nil {
				t.Fatal(err)
			}
			if err := checkDeclarations(plugin, plugin.Response().GetFile()); err != nil {
				t.Error(err)
			}
		})
	}
}

// checkDeclarations compares the package-level names of each generated
// file with the declarations the model lists for the entities, workflows,
// consumers, views and publishers of its proto file.
func checkDeclarations(plugin *protogen.Plugin, generated []*pluginpb.CodeGeneratorResponse_File) error {
	m, err := buildModel(plugin)
	if err != nil {
		return fmt.Errorf("the model of a request that generated code reports: %w", err)
	}
	for _, f := range plugin.Files {
		if !f.Generate {
			continue
		}
		var want []string
		for _, e := range m.entities[f] {
			for _, d := range namesOf(e).declarations(e) {
				want = append(want, d.name)
			}
		}
		for _, w := range m.workflows[f] {
			for _, d := range workflowNamesOf(w).declarations(w) {
				want = append(want, d.name)
			}
		}
		for _, c := range m.consumers[f] {
			for _, d := range consumerNamesOf(c).declarations(c) {
				want = append(want, d.name)
			}
		}
		for _, v := range m.views[f] {
			for _, d := range viewNamesOf(v).declarations(v) {
				want = append(want, d.name)
			}
		}
		for _, p := range m.publishers[f] {
			for _, d := range publisherNamesOf(p).declarations(p) {
				want = append(want, d.name)
			}
		}
		name := f.GeneratedFilenamePrefix + ".statefun.go"
		g := responseFile(generated, name)
		if g == nil {
			if len(want) > 0 {
				return fmt.Errorf("%s declares %v but was not generated", name, want)
			}
			continue
		}
		got, err := topLevelNames(name, g.GetContent())
		if err != nil {
			return err
		}
		// The testkit's declarations are in a file of their own.
		if tk := responseFile(generated, f.GeneratedFilenamePrefix+"_testkit.statefun.go"); tk != nil {
			names, err := topLevelNames(name, tk.GetContent())
			if err != nil {
				return err
			}
			got = append(got, names...)
		}
		sort.Strings(want)
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("the package-level names of %s differ from the declarations the clash check reads (-declarations +generated):\n%s", name, diff)
		}
	}
	return nil
}

// topLevelNames returns the package-level names a Go file declares, other
// than the blank identifier.
func topLevelNames(name, src string) ([]string, error) {
	file, err := parser.ParseFile(token.NewFileSet(), name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, decl := range file.Decls {
		switch decl := decl.(type) {
		case *ast.FuncDecl:
			if decl.Recv == nil {
				names = append(names, decl.Name.Name)
			}
		case *ast.GenDecl:
			for _, spec := range decl.Specs {
				switch spec := spec.(type) {
				case *ast.TypeSpec:
					names = append(names, spec.Name.Name)
				case *ast.ValueSpec:
					for _, id := range spec.Names {
						if id.Name != "_" {
							names = append(names, id.Name)
						}
					}
				}
			}
		}
	}
	return names, nil
}

// responseFile finds the file a plugin wrote as name, which the response
// names relative to the module= parameter, if any.
func responseFile(files []*pluginpb.CodeGeneratorResponse_File, name string) *pluginpb.CodeGeneratorResponse_File {
	for _, f := range files {
		if f.GetName() == name || strings.HasSuffix(name, "/"+f.GetName()) {
			return f
		}
	}
	return nil
}
