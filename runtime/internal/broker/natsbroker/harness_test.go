package natsbroker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests need a NATS server with JetStream: STATEFUN_TEST_NATS_URL, or
// the machine's at 127.0.0.1:4222. It is shared: every test makes its own
// subjects and streams, with a random part, and deletes its streams.

const testAckWait = 2 * time.Second

func testURL() string {
	if u := os.Getenv("STATEFUN_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

var (
	reachOnce sync.Once
	reachErr  error
)

// needNATS fails the test (skips it with STATEFUN_SKIP_NATS=1) when the
// test server is not reachable, saying how to start one.
func needNATS(t *testing.T) string {
	t.Helper()
	u := testURL()
	reachOnce.Do(func() {
		host := "127.0.0.1:4222"
		if p, err := url.Parse(u); err == nil && p.Host != "" {
			host = p.Host
		}
		c, err := net.DialTimeout("tcp", host, 3*time.Second)
		if err != nil {
			reachErr = err
			return
		}
		c.Close()
	})
	if reachErr != nil {
		msg := fmt.Sprintf("NATS is not reachable at %s: %v. Start a server with JetStream: "+
			"`nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats` (Debian package nats-server; on this machine kind: "+
			"start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server), "+
			"or point STATEFUN_TEST_NATS_URL at one, or set STATEFUN_SKIP_NATS=1 to skip these tests", redactURL(u), reachErr)
		if os.Getenv("STATEFUN_SKIP_NATS") == "1" {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return u
}

// testLog is a logger writing to the test's log until the test ends
// (a handler may still log after), and keeping everything written.
type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
	all  bytes.Buffer
}

func newTestLog(t *testing.T) (*slog.Logger, *testLog) {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	if !l.done {
		l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

func randomPart() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// open connects to url with the test's settings; the test closes it.
func open(t *testing.T, u string, opts ...Option) *Broker {
	t.Helper()
	lg, _ := newTestLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]Option{WithLogger(lg), WithAckWait(testAckWait), WithStopTimeout(10 * time.Second)}, opts...)
	b, err := Open(ctx, u, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", redactURL(u), err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newSubject returns a subject no one else uses, with a stream storing it
// that is deleted when the test ends.
func newSubject(t *testing.T, b *Broker, u string) string {
	t.Helper()
	subject := "statefun.test." + randomPart() + ".events"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.EnsureStream(ctx, "", subject); err != nil {
		t.Fatalf("EnsureStream(%s): %v", subject, err)
	}
	deleteStreamAtEnd(t, u, StreamName(subject))
	return subject
}

// deleteStreamAtEnd deletes the stream when the test ends, on a
// connection of its own (the test's may be closed by then).
func deleteStreamAtEnd(t *testing.T, u, stream string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := Open(ctx, u, WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Errorf("delete stream %s: %v", stream, err)
			return
		}
		defer b.Close()
		if err := b.js.DeleteStream(ctx, stream); err != nil {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})
}

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natsServer is a nats-server process of the test's own, for what the
// shared one must not go through (a restart, credentials).
type natsServer struct {
	t    *testing.T
	bin  string
	args []string
	log  string
	port int
	cmd  *exec.Cmd
	wait chan error
}

// startServer starts nats-server with JetStream on a free port, storing
// in a directory of the test's, with extra arguments; the test stops it.
func startServer(t *testing.T, extra ...string) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err2 := os.Stat(bin); err2 != nil {
			msg := "nats-server is not installed (Debian package nats-server): this test starts and stops one of its own; install it, or set STATEFUN_SKIP_NATS=1 to skip"
			if os.Getenv("STATEFUN_SKIP_NATS") == "1" {
				t.Skip(msg)
			}
			t.Fatal(msg)
		}
	}
	dir := t.TempDir()
	s := &natsServer{t: t, bin: bin, port: freePort(t), log: filepath.Join(dir, "server.log")}
	s.args = append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", filepath.Join(dir, "store"), "-l", s.log}, extra...)
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *natsServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	s.wait = make(chan error, 1)
	go func(c *exec.Cmd, w chan error) { w <- c.Wait() }(s.cmd, s.wait)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-s.wait:
			s.t.Fatalf("nats-server exited at start: %v; its log: %s", err, s.readLog())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server not listening on %d after 15s; its log: %s", s.port, s.readLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the server at once (SIGKILL) and waits for it to exit.
func (s *natsServer) kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case err := <-s.wait:
		_ = err // "signal: killed": expected
	case <-time.After(10 * time.Second):
		s.t.Errorf("nats-server pid %d did not exit within 10s of SIGKILL", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

func (s *natsServer) stop() { s.kill() }

func (s *natsServer) readLog() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// proxy forwards TCP connections to a target until told to drop every
// byte (a network that lost its way) or to close.
type proxy struct {
	ln        net.Listener
	target    string
	blackhole atomic.Bool
	mu        sync.Mutex
	conns     []net.Conn
	wg        sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.blackhole.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// close stops accepting and closes every connection.
func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
