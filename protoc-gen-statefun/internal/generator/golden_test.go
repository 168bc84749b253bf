package generator

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	// The golden packages are real Go packages: importing them makes this
	// test fail to build when the generated code does not compile.
	_ "github.com/statefun-go/statefun/testdata/access"
	_ "github.com/statefun-go/statefun/testdata/compositekey"
	_ "github.com/statefun-go/statefun/testdata/consumer"
	_ "github.com/statefun-go/statefun/testdata/eventing"
	_ "github.com/statefun-go/statefun/testdata/eventing/warehouse"
	_ "github.com/statefun-go/statefun/testdata/eventsourced"
	_ "github.com/statefun-go/statefun/testdata/keyvalue"
	_ "github.com/statefun-go/statefun/testdata/multientity"
	_ "github.com/statefun-go/statefun/testdata/multipackage/common"
	_ "github.com/statefun-go/statefun/testdata/multipackage/orders"
	_ "github.com/statefun-go/statefun/testdata/nestedkey"
	_ "github.com/statefun-go/statefun/testdata/view"
	_ "github.com/statefun-go/statefun/testdata/wellknown"
	_ "github.com/statefun-go/statefun/testdata/workflow"
)

var update = flag.Bool("update", false, "rewrite the golden .statefun.go files under testdata")

// TestGolden generates every case under testdata and compares the output
// with the committed .statefun.go files.
func TestGolden(t *testing.T) {
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
			sort.Strings(files)
			res := run(t, compileRequest(t, nil, files...))
			if res.Error != nil {
				t.Fatalf("generator error: %s", res.GetError())
			}
			got := map[string]string{}
			for _, f := range res.File {
				got[f.GetName()] = f.GetContent()
			}
			if *update {
				for name, content := range got {
					if err := os.WriteFile(filepath.Join(repoRoot, name), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := map[string]string{}
			err = filepath.WalkDir(filepath.Join(root, c.Name()), func(path string, d fs.DirEntry, err error) error {
				if err == nil && strings.HasSuffix(path, ".statefun.go") {
					rel, _ := filepath.Rel(repoRoot, path)
					want[filepath.ToSlash(rel)] = readFile(t, path)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 {
				t.Fatalf("no golden files in testdata/%s; run go test -update", c.Name())
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("generated code differs from testdata (-want +got); run go test ./protoc-gen-statefun/... -update if the change is intended:\n%s", diff)
			}
		})
	}
}
