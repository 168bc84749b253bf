// Package e2e runs an example's real server binary for end-to-end tests:
// build it, start it on free ports, call it, stop it with SIGTERM or kill
// it with SIGKILL.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"google.golang.org/grpc/credentials/insecure"
)

// Build compiles the package in dir (relative to the test's directory)
// into a temporary binary and returns its path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "server")
	out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Server is a running server binary.
type Server struct {
	Conn     *grpc.ClientConn
	GRPCAddr string
	HTTPAddr string

	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	log    bytes.Buffer
	kill   sync.Once
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

// Start runs the binary with "serve", free gRPC and HTTP ports and flags,
// and returns once it serves.
func Start(t testing.TB, bin string, flags ...string) *Server {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, append([]string{"serve", "--listen", grpcAddr, "--http-listen", httpAddr}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cmd: cmd, GRPCAddr: grpcAddr, HTTPAddr: httpAddr, exited: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), "serving HTTP") {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-s.exited:
		t.Fatalf("server exited at start: %v\n%s", err, s.Log())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("server did not start\n%s", s.Log())
	}
	s.Conn, err = grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			if err := <-s.exited; err != nil {
				t.Logf("server killed at the end of the test: %v", err)
			}
		}
	})
	return s
}

// Dial returns a new connection to the server's gRPC port with opts
// (interceptors that add tokens, say), closed at the end of the test.
func (s *Server) Dial(t testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Log returns what the server logged so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Post sends a Connect-protocol JSON request to path ("/pkg.Service/Method")
// and returns the HTTP status and body.
func (s *Server) Post(t testing.TB, path, body string) (int, string) {
	t.Helper()
	return s.PostWith(t, nil, path, body)
}

// PostWith is Post with more request headers (an Authorization header).
func (s *Server) PostWith(t testing.TB, headers map[string]string, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.HTTPAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Get fetches path from the HTTP port (/metrics, say) and returns the
// body; anything but 200 fails the test.
func (s *Server) Get(t testing.TB, path string) string {
	t.Helper()
	code, body := s.Call(t, http.MethodGet, path, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

// Call sends a REST call (a route of a google.api.http option) with a JSON
// body, none if body is empty, and returns the HTTP status and body.
func (s *Server) Call(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Stop sends SIGTERM and fails the test unless the server exits cleanly
// (code 0, having logged "stopped cleanly").
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.Conn.Close()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.Log())
		}
		if !strings.Contains(s.Log(), "stopped cleanly") {
			t.Errorf("no clean-stop log line:\n%s", s.Log())
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Fatalf("server did not stop after SIGTERM\n%s", s.Log())
	}
}

// Kill is kill -9: no flush, no goodbye. It waits for the process to exit
// and closes Conn. It may be called more than once, and from any
// goroutine: the first call kills.
func (s *Server) Kill(t testing.TB) {
	s.kill.Do(func() {
		_ = s.cmd.Process.Kill()
		select {
		case err := <-s.exited:
			_ = err // "signal: killed", as it should be
		case <-time.After(10 * time.Second):
			t.Errorf("server still running 10s after SIGKILL")
		}
		_ = s.Conn.Close()
	})
}

// StartNATS runs a NATS server with JetStream of the test's own, on a free
// port with its storage in a directory of the test's, and returns its URL;
// the test stops it. The examples' servers publish to fixed subjects, so a
// server of their own keeps tests from reading each other's messages.
func StartNATS(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("nats-server is not installed: install the Debian package nats-server (.ci/ensure-nats does)")
		}
	}
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cmd := exec.Command(bin, "-a", host, "-p", port, "-js", "-sd", filepath.Join(dir, "store"), "-l", filepath.Join(dir, "nats.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return "nats://" + addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "nats.log"))
			t.Fatalf("nats-server did not start at %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PostgresFlags returns the server flags of a Postgres store in a schema
// of the test's own (named after prefix), in the tests' database
// (STATEFUN_TEST_DATABASE_URL, or the local statefun_test); the schema is
// dropped when the test ends.
func PostgresFlags(t testing.TB, prefix string) []string {
	t.Helper()
	url := os.Getenv("STATEFUN_TEST_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
	}
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	})
	return []string{"--database-url", url, "--database-schema", schema}
}
