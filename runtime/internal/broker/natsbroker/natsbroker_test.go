package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/brokertest"
)

func TestConformance(t *testing.T) {
	u := needNATS(t)
	admin := open(t, u)
	brokertest.Run(t,
		func(t *testing.T) broker.Broker { return open(t, u) },
		func(t *testing.T) string { return newSubject(t, admin, u) },
		brokertest.Caps{
			DedupByID:  true,
			Redelivery: testAckWait,
			MissingTopic: func(t *testing.T) string {
				return "statefun.test." + randomPart() + ".nostream"
			},
		})
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestPublishWithoutStreamFails: a publish that no stream stores is an
// error naming the subject and the fix, not a message lost in silence.
func TestPublishWithoutStreamFails(t *testing.T) {
	b := open(t, needNATS(t))
	subject := "statefun.test." + randomPart() + ".nostream"
	err := b.Publish(ctxFor(t, 10*time.Second), []broker.Message{{Topic: subject, Key: "k", ID: "1", Body: []byte("x")}})
	if err == nil {
		t.Fatalf("Publish to %s, which no stream stores, returned nil", subject)
	}
	if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), "EnsureStream") {
		t.Fatalf("Publish to %s: %v; want an error at once naming the subject and EnsureStream", subject, err)
	}
}

// TestPublishChecksBeforeSending: a batch with one message NATS cannot
// carry as given is refused whole, naming what is wrong, and nothing of
// it is stored.
func TestPublishChecksBeforeSending(t *testing.T) {
	u := needNATS(t)
	b := open(t, u)
	subject := newSubject(t, b, u)
	good := broker.Message{Topic: subject, Key: "k", ID: "good", Body: []byte("x")}
	cases := []struct {
		bad  broker.Message
		want string
	}{
		{broker.Message{Topic: subject, ID: "a", Headers: map[string]string{"Nats-Msg-Id": "x"}}, "Nats-Msg-Id"},
		{broker.Message{Topic: subject, ID: "b", Headers: map[string]string{"nats-expected-stream": "x"}}, "nats-expected-stream"},
		{broker.Message{Topic: subject, ID: "c", Headers: map[string]string{"statefun-key": "x"}}, "statefun-key"},
		{broker.Message{Topic: subject, ID: "d", Headers: map[string]string{"STATEFUN-KEY": "x"}}, "STATEFUN-KEY"},
		{broker.Message{Topic: subject, ID: "e", Headers: map[string]string{"ce-id": "two\nlines"}}, "line break"},
		{broker.Message{Topic: subject, ID: "f", Headers: map[string]string{"ce-id": " leading"}}, "blank"},
		{broker.Message{Topic: subject, ID: "g", Headers: map[string]string{"bad name": "x"}}, "bad name"},
		{broker.Message{Topic: subject, ID: "h", Key: "a\r\nb"}, "key"},
		{broker.Message{Topic: "statefun.test.*", ID: "i"}, "wildcard"},
		{broker.Message{Topic: "", ID: "j"}, "empty subject"},
	}
	for _, c := range cases {
		err := b.Publish(ctxFor(t, 10*time.Second), []broker.Message{good, c.bad})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Publish with message %+v: %v; want an error naming %q", c.bad, err, c.want)
		}
	}
	st, err := b.js.Stream(ctxFor(t, 10*time.Second), StreamName(subject))
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("stream holds %d messages after refused batches; want 0", n)
	}
}

// TestHeadersAndKeyTravel: headers come back with their names as given,
// and the adapter's own header does not show among them.
func TestHeadersAndKeyTravel(t *testing.T) {
	u := needNATS(t)
	b := open(t, u)
	subject := newSubject(t, b, u)
	sent := broker.Message{Topic: subject, Key: "entity-1", ID: "id-1",
		Headers: map[string]string{"ce-type": "t", "Content-Type": "application/json", "X-Some-Thing": "v"}, Body: []byte("{}")}
	if err := b.Publish(ctxFor(t, 10*time.Second), []broker.Message{sent}); err != nil {
		t.Fatal(err)
	}
	got := make(chan broker.Delivery, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(ctx, broker.Subscription{Topic: subject, Group: "g"}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			select {
			case got <- d:
			default:
			}
			return broker.Ack, 0
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Subscribe did not return within 20s of its context ending")
		}
	}()
	select {
	case d := <-got:
		if d.Key != sent.Key || d.ID != sent.ID || fmt.Sprint(d.Headers) != fmt.Sprint(sent.Headers) || string(d.Body) != "{}" {
			t.Errorf("received %+v; want %+v", d.Message, sent)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery within 20s")
	}
}

func TestEnsureStream(t *testing.T) {
	u := needNATS(t)
	b := open(t, u)
	ctx := ctxFor(t, 30*time.Second)
	r := randomPart()

	// A subject no stream stores: a stream of its own, file storage, the
	// default duplicate window; a second call changes nothing.
	s1 := "statefun.test." + r + ".one"
	for range 2 {
		if err := b.EnsureStream(ctx, "", s1); err != nil {
			t.Fatal(err)
		}
	}
	deleteStreamAtEnd(t, u, StreamName(s1))
	st, err := b.js.Stream(ctx, StreamName(s1))
	if err != nil {
		t.Fatalf("stream %s after EnsureStream: %v", StreamName(s1), err)
	}
	cfg := st.CachedInfo().Config
	if fmt.Sprint(cfg.Subjects) != fmt.Sprint([]string{s1}) || cfg.Storage != jetstream.FileStorage || cfg.Duplicates != defaultDuplicateWindow {
		t.Errorf("stream config: subjects %v, storage %v, duplicates %v; want [%s], file, %v", cfg.Subjects, cfg.Storage, cfg.Duplicates, s1, defaultDuplicateWindow)
	}

	// A subject a wildcard stream already stores: no new stream.
	wild := "statefun.test." + r + ".w.>"
	wname := "wild-" + r
	if err := b.EnsureStream(ctx, wname, wild); err != nil {
		t.Fatal(err)
	}
	deleteStreamAtEnd(t, u, wname)
	inWild := "statefun.test." + r + ".w.x"
	if err := b.EnsureStream(ctx, "", inWild); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Stream(ctx, StreamName(inWild)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("EnsureStream(%s) under stream %s made a stream of its own (lookup: %v)", inWild, wname, err)
		_ = b.js.DeleteStream(ctx, StreamName(inWild))
	}

	// A wildcard only part of which a stream stores: refused.
	if err := b.EnsureStream(ctx, "", "statefun.test."+r+".*.x"); err == nil || !strings.Contains(err.Error(), "in part") {
		t.Errorf("EnsureStream over a subject a stream stores in part: %v; want an error saying so", err)
		_ = b.js.DeleteStream(ctx, StreamName("statefun.test."+r+".*.x"))
	}

	// The name given is taken by a stream of other subjects: refused.
	if err := b.EnsureStream(ctx, wname, "statefun.test."+r+".other"); err == nil || !strings.Contains(err.Error(), wname) {
		t.Errorf("EnsureStream with the name of a stream of other subjects: %v; want an error naming it", err)
	}

	// The duplicate window is the option's.
	b2 := open(t, u, WithDuplicateWindow(5*time.Second))
	s2 := "statefun.test." + r + ".two"
	if err := b2.EnsureStream(ctx, "", s2); err != nil {
		t.Fatal(err)
	}
	deleteStreamAtEnd(t, u, StreamName(s2))
	st2, err := b.js.Stream(ctx, StreamName(s2))
	if err != nil {
		t.Fatal(err)
	}
	if d := st2.CachedInfo().Config.Duplicates; d != 5*time.Second {
		t.Errorf("duplicate window %v; want 5s", d)
	}
}

// TestWithStreamAtOpen: Open ensures the streams given to it.
func TestWithStreamAtOpen(t *testing.T) {
	u := needNATS(t)
	subject := "statefun.test." + randomPart() + ".atopen"
	b := open(t, u, WithStream("", subject))
	deleteStreamAtEnd(t, u, StreamName(subject))
	if err := b.Publish(ctxFor(t, 10*time.Second), []broker.Message{{Topic: subject, ID: "1"}}); err != nil {
		t.Fatalf("Publish to the stream WithStream made: %v", err)
	}
}

func TestSubscribeRefusesBadArguments(t *testing.T) {
	b := open(t, needNATS(t))
	h := func(context.Context, broker.Delivery) (broker.Verdict, time.Duration) { return broker.Ack, 0 }
	for _, c := range []struct {
		sub  broker.Subscription
		h    broker.Handler
		want string
	}{
		{broker.Subscription{Topic: "statefun.test.x", Group: ""}, h, "empty group"},
		{broker.Subscription{Topic: "statefun.test.x", Group: "g", Parallel: -1}, h, "Parallel"},
		{broker.Subscription{Topic: "statefun..x", Group: "g"}, h, "empty token"},
		{broker.Subscription{Topic: "statefun.test.x", Group: "g"}, nil, "nil handler"},
	} {
		err := b.Subscribe(ctxFor(t, 10*time.Second), c.sub, c.h)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Subscribe(%+v): %v; want an error naming %q", c.sub, err, c.want)
		}
	}
}

// TestOpenErrors: what went wrong and how to fix it, never a secret.
func TestOpenErrors(t *testing.T) {
	needNATS(t)
	lg, logs := newTestLog(t)
	ctx := ctxFor(t, 20*time.Second)

	if _, err := Open(ctx, "", WithLogger(lg)); err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Errorf("Open with no URL: %v; want an error naming --nats-url", err)
	}

	closed := fmt.Sprintf("nats://alice:url-secret@127.0.0.1:%d", freePort(t))
	_, err := Open(ctx, closed, WithLogger(lg), WithToken("token-secret"))
	if err == nil || !strings.Contains(err.Error(), "nats-server -js") {
		t.Errorf("Open of a closed port: %v; want an error saying how to start a server", err)
	}

	s := startServer(t, "--user", "alice", "--pass", "right-secret")
	_, err = Open(ctx, s.url(), WithLogger(lg), WithUserPassword("alice", "wrong-secret"))
	if err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("Open with a wrong password: %v; want an error saying to check the credentials", err)
	}
	for _, e := range []error{err} {
		if e != nil && strings.Contains(e.Error(), "secret") {
			t.Errorf("error shows a secret: %v", e)
		}
	}
	b, err := Open(ctx, s.url(), WithLogger(lg), WithUserPassword("alice", "right-secret"))
	if err != nil {
		t.Fatalf("Open with the right password: %v", err)
	}
	b.Close()
	u, _ := url.Parse(s.url())
	u.User = url.UserPassword("alice", "right-secret")
	b, err = Open(ctx, u.String(), WithLogger(lg))
	if err != nil {
		t.Fatalf("Open with the password in the URL: %v", err)
	}
	b.Close()
	if strings.Contains(logs.String(), "secret") {
		t.Errorf("the log shows a secret:\n%s", logs.String())
	}
}

func TestOpenErrorsHideURLCredentials(t *testing.T) {
	ctx := ctxFor(t, 20*time.Second)
	lg, logs := newTestLog(t)
	closed := fmt.Sprintf("nats://alice:url-secret@127.0.0.1:%d,nats://token-secret@127.0.0.1:%d", freePort(t), freePort(t))
	_, err := Open(ctx, closed, WithLogger(lg), WithToken("opt-secret"), WithUserPassword("bob", "pw-secret"))
	if err == nil {
		t.Fatal("Open of closed ports succeeded")
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(logs.String(), "secret") {
		t.Errorf("error or log shows a secret: %v\n%s", err, logs.String())
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error does not name the server: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                    "nats://127.0.0.1:4222",
		"nats://a:b@h:1":                           "nats://redacted@h:1",
		"nats://tok@h:1, tls://u:p@h2:2":           "nats://redacted@h:1,tls://redacted@h2:2",
		"u:p@h:1":                                  "[redacted]@h:1",
		"nats://u:p%zz@h:1":                        "[redacted]@h:1",
		"127.0.0.1:4222,nats://x:y@127.0.0.1:4223": "127.0.0.1:4222,nats://redacted@127.0.0.1:4223",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestSubjectCovers(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.*", "a.b", true},
		{"a.*", "a.*", true},
		{"a.*", "a.>", false},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a.>", true},
		{"a.>", "a", false},
		{"a.b", "a.*", false},
		{"a.b.>", "a.*.c", false},
		{">", "a.b", true},
	} {
		if got := subjectCovers(c.pattern, c.subject); got != c.want {
			t.Errorf("subjectCovers(%q, %q) = %v; want %v", c.pattern, c.subject, got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	seen := map[string]string{}
	for _, in := range []string{"orders", "orders.created", "orders_created", "a b", "a/b", "a\\b", "", strings.Repeat("x", 100), strings.Repeat("x", 101)} {
		got := StreamName(in)
		if len(got) > 64 || strings.ContainsFunc(got, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_'
		}) || got == "" {
			t.Errorf("StreamName(%q) = %q: not a valid name", in, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("StreamName(%q) = StreamName(%q) = %q", in, prev, got)
		}
		seen[got] = in
		if StreamName(in) != got {
			t.Errorf("StreamName(%q) not stable", in)
		}
	}
	if got := StreamName("orders"); got != "orders" {
		t.Errorf("StreamName(orders) = %q; want it unchanged", got)
	}
	if ConsumerName("g", "a.b") == ConsumerName("g", "a_b") || ConsumerName("g.a", "b") == ConsumerName("g", "a.b") {
		t.Error("ConsumerName gives two subscriptions one name")
	}
}

// TestKeysHandledConcurrently: with Parallel 2, a handler blocked on one
// key does not keep another key's message waiting.
func TestKeysHandledConcurrently(t *testing.T) {
	u := needNATS(t)
	b := open(t, u)
	subject := newSubject(t, b, u)
	msgs := []broker.Message{
		{Topic: subject, Key: "a", ID: "a1"}, {Topic: subject, Key: "b", ID: "b1"},
		{Topic: subject, Key: "a", ID: "a2"}, {Topic: subject, Key: "b", ID: "b2"},
	}
	if err := b.Publish(ctxFor(t, 10*time.Second), msgs); err != nil {
		t.Fatal(err)
	}
	b1Started := make(chan struct{})
	allDone := make(chan struct{})
	var mu sync.Mutex
	handled := map[string]bool{}
	overlapped := false
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(ctx, broker.Subscription{Topic: subject, Group: "g", Parallel: 2}, func(ctx context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			switch d.ID {
			case "a1":
				select {
				case <-b1Started:
					mu.Lock()
					overlapped = true
					mu.Unlock()
				case <-time.After(15 * time.Second):
				}
			case "b1":
				close(b1Started)
			}
			mu.Lock()
			handled[d.ID] = true
			if len(handled) == 4 {
				close(allDone)
			}
			mu.Unlock()
			return broker.Ack, 0
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Subscribe did not return within 20s of its context ending")
		}
	}()
	select {
	case <-allDone:
	case <-time.After(40 * time.Second):
		t.Fatal("not all 4 messages handled within 40s")
	}
	mu.Lock()
	defer mu.Unlock()
	if !overlapped {
		t.Error("b1 was not handled while a1's handler waited for it (Parallel 2)")
	}
}

// TestLongHandlerNotRedelivered: a handler (and the message of its key
// queued behind it) taking longer than AckWait is not delivered again
// meanwhile: the subscriber reports progress.
func TestLongHandlerNotRedelivered(t *testing.T) {
	u := needNATS(t)
	const ackWait = time.Second
	b := open(t, u, WithAckWait(ackWait))
	subject := newSubject(t, b, u)
	msgs := []broker.Message{{Topic: subject, Key: "a", ID: "slow"}, {Topic: subject, Key: "a", ID: "behind"}, {Topic: subject, Key: "a", ID: "end"}}
	if err := b.Publish(ctxFor(t, 10*time.Second), msgs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	end := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(ctx, broker.Subscription{Topic: subject, Group: "g", Parallel: 3}, func(ctx context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%s#%d", d.ID, d.Attempt))
			mu.Unlock()
			switch d.ID {
			case "slow":
				select {
				case <-time.After(4 * ackWait):
				case <-ctx.Done():
				}
			case "end":
				select {
				case <-end:
				default:
					close(end)
				}
			}
			return broker.Ack, 0
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Subscribe did not return within 20s of its context ending")
		}
	}()
	select {
	case <-end:
	case <-time.After(40 * time.Second):
		t.Fatal("the last message was not handled within 40s")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"slow#1", "behind#1", "end#1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %v; want %v (each once, in order)", got, want)
	}
}

// TestPublishUnreachable: a Publish while NATS is out of reach returns an
// error, at ctx's deadline when the network swallows everything and at
// once when the connection is gone, rather than hanging or queuing.
func TestPublishUnreachable(t *testing.T) {
	u := needNATS(t)
	target, _ := url.Parse(u)
	p := newProxy(t, target.Host)
	b := open(t, p.url())
	subject := newSubject(t, b, u)
	msg := []broker.Message{{Topic: subject, Key: "k", ID: "1", Body: []byte("x")}}
	if err := b.Publish(ctxFor(t, 10*time.Second), msg); err != nil {
		t.Fatalf("Publish through the proxy: %v", err)
	}

	publish := func(d time.Duration, id string) error {
		res := make(chan error, 1)
		go func() {
			res <- b.Publish(ctxFor(t, d), []broker.Message{{Topic: subject, Key: "k", ID: id}})
		}()
		select {
		case err := <-res:
			return err
		case <-time.After(d + 10*time.Second):
			t.Fatalf("Publish did not return within 10s after its %v deadline", d)
			return nil
		}
	}

	p.blackhole.Store(true)
	if err := publish(2*time.Second, "2"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish into a network that drops everything: %v; want the context's deadline", err)
	}

	p.close()
	if err := publish(20*time.Second, "3"); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish after the connection closed: %v; want an error before the deadline", err)
	} else {
		t.Logf("Publish after the connection closed: %v", err)
	}
}

// TestCloseEndsCalls: Close makes a running Subscribe return an error and
// a later Publish fail.
func TestCloseEndsCalls(t *testing.T) {
	u := needNATS(t)
	b := open(t, u)
	subject := newSubject(t, b, u)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(context.Background(), broker.Subscription{Topic: subject, Group: "g"}, func(context.Context, broker.Delivery) (broker.Verdict, time.Duration) {
			return broker.Ack, 0
		})
	}()
	time.Sleep(100 * time.Millisecond) // let it start; the test holds either way
	b.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Subscribe returned nil after Close; want an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Subscribe did not return within 20s of Close")
	}
	if err := b.Publish(ctxFor(t, 5*time.Second), []broker.Message{{Topic: subject, ID: "x"}}); err == nil {
		t.Error("Publish after Close returned nil")
	}
}

// TestServerRestart: NATS killed and started again (same port, same
// storage). Publish fails while it is down, works again once it is back,
// and a Subscribe that ran all along gets what was published after.
func TestServerRestart(t *testing.T) {
	needNATS(t)
	s := startServer(t)
	lg, logs := newTestLog(t)
	b := open(t, s.url(), WithLogger(lg))
	subject := "statefun.test.restart"
	if err := b.EnsureStream(ctxFor(t, 10*time.Second), "", subject); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]bool{}
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := b.Subscribe(ctx, broker.Subscription{Topic: subject, Group: "g", Parallel: 2}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			mu.Lock()
			got[d.ID] = true
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
			return broker.Ack, 0
		})
		if ctx.Err() == nil {
			t.Errorf("Subscribe returned while NATS restarted: %v", err)
		}
		done <- err
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Subscribe: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Subscribe did not return within 20s of its context ending")
		}
	}()
	waitGot := func(ids ...string) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			mu.Lock()
			all := true
			for _, id := range ids {
				all = all && got[id]
			}
			mu.Unlock()
			if all {
				return
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("messages %v not all received within 60s", ids)
			}
		}
	}
	batch := func(ids ...string) []broker.Message {
		var out []broker.Message
		for _, id := range ids {
			out = append(out, broker.Message{Topic: subject, Key: "k", ID: id, Body: []byte(id)})
		}
		return out
	}

	if err := b.Publish(ctxFor(t, 10*time.Second), batch("1", "2")); err != nil {
		t.Fatal(err)
	}
	waitGot("1", "2")

	s.kill()
	if err := b.Publish(ctxFor(t, 5*time.Second), batch("3", "4")); err == nil {
		t.Fatal("Publish with NATS down returned nil")
	} else {
		t.Logf("Publish with NATS down: %v", err)
	}

	// Keep NATS down until the subscriber has met the outage (and said
	// so), so that what follows shows it carried on.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "fetching messages failed; retrying"); {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber logged no failed fetch within 30s of NATS going down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := b.Publish(ctxFor(t, 3*time.Second), batch("3", "4"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish still failing 60s after NATS came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitGot("3", "4")
}
