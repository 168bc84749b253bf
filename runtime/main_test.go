package statefun_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	statefun "github.com/statefun-go/statefun/runtime"
)

// run runs one command line of a server in process and returns its exit
// code, stdout and stderr. The output is locked: Run makes its logger
// slog's default, which other tests' runtimes may go on logging to.
func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr lockedBuffer
	code := statefun.Run(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

var commandLines = []string{
	"\n  serve     serve the entities",
	"\n  migrate   create or upgrade the Postgres schema",
	"\n  cluster   list the cluster's nodes",
	"\n  version   print the statefun version",
}

// flagsOf returns the flag names a usage lists.
func flagsOf(usage string) []string {
	var names []string
	for line := range strings.SplitSeq(usage, "\n") {
		if name, ok := strings.CutPrefix(line, "  -"); ok {
			names = append(names, strings.Fields(name)[0])
		}
	}
	return names
}

// -h lists every command, then the flags of the command asked about and
// no other.
func TestUsage(t *testing.T) {
	t.Parallel()
	serveFlags := "admin-listen admin-token-file advertise-address allow-unknown-events commit-concurrency conn-rate-burst conn-rate-limit console data-dir database-schema database-url http-listen jwt-audience jwt-clock-skew jwt-hs256-secret-file jwt-issuer jwt-jwks-file jwt-jwks-url jwt-public-key kafka-brokers kafka-sasl kafka-tls kafka-user lease-ttl listen log-format log-level max-message-bytes nats-creds nats-url passivation-timeout rate-burst rate-limit service-name service-secret-file shards shutdown-timeout tls-cert tls-key"
	for _, tc := range []struct {
		args      []string
		flagsOf   string
		wantFlags string
	}{
		{[]string{"--help"}, "serve", serveFlags},
		{[]string{"-h"}, "serve", serveFlags},
		{[]string{"serve", "--help"}, "serve", serveFlags},
		{[]string{"help"}, "serve", serveFlags},
		{[]string{"migrate", "--help"}, "migrate", "database-schema database-url log-format log-level"},
		{[]string{"help", "migrate"}, "migrate", "database-schema database-url log-format log-level"},
		{[]string{"cluster", "-h"}, "cluster", "database-schema database-url"},
		{[]string{"version", "-h"}, "version", ""},
	} {
		code, stdout, stderr := run(t, nil, tc.args...)
		if code != 0 || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q, want 0 and nothing", tc.args, code, stderr)
		}
		for _, line := range commandLines {
			if !strings.Contains(stdout, line) {
				t.Errorf("%q: usage lacks %q:\n%s", tc.args, line, stdout)
			}
		}
		if got := strings.Join(flagsOf(stdout), " "); got != tc.wantFlags {
			t.Errorf("%q: flags %q, want %q", tc.args, got, tc.wantFlags)
		}
		if tc.wantFlags == "" && !strings.Contains(stdout, "version takes no flags") {
			t.Errorf("%q: usage does not say version takes no flags:\n%s", tc.args, stdout)
		}
		if tc.wantFlags != "" && !strings.Contains(stdout, "flags of "+tc.flagsOf+":") {
			t.Errorf("%q: usage does not name the command of its flags:\n%s", tc.args, stdout)
		}
	}
}

// A mistake prints the error and the usage, each once, and exits 2.
func TestBadCommandLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"serve", "--shards", "x"}, `invalid value "x" for flag -shards`},
		{[]string{"serve", "--shards", "0"}, "--shards 0: use 1 to 1048576"},
		{[]string{"serve", "--passivation-timeout", "0s"}, "--passivation-timeout 0s: use a positive duration (default 10m)"},
		{[]string{"migrate", "--listen", "127.0.0.1:1"}, "flag provided but not defined: -listen"},
		{[]string{"cluster", "--log-level", "debug"}, "flag provided but not defined: -log-level"},
		{[]string{"version", "--database-url", "x"}, "flag provided but not defined: -database-url"},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
	} {
		code, stdout, stderr := run(t, nil, tc.args...)
		if code != 2 || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, want 2 and nothing", tc.args, code, stdout)
		}
		if n := strings.Count(stderr, tc.want); n != 1 {
			t.Errorf("%q: stderr has %q %d times, want once:\n%s", tc.args, tc.want, n, stderr)
		}
		if n := strings.Count(stderr, "usage:"); n != 1 {
			t.Errorf("%q: stderr has the usage %d times, want once:\n%s", tc.args, n, stderr)
		}
	}
	code, stdout, _ := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "statefun ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
}

// migrate says what it did: created, upgraded or found up to date.
func TestMigrateSaysWhatItDid(t *testing.T) {
	t.Parallel()
	url := benchDatabaseURL()
	files, err := filepath.Glob("store/postgres/migrations/*.sql")
	if err != nil || len(files) < 2 {
		t.Fatalf("migrations: %v, %v", files, err)
	}
	latest := len(files)
	schema := fmt.Sprintf("cli_migrate_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropSchema(url, schema) })
	env := map[string]string{"STATEFUN_DATABASE_URL": url}

	migrate := func(schema, want string) {
		t.Helper()
		code, stdout, stderr := run(t, env, "migrate", "--database-schema", schema)
		if code != 0 || stdout != want+"\n" {
			t.Fatalf("migrate: exit %d, stdout %q, want 0 and %q\n%s", code, stdout, want, stderr)
		}
	}
	migrate(schema, fmt.Sprintf("created schema %s at version %d", schema, latest))
	migrate(schema, fmt.Sprintf("schema %s is up to date at version %d", schema, latest))

	// A schema at version 1, as an old release left it.
	old := schema + "_v1"
	t.Cleanup(func() { dropSchema(url, old) })
	init, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	quoted := pgx.Identifier{old}.Sanitize()
	for _, sql := range []string{
		"CREATE SCHEMA " + quoted,
		strings.ReplaceAll(string(init), "{{schema}}", quoted),
		"CREATE TABLE " + quoted + ".schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO " + quoted + ".schema_migrations (version) VALUES (1)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	migrate(old, fmt.Sprintf("upgraded schema %s from version 1 to %d", old, latest))
}
