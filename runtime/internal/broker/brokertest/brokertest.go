// Package brokertest is the conformance suite of broker.Broker. Each
// adapter runs it from its own tests against a real broker:
//
//	brokertest.Run(t, open, newTopic, brokertest.Caps{...})
//
// The suite speaks only through the interface. It checks what the runtime
// relies on: every message arrives whole, in order per key and one at a
// time per key; Publish returns only once the broker stored the messages;
// a message is acknowledged only after its handler returned Ack, so a
// Retry or a subscriber stopped in the middle brings it back and an Ack
// does not; the servers of a group share the messages; Subscribe refuses
// a topic it cannot read; and, where the broker can, a repeated message ID
// is stored once.
//
// A test either sees what it waits for or fails when Caps.Timeout runs
// out: no wait is unbounded, and no test measures how long anything took.
// To see that nothing arrives twice without waiting for silence, a test
// publishes, after the messages it checks, one more message per key (a
// sentinel) and stops when every sentinel arrived: messages of one key
// arrive in order, so anything of that key still to come would have come
// before it.
package brokertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// Caps is what the suite needs to know of the broker under test.
type Caps struct {
	// DedupByID: the broker stores once a message whose ID it already
	// stored within its window, even when the repeat comes on another
	// connection (JetStream: yes; Kafka: no). Without it DedupByID is
	// skipped.
	DedupByID bool
	// Redelivery is the longest a running subscriber's broker takes to
	// deliver again a message that was handed to a handler and never
	// acknowledged (JetStream: the consumer's AckWait). Where a test
	// checks that acknowledged messages do not come back, it waits this
	// long first, so that an adapter that does not really acknowledge is
	// caught. Zero where only a new subscriber would get such a message
	// again (Kafka: offsets not committed).
	Redelivery time.Duration
	// MissingTopic returns a topic that Subscribe cannot read and must
	// refuse at once (JetStream: a subject no stream stores; Kafka: a
	// topic that does not exist, with auto-creation off). Nil skips
	// SubscribeMissingTopicFails.
	MissingTopic func(t *testing.T) string
	// Timeout bounds each wait of a test: for deliveries, for a Publish,
	// for Subscribe to return. Default 30 seconds.
	Timeout time.Duration
}

// Run runs the suite. open returns a new connection to the broker (the
// suite closes it; Close may be called before the test ends); newTopic
// returns a topic no other test uses, empty, that Publish and Subscribe
// can use at once, and removes it when the test ends.
func Run(t *testing.T, open func(t *testing.T) broker.Broker, newTopic func(t *testing.T) string, caps Caps) {
	t.Helper()
	if caps.Timeout <= 0 {
		caps.Timeout = 30 * time.Second
	}
	s := &suite{open: open, newTopic: newTopic, caps: caps}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"DeliversEveryMessageWhole", s.testDeliversEveryMessageWhole},
		{"PublishReturnsAfterStorage", s.testPublishReturnsAfterStorage},
		{"DedupByID", s.testDedupByID},
		{"RetryRedelivers", s.testRetryRedelivers},
		{"StopAndResume", s.testStopAndResume},
		{"GroupShares", s.testGroupShares},
		{"SubscribeMissingTopicFails", s.testSubscribeMissingTopicFails},
		{"EmptyPublish", s.testEmptyPublish},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
}

type suite struct {
	open     func(t *testing.T) broker.Broker
	newTopic func(t *testing.T) string
	caps     Caps
}

// conn opens a connection that is closed when the test ends; the
// returned func closes it sooner (once).
func (s *suite) conn(t *testing.T) (broker.Broker, func()) {
	t.Helper()
	b := s.open(t)
	var once sync.Once
	closeIt := func() {
		once.Do(func() {
			if err := b.Close(); err != nil {
				t.Errorf("%s: Close: %v", b.Name(), err)
			}
		})
	}
	t.Cleanup(closeIt)
	return b, closeIt
}

func (s *suite) publish(t *testing.T, b broker.Broker, msgs []broker.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.caps.Timeout)
	defer cancel()
	if err := b.Publish(ctx, msgs); err != nil {
		t.Fatalf("%s: Publish of %d messages: %v", b.Name(), len(msgs), err)
	}
}

// newID returns a prefix for message IDs no other run uses.
func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// messages returns n messages over keys, round robin, with headers and
// binary bodies; every tenth has neither headers nor body.
func messages(topic, prefix string, keys []string, n int) []broker.Message {
	out := make([]broker.Message, n)
	for i := range out {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		m := broker.Message{
			Topic: topic,
			Key:   keys[i%len(keys)],
			ID:    id,
			Headers: map[string]string{
				"ce-id":          id,
				"ce-type":        "statefun.test.Happened",
				"ce-source":      "/brokertest",
				"ce-specversion": "1.0",
				"content-type":   "application/octet-stream",
				"X-Mixed-Case":   "value with spaces: and a colon",
				"empty":          "",
			},
			Body: append([]byte(fmt.Sprintf("body %d of %s ", i, prefix)), 0, 0xff, 0x80, '\n', '\r'),
		}
		if i%10 == 3 {
			m.Headers, m.Body = nil, nil
		}
		out[i] = m
	}
	return out
}

// sentinels returns one message per key, to publish after those a test
// checks (package doc).
func sentinels(topic, prefix string, keys []string) []broker.Message {
	out := make([]broker.Message, len(keys))
	for i, k := range keys {
		out[i] = broker.Message{Topic: topic, Key: k, ID: fmt.Sprintf("%s-end-%d", prefix, i), Body: []byte("end")}
	}
	return out
}

func byID(msgs ...[]broker.Message) map[string]broker.Message {
	m := make(map[string]broker.Message)
	for _, l := range msgs {
		for _, x := range l {
			m[x.ID] = x
		}
	}
	return m
}

// recorder keeps the deliveries handlers saw, in the order they saw them.
type recorder struct {
	mu      sync.Mutex
	got     []broker.Delivery
	changed chan struct{} // closed at the next add
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) add(d broker.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor waits until cond holds of the deliveries, or fails the test
// after timeout saying what it waited for and what came.
func (r *recorder) waitFor(t *testing.T, timeout time.Duration, what string, cond func([]broker.Delivery) bool) []broker.Delivery {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, changed := slices.Clone(r.got), r.changed
		r.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; %d deliveries came: %s", timeout, what, len(got), summary(got))
		}
	}
}

func summary(ds []broker.Delivery) string {
	var sb strings.Builder
	for i, d := range ds {
		if i == 40 {
			fmt.Fprintf(&sb, " ... (%d more)", len(ds)-i)
			break
		}
		fmt.Fprintf(&sb, " %s(key %q, attempt %d)", d.ID, d.Key, d.Attempt)
	}
	return sb.String()
}

// hasAll returns a condition: every id in ids was delivered.
func hasAll(ids ...[]broker.Message) func([]broker.Delivery) bool {
	want := byID(ids...)
	return func(ds []broker.Delivery) bool {
		seen := make(map[string]bool)
		for _, d := range ds {
			if _, ok := want[d.ID]; ok {
				seen[d.ID] = true
			}
		}
		return len(seen) == len(want)
	}
}

// count returns how many times each ID was delivered.
func count(ds []broker.Delivery) map[string]int {
	c := make(map[string]int)
	for _, d := range ds {
		c[d.ID]++
	}
	return c
}

// checkWhole checks that d is, field by field, the message of its ID in
// want.
func checkWhole(t *testing.T, want map[string]broker.Message, d broker.Delivery) {
	t.Helper()
	w, ok := want[d.ID]
	if !ok {
		t.Errorf("delivered a message no one published here: ID %q, key %q, topic %q", d.ID, d.Key, d.Topic)
		return
	}
	if d.Topic != w.Topic || d.Key != w.Key {
		t.Errorf("message %s: topic %q key %q, want topic %q key %q", d.ID, d.Topic, d.Key, w.Topic, w.Key)
	}
	if !maps.Equal(d.Headers, w.Headers) { // nil and empty are equal
		t.Errorf("message %s: headers %q, want %q", d.ID, d.Headers, w.Headers)
	}
	if !bytes.Equal(d.Body, w.Body) {
		t.Errorf("message %s: body %q, want %q", d.ID, d.Body, w.Body)
	}
}

// sub is one running Subscribe.
type sub struct {
	name   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// subscribe runs b.Subscribe until stop (or the test's end, which stops
// it too). Subscribe returning before that is an error.
func (s *suite) subscribe(t *testing.T, b broker.Broker, sb broker.Subscription, h broker.Handler) *sub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &sub{name: fmt.Sprintf("%s Subscribe(%q, group %q)", b.Name(), sb.Topic, sb.Group), cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := b.Subscribe(ctx, sb, h)
		if ctx.Err() == nil {
			t.Errorf("%s returned before its context ended: %v", r.name, err)
		}
		r.done <- err
	}()
	t.Cleanup(func() { r.stop(t, s.caps.Timeout) })
	return r
}

// stop ends the Subscribe's context and waits for it to return nil.
func (r *sub) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("%s returned %v once its context ended; want nil", r.name, err)
			}
		case <-time.After(timeout):
			t.Errorf("%s did not return within %v of its context ending", r.name, timeout)
		}
	})
}

// testDeliversEveryMessageWhole: every message published arrives once,
// with its topic, key, ID, headers and body; a key's messages are handled
// one at a time in the order published while several keys are handled at
// once, never more than Parallel.
func (s *suite) testDeliversEveryMessageWhole(t *testing.T) {
	topic := s.newTopic(t)
	b, _ := s.conn(t)
	prefix := newID()
	keys := []string{"k1", "k2", "k3", "k4", "k5"}
	msgs := messages(topic, prefix, keys, 60)
	ends := sentinels(topic, prefix, keys)
	s.publish(t, b, msgs)

	const parallel = 4
	rec := newRecorder()
	var mu sync.Mutex
	running, perKey := 0, map[string]int{}
	var overParallel, overKey []string
	h := func(ctx context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		mu.Lock()
		running++
		perKey[d.Key]++
		if running > parallel {
			overParallel = append(overParallel, d.ID)
		}
		if perKey[d.Key] > 1 {
			overKey = append(overKey, d.ID)
		}
		mu.Unlock()
		time.Sleep(time.Millisecond) // let handlers overlap, if they can
		rec.add(d)
		mu.Lock()
		running--
		perKey[d.Key]--
		mu.Unlock()
		return broker.Ack, 0
	}
	s.subscribe(t, b, broker.Subscription{Topic: topic, Group: "g-" + prefix, Parallel: parallel}, h)
	rec.waitFor(t, s.caps.Timeout, "all 60 messages", hasAll(msgs))
	s.publish(t, b, ends)
	got := rec.waitFor(t, s.caps.Timeout, "the sentinels", hasAll(ends))

	want := byID(msgs, ends)
	for _, d := range got {
		checkWhole(t, want, d)
		if d.Attempt != 1 {
			t.Errorf("message %s: Attempt %d on its only delivery; want 1", d.ID, d.Attempt)
		}
	}
	for id, n := range count(got) {
		if n != 1 {
			t.Errorf("message %s delivered %d times; want once", id, n)
		}
	}
	for _, k := range keys {
		var wantOrder, gotOrder []string
		for _, m := range msgs {
			if m.Key == k {
				wantOrder = append(wantOrder, m.ID)
			}
		}
		for _, d := range got {
			if d.Key == k && !strings.Contains(d.ID, "-end-") {
				gotOrder = append(gotOrder, d.ID)
			}
		}
		if !slices.Equal(gotOrder, wantOrder) {
			t.Errorf("key %s handled in the order %v; want the order published, %v", k, gotOrder, wantOrder)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(overParallel) > 0 {
		t.Errorf("more than Parallel=%d handlers ran at once, at messages %v", parallel, overParallel)
	}
	if len(overKey) > 0 {
		t.Errorf("two handlers of one key ran at once, at messages %v", overKey)
	}
}

// testPublishReturnsAfterStorage: once Publish returned, the messages are
// the broker's: the publisher's connection closed at once, a new reader
// on another connection still gets every one.
func (s *suite) testPublishReturnsAfterStorage(t *testing.T) {
	topic := s.newTopic(t)
	pub, closePub := s.conn(t)
	prefix := newID()
	keys := []string{"a", "b", "c"}
	msgs := messages(topic, prefix, keys, 300)
	for i := range msgs {
		msgs[i].Body = append(msgs[i].Body, bytes.Repeat([]byte{byte(i)}, 2048)...)
	}
	s.publish(t, pub, msgs)
	closePub()

	b, _ := s.conn(t)
	rec := newRecorder()
	s.subscribe(t, b, broker.Subscription{Topic: topic, Group: "fresh-" + prefix, Parallel: 8}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		rec.add(d)
		return broker.Ack, 0
	})
	got := rec.waitFor(t, s.caps.Timeout, "the 300 messages published before", hasAll(msgs))
	want := byID(msgs)
	for _, d := range got {
		checkWhole(t, want, d)
	}
}

// testDedupByID: the same batch published twice, on two connections, is
// delivered once.
func (s *suite) testDedupByID(t *testing.T) {
	if !s.caps.DedupByID {
		t.Skip("the broker does not deduplicate by message ID (Caps.DedupByID)")
	}
	topic := s.newTopic(t)
	b, _ := s.conn(t)
	b2, _ := s.conn(t)
	prefix := newID()
	keys := []string{"a", "b"}
	msgs := messages(topic, prefix, keys, 20)
	ends := sentinels(topic, prefix, keys)
	s.publish(t, b, msgs)
	s.publish(t, b2, msgs[5:]) // as a publisher does after a failed Publish
	s.publish(t, b, msgs)
	s.publish(t, b, ends)

	rec := newRecorder()
	s.subscribe(t, b, broker.Subscription{Topic: topic, Group: "g-" + prefix, Parallel: 2}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		rec.add(d)
		return broker.Ack, 0
	})
	got := rec.waitFor(t, s.caps.Timeout, "the messages and the sentinels", hasAll(msgs, ends))
	for id, n := range count(got) {
		if n != 1 {
			t.Errorf("message %s, published three times with one ID, delivered %d times; want once", id, n)
		}
	}
}

// testRetryRedelivers: a message whose handler returned Retry comes back
// after the delay, as attempt 2, and the others are all handled, once.
func (s *suite) testRetryRedelivers(t *testing.T) {
	topic := s.newTopic(t)
	b, _ := s.conn(t)
	prefix := newID()
	keys := []string{"a", "b"}
	msgs := messages(topic, prefix, keys, 10)
	ends := sentinels(topic, prefix, keys)
	target := msgs[3].ID
	s.publish(t, b, msgs)

	rec := newRecorder()
	var mu sync.Mutex
	retried := false
	s.subscribe(t, b, broker.Subscription{Topic: topic, Group: "g-" + prefix, Parallel: 2}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		rec.add(d)
		mu.Lock()
		defer mu.Unlock()
		if d.ID == target && !retried {
			retried = true
			return broker.Retry, 200 * time.Millisecond
		}
		return broker.Ack, 0
	})
	rec.waitFor(t, s.caps.Timeout, "every message, and "+target+" twice", func(ds []broker.Delivery) bool {
		return hasAll(msgs)(ds) && count(ds)[target] == 2
	})
	s.publish(t, b, ends)
	got := rec.waitFor(t, s.caps.Timeout, "the sentinels", hasAll(ends))
	var attempts []int
	for _, d := range got {
		if d.ID == target {
			attempts = append(attempts, d.Attempt)
			continue
		}
		if d.Attempt != 1 {
			t.Errorf("message %s: Attempt %d; want 1", d.ID, d.Attempt)
		}
	}
	if !slices.Equal(attempts, []int{1, 2}) {
		t.Errorf("the retried message came with attempts %v; want [1 2]", attempts)
	}
	for id, n := range count(got) {
		if id != target && n != 1 {
			t.Errorf("message %s delivered %d times; want once", id, n)
		}
	}
}

// testStopAndResume: a subscriber that acknowledged some messages and was
// stopped while handling the next one; a new subscriber of its group, on
// another connection, gets every message not acknowledged (the one
// interrupted included) and none of those acknowledged.
func (s *suite) testStopAndResume(t *testing.T) {
	topic := s.newTopic(t)
	b1, close1 := s.conn(t)
	prefix := newID()
	keys := []string{"a", "b"}
	msgs := messages(topic, prefix, keys, 20)
	ends := sentinels(topic, prefix, keys)
	group := "g-" + prefix
	s.publish(t, b1, msgs)

	const ackFirst = 5
	var mu sync.Mutex
	acked := map[string]bool{}
	interrupted := ""
	inHandler := make(chan struct{})
	first := s.subscribe(t, b1, broker.Subscription{Topic: topic, Group: group, Parallel: 1}, func(ctx context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		mu.Lock()
		if len(acked) < ackFirst && !acked[d.ID] {
			acked[d.ID] = true
			mu.Unlock()
			return broker.Ack, 0
		}
		if interrupted != "" { // after the stop: not handled
			mu.Unlock()
			return broker.Retry, 0
		}
		interrupted = d.ID
		mu.Unlock()
		close(inHandler)
		<-ctx.Done() // stopped in the middle
		return broker.Retry, 0
	})
	select {
	case <-inHandler:
	case <-time.After(s.caps.Timeout):
		t.Fatalf("waited %v for the first subscriber to reach message %d", s.caps.Timeout, ackFirst+1)
	}
	first.stop(t, s.caps.Timeout)
	close1()

	b2, _ := s.conn(t)
	mu.Lock()
	var unacked []broker.Message
	for _, m := range msgs {
		if !acked[m.ID] {
			unacked = append(unacked, m)
		}
	}
	mu.Unlock()
	rec := newRecorder()
	s.subscribe(t, b2, broker.Subscription{Topic: topic, Group: group, Parallel: 1}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		rec.add(d)
		return broker.Ack, 0
	})
	rec.waitFor(t, s.caps.Timeout, fmt.Sprintf("the %d messages not acknowledged", len(unacked)), hasAll(unacked))
	if s.caps.Redelivery > 0 {
		// Long enough for the broker to deliver again what was never
		// really acknowledged.
		time.Sleep(s.caps.Redelivery + s.caps.Redelivery/2)
	}
	s.publish(t, b2, ends)
	got := rec.waitFor(t, s.caps.Timeout, "the sentinels", hasAll(ends))
	want := byID(msgs, ends)
	mu.Lock()
	defer mu.Unlock()
	for _, d := range got {
		checkWhole(t, want, d)
		if acked[d.ID] {
			t.Errorf("message %s, acknowledged by the first subscriber, delivered again to the second (attempt %d)", d.ID, d.Attempt)
		}
	}
	for id, n := range count(got) {
		if n != 1 {
			t.Errorf("message %s delivered %d times to the second subscriber; want once", id, n)
		}
	}
	t.Logf("acknowledged %d, interrupted at %s", len(acked), interrupted)
}

// testGroupShares: two subscribers of one group, on two connections,
// handle each message once between them, and every one of them.
func (s *suite) testGroupShares(t *testing.T) {
	topic := s.newTopic(t)
	b1, _ := s.conn(t)
	b2, _ := s.conn(t)
	prefix := newID()
	keys := []string{"a", "b", "c", "d"}
	msgs := messages(topic, prefix, keys, 40)
	ends := sentinels(topic, prefix, keys)
	group := "g-" + prefix

	rec := newRecorder()
	var mu sync.Mutex
	by := map[string][]string{}
	handler := func(name string) broker.Handler {
		return func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			mu.Lock()
			by[name] = append(by[name], d.ID)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			rec.add(d)
			return broker.Ack, 0
		}
	}
	s.subscribe(t, b1, broker.Subscription{Topic: topic, Group: group, Parallel: 2}, handler("first"))
	s.subscribe(t, b2, broker.Subscription{Topic: topic, Group: group, Parallel: 2}, handler("second"))
	s.publish(t, b1, msgs)
	rec.waitFor(t, s.caps.Timeout, "all 40 messages", hasAll(msgs))
	s.publish(t, b1, ends)
	got := rec.waitFor(t, s.caps.Timeout, "the sentinels", hasAll(ends))
	want := byID(msgs, ends)
	for _, d := range got {
		checkWhole(t, want, d)
	}
	for id, n := range count(got) {
		if n != 1 {
			t.Errorf("message %s handled %d times by the group; want once", id, n)
		}
	}
	mu.Lock()
	t.Logf("first handled %d, second %d", len(by["first"]), len(by["second"]))
	mu.Unlock()
}

// testSubscribeMissingTopicFails: Subscribe to a topic it cannot read
// returns an error while its context is still alive.
func (s *suite) testSubscribeMissingTopicFails(t *testing.T) {
	if s.caps.MissingTopic == nil {
		t.Skip("no unreadable topic given (Caps.MissingTopic)")
	}
	topic := s.caps.MissingTopic(t)
	b, _ := s.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), s.caps.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(ctx, broker.Subscription{Topic: topic, Group: "g-" + newID(), Parallel: 1}, func(context.Context, broker.Delivery) (broker.Verdict, time.Duration) {
			t.Errorf("handler called for a topic that cannot be read")
			return broker.Ack, 0
		})
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("Subscribe(%q) returned nil; want an error", topic)
		}
		if ctx.Err() != nil {
			t.Fatalf("Subscribe(%q) returned only when its context ended (%v); want an error at once", topic, err)
		}
		t.Logf("Subscribe(%q): %v", topic, err)
	case <-time.After(s.caps.Timeout + 5*time.Second):
		t.Fatalf("Subscribe(%q) had not returned %v after its context ended", topic, 5*time.Second)
	}
}

// testEmptyPublish: publishing nothing succeeds.
func (s *suite) testEmptyPublish(t *testing.T) {
	b, _ := s.conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), s.caps.Timeout)
	defer cancel()
	if err := b.Publish(ctx, nil); err != nil {
		t.Errorf("Publish(nil) = %v; want nil", err)
	}
	if err := b.Publish(ctx, []broker.Message{}); err != nil {
		t.Errorf("Publish([]) = %v; want nil", err)
	}
}
