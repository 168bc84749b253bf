package reliability

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// TestPublishCrashUnderLoad kills the auth example's server with SIGKILL
// at random moments while users log in, restarts it on the same store and
// the same NATS server, and checks INVARIANTS.md's invariant 18 for its
// publisher (LoginEventsService: the User entity's LoginFailed and
// UserAuthenticated events to the JetStream subject auth.logins) once a
// last clean start has caught up:
//
//  1. every stored LoginFailed and UserAuthenticated event is on the
//     stream: none lost across the kills (a position saved past an event
//     the broker had not stored would lose it);
//  2. every message on the stream is a stored event, the same type and
//     bytes: none of a batch that failed or was never acknowledged, whose
//     seq a later event took;
//  3. each user's messages are on the stream in seq order;
//  4. no ID is on the stream twice: the repeats a restarted publisher
//     sends carry the first copy's ID, which JetStream drops (the test
//     ends well within its two-minute duplicate window);
//  5. no UserRegistered or UserLocked event is on the stream.
//
// The server reaches NATS through a link that delays every byte, so that
// the kills find publishes in flight; the load mixes right and wrong
// passwords, and two users only guess, so that the anomaly detector
// locks them (UserLocked, stored and not published). Each subtest has its
// own nats-server.
func TestPublishCrashUnderLoad(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		schema := newSchema(t, "pubcrash")
		flags := []string{"--database-url", databaseURL(), "--database-schema", schema}
		var st store.Journal // opened once the server made the schema
		publishCrashUnderLoad(t, "postgres", flags, func(t *testing.T, users []string) map[string][]store.Event {
			if st == nil {
				st = openPostgres(t, schema)
			}
			return readUsers(t, st, users)
		})
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		publishCrashUnderLoad(t, "embedded", []string{"--data-dir", dir}, func(t *testing.T, users []string) map[string][]store.Event {
			// Called only while no server runs: the file lock is free.
			st, err := embedded.Open(dir)
			if err != nil {
				t.Fatalf("open the data directory: %v", err)
			}
			defer st.Close()
			return readUsers(t, st, users)
		})
	})
}

const (
	// pubCrashRounds is how many times each store's server is killed.
	pubCrashRounds = 6
	// pubUsers log in; the first pubGuessers of them only with wrong
	// passwords, so that the anomaly detector locks them (UserLocked
	// events, which must not be published).
	pubUsers    = 20
	pubGuessers = 2
	// loginsSubject is where the auth example publishes (auth.proto).
	loginsSubject = "auth.logins"
	// catchUpLimit bounds the wait for the last start's publisher.
	catchUpLimit = 30 * time.Second
	// brokerDelay is how long the link to NATS holds each chunk, each way.
	brokerDelay = 20 * time.Millisecond
)

// publishedTypes are the event types LoginEventsService publishes.
var publishedTypes = []string{"LoginFailed", "UserAuthenticated"}

func publishCrashUnderLoad(t *testing.T, name string, flags []string, read func(*testing.T, []string) map[string][]store.Event) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	natsURL := startNATS(t)
	// The server reaches NATS over a slow link: each publish waits a
	// round trip of 2×brokerDelay for its acknowledgement, so that a kill
	// finds messages in flight, sent and not yet acknowledged, or
	// acknowledged with the position not yet saved.
	link := slowLink(t, strings.TrimPrefix(natsURL, "nats://"), brokerDelay)
	flags = append(slices.Clone(flags), "--nats-url", "nats://"+link)
	users := make([]string, pubUsers)
	for i := range users {
		users[i] = fmt.Sprintf("pub-%s-%02d", name, i)
	}
	ld := &loginLoad{users: users, workers: 8}
	// The server keeps its addresses: on Postgres the gRPC address names
	// the node, which then takes its shards' and the publisher's leases
	// back at once instead of waiting for the killed node's to expire.
	cfg := serverConfig{example: "auth", flags: flags, grpcAddr: stableAddr(t), httpAddr: stableAddr(t)}

	for round := range pubCrashRounds {
		srv := startServer(t, cfg)
		client := authv1.NewUserServiceClient(srv.conn)
		if round == 0 {
			for _, u := range users {
				ctx, cancel := context.WithTimeout(t.Context(), hangLimit)
				_, err := client.Register(ctx, &authv1.RegisterRequest{UserId: u, Password: password(u)})
				cancel()
				if err != nil {
					t.Fatalf("register %s: %v\n%s", u, err, srv.log)
				}
			}
		}
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan struct{})
		seed := rng.Uint64()
		go func() { ld.run(ctx, client, seed); close(done) }()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		srv.kill()
		stop()
		select {
		case <-done:
		case <-time.After(hangLimit + 10*time.Second):
			t.Fatalf("the login load did not stop after the kill\n%s", srv.log)
		}
		srv.checkNoRaces(t)
		count("crashes injected (kill -9)", 1)
	}

	// What the last start must publish: the store does not gain login
	// events without logins (the anomaly detector only adds UserLocked).
	before := read(t, users)
	want := publishable(before)
	onStream := streamCount(t, natsURL)

	srv := startServer(t, cfg)
	deadline := time.Now().Add(catchUpLimit)
	for {
		n := streamCount(t, natsURL)
		if n >= uint64(len(want)) && missing(readStream(t, natsURL), want) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v the stream holds %d messages; the store %d events to publish (%d missing)",
				catchUpLimit, n, len(want), missing(readStream(t, natsURL), want))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	repeats := -1 // unknown if /metrics does not answer
	if p, err := publishedTotal(t.Context(), srv.httpAddr); err == nil {
		repeats = int(p) - int(streamCount(t, natsURL)-onStream)
	} else {
		t.Logf("no statefun_published_total from the last start: %v", err)
	}
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM after recovery: %v\n%s", err, srv.log)
	}
	srv.checkNoRaces(t)

	stored := read(t, users)
	msgs := readStream(t, natsURL)
	c := checkPublished(t, stored, msgs)
	if t.Failed() {
		t.Logf("server log of the last start:\n%s", srv.log)
	}
	if c.published == 0 {
		t.Fatal("no login event was published: the load never ran")
	}
	t.Logf("%s: %d kill -9; logins %v; %d events stored (%d published types, %d UserLocked); %d messages on the stream; the last start sent %d repeats JetStream dropped",
		name, pubCrashRounds, ld.outcomes(), c.stored, c.published, c.locked, len(msgs), repeats)
	count("events published through kills", c.published)
	note("eventing-crash/%s: %d kill -9, %d events stored, %d published once each, %d repeats dropped by JetStream at the last start", name, pubCrashRounds, c.stored, c.published, repeats)
}

func password(user string) string { return "pw-" + user + "-secret" }

// loginLoad logs users in with right and (some) wrong passwords until its
// context ends, from round to round.
type loginLoad struct {
	users   []string
	workers int
	// outcomes of the calls, over every round
	authenticated, rejected, denied, failed atomic.Int64
}

func (l *loginLoad) run(ctx context.Context, client authv1.UserServiceClient, seed uint64) {
	var wg sync.WaitGroup
	for w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for ctx.Err() == nil {
				// One login in five is a guesser's, which the
				// detector soon locks; the other users mistype one
				// password in six, rarely three times in a row before
				// a success resets their count.
				i := pubGuessers + rng.IntN(len(l.users)-pubGuessers)
				if rng.IntN(5) == 0 {
					i = rng.IntN(pubGuessers)
				}
				u := l.users[i]
				pw := password(u)
				if i < pubGuessers || rng.IntN(6) == 0 {
					pw = "wrong-" + strconv.Itoa(rng.IntN(1000))
				}
				callCtx, cancel := context.WithTimeout(ctx, hangLimit)
				res, err := client.Login(callCtx, &authv1.LoginRequest{UserId: u, Password: pw})
				cancel()
				switch {
				case err == nil && res.GetAuthenticated():
					l.authenticated.Add(1)
				case err == nil:
					l.rejected.Add(1)
				case status.Code(err) == codes.PermissionDenied:
					l.denied.Add(1)
				default:
					l.failed.Add(1) // the kill: the server is gone
					if !sleep(ctx, 20*time.Millisecond) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (l *loginLoad) outcomes() string {
	return fmt.Sprintf("authenticated %d, wrong password %d, locked out %d, failed %d",
		l.authenticated.Load(), l.rejected.Load(), l.denied.Load(), l.failed.Load())
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// readUsers returns every stored event of the users.
func readUsers(t *testing.T, st store.Journal, users []string) map[string][]store.Event {
	t.Helper()
	out := map[string][]store.Event{}
	for _, u := range users {
		ctx, cancel := context.WithTimeout(t.Context(), hangLimit)
		err := st.ReadEvents(ctx, store.Ref{Type: authv1.UserEntityType, ID: u}, 0, func(e store.Event) error {
			out[u] = append(out[u], e)
			return nil
		})
		cancel()
		if err != nil {
			t.Fatalf("read the stored events of %s: %v", u, err)
		}
	}
	return out
}

// eventID is the message ID the publisher gives an event (README,
// Eventing): <entity type>/<entity id>/<seq>.
func eventID(e store.Event) string {
	return e.Entity.Type + "/" + e.Entity.ID + "/" + strconv.FormatInt(e.Seq, 10)
}

// publishable returns the stored events the publisher must send, by ID.
func publishable(stored map[string][]store.Event) map[string]store.Event {
	out := map[string]store.Event{}
	for _, es := range stored {
		for _, e := range es {
			if slices.Contains(publishedTypes, e.EventType) {
				out[eventID(e)] = e
			}
		}
	}
	return out
}

// missing counts the events of want no message carries.
func missing(msgs []streamMsg, want map[string]store.Event) int {
	have := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		have[m.id] = true
	}
	n := 0
	for id := range want {
		if !have[id] {
			n++
		}
	}
	return n
}

type pubCheck struct {
	stored, published, locked int
}

// checkPublished checks the stream against the store (the test's doc,
// 1 to 5) and returns counts for the report.
func checkPublished(t testing.TB, stored map[string][]store.Event, msgs []streamMsg) pubCheck {
	t.Helper()
	var c pubCheck
	all := map[string]store.Event{}
	for _, es := range stored {
		c.stored += len(es)
		for _, e := range es {
			all[eventID(e)] = e
			if e.EventType == "UserLocked" {
				c.locked++
			}
		}
	}
	want := publishable(stored)
	c.published = len(want)
	const show = 10 // failures of each kind printed in full
	var lost, foreign, disordered, twice, unpublishable, malformed []string
	seen := map[string]int{}      // ID -> how many messages carry it
	lastSeq := map[string]int64{} // user -> seq of their last message so far
	for _, m := range msgs {
		seen[m.id]++
		if seen[m.id] == 2 {
			twice = append(twice, fmt.Sprintf("%s (stream seqs %d and later)", m.id, m.streamSeq))
		}
		typ, user, seq, ok := parseEventID(m.id)
		if !ok || typ != authv1.UserEntityType || m.ceID != m.id || m.subject != user || m.key != user || m.natsSubject != loginsSubject {
			malformed = append(malformed, m.String())
			continue
		}
		if seen[m.id] == 1 && seq <= lastSeq[user] { // a repeat is (4)
			disordered = append(disordered, fmt.Sprintf("%s at stream seq %d after %s/%s/%d", m.id, m.streamSeq, typ, user, lastSeq[user]))
		}
		lastSeq[user] = max(lastSeq[user], seq)
		if !slices.Contains(publishedTypes, m.ceType) {
			unpublishable = append(unpublishable, m.String())
		}
		e, ok := all[m.id]
		switch {
		case !ok:
			foreign = append(foreign, m.String()+": no such event is stored")
		case e.EventType != m.ceType || !bytes.Equal(e.Payload, m.body):
			foreign = append(foreign, fmt.Sprintf("%s: the stored event at that seq is a %s with other bytes (%x, message %x)", m, e.EventType, e.Payload, m.body))
		case !slices.Contains(publishedTypes, e.EventType):
			unpublishable = append(unpublishable, m.String())
		}
	}
	for id, e := range want {
		if seen[id] == 0 {
			lost = append(lost, fmt.Sprintf("%s (%s)", id, e.EventType))
		}
	}
	slices.Sort(lost)
	report := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		t.Errorf("%s: %d, the first %s", what, len(items), strings.Join(items[:min(show, len(items))], "; "))
	}
	report("(1) stored events missing from the stream", lost)
	report("(2) messages that are no stored event", foreign)
	report("(3) messages out of their user's seq order", disordered)
	report("(4) IDs on the stream more than once", twice)
	report("(5) messages of event types the publisher does not publish", unpublishable)
	report("messages whose IDs and headers disagree", malformed)
	return c
}

// TestPublishedCheckCatches proves that checkPublished sees each broken
// promise, so that a passing TestPublishCrashUnderLoad means something.
func TestPublishedCheckCatches(t *testing.T) {
	t.Parallel()
	ev := func(user string, seq int64, typ, body string) store.Event {
		return store.Event{Entity: store.Ref{Type: authv1.UserEntityType, ID: user}, Seq: seq, EventType: typ, Payload: []byte(body)}
	}
	msg := func(e store.Event) streamMsg {
		id := eventID(e)
		return streamMsg{natsSubject: loginsSubject, id: id, ceID: id, ceType: e.EventType, subject: e.Entity.ID, key: e.Entity.ID, body: e.Payload}
	}
	reg, ok1, fail2, ok3 := ev("u", 1, "UserRegistered", "r"), ev("u", 2, "UserAuthenticated", "a"), ev("u", 3, "LoginFailed", "f"), ev("u", 4, "UserAuthenticated", "b")
	lock := ev("u", 5, "UserLocked", "l")
	stored := map[string][]store.Event{"u": {reg, ok1, fail2, ok3, lock}}
	other := msg(ev("u", 3, "LoginFailed", "a failed batch's")) // the seq a later event took
	ghost := msg(ev("u", 6, "LoginFailed", "g"))                // never stored
	badKey := msg(ok3)
	badKey.key = "someone-else"
	for _, tc := range []struct {
		name string
		msgs []streamMsg
		want string
	}{
		{"all there", []streamMsg{msg(ok1), msg(fail2), msg(ok3)}, ""},
		{"lost", []streamMsg{msg(ok1), msg(ok3)}, "(1) stored events missing"},
		{"another event at that seq", []streamMsg{msg(ok1), other, msg(ok3)}, "(2) messages that are no stored event"},
		{"never stored", []streamMsg{msg(ok1), msg(fail2), msg(ok3), ghost}, "(2) messages that are no stored event"},
		{"out of order", []streamMsg{msg(ok1), msg(ok3), msg(fail2)}, "(3) messages out of their user's seq order"},
		{"twice", []streamMsg{msg(ok1), msg(fail2), msg(fail2), msg(ok3)}, "(4) IDs on the stream more than once"},
		{"registration", []streamMsg{msg(reg), msg(ok1), msg(fail2), msg(ok3)}, "(5) messages of event types"},
		{"lock", []streamMsg{msg(ok1), msg(fail2), msg(ok3), msg(lock)}, "(5) messages of event types"},
		{"headers", []streamMsg{msg(ok1), msg(fail2), badKey}, "IDs and headers disagree"},
	} {
		r := &recorder{TB: t}
		checkPublished(r, stored, tc.msgs)
		got := strings.Join(r.errors, "\n")
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: reported %s", tc.name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: want a report of %q, got %q", tc.name, tc.want, got)
		}
	}
}

// parseEventID splits an ID made by eventID.
func parseEventID(id string) (typ, entity string, seq int64, ok bool) {
	i, j := strings.IndexByte(id, '/'), strings.LastIndexByte(id, '/')
	if i < 0 || j <= i {
		return "", "", 0, false
	}
	seq, err := strconv.ParseInt(id[j+1:], 10, 64)
	if err != nil {
		return "", "", 0, false
	}
	return id[:i], id[i+1 : j], seq, true
}

// streamMsg is a message as the stream holds it.
type streamMsg struct {
	streamSeq                  uint64
	natsSubject                string
	id                         string // Nats-Msg-Id
	ceID, ceType, subject, key string // ce-id, ce-type, ce-subject, statefun-key
	body                       []byte
}

func (m streamMsg) String() string {
	return fmt.Sprintf("#%d %s id=%q ce-id=%q ce-type=%q ce-subject=%q key=%q", m.streamSeq, m.natsSubject, m.id, m.ceID, m.ceType, m.subject, m.key)
}

// startNATS starts a private nats-server with JetStream on a free port,
// stopped when the test ends, and returns its URL (as
// examples/internal/e2e.StartNATS, which this package may not import).
func startNATS(t *testing.T) string {
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
	logFile := filepath.Join(dir, "nats.log")
	cmd := exec.Command(bin, "-a", host, "-p", port, "-js", "-sd", filepath.Join(dir, "store"), "-l", logFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(logFile)
			t.Logf("nats-server log:\n%s", log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return "nats://" + addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("nats-server did not start at %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// slowLink forwards TCP connections from a free port to target, each
// direction's bytes delayed by delay and kept in order: a broker farther
// away. It returns its address; it closes when the test ends.
func slowLink(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn) {
		mu.Lock()
		conns[c] = true
		mu.Unlock()
	}
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				server, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					_ = client.Close()
					return
				}
				track(client)
				track(server)
				go delayedCopy(server, client, delay)
				go delayedCopy(client, server, delay)
			}()
		}
	}()
	return ln.Addr().String()
}

// delayedCopy writes what it reads from src to dst delay later, then
// closes both when either side ends.
func delayedCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		due  time.Time
		data []byte
	}
	chunks := make(chan chunk, 1024)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	for range chunks { // the reader ends: src is closed
	}
}

// loginsStream connects to NATS and returns the stream that stores
// auth.logins, which the server created at its first start.
func loginsStream(t *testing.T, url string) (jetstream.Stream, func()) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, loginsSubject)
	if err != nil {
		nc.Close()
		t.Fatalf("no stream stores %s: %v", loginsSubject, err)
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		nc.Close()
		t.Fatalf("stream %s: %v", name, err)
	}
	return s, nc.Close
}

// streamCount returns how many messages the stream holds.
func streamCount(t *testing.T, url string) uint64 {
	t.Helper()
	s, closeConn := loginsStream(t, url)
	defer closeConn()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// readStream returns every message of the stream, in stream order, read
// with an ordered consumer up to the last message it held when called.
func readStream(t *testing.T, url string) []streamMsg {
	t.Helper()
	s, closeConn := loginsStream(t, url)
	defer closeConn()
	ctx, cancel := context.WithTimeout(t.Context(), hangLimit)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	var out []streamMsg
	var last uint64
	for last < info.State.LastSeq {
		if ctx.Err() != nil {
			t.Fatalf("read %d of the stream's %d messages within %v", len(out), info.State.Msgs, hangLimit)
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("fetch from the stream: %v", err)
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				t.Fatalf("message metadata: %v", err)
			}
			h := m.Headers()
			out = append(out, streamMsg{
				streamSeq: meta.Sequence.Stream, natsSubject: m.Subject(),
				id: h.Get(jetstream.MsgIDHeader), ceID: h.Get("ce-id"), ceType: h.Get("ce-type"),
				subject: h.Get("ce-subject"), key: h.Get("statefun-key"), body: slices.Clone(m.Data()),
			})
			last = meta.Sequence.Stream
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil {
			t.Logf("fetch from the stream (going on): %v", err)
		}
	}
	return out
}

// publishedTotal scrapes the server's statefun_published_total.
func publishedTotal(ctx context.Context, httpAddr string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", res.Status)
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "statefun_published_total "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no statefun_published_total in /metrics")
}
