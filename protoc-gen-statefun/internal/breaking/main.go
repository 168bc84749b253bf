package breaking

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/reflect/protoregistry"
)

const usage = `usage: protoc-gen-statefun breaking [--against-git REF | --against DIR | --against-image FILE] [DIR...]

Refuses changes to the protos under each DIR (default: proto) that would make
data statefun already stored unreadable or misread: a removed or renamed entity
or workflow type, a changed or removed event type, an event removed from an
entity's events, a switch between event_sourced and key_value, a workflow step
removed or renamed, and in every message and enum stored in a state or an event
(nested ones too): a field whose number or type changed, a field or enum value
removed without reserving its number, a reserved number reused or dropped, two
existing fields put into one oneof.

The old version comes from one of:
  --against-git REF    the same directory at git commit, branch or tag REF
                       (default: --against-git HEAD, which checks uncommitted
                       edits); a DIR that does not exist at REF is new, and
                       passes
  --against DIR        another directory of protos (one DIR only)
  --against-image FILE a binary buf image or FileDescriptorSet, as written by
                       buf build -o old.binpb or protoc --descriptor_set_out
                       --include_imports --include_source_info (one DIR only)

Each DIR is the import root of its protos. Imports of the well-known types and
of statefun/v1/annotations.proto need no copy in DIR.

Each change that breaks stored data is printed to stderr as
"file.proto:line:col: what is wrong; how to fix it", and the exit status is 1;
usage and compile errors exit with 2. Stored data only: check your API's
clients with buf breaking as well.
`

// Main runs the breaking subcommand with the arguments after its name and
// returns the process's exit status: 0 when nothing breaks stored data, 1
// when something does, 2 for a usage or compile error.
func Main(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("breaking", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	againstGit := flags.String("against-git", "", "")
	againstDir := flags.String("against", "", "")
	againstImage := flags.String("against-image", "", "")
	var dirs []string
	for {
		if err := flags.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, usage)
				return 0
			}
			return usageError(stderr, err.Error())
		}
		if flags.NArg() == 0 {
			break
		}
		// Flags may also follow the directories.
		dirs = append(dirs, flags.Arg(0))
		args = flags.Args()[1:]
	}
	if len(dirs) == 0 {
		dirs = []string{"proto"}
	}
	set := 0
	for _, v := range []string{*againstGit, *againstDir, *againstImage} {
		if v != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return usageError(stderr, "give one of --against-git, --against and --against-image")
	case set == 0:
		*againstGit = "HEAD"
	case *againstGit == "" && len(dirs) > 1:
		return usageError(stderr, "--against and --against-image compare one directory; give one DIR")
	}

	ctx := context.Background()
	failed := false
	for _, dir := range dirs {
		var (
			against string
			old     *protoregistry.Files
			err     error
		)
		switch {
		case *againstGit != "":
			against = *againstGit
			var found bool
			old, found, err = compileAtRef(ctx, *againstGit, dir)
			if err == nil && !found {
				fmt.Fprintf(stdout, "breaking: %s: not in %s, so it is new: nothing to check against\n", dir, *againstGit)
				continue
			}
		case *againstDir != "":
			against = *againstDir
			old, err = compileDir(ctx, *againstDir)
		default:
			against = *againstImage
			old, err = readImage(*againstImage)
		}
		if err != nil {
			fmt.Fprintf(stderr, "breaking: old version of %s (%s): %v\n", dir, against, err)
			return 2
		}
		current, err := compileDir(ctx, dir)
		if err != nil {
			fmt.Fprintf(stderr, "breaking: %s: %v\n", dir, err)
			return 2
		}
		findings := Check(old, current)
		for _, f := range findings {
			f.Pos.File = filepath.ToSlash(filepath.Join(dir, f.Pos.File))
			fmt.Fprintln(stderr, f)
		}
		if len(findings) > 0 {
			failed = true
			continue
		}
		entities, events := count(old)
		checked := plural(entities, "entity", "entities") + ", " + plural(events, "event type", "event types")
		if workflows := len(readWorkflows(old)); workflows > 0 {
			checked += ", " + plural(workflows, "workflow", "workflows")
		}
		fmt.Fprintf(stdout, "breaking: %s: %s checked against %s: no change breaks stored data\n", dir, checked, against)
	}
	if failed {
		return 1
	}
	return 0
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "breaking: %s\n\n%s", msg, usage)
	return 2
}

func count(files *protoregistry.Files) (entities, events int) {
	for _, e := range readEntities(files) {
		entities++
		events += len(e.events)
	}
	return entities, events
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// compileAtRef compiles the protos that dir held at a git ref. found is
// false when dir did not exist there.
func compileAtRef(ctx context.Context, ref, dir string) (files *protoregistry.Files, found bool, err error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, false, err
	}
	prefix, err := git(ctx, dir, "rev-parse", "--show-prefix")
	if err != nil {
		return nil, false, err
	}
	if _, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}"); err != nil {
		return nil, false, fmt.Errorf("%q is not a commit, branch or tag of this repository (a remote branch may need git fetch first)", ref)
	}
	tree := ref + ":" + strings.TrimSuffix(strings.TrimSpace(prefix), "/")
	if kind, err := git(ctx, dir, "cat-file", "-t", tree); err != nil || strings.TrimSpace(kind) != "tree" {
		return nil, false, nil
	}
	// From the top of the work tree: in a subdirectory, git archive keeps
	// only the paths under it.
	top, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, false, err
	}
	archive, err := git(ctx, strings.TrimSpace(top), "archive", "--format=tar", tree)
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.MkdirTemp("", "statefun-breaking-")
	if err != nil {
		return nil, false, err
	}
	defer os.RemoveAll(tmp)
	if err := extractProtos(archive, tmp); err != nil {
		return nil, false, err
	}
	files, err = compileDir(ctx, tmp)
	if err != nil {
		// Paths in the error are under the temporary directory; name the ref.
		return nil, false, errors.New(strings.ReplaceAll(err.Error(), tmp+string(filepath.Separator), ref+":"))
	}
	return files, true, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// extractProtos writes the .proto files of a tar archive under dir.
func extractProtos(archive string, dir string) error {
	tr := tar.NewReader(strings.NewReader(archive))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !strings.HasSuffix(name, ".proto") {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unexpected path %q in git archive", hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, content, 0o644); err != nil {
			return err
		}
	}
}
