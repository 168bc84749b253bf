package breaking

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

// cartProto is a user's proto as it sits in a project: the statefun
// options are imported, not vendored.
const cartProto = `syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";
import "statefun/v1/annotations.proto";
service CartService {
  option (statefun.v1.entity) = { type: "cart" state: "Cart" event_sourced: { events: ["ItemAdded"] } };
}
message Cart { map<string, int32> quantities = 1; google.protobuf.Timestamp updated = 2; }
message ItemAdded {
  option (statefun.v1.event) = {};
  string sku = 1;
  int32 quantity = 2;
}
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestMainAgainstGit runs the command the way a project's CI does: the
// protos of a git repository against its last commit.
func TestMainAgainstGit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	repo := t.TempDir()
	gitRun := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	dir := filepath.Join(repo, "api", "proto")
	cart := filepath.Join(dir, "shop", "v1", "cart.proto")
	writeFile(t, cart, cartProto)
	writeFile(t, filepath.Join(repo, "README"), "a project\n")
	gitRun("init", "-q")
	gitRun("add", "README")
	gitRun("commit", "-q", "-m", "no protos yet")
	gitRun("tag", "before-protos")
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "protos")

	code, stdout, stderr := runMain("--against-git", "HEAD", dir)
	if code != 0 || stdout != "breaking: "+dir+": 1 entity, 1 event type checked against HEAD: no change breaks stored data\n" || stderr != "" {
		t.Fatalf("clean tree: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	writeFile(t, cart, strings.Replace(cartProto, "int32 quantity = 2;", "int64 quantity = 2;", 1))
	code, stdout, stderr = runMain(dir, "--against-git", "HEAD") // flags may follow the directories
	want := filepath.ToSlash(filepath.Join(dir, "shop/v1/cart.proto")) + `:12:3: field quantity = 2 of shop.v1.ItemAdded changed type from int32 to int64, but event "ItemAdded" of entity "cart" holds int32 values under that number; keep it int32; for a value of another type, add a field with a new number and reserve 2` + "\n"
	if code != 1 || stderr != want || stdout != "" {
		t.Fatalf("breaking edit: exit %d (want 1)\nstderr %q\nwant   %q\nstdout %q", code, stderr, want, stdout)
	}

	code, stdout, stderr = runMain("--against-git", "before-protos", dir)
	if code != 0 || stdout != "breaking: "+dir+": not in before-protos, so it is new: nothing to check against\n" || stderr != "" {
		t.Fatalf("directory new since the ref: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, _, stderr = runMain("--against-git", "no-such-branch", dir)
	if code != 2 || !strings.Contains(stderr, `"no-such-branch" is not a commit, branch or tag of this repository`) {
		t.Fatalf("unknown ref: exit %d, stderr %q", code, stderr)
	}
}

// TestMainAgainstDirAndImage checks the other two sources of the old
// version: a directory, and a FileDescriptorSet as buf build or protoc
// write it.
func TestMainAgainstDirAndImage(t *testing.T) {
	t.Parallel()
	oldDir, newDir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(oldDir, "shop/v1/cart.proto"), cartProto)
	writeFile(t, filepath.Join(newDir, "shop/v1/cart.proto"), strings.Replace(cartProto, `events: ["ItemAdded"]`, `events: ["ItemAdded", "ItemRemoved"]`, 1)+"message ItemRemoved { string sku = 1; }\n")

	code, stdout, stderr := runMain("--against", oldDir, newDir)
	if code != 0 || stdout != "breaking: "+newDir+": 1 entity, 1 event type checked against "+oldDir+": no change breaks stored data\n" || stderr != "" {
		t.Fatalf("--against: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// The image holds the user's file only, as protoc writes it without
	// --include_imports: the imports come from the descriptors linked in.
	compiler := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(protocompile.CompositeResolver{&protocompile.SourceResolver{ImportPaths: []string{oldDir}}, linkedFiles}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := compiler.Compile(context.Background(), "shop/v1/cart.proto")
	if err != nil {
		t.Fatal(err)
	}
	wire, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(compiled[0])}})
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "old.binpb")
	writeFile(t, image, string(wire))
	writeFile(t, filepath.Join(newDir, "shop/v1/cart.proto"), strings.Replace(cartProto, `type: "cart"`, `type: "basket"`, 1))
	code, stdout, stderr = runMain("--against-image", image, newDir)
	want := filepath.ToSlash(filepath.Join(newDir, "shop/v1/cart.proto")) + `:6:35: the type of entity shop.v1.CartService changed from "cart" to "basket", but its stored data is kept under "cart"; set type: "cart" again; a new type starts with no data` + "\n"
	if code != 1 || stderr != want || stdout != "" {
		t.Fatalf("--against-image: exit %d (want 1)\nstderr %q\nwant   %q\nstdout %q", code, stderr, want, stdout)
	}
}

// TestMainErrors checks that usage and compile errors exit with 2 and say
// what is wrong.
func TestMainErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.proto"), "syntax = \"proto3\";\nmessage {}\n")
	tests := []struct {
		name string
		args []string
		want string // the start of stderr
	}{
		{"two sources", []string{"--against", dir, "--against-git", "HEAD", dir}, "breaking: give one of --against-git, --against and --against-image\n"},
		{"several directories against one", []string{"--against", dir, dir, dir}, "breaking: --against and --against-image compare one directory; give one DIR\n"},
		{"unknown flag", []string{"--against-branch", "main"}, "breaking: flag provided but not defined: -against-branch\n"},
		{"compile error", []string{"--against", dir, dir}, "breaking: old version of " + dir + " (" + dir + "): bad.proto:2:9: syntax error"},
		{"not an image", []string{"--against-image", filepath.Join(dir, "bad.proto"), dir}, "breaking: old version of " + dir + " (" + filepath.Join(dir, "bad.proto") + "): " + filepath.Join(dir, "bad.proto") + ": not a FileDescriptorSet or buf image"},
		{"no protos", []string{"--against", t.TempDir(), t.TempDir()}, "breaking: old version of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(tt.args...)
			if code != 2 || !strings.HasPrefix(stderr, tt.want) || stdout != "" {
				t.Errorf("exit %d (want 2)\nstderr %q\nwant prefix %q\nstdout %q", code, stderr, tt.want, stdout)
			}
		})
	}
	code, stdout, _ := runMain("--help")
	if code != 0 || !strings.HasPrefix(stdout, "usage: protoc-gen-statefun breaking") {
		t.Errorf("--help: exit %d, stdout %q", code, stdout)
	}
}
