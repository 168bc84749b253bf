package reliability

import (
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its own address to a target, and can
// fail the way a database's network fails: Cut closes every connection and
// refuses new ones (the database host is down or restarting), Stall keeps
// connections open but moves no bytes (a partition: packets vanish, nothing
// is refused). StallReplies is half a stall: requests still reach the
// target, answers do not come back (a commit lands, its acknowledgement is
// lost). The outage tests put it between a server and Postgres, so that
// faults hit only the server under test and never the shared database.
//
// A cut proxy keeps its port and resets each new connection at once
// rather than closing its listener: a port given up for the length of an
// outage can be taken by any other socket on the machine, and the server
// under test has the address in its database URL.
type Proxy struct {
	target string
	addr   string

	mu      sync.Mutex
	ln      net.Listener
	cut     bool
	stalled bool // nothing moves
	// repliesStalled: bytes from the target are held, those to it move.
	repliesStalled bool
	resume         chan struct{} // closed when a stall ends
	conns          map[net.Conn]struct{}
	closed         bool
	wg             sync.WaitGroup

	accepted int // connections accepted, for the report
}

// NewProxy starts a proxy to target on a free port of 127.0.0.1.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	p.serve(ln)
	return p, nil
}

// Addr is the address clients connect to instead of the target.
func (p *Proxy) Addr() string { return p.addr }

// Accepted returns how many connections the proxy has accepted.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *Proxy) serve(ln net.Listener) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				_ = c.Close()
				return
			}
			if p.cut {
				p.mu.Unlock()
				refuse(c)
				continue
			}
			p.accepted++
			p.conns[c] = struct{}{}
			p.wg.Add(1)
			p.mu.Unlock()
			go p.forward(c)
		}
	}()
}

// forward connects c to the target and copies both ways until either side
// ends or the proxy closes both.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	defer p.drop(client)
	// A connection made during a stall waits like the packets of one
	// would: the dial to the target happens only when the stall ends.
	if !p.waitUnstalled(client, false) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(server) {
		_ = server.Close()
		return
	}
	defer p.drop(server)
	done := make(chan struct{}, 2)
	go func() { p.copy(server, client, false); done <- struct{}{} }()
	go func() { p.copy(client, server, true); done <- struct{}{} }()
	<-done
	// One direction ended: end the other, as a dying peer would.
	_ = client.Close()
	_ = server.Close()
	<-done
}

// copy moves bytes from src to dst, holding them while the proxy is
// stalled (replies, from the target, also while replies are). A read that
// lands during a stall is delivered after it, or dropped with the
// connection if the stall ends in a Cut.
func (p *Proxy) copy(dst, src net.Conn, replies bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitUnstalled(src, replies) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitUnstalled returns once the proxy is not stalled for c's direction
// (replies or not), false if c was closed meanwhile (a Cut during the
// stall, or c's peer hung up).
func (p *Proxy) waitUnstalled(c net.Conn, replies bool) bool {
	for {
		p.mu.Lock()
		resume := p.resume
		held := p.stalled || (replies && p.repliesStalled)
		_, open := p.conns[c]
		p.mu.Unlock()
		if !open {
			return false
		}
		if !held {
			return true
		}
		select {
		case <-resume:
			p.mu.Lock()
			_, open = p.conns[c]
			p.mu.Unlock()
			return open
		case <-time.After(50 * time.Millisecond):
			// Recheck whether c was closed by a Cut.
		}
	}
}

// refuse resets c: the peer reads ECONNRESET at once, as from a host
// whose database is not listening.
func refuse(c net.Conn) {
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		refuse(c)
	}
}

// Stall stops moving bytes: connections stay open, new ones are accepted,
// and nothing reaches either side until Restore (or a Cut).
func (p *Proxy) Stall() {
	p.mu.Lock()
	if !p.stalled && !p.repliesStalled {
		p.resume = make(chan struct{})
	}
	if !p.stalled {
		p.stalled = true
	}
	p.mu.Unlock()
}

// StallReplies holds every byte coming back from the target until
// Restore (or a Cut); bytes to the target still move. A commit sent
// meanwhile is applied, and its sender never hears so.
func (p *Proxy) StallReplies() {
	p.mu.Lock()
	if !p.stalled && !p.repliesStalled {
		p.resume = make(chan struct{})
	}
	p.repliesStalled = true
	p.mu.Unlock()
}

// Restore ends a Cut, a Stall or a StallReplies. After a stall the held
// connections are cut first, as a long partition ends for TCP: their
// peers have long given up on them.
func (p *Proxy) Restore() {
	p.mu.Lock()
	var held map[net.Conn]struct{}
	if p.stalled || p.repliesStalled {
		held = p.conns
		p.conns = map[net.Conn]struct{}{}
		p.stalled, p.repliesStalled = false, false
		close(p.resume)
	}
	p.cut = false
	p.mu.Unlock()
	for c := range held {
		refuse(c)
	}
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.stalled || p.repliesStalled {
		p.stalled, p.repliesStalled = false, false
		close(p.resume)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

var _ io.Closer = (*Proxy)(nil)
