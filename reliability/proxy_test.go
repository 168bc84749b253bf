package reliability

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxy checks that the proxy injects the faults the outage tests
// claim: forwarding when up, an immediate failure when cut, silence when
// stalled, requests delivered but no answer when replies are stalled, and
// service again after Restore, on the same address.
func TestProxy(t *testing.T) {
	t.Parallel()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	// received has a value for every read of the echo server.
	received := make(chan struct{}, 100)
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, readNotifier{c, received})
				_ = c.Close()
			}()
		}
	}()
	p, err := NewProxy(echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// roundTrip sends a line and waits up to d for it to come back.
	roundTrip := func(c net.Conn, d time.Duration) error {
		_ = c.SetDeadline(time.Now().Add(d))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	up := dial()
	if err := roundTrip(up, 5*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.Cut()
	if err := roundTrip(up, 5*time.Second); err == nil || isTimeout(err) {
		t.Errorf("a connection open at the cut: %v, want it closed", err)
	}
	start := time.Now()
	// The reset may reach the client during its connect or after it.
	cut, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err == nil {
		err = roundTrip(cut, 5*time.Second)
		_ = cut.Close()
		if err == nil || isTimeout(err) {
			t.Errorf("a connection made during the cut: %v, want it refused", err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a refused connection took %v to fail, want at once", took)
	}

	p.Restore()
	held := dial()
	if err := roundTrip(held, 5*time.Second); err != nil {
		t.Fatalf("after Restore: %v", err)
	}

	p.Stall()
	if err := roundTrip(held, 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("during a stall: %v, want no answer", err)
	}
	if err := roundTrip(dial(), 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("a connection made during a stall: %v, want no answer", err)
	}
	p.Restore()
	if err := roundTrip(held, 5*time.Second); err == nil || isTimeout(err) {
		t.Errorf("a connection held through a stall: %v, want it closed after", err)
	}
	if err := roundTrip(dial(), 5*time.Second); err != nil {
		t.Errorf("after the stall: %v", err)
	}

	held = dial()
	if err := roundTrip(held, 5*time.Second); err != nil {
		t.Fatalf("before stalling replies: %v", err)
	}
	for len(received) > 0 {
		<-received
	}
	p.StallReplies()
	if err := roundTrip(held, 300*time.Millisecond); !isTimeout(err) {
		t.Errorf("while replies are stalled: %v, want no answer", err)
	}
	select {
	case <-received:
	case <-time.After(5 * time.Second):
		t.Error("while replies are stalled, a request did not reach the target")
	}
	p.Restore()
	if err := roundTrip(held, 5*time.Second); err == nil || isTimeout(err) {
		t.Errorf("a connection held while replies were stalled: %v, want it closed after", err)
	}
	if err := roundTrip(dial(), 5*time.Second); err != nil {
		t.Errorf("after replies were stalled: %v", err)
	}
}

// readNotifier signals each successful read of its reader.
type readNotifier struct {
	io.Reader
	reads chan<- struct{}
}

func (r readNotifier) Read(b []byte) (int, error) {
	n, err := r.Reader.Read(b)
	if n > 0 {
		select {
		case r.reads <- struct{}{}:
		default:
		}
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
