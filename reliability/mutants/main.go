// Command mutants checks that the invariant tests can fail: it applies,
// one at a time, deliberate mutations to the runtime (each removes or
// breaks the line that keeps one invariant) and runs the tests that guard
// it. A mutant is killed when the tests fail within the time limit; one
// that survives means a test that cannot fail for the property it is
// named after.
//
// The source tree is never modified: each mutant is compiled through go
// test's -overlay, which swaps the file's contents at build time.
//
//	go run ./reliability/mutants            # every mutant
//	go run ./reliability/mutants -run gate  # those whose name matches
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

func main() { os.Exit(run()) }

// run runs the mutants and returns the exit code.
func run() int {
	only := flag.String("run", "", "only mutants whose name matches this regular expression")
	timeout := flag.Duration("timeout", 3*time.Minute, "time limit for the tests of one mutant; a mutant still running then counts as killed (a hang is a failure)")
	flag.Parse()
	filter, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mutants: -run: %v\n", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "statefun-mutants-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "mutants: %v\n", err)
		return 2
	}
	defer os.RemoveAll(tmp)

	var total, killed int
	var survivors, broken []string
	for i, m := range mutants {
		if !filter.MatchString(m.name) {
			continue
		}
		total++
		start := time.Now()
		outcome, detail := m.try(filepath.Join(tmp, fmt.Sprint(i)), *timeout)
		fmt.Printf("%-9s %-55s %5.1fs  %s\n", outcome, m.name, time.Since(start).Seconds(), detail)
		switch outcome {
		case "killed":
			killed++
		case "SURVIVED":
			survivors = append(survivors, m.name)
		default:
			broken = append(broken, m.name)
		}
	}
	fmt.Printf("\n%d of %d mutants killed\n", killed, total)
	if len(broken) > 0 {
		// A mutation that no longer applies means the code moved: update
		// the mutant, or the check silently stops checking.
		fmt.Printf("mutations that no longer apply (update them in reliability/mutants): %s\n", strings.Join(broken, ", "))
	}
	if len(survivors) > 0 {
		fmt.Printf("survivors (a test that should fail did not): %s\n", strings.Join(survivors, ", "))
	}
	if killed != total {
		return 1
	}
	return 0
}

// mutant is one deliberate defect: in file, the text old (which must occur
// exactly once) becomes new; the tests matching run in pkg must then fail.
type mutant struct {
	name     string
	file     string
	old, new string
	pkg      string
	run      string
}

func (m mutant) try(dir string, timeout time.Duration) (outcome, detail string) {
	src, err := os.ReadFile(m.file)
	if err != nil {
		return "BROKEN", err.Error()
	}
	if n := strings.Count(string(src), m.old); n != 1 {
		return "BROKEN", fmt.Sprintf("the text to mutate occurs %d times in %s, want once", n, m.file)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "BROKEN", err.Error()
	}
	mutated := filepath.Join(dir, filepath.Base(m.file))
	if err := os.WriteFile(mutated, []byte(strings.Replace(string(src), m.old, m.new, 1)), 0o644); err != nil {
		return "BROKEN", err.Error()
	}
	abs, err := filepath.Abs(m.file)
	if err != nil {
		return "BROKEN", err.Error()
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {abs: mutated}})
	if err != nil {
		return "BROKEN", err.Error()
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		return "BROKEN", err.Error()
	}
	// The mutant must compile: a mutation that does not build proves
	// nothing about the tests.
	if out, err := exec.Command("go", "vet", "-overlay", overlayFile, m.pkg).CombinedOutput(); err != nil {
		return "BROKEN", "does not build: " + firstLine(string(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"test", "-overlay", overlayFile, "-count=1", "-timeout", timeout.String()}
	if m.run != "" {
		args = append(args, "-run", m.run)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, m.pkg)...)
	// Tests that build a server binary with go build (./reliability/)
	// see the mutation only through GOFLAGS.
	cmd.Env = append(os.Environ(), strings.TrimSpace("GOFLAGS="+os.Getenv("GOFLAGS")+" -overlay="+overlayFile))
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return "SURVIVED", "tests passed with the mutation"
	case ctx.Err() != nil:
		return "killed", "tests hung past the limit"
	case errors.As(err, &exit):
		return "killed", failedTest(string(out))
	default:
		return "BROKEN", err.Error()
	}
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// failedTest names the first test that failed, or the panic.
func failedTest(out string) string {
	if m := failLine.FindStringSubmatch(out); m != nil {
		return "by " + m[1]
	}
	if i := strings.Index(out, "panic: "); i >= 0 {
		return "by a " + firstLine(out[i:])
	}
	return firstLine(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
