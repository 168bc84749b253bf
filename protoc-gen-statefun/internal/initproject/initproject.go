// Package initproject creates a new statefun project: a Go module with one
// entity (a counter) that builds, passes its tests and serves as soon as the
// command returns. It is the "init" subcommand of protoc-gen-statefun, the
// one statefun tool a project pins anyway.
//
// The project it writes keeps two modules apart: the service's go.mod pins
// the runtime and the three code generators (so protoc-gen-go always matches
// the protobuf runtime the service links), and tools/go.mod pins buf and
// grpcurl, whose hundred dependencies then never reach the service's build.
package initproject

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"text/template"
)

// statefunModule is the module path of statefun itself.
const statefunModule = "github.com/statefun-go/statefun"

//go:embed all:template
var templates embed.FS

// Main runs "protoc-gen-statefun init" with args (the words after "init")
// and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("init", flag.ContinueOnError)
	fset.SetOutput(stderr)
	module := fset.String("module", "", "the new Go module's path (default example.com/<directory name>)")
	statefunDir := fset.String("statefun-dir", "", "a checkout of statefun to build against (default: the module this command was built from)")
	skipSetup := fset.Bool("skip-setup", false, "only write the files: skip go mod tidy and buf generate")
	fset.Usage = func() {
		fmt.Fprint(stderr, `usage: protoc-gen-statefun init [flags] DIR

Creates a statefun project in DIR (created if missing): go.mod, tools/go.mod
(buf, grpcurl), buf.yaml, buf.gen.yaml, a counter entity in
proto/counter/v1/counter.proto, its handler, main.go, a testkit test, a
Makefile and a README. Then it runs go mod tidy and buf generate, so that
"go test ./..." and "go run ." work at once. A file that already exists is
never overwritten: it is left alone and named in the output.

flags:
`)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fset.NArg() != 1 {
		fmt.Fprintln(stderr, "init: name the directory for the new project, e.g. protoc-gen-statefun init ./counter")
		return 2
	}
	dir, err := filepath.Abs(fset.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "init: %v\n", err)
		return 2
	}
	if *module == "" {
		*module = "example.com/" + sanitizeModuleElem(filepath.Base(dir))
	}
	if err := checkModulePath(*module); err != nil {
		fmt.Fprintf(stderr, "init: %v\n", err)
		return 2
	}
	src, err := locateStatefun(*statefunDir)
	if err != nil {
		fmt.Fprintf(stderr, "init: %v\n", err)
		return 1
	}
	p := project{Dir: dir, Module: *module, Name: filepath.Base(dir), statefun: src}
	if err := p.write(stdout); err != nil {
		fmt.Fprintf(stderr, "init: %v\n", err)
		return 1
	}
	if !*skipSetup {
		if err := p.setup(stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "init: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "\nDone. Next:\n  cd %s\n  make test    # vet and test\n  make run     # serve on 127.0.0.1:8080 (gRPC) and 127.0.0.1:8081 (HTTP/JSON)\n", fset.Arg(0))
	return 0
}

// source is where the statefun module's files are, and how the new go.mod
// requires it.
type source struct {
	dir string
	// version is the published version to require; empty for a local
	// checkout, which the new go.mod then replaces the module with.
	version string
}

// locateStatefun finds the statefun module this command belongs to: the
// directory given, the module of the working directory (a clone of
// statefun, or a project that already requires it), or the published
// version this binary was built from.
func locateStatefun(dir string) (source, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return source{}, err
		}
		if err := checkCheckout(abs); err != nil {
			return source{}, err
		}
		return source{dir: abs}, nil
	}
	var m struct {
		Dir, Version string
		Main         bool
		Replace      *struct{ Dir, Version string }
	}
	if out, err := exec.Command("go", "list", "-m", "-json", statefunModule).Output(); err == nil && json.Unmarshal(out, &m) == nil && m.Dir != "" {
		switch {
		case m.Main:
			return source{dir: m.Dir}, nil
		case m.Replace != nil && m.Replace.Version == "":
			return source{dir: m.Dir}, nil
		default:
			return source{dir: m.Dir, version: m.Version}, nil
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == statefunModule && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		out, err := exec.Command("go", "mod", "download", "-json", statefunModule+"@"+bi.Main.Version).Output()
		if err == nil && json.Unmarshal(out, &m) == nil && m.Dir != "" {
			return source{dir: m.Dir, version: bi.Main.Version}, nil
		}
	}
	return source{}, errors.New("cannot find the statefun module to build against: run this command from a clone of statefun (go run ./protoc-gen-statefun init DIR) or from a project that requires statefun, or pass --statefun-dir with the path of a clone")
}

// checkCheckout makes sure dir holds the statefun module.
func checkCheckout(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return fmt.Errorf("--statefun-dir %s: %w; name a clone of %s", dir, err, statefunModule)
	}
	if modulePath(b) != statefunModule {
		return fmt.Errorf("--statefun-dir %s holds module %q, not %s; name a clone of statefun", dir, modulePath(b), statefunModule)
	}
	return nil
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+(\S+)`)

func modulePath(gomod []byte) string {
	if m := moduleLine.FindSubmatch(gomod); m != nil {
		return strings.Trim(string(m[1]), `"`)
	}
	return ""
}

var moduleElem = regexp.MustCompile(`^[a-z0-9][a-z0-9._~-]*$`)

// checkModulePath refuses a module path the go command would refuse later,
// when the message would be harder to connect to the flag.
func checkModulePath(p string) error {
	for _, elem := range strings.Split(p, "/") {
		if !moduleElem.MatchString(strings.ToLower(elem)) {
			return fmt.Errorf("--module %q: element %q is not a valid module path element; use lowercase letters, digits, '.', '-', '_' and '~', such as example.com/counter", p, elem)
		}
	}
	return nil
}

// sanitizeModuleElem turns a directory name into a module path element.
func sanitizeModuleElem(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == '~':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), ".-_~")
	if s == "" {
		return "app"
	}
	return s
}

// project is the new project: what the templates see.
type project struct {
	Dir    string
	Module string
	Name   string

	statefun source
}

// write creates every file that does not exist yet.
func (p project) write(stdout io.Writer) error {
	files, err := p.files()
	if err != nil {
		return err
	}
	for _, f := range files {
		target := filepath.Join(p.Dir, filepath.FromSlash(f.name))
		if _, err := os.Lstat(target); err == nil {
			fmt.Fprintf(stdout, "exists, left alone: %s\n", f.name)
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		// O_EXCL: a file created since the check above is not overwritten either.
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, werr := out.Write(f.content)
		if cerr := out.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write %s: %w", target, werr)
		}
		fmt.Fprintf(stdout, "created %s\n", f.name)
	}
	return nil
}

type file struct {
	name    string // slash-separated, relative to the project
	content []byte
}

// files renders the templates and derives go.mod, tools/go.mod and the
// statefun options from the statefun module's own files, so that the new
// project pins exactly the versions statefun is built and tested with.
func (p project) files() ([]file, error) {
	var files []file
	err := fs.WalkDir(templates, "template", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		text, err := templates.ReadFile(name)
		if err != nil {
			return err
		}
		t, err := template.New(name).Option("missingkey=error").Parse(string(text))
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := t.Execute(&out, p); err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(name, "template/"), ".tmpl")
		if rel == "gitignore" {
			rel = ".gitignore" // embed skips dot files unless named one by one
		}
		files = append(files, file{rel, out.Bytes()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	read := func(rel string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(p.statefun.dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("read statefun's %s: %w", rel, err)
		}
		return b, nil
	}
	annotations, err := read("annotations/statefun/v1/annotations.proto")
	if err != nil {
		return nil, err
	}
	// google.api.http, for REST routes: vendored in statefun as the
	// Buf Schema Registry may be out of reach; its Go code ships with
	// statefun's dependencies (genproto).
	googleAnnotations, err := read("third_party/googleapis/google/api/annotations.proto")
	if err != nil {
		return nil, err
	}
	googleHTTP, err := read("third_party/googleapis/google/api/http.proto")
	if err != nil {
		return nil, err
	}
	gomod, err := read("go.mod")
	if err != nil {
		return nil, err
	}
	gosum, err := read("go.sum")
	if err != nil {
		return nil, err
	}
	toolsMod, err := read("tools/go.mod")
	if err != nil {
		return nil, err
	}
	toolsSum, err := read("tools/go.sum")
	if err != nil {
		return nil, err
	}
	appMod, err := p.goMod(gomod)
	if err != nil {
		return nil, err
	}
	tools, err := p.toolsGoMod(toolsMod)
	if err != nil {
		return nil, err
	}
	// go.sum files start as statefun's own: every hash the new modules
	// need is there, so no download is verified against nothing; go mod
	// tidy then drops the rest.
	return append(files,
		file{"third_party/statefun/v1/annotations.proto", annotations},
		file{"third_party/google/api/annotations.proto", googleAnnotations},
		file{"third_party/google/api/http.proto", googleHTTP},
		file{"go.mod", appMod},
		file{"go.sum", gosum},
		file{"tools/go.mod", tools},
		file{"tools/go.sum", toolsSum},
	), nil
}

// requireLine finds a module's version in a go.mod's require lines.
func requireVersion(gomod []byte, module string) (string, error) {
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + `\s+(v\S+)`)
	m := re.FindSubmatch(gomod)
	if m == nil {
		return "", fmt.Errorf("statefun's go.mod does not require %s", module)
	}
	return string(m[1]), nil
}

// goMod writes the service's go.mod: statefun (a published version, or a
// local checkout by replace) and the code generators as tools, at the
// versions statefun's own go.mod uses.
func (p project) goMod(statefunGoMod []byte) ([]byte, error) {
	var b bytes.Buffer
	// 1.26.0, not 1.26: the go command orders 1.26 below the 1.26.0 that
	// grpc and golang.org/x declare, and refuses it.
	fmt.Fprintf(&b, "module %s\n\ngo 1.26.0\n\n", p.Module)
	b.WriteString("tool (\n\tgithub.com/statefun-go/statefun/protoc-gen-statefun\n\tgoogle.golang.org/grpc/cmd/protoc-gen-go-grpc\n\tgoogle.golang.org/protobuf/cmd/protoc-gen-go\n)\n\n")
	version := p.statefun.version
	if version == "" {
		version = "v0.0.0"
	}
	b.WriteString("require (\n")
	fmt.Fprintf(&b, "\t%s %s\n", statefunModule, version)
	for _, m := range []string{"google.golang.org/grpc", "google.golang.org/grpc/cmd/protoc-gen-go-grpc", "google.golang.org/protobuf"} {
		v, err := requireVersion(statefunGoMod, m)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\t%s %s\n", m, v)
	}
	b.WriteString(")\n")
	if p.statefun.version == "" {
		fmt.Fprintf(&b, "\n// A local checkout of statefun; drop this line once you require a published version.\nreplace %s => %s\n", statefunModule, p.statefun.dir)
	}
	return b.Bytes(), nil
}

// toolsGoMod derives tools/go.mod from statefun's: the same versions of buf
// and grpcurl (and of everything they need), without statefun's linter.
func (p project) toolsGoMod(statefunTools []byte) ([]byte, error) {
	text := string(statefunTools)
	if modulePath(statefunTools) == "" {
		return nil, errors.New("statefun's tools/go.mod has no module line")
	}
	text = moduleLine.ReplaceAllString(text, "module "+path.Join(p.Module, "tools"))
	toolBlock := regexp.MustCompile(`(?s)tool \(.*?\)\n`)
	if !toolBlock.MatchString(text) {
		return nil, errors.New("statefun's tools/go.mod has no tool block")
	}
	text = toolBlock.ReplaceAllString(text, "tool (\n\tgithub.com/bufbuild/buf/cmd/buf\n\tgithub.com/fullstorydev/grpcurl/cmd/grpcurl\n)\n")
	header := "// Tools for working on this project, kept apart from its own\n// dependencies: go tool -modfile=tools/go.mod buf (or grpcurl).\n"
	return []byte(header + text), nil
}

// setup makes the project build: the tools module tidied, the code
// generated, the service module tidied around the generated imports.
func (p project) setup(stdout, stderr io.Writer) error {
	steps := []struct {
		dir  string
		args []string
		// quiet hides the output of a step whose complaints are expected.
		quiet bool
	}{
		{"tools", []string{"go", "mod", "tidy"}, false},
		// go tool needs a complete go.mod before the code it generates
		// exists; -e records every requirement although main.go's import
		// of gen/ cannot be resolved yet (that is the complaint hidden).
		{".", []string{"go", "mod", "tidy", "-e"}, true},
		{".", []string{"go", "tool", "-modfile=tools/go.mod", "buf", "generate"}, false},
		{".", []string{"go", "mod", "tidy"}, false},
	}
	for _, s := range steps {
		fmt.Fprintf(stdout, "running %s (in %s)\n", strings.Join(s.args, " "), path.Join(p.Name, s.dir))
		cmd := exec.Command(s.args[0], s.args[1:]...)
		cmd.Dir = filepath.Join(p.Dir, s.dir)
		var quiet bytes.Buffer
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if s.quiet {
			cmd.Stdout, cmd.Stderr = &quiet, &quiet
		}
		// The project is its own module, whatever workspace the caller is in.
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if err := cmd.Run(); err != nil {
			stderr.Write(quiet.Bytes())
			return fmt.Errorf("%s in %s: %w", strings.Join(s.args, " "), cmd.Dir, err)
		}
	}
	return nil
}
