package kafkabroker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/kafkabroker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait of these tests: long enough for a slow CI
// machine, short enough that a hang fails the test.
const wait = 60 * time.Second

// logBuffer collects log lines for assertions and for the test's output
// when it fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testLogger logs everything, the client's requests included, to a
// buffer shown if the test fails.
func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug - 4})), lb
}

// newCluster starts an in-process Kafka with topics of the given
// partition counts.
func newCluster(t *testing.T, topics map[string]int32, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)
	for topic, n := range topics {
		opts = append(opts, kfake.SeedTopics(n, topic))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// open connects to c; the broker is closed (with a deadline) at the end
// of the test.
func open(t *testing.T, addrs []string, opts ...kafkabroker.Option) *kafkabroker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	b, err := kafkabroker.Open(ctx, addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeBroker(t, b) })
	return b
}

func closeBroker(t *testing.T, b *kafkabroker.Broker) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Close()
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
}

// running is a Subscribe call in its goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func subscribe(t *testing.T, b *kafkabroker.Broker, sub broker.Subscription, h broker.Handler) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = b.Subscribe(ctx, sub, h)
	}()
	t.Cleanup(func() {
		if err := r.stop(t); err != nil && !errors.Is(err, kafkabroker.ErrClosed) {
			t.Errorf("Subscribe returned %v after its context ended, want nil", err)
		}
	})
	return r
}

// stop ends the subscription and returns what Subscribe returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(wait):
		t.Fatal("Subscribe did not return after its context ended")
		return nil
	}
}

// eventually polls cond until it holds, failing the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publish(t *testing.T, b *kafkabroker.Broker, msgs []broker.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := b.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
}

// messages makes n messages for each key: IDs "key/i", bodies and
// headers naming both.
func messages(topic string, keys []string, n int) []broker.Message {
	var msgs []broker.Message
	for i := range n {
		for _, k := range keys {
			msgs = append(msgs, broker.Message{
				Topic: topic,
				Key:   k,
				ID:    fmt.Sprintf("%s/%d", k, i),
				Headers: map[string]string{
					"ce-id":        fmt.Sprintf("%s/%d", k, i),
					"ce-type":      "test.Event",
					"content-type": "application/octet-stream",
				},
				Body: fmt.Appendf(nil, "body of %s/%d", k, i),
			})
		}
	}
	return msgs
}

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("entity-%d", i)
	}
	return ks
}

// admin is a kadm client on c, closed at the end of the test.
func admin(t *testing.T, addrs []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// committed is the group's committed offset of each partition of topic
// (absent: none committed).
func committed(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	out, err := tryCommitted(t, adm, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryCommitted(t *testing.T, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	resps, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64)
	for p, r := range resps[topic] {
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out, nil
}

// recorder is a handler that acknowledges everything and remembers what
// it was given.
type recorder struct {
	mu   sync.Mutex
	got  []broker.Delivery
	byID map[string]int
}

func (r *recorder) handle(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = make(map[string]int)
	}
	r.got = append(r.got, d)
	r.byID[d.ID]++
	return broker.Ack, 0
}

func (r *recorder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

func (r *recorder) deliveries() []broker.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Delivery(nil), r.got...)
}

func (r *recorder) byIDs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.byID)
}
