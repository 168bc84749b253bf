package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	"github.com/statefun-go/statefun/internal/devtoken"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// The database the suite uses, as in the rest of the repository's tests.
const (
	urlEnv     = "STATEFUN_TEST_DATABASE_URL"
	defaultURL = "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
)

// hangLimit is how long a call may take before the suite calls it a hang.
// It is no performance bound: the runtime's own timeouts (commit 10 s,
// connect 10 s) sit well below it, and anything reaching it is stuck.
const hangLimit = 30 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := writeReport(); err != nil {
			fmt.Fprintln(os.Stderr, "reliability report:", err)
			code = 1
		}
	}
	if serverBinDir != "" {
		_ = os.RemoveAll(serverBinDir)
	}
	os.Exit(code)
}

func databaseURL() string {
	if url := os.Getenv(urlEnv); url != "" {
		return url
	}
	return defaultURL
}

var (
	buildMu      sync.Mutex
	serverBins   = map[string]string{} // example -> binary
	serverBinDir string
)

// serverBinary builds examples/shoppingcart once per test binary. It is
// built with the race detector when the suite is: the kill, outage and
// fencing tests are then also race tests of the runtime under real load.
func serverBinary(t testing.TB) string {
	t.Helper()
	return exampleBinary(t, "shoppingcart")
}

// exampleBinary builds examples/<example> once per test binary, as
// serverBinary does.
func exampleBinary(t testing.TB, example string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := serverBins[example]; ok {
		return bin
	}
	if serverBinDir == "" {
		dir, err := os.MkdirTemp("", "statefun-reliability-")
		if err != nil {
			t.Fatal(err)
		}
		serverBinDir = dir
	}
	bin := filepath.Join(serverBinDir, example)
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../examples/"+example)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	serverBins[example] = bin
	return bin
}

// requireDatabase fails, never skips, when Postgres is down: a
// reliability test that silently did not run has not passed.
func requireDatabase(t testing.TB) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), databaseURL())
	if err != nil {
		t.Fatalf("no PostgreSQL to test against (%v); start it (.ci/ensure-postgres) or set %s", err, urlEnv)
	}
	_ = conn.Close(t.Context())
}

// newSchema returns a fresh schema name, dropped when the test ends.
func newSchema(t testing.TB, prefix string) string {
	t.Helper()
	requireDatabase(t)
	schema := fmt.Sprintf("reliability_%s_%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, databaseURL())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// openPostgres opens the store the server uses, to read what it stored.
func openPostgres(t testing.TB, schema string) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(t.Context(), databaseURL(), postgres.WithSchema(schema))
	if err != nil {
		t.Fatalf("open the server's schema: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// urlVia returns the database URL with its host and port replaced by addr
// (a proxy in front of the database).
func urlVia(t testing.TB, addr string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	return strings.Replace(databaseURL(), target, addr, 1)
}

func databaseAddr(t testing.TB) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if !strings.Contains(databaseURL(), addr) {
		t.Fatalf("the proxy tests need a postgres:// URL with host:port in %s", urlEnv)
	}
	return addr
}

// logBuffer keeps a process's output for assertions and failure reports.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	b.buf.WriteString(line)
	b.buf.WriteByte('\n')
	b.mu.Unlock()
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is one run of the server binary.
type server struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	conn     *grpc.ClientConn
	carts    cartv1.ShoppingCartServiceClient
	log      *logBuffer
	exited   chan struct{}
	exitErr  error
}

type serverConfig struct {
	flags []string
	// example is the example whose server to run; the shopping cart's
	// when empty.
	example string
	// tls, when set, makes the client connection use TLS with it.
	tls *tls.Config
	// grpcAddr and httpAddr, when set, are where the server listens
	// instead of free ports: a restarted cluster node keeps its address,
	// which is its ID, and so takes its leases back.
	grpcAddr, httpAddr string
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts the binary and waits until it serves. The process is
// killed when the test ends, whatever happened to it before.
func startServer(t testing.TB, cfg serverConfig) *server {
	t.Helper()
	bin := serverBinary(t)
	if cfg.example != "" {
		bin = exampleBinary(t, cfg.example)
	}
	s := &server{grpcAddr: cfg.grpcAddr, httpAddr: cfg.httpAddr, log: &logBuffer{}, exited: make(chan struct{})}
	if s.grpcAddr == "" {
		s.grpcAddr = freeAddr(t)
	}
	if s.httpAddr == "" {
		s.httpAddr = freeAddr(t)
	}
	args := append([]string{"serve", "--listen", s.grpcAddr, "--http-listen", s.httpAddr}, cfg.flags...)
	var dialOpts []grpc.DialOption
	if bankExamples[cfg.example] {
		// The bank account's access rules need tokens; these tests are
		// not about access, so every call carries one every rule allows.
		iss := testIssuer(t)
		args = append(args, iss.ServerFlags()...)
		dialOpts = append(dialOpts, grpc.WithUnaryInterceptor(iss.Interceptor(devtoken.OwnerAndAdmin)), grpc.WithStreamInterceptor(iss.StreamInterceptor(devtoken.OwnerAndAdmin)))
	}
	s.cmd = exec.Command(bin, args...)
	// The server reads its flags' environment variables too: start it
	// with none of them, whatever the developer's shell exports.
	s.cmd.Env = filteredEnv()
	out, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = s.cmd.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.kill() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		signalled := false
		for sc.Scan() {
			s.log.add(sc.Text())
			if !signalled && strings.Contains(sc.Text(), "serving HTTP") {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
	case <-s.exited:
		t.Fatalf("server exited at start: %v\n%s", s.exitErr, s.log)
	case <-time.After(60 * time.Second):
		s.kill()
		t.Fatalf("server did not start within 60s\n%s", s.log)
	}
	creds := insecure.NewCredentials()
	if cfg.tls != nil {
		creds = credentials.NewTLS(cfg.tls)
	}
	s.conn, err = grpc.NewClient(s.grpcAddr, append(dialOpts, grpc.WithTransportCredentials(creds))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.conn.Close() })
	s.carts = cartv1.NewShoppingCartServiceClient(s.conn)
	return s
}

// bankExamples host the bank account entity, whose access rules need
// tokens.
var bankExamples = map[string]bool{"bank": true, "transfer": true}

var (
	issuerOnce sync.Once
	issuer     *devtoken.Issuer
	issuerErr  error
)

// testIssuer is the token issuer of this test process, whose key the
// bank examples' servers trust.
func testIssuer(t testing.TB) *devtoken.Issuer {
	t.Helper()
	issuerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "statefun-reliability-keys")
		if err != nil {
			issuerErr = err
			return
		}
		issuer, issuerErr = devtoken.Open(dir, "reliability", "bank")
	})
	if issuerErr != nil {
		t.Fatal(issuerErr)
	}
	return issuer
}

func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STATEFUN_") {
			env = append(env, kv)
		}
	}
	return env
}

// kill is kill -9: no flush, no goodbye.
func (s *server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// term sends SIGTERM and returns the process's exit error (nil for code 0)
// or an error if it did not exit within hangLimit.
func (s *server) term() error {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(hangLimit + 30*time.Second):
		s.kill()
		return errors.New("server did not exit within a minute of SIGTERM")
	}
}

// dataRaces returns the race detector's reports in the server's output.
func (s *server) dataRaces() string {
	log := s.log.String()
	if i := strings.Index(log, "WARNING: DATA RACE"); i >= 0 {
		return log[i:]
	}
	return ""
}

// checkNoRaces fails the test if the server's race detector reported.
func (s *server) checkNoRaces(t testing.TB) {
	t.Helper()
	if r := s.dataRaces(); r != "" {
		t.Errorf("the server reported a data race:\n%s", r)
	}
}

// countPostgresEvents counts every event in schema, whatever its entity.
func countPostgresEvents(t testing.TB, schema string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), databaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{schema, "events"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// withPassword returns the URL with password in its user info.
func withPassword(t testing.TB, raw, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		t.Fatalf("%s must be a postgres:// URL with a user", urlEnv)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}
