package reliability

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

// reportEnv names a file the suite writes its figures to when it passes;
// make reliability sets it, and RELIABILITY.md quotes the result.
const reportEnv = "STATEFUN_RELIABILITY_REPORT"

// figures are the run's totals, added to by every test.
var figures = struct {
	sync.Mutex
	counts map[string]int
	lines  []string
}{counts: map[string]int{}}

// count adds n to a total of the report.
func count(name string, n int) {
	figures.Lock()
	figures.counts[name] += n
	figures.Unlock()
}

// note adds a line to the report's details.
func note(format string, args ...any) {
	figures.Lock()
	figures.lines = append(figures.lines, fmt.Sprintf(format, args...))
	figures.Unlock()
}

func writeReport() error {
	path := os.Getenv(reportEnv)
	if path == "" {
		return nil
	}
	figures.Lock()
	defer figures.Unlock()
	var b strings.Builder
	b.WriteString("totals:\n")
	names := make([]string, 0, len(figures.counts))
	for name := range figures.counts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "  %-36s %d\n", name, figures.counts[name])
	}
	b.WriteString("details:\n")
	lines := slices.Clone(figures.lines)
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
