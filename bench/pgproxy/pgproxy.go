// Package pgproxy is a TCP proxy for the PostgreSQL wire protocol that
// makes a database on loopback behave like one across a network, and counts
// the protocol's round trips on the way.
//
// Delay: every chunk of bytes read from one side is written to the other
// side a fixed delay after it arrived, in order. That is propagation delay
// (what a network adds to each round trip), not a bandwidth limit: chunks
// do not wait for each other beyond their own delay. With 0.5 ms each way a
// round trip costs 1 ms more, as between two hosts in one data centre.
// Go's timers wake up a millisecond late on Linux, so on Linux the
// delaying goroutine holds its own OS thread with a fine timer slack and
// sleeps with nanosleep (sleep_linux.go); the delay actually added is
// measured and reported in Stats.
//
// Counting: the proxy follows the message framing (a type byte and a
// length) in both directions. Each ReadyForQuery the server sends ends one
// round trip (it answers a Sync or a simple Query), so it is the exact
// count of round trips; Execute and Query messages count statements. The
// client must not use TLS (sslmode=disable): encrypted bytes cannot be
// followed.
package pgproxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the proxy's counters since it started.
type Stats struct {
	Connections   int64 `json:"connections"`
	RoundTrips    int64 `json:"round_trips"`    // ReadyForQuery messages from the server
	Statements    int64 `json:"statements"`     // Execute and Query messages from clients
	Syncs         int64 `json:"syncs"`          // Sync messages from clients
	ClientBytes   int64 `json:"client_bytes"`   // bytes from clients to the server
	ServerBytes   int64 `json:"server_bytes"`   // bytes from the server to clients
	DelayedChunks int64 `json:"delayed_chunks"` // chunks held back
	// DelayNanos is the total time chunks were held back, DelayMaxNanos the
	// longest: the delay as applied, which a busy machine makes longer than
	// the one asked for.
	DelayNanos    int64 `json:"delay_nanos"`
	DelayMaxNanos int64 `json:"delay_max_nanos"`
}

// Proxy forwards connections from a listener to a Postgres server.
type Proxy struct {
	ln       net.Listener
	upstream string
	delay    time.Duration

	connections, roundTrips, statements, syncs atomic.Int64
	clientBytes, serverBytes                   atomic.Int64
	delayedChunks, delayNanos, delayMaxNanos   atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen returns a proxy listening on addr (host:port; port 0 picks one)
// that forwards to upstream, delaying each direction by delay.
func Listen(addr, upstream string, delay time.Duration) (*Proxy, error) {
	if delay < 0 {
		return nil, fmt.Errorf("pgproxy: negative delay %v", delay)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pgproxy: listen on %s: %w", addr, err)
	}
	return &Proxy{ln: ln, upstream: upstream, delay: delay, conns: map[net.Conn]struct{}{}}, nil
}

// Addr returns the address clients connect to.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Connections:   p.connections.Load(),
		RoundTrips:    p.roundTrips.Load(),
		Statements:    p.statements.Load(),
		Syncs:         p.syncs.Load(),
		ClientBytes:   p.clientBytes.Load(),
		ServerBytes:   p.serverBytes.Load(),
		DelayedChunks: p.delayedChunks.Load(),
		DelayNanos:    p.delayNanos.Load(),
		DelayMaxNanos: p.delayMaxNanos.Load(),
	}
}

// Serve accepts connections until Close; it returns nil after Close.
func (p *Proxy) Serve() error {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("pgproxy: accept: %w", err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(client)
		}()
	}
}

// Close stops accepting, closes every open connection and waits for their
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) handle(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(client) || !p.track(server) {
		return
	}
	defer p.untrack(client)
	defer p.untrack(server)
	p.connections.Add(1)

	// The server answers an SSL or GSSAPI encryption request with one
	// untyped byte; the client side tells the server side to skip it.
	var rawReplies atomic.Int32
	fromClient := &framer{untyped: 1, onMessage: func(typ byte, f *framer) {
		switch typ {
		case 'E', 'Q':
			p.statements.Add(1)
		case 'S':
			p.syncs.Add(1)
		}
	}, onUntyped: func(code uint32, f *framer) {
		if code == sslRequest || code == gssEncRequest {
			rawReplies.Add(1)
			f.untyped++ // the startup message follows, untyped as well
		}
	}}
	fromServer := &framer{onMessage: func(typ byte, _ *framer) {
		if typ == 'Z' {
			p.roundTrips.Add(1)
		}
	}, rawBytes: &rawReplies}

	done := make(chan struct{}, 2)
	go func() {
		p.pipe(server, client, fromClient, &p.clientBytes)
		_ = server.Close()
		done <- struct{}{}
	}()
	go func() {
		p.pipe(client, server, fromServer, &p.serverBytes)
		_ = client.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// chunk is bytes read from one side, due on the other side at due.
type chunk struct {
	data []byte
	at   time.Time
}

// pipe copies src to dst, counting messages, each chunk delayed by p.delay.
func (p *Proxy) pipe(dst io.Writer, src io.Reader, fr *framer, bytes *atomic.Int64) {
	if p.delay == 0 {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				bytes.Add(int64(n))
				fr.feed(buf[:n])
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	// A reader stamps chunks as they arrive; the writer holds each until
	// its due time. The queue is deep enough that a reader never waits for
	// the writer in this benchmark (a connection has at most one pipeline
	// of requests in flight).
	queue := make(chan chunk, 4096)
	go func() {
		defer close(queue)
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				at := time.Now()
				bytes.Add(int64(n))
				fr.feed(buf[:n])
				queue <- chunk{data: append([]byte(nil), buf[:n]...), at: at}
			}
			if err != nil {
				return
			}
		}
	}()
	holdThread()
	defer releaseThread()
	failed := false
	for c := range queue {
		if failed {
			continue // drain, so that the reader can finish
		}
		sleepUntil(c.at.Add(p.delay))
		held := time.Since(c.at).Nanoseconds()
		p.delayedChunks.Add(1)
		p.delayNanos.Add(held)
		for {
			max := p.delayMaxNanos.Load()
			if held <= max || p.delayMaxNanos.CompareAndSwap(max, held) {
				break
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			failed = true
		}
	}
}

// Request codes of the untyped messages that precede the startup message.
const (
	sslRequest    = 80877103
	gssEncRequest = 80877104
)

// framer follows message boundaries in one direction of a connection.
// After the untyped messages a connection starts with (the client's
// startup, possibly preceded by an encryption request), every message is a
// type byte, a 4-byte big-endian length that counts itself, and a body.
type framer struct {
	untyped   int           // untyped messages still expected (client side)
	rawBytes  *atomic.Int32 // single untyped bytes still expected (server side)
	onMessage func(typ byte, f *framer)
	onUntyped func(code uint32, f *framer)

	header [8]byte
	have   int // bytes of header gathered
	skip   int // body bytes of the current message still to pass
	// lost: the stream can no longer be framed (it turned to TLS, or a
	// length made no sense). Bytes are still forwarded, not counted.
	lost bool
}

func (f *framer) feed(b []byte) {
	for len(b) > 0 && !f.lost {
		if f.skip > 0 {
			n := min(f.skip, len(b))
			f.skip -= n
			b = b[n:]
			continue
		}
		if f.rawBytes != nil && f.rawBytes.Load() > 0 && f.have == 0 {
			f.rawBytes.Add(-1)
			if b[0] == 'S' || b[0] == 'G' {
				f.lost = true // encrypted from here on
				return
			}
			b = b[1:]
			continue
		}
		want := 5
		if f.untyped > 0 {
			want = 8 // length and request code
		}
		n := copy(f.header[f.have:want], b)
		f.have += n
		b = b[n:]
		if f.have < want {
			return
		}
		f.have = 0
		if f.untyped > 0 {
			f.untyped--
			length := int(binary.BigEndian.Uint32(f.header[0:4]))
			if f.onUntyped != nil {
				f.onUntyped(binary.BigEndian.Uint32(f.header[4:8]), f)
			}
			f.skip = length - 8
		} else {
			length := int(binary.BigEndian.Uint32(f.header[1:5]))
			f.onMessage(f.header[0], f)
			f.skip = length - 4
		}
		if f.skip < 0 {
			f.lost = true
		}
	}
}
