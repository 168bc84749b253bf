package initproject

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// syncBuffer collects a child process's output written from two pipes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func checkout(t *testing.T) source {
	t.Helper()
	dir, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return source{dir: dir}
}

func TestInitNeverOverwrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mine := []byte("package main // mine\n")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), mine, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p := project{Dir: dir, Module: "example.com/counter", Name: "counter", statefun: checkout(t)}
	if err := p.write(&out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mine) {
		t.Errorf("init overwrote main.go:\n%s", got)
	}
	if !strings.Contains(out.String(), "exists, left alone: main.go") {
		t.Errorf("init did not say it left main.go alone:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "counter.go")); err != nil {
		t.Errorf("init skipped a file that did not exist: %v", err)
	}
}

func TestInitGoModPinsStatefunsVersions(t *testing.T) {
	t.Parallel()
	src := checkout(t)
	statefunMod, err := os.ReadFile(filepath.Join(src.dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	p := project{Module: "example.com/counter", Name: "counter", statefun: src}
	got, err := p.goMod(statefunMod)
	if err != nil {
		t.Fatal(err)
	}
	protobuf, err := requireVersion(statefunMod, "google.golang.org/protobuf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"module example.com/counter\n",
		"\tgithub.com/statefun-go/statefun v0.0.0\n",
		"\tgoogle.golang.org/protobuf " + protobuf + "\n",
		"\tgoogle.golang.org/protobuf/cmd/protoc-gen-go\n",
		"replace github.com/statefun-go/statefun => " + src.dir + "\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, got)
		}
	}

	p.statefun.version = "v1.2.3"
	got, err = p.goMod(statefunMod)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "replace") || !strings.Contains(string(got), "github.com/statefun-go/statefun v1.2.3\n") {
		t.Errorf("a published statefun must be required plainly, without replace:\n%s", got)
	}
}

func TestInitToolsModKeepsBufOutOfTheService(t *testing.T) {
	t.Parallel()
	src := checkout(t)
	toolsMod, err := os.ReadFile(filepath.Join(src.dir, "tools/go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	p := project{Module: "example.com/counter", Name: "counter", statefun: src}
	got, err := p.toolsGoMod(toolsMod)
	if err != nil {
		t.Fatal(err)
	}
	if modulePath(got) != "example.com/counter/tools" {
		t.Errorf("tools module is %q, want example.com/counter/tools", modulePath(got))
	}
	if !strings.Contains(string(got), "\tgithub.com/bufbuild/buf/cmd/buf\n") || strings.Contains(string(got), "golangci-lint/v2/cmd/golangci-lint\n)") {
		t.Errorf("tools/go.mod must pin buf and not statefun's linter:\n%s", got)
	}
	p.statefun.dir = t.TempDir()
	files, err := project{Module: "example.com/counter", statefun: src}.files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.name == "go.mod" && strings.Contains(string(f.content), "bufbuild") {
			t.Errorf("the service's go.mod pins buf:\n%s", f.content)
		}
	}
}

func TestInitRefusesBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no directory", nil, 2, "name the directory for the new project"},
		{"two directories", []string{"a", "b"}, 2, "name the directory for the new project"},
		{"bad module", []string{"--module", "Example.com/my project", t.TempDir()}, 2, `element "my project" is not a valid module path element`},
		{"not statefun", []string{"--statefun-dir", t.TempDir(), t.TempDir()}, 1, "name a clone of github.com/statefun-go/statefun"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr.String())
			}
		})
	}
}

func TestSanitizeModuleElem(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"counter": "counter", "My Project": "my-project", "..": "app", "a_b~c": "a_b~c"} {
		if got := sanitizeModuleElem(in); got != want {
			t.Errorf("sanitizeModuleElem(%q) = %q, want %q", in, got, want)
		}
	}
}

// The new project's third_party holds statefun's copies of google/api's
// protos, licence headers included, so that a REST route needs no
// download; its buf workspace builds with one and lints clean.
func TestInitProjectCanAddRESTRoutes(t *testing.T) {
	t.Parallel()
	src := checkout(t)
	dir := t.TempDir()
	p := project{Dir: dir, Module: "example.com/counter", Name: "counter", statefun: src}
	if err := p.write(io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"annotations.proto", "http.proto"} {
		got, err := os.ReadFile(filepath.Join(dir, "third_party/google/api", name))
		if err != nil {
			t.Fatalf("init did not write third_party/google/api/%s: %v", name, err)
		}
		want, err := os.ReadFile(filepath.Join(src.dir, "third_party/googleapis/google/api", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || !bytes.Contains(got, []byte("Licensed under the Apache License, Version 2.0")) {
			t.Errorf("third_party/google/api/%s is not statefun's copy with its licence header", name)
		}
	}
	if testing.Short() {
		t.Skip("runs buf: not in -short")
	}
	protoPath := filepath.Join(dir, "proto/counter/v1/counter.proto")
	proto, err := os.ReadFile(protoPath)
	if err != nil {
		t.Fatal(err)
	}
	withRoute := strings.NewReplacer(
		`import "statefun/v1/annotations.proto";`, `import "google/api/annotations.proto";`+"\n"+`import "statefun/v1/annotations.proto";`,
		`    option (statefun.v1.method).read_only = true;`, `    option (statefun.v1.method).read_only = true;`+"\n"+`    option (google.api.http) = {get: "/v1/counters/{counter_id}"};`,
	).Replace(string(proto))
	if withRoute == string(proto) || strings.Count(withRoute, "google.api.http") != 1 {
		t.Fatalf("the counter proto changed shape; update this test:\n%s", proto)
	}
	if err := os.WriteFile(protoPath, []byte(withRoute), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"build"}, {"lint"}, {"format", "--diff", "--exit-code", "proto"}} {
		cmd := exec.Command("go", append([]string{"tool", "-modfile=" + filepath.Join(src.dir, "tools/go.mod"), "buf"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("buf %s in the new project with a REST route: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
