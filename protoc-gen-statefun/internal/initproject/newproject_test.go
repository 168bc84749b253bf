package initproject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeStep is one fenced block of the README's new-project walkthrough,
// marked by an HTML comment before it (invisible when rendered):
// <!-- newproject:run --> runs the block, <!-- newproject:serve --> starts
// it in the background until the end, <!-- newproject:output --> is what
// the run block before it prints.
type readmeStep struct {
	kind string
	body string
	line int
}

var stepMarker = regexp.MustCompile("(?m)^<!-- newproject:(run|serve|output) -->\n```[a-z]*\n((?s:.*?))```$")

func readmeSteps(t *testing.T, readme string) []readmeStep {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	var steps []readmeStep
	for _, m := range stepMarker.FindAllSubmatchIndex(b, -1) {
		steps = append(steps, readmeStep{
			kind: string(b[m[2]:m[3]]),
			body: string(b[m[4]:m[5]]),
			line: 1 + bytes.Count(b[:m[0]], []byte("\n")),
		})
	}
	if len(steps) == 0 {
		t.Fatalf("%s has no <!-- newproject:... --> steps: the walkthrough this test runs is gone", readme)
	}
	return steps
}

// TestNewProjectAsTheREADMESays does what the README's "Write your own
// entity" tells a new user, in a directory outside the repository: create
// the project (which generates its code), vet and test it, serve it, call
// it over gRPC and HTTP/JSON, compare what it answers with what the README
// shows, and stop it. The commands come from the README, so the two cannot
// drift apart; the only substitutions are the project's directory and the
// ports (free ones, so the test never collides with a server a developer
// runs).
func TestNewProjectAsTheREADMESays(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a new project with its tools: not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	steps := readmeSteps(t, filepath.Join(repo, "README.md"))
	project := filepath.Join(t.TempDir(), "counter")
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	substitute := strings.NewReplacer(
		"../counter", project,
		"127.0.0.1:8080", grpcAddr,
		"127.0.0.1:8081", httpAddr,
	).Replace

	dir := repo // the first block runs in the checkout; it cds to the project
	var lastOut string
	var lastStep readmeStep
	served := false
	for _, s := range steps {
		switch s.kind {
		case "run":
			out, err := runScript(ctx, dir, substitute(s.body), nil)
			if err != nil {
				t.Fatalf("README.md:%d: %v\n%s\n%s", s.line, err, s.body, out)
			}
			t.Logf("README.md:%d ran:\n%s", s.line, out)
			lastOut, lastStep = out, s
			dir = project
		case "output":
			if normalize(lastOut) != normalize(s.body) {
				t.Fatalf("README.md:%d shows this output of the commands at line %d:\n%s\nthey printed:\n%s", s.line, lastStep.line, s.body, lastOut)
			}
		case "serve":
			serve(ctx, t, project, substitute(s.body), grpcAddr, httpAddr)
			served = true
		}
	}
	if !served {
		t.Fatal("the README's walkthrough never starts the server (<!-- newproject:serve -->)")
	}
}

// normalize drops whitespace: protojson varies its spacing on purpose.
func normalize(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// runScript runs a README block with bash, stopping on the first failing
// command, and returns its stdout (stderr is appended on failure).
func runScript(ctx context.Context, dir, script string, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// serve starts a README block in the background and registers its stop:
// SIGTERM to its process group (make, go run and the server), which must
// end within a deadline having stopped cleanly.
func serve(ctx context.Context, t *testing.T, dir, script, grpcAddr, httpAddr string) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	// The flags' environment variables move the server to the test's ports.
	cmd.Env = append(os.Environ(), "GOWORK=off", "STATEFUN_LISTEN="+grpcAddr, "STATEFUN_HTTP_LISTEN="+httpAddr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited: //nolint:errcheck // killed: its exit status says nothing
		case <-time.After(10 * time.Second):
		}
	})

	// go run compiles first: wait for the HTTP health endpoint.
	for {
		select {
		case err := <-exited:
			t.Fatalf("the server exited before serving: %v\n%s", err, log.String())
		case <-ctx.Done():
			t.Fatalf("the server did not serve in time:\n%s", log.String())
		case <-time.After(200 * time.Millisecond):
		}
		if out, err := runScript(ctx, dir, fmt.Sprintf("curl -sf http://%s/healthz", httpAddr), nil); err == nil && out != "" {
			break
		}
	}
	t.Cleanup(func() {
		stopped = true
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Errorf("stop the server: %v", err)
			return
		}
		select {
		case err := <-exited:
			var exit *exec.ExitError
			// make reports the signal its child got as its own failure;
			// what matters is that the server said it stopped cleanly.
			if err != nil && !errors.As(err, &exit) {
				t.Errorf("the server's stop: %v", err)
			}
			if !strings.Contains(log.String(), "stopped cleanly") {
				t.Errorf("the server did not stop cleanly on SIGTERM:\n%s", log.String())
			}
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("the server did not stop within 30s of SIGTERM:\n%s", log.String())
		}
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
