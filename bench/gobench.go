package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/statefun-go/statefun/bench/report"
)

// goBenchmarks are the runtime's in-process benchmarks, run as a developer
// would run them.
var goBenchmarks = [][]string{
	{"go", "test", "-run", "^$", "-bench", "BenchmarkCommands|BenchmarkRecovery", "-benchtime", "3s", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkIdleEntityMemory", "-benchtime", "1x", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkCommandTracing", "-benchmem", "-benchtime", "3s", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkConsumerLag", "-benchtime", "300x", "./runtime/"},
	// Firing 20,000 timers, lateness of 200, memory with 1,000,000 pending.
	{"go", "test", "-run", "^$", "-bench", "BenchmarkTimers", "-benchtime", "1x", "-timeout", "30m", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkCommit", "./runtime/store/postgres/", "./runtime/store/embedded/"},
	// 200 batches of 500: storage per retained idempotency key.
	{"go", "test", "-run", "^$", "-bench", "BenchmarkOutcomeStorage", "-benchtime", "200x", "./runtime/store/postgres/", "./runtime/store/embedded/"},
	// Views. Lag: 300 commands at idle per store. Updates: a backlog of
	// 20,000 events built once per store (about a minute in all). Queries:
	// 1,000,000 rows loaded once, then 5 s per query (Postgres: about 2
	// minutes, most of it the load; embedded: about 1.5).
	{"go", "test", "-run", "^$", "-bench", "BenchmarkViewLag", "-benchtime", "300x", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkViewUpdates", "-benchtime", "1x", "-timeout", "30m", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkViewQuery", "-benchtime", "5s", "-timeout", "30m", "./runtime/store/postgres/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkViewQuery", "-benchtime", "5s", "-timeout", "30m", "./runtime/store/embedded/"},
	// Eventing, on Postgres, against the machine's NATS and an in-process
	// Kafka (kfake): a backlog of 20,000 events published, 300 commands
	// at idle to a subscriber, 20,000 messages turned into commands.
	{"go", "test", "-run", "^$", "-bench", "BenchmarkEventing/.*/(publish|consume)", "-benchtime", "1x", "-timeout", "30m", "./runtime/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkEventing/.*/lag", "-benchtime", "300x", "./runtime/"},
	// Security: a bearer token's validation by algorithm, the rules'
	// check, internal tokens, and the whole check per call with the
	// validated-token cache (the default) and without.
	{"go", "test", "-run", "^$", "-bench", "BenchmarkVerify|BenchmarkInternal", "-benchmem", "-benchtime", "2000x", "./runtime/internal/jwtauth/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkCheck", "-benchmem", "-benchtime", "200000x", "./internal/access/"},
	{"go", "test", "-run", "^$", "-bench", "BenchmarkAuthorizeToken", "-benchmem", "-benchtime", "5000x", "./runtime/"},
}

// runGoBenchmarks runs them, echoing their output, and parses their
// result lines. A benchmark that fails is a problem of the run, not its
// end: the load measurements stand on their own.
func (b *bench) runGoBenchmarks(ctx context.Context) {
	env := os.Environ()
	if os.Getenv("STATEFUN_TEST_DATABASE_URL") == "" {
		// Their schemas go into the benchmark's own database, dropped at
		// the end, rather than the shared test database.
		env = append(env, "STATEFUN_TEST_DATABASE_URL="+b.dbURL(report.StatefunPostgres, ""))
	}
	b.res.GoBenchStarted = time.Now()
	for _, args := range goBenchmarks {
		line := strings.Join(quoteArgs(args), " ")
		log.Printf("running %s", line)
		b.record("Go benchmarks: "+benchPattern(args), args[0], quoteArgs(args[1:]))
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout = io.MultiWriter(&out, os.Stderr)
		cmd.Stderr = io.MultiWriter(&out, os.Stderr)
		err := cmd.Run()
		b.res.GoBench = append(b.res.GoBench, parseGoBench(out.Bytes())...)
		if err != nil {
			b.problem("%s: %v", line, err)
		}
	}
}

// benchPattern is the -bench argument of a go test command line.
func benchPattern(args []string) string {
	for i, a := range args {
		if a == "-bench" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return strings.Join(args, " ")
}

// quoteArgs quotes the arguments a shell would otherwise split or expand,
// so that a recorded line can be pasted.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$|*? ") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

// benchLine is a result line: name-GOMAXPROCS, iterations, then value and
// unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

func parseGoBench(out []byte) []report.GoBench {
	var res []report.GoBench
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		text := sc.Text()
		if p, ok := strings.CutPrefix(text, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		m := benchLine.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		gb := report.GoBench{Package: pkg, Name: m[1], Iterations: n, Metrics: map[string]float64{}}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			gb.Metrics[f[i+1]] = v
		}
		res = append(res, gb)
	}
	return res
}
