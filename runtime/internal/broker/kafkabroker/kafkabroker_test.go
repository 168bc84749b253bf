package kafkabroker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/kafkabroker"
)

func TestPublishSubscribeDeliversEverythingInOrderPerKey(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 4})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))

	msgs := messages("events", keys(5), 20)
	// A header named like the ID's is replaced by the ID.
	msgs[0].Headers[kafkabroker.IDHeader] = "not the id"
	for i := 0; i < len(msgs); i += 25 {
		publish(t, b, msgs[i:i+25])
	}
	delete(msgs[0].Headers, kafkabroker.IDHeader)

	var rec recorder
	subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 3}, rec.handle)
	eventually(t, "every message is delivered", func() bool { return rec.distinct() == len(msgs) })

	want := make(map[string]broker.Message)
	for _, m := range msgs {
		want[m.ID] = m
	}
	next := make(map[string]int) // per key, the index of the next message
	for _, d := range rec.deliveries() {
		if d.Attempt != 1 {
			t.Errorf("%s: attempt %d, want 1", d.ID, d.Attempt)
		}
		if diff := cmp.Diff(want[d.ID], d.Message); diff != "" {
			t.Errorf("%s received differs (-published +received):\n%s", d.ID, diff)
		}
		if wantID := fmt.Sprintf("%s/%d", d.Key, next[d.Key]); d.ID != wantID {
			t.Errorf("key %s: got %s, want %s next (each key in publish order, once)", d.Key, d.ID, wantID)
		}
		next[d.Key]++
	}
}

func TestPublishReturnsOnceStored(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 3})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	adm := admin(t, c.ListenAddrs())

	msgs := messages("events", keys(7), 10)
	publish(t, b, msgs)

	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	ends.Each(func(o kadm.ListedOffset) { stored += o.Offset })
	if stored != int64(len(msgs)) {
		t.Fatalf("right after Publish returned the topic holds %d records, want %d", stored, len(msgs))
	}

	// A group that never read the topic reads all of it.
	var rec recorder
	subscribe(t, b, broker.Subscription{Topic: "events", Group: "fresh", Parallel: 1}, rec.handle)
	eventually(t, "the fresh group reads everything", func() bool { return rec.distinct() == len(msgs) })
}

func TestRetryRedeliversAndBlocksItsPartition(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 1})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	// One partition: the other key's messages queue behind the retried one too.
	publish(t, b, []broker.Message{
		{Topic: "events", Key: "a", ID: "a1"},
		{Topic: "events", Key: "a", ID: "a2"},
		{Topic: "events", Key: "b", ID: "b1"},
	})

	type delivery struct {
		ID      string
		Attempt int
	}
	var (
		mu  sync.Mutex
		got []delivery
	)
	subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 4}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, delivery{d.ID, d.Attempt})
		if d.ID == "a1" && d.Attempt < 3 {
			return broker.Retry, 20 * time.Millisecond
		}
		return broker.Ack, 0
	})
	eventually(t, "b1 is delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1].ID == "b1"
	})
	mu.Lock()
	defer mu.Unlock()
	want := []delivery{{"a1", 1}, {"a1", 2}, {"a1", 3}, {"a2", 1}, {"b1", 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestRestartRedeliversExactlyWhatWasNotAcked(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 1})
	log, _ := testLogger(t)
	// No periodic commit: what the restart sees is what the end of the
	// first subscription committed.
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log), kafkabroker.WithCommitInterval(time.Hour))
	adm := admin(t, c.ListenAddrs())
	msgs := messages("events", []string{"k"}, 10)
	publish(t, b, msgs)

	sub := broker.Subscription{Topic: "events", Group: "g", Parallel: 1}
	reached := make(chan struct{})
	var acked []string
	first := subscribe(t, b, sub, func(ctx context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		if d.ID == "k/5" {
			close(reached)
			<-ctx.Done() // stopped mid-handling
			return broker.Retry, time.Second
		}
		acked = append(acked, d.ID)
		return broker.Ack, 0
	})
	select {
	case <-reached:
	case <-time.After(wait):
		t.Fatal("k/5 never delivered")
	}
	if err := first.stop(t); err != nil {
		t.Fatalf("Subscribe returned %v after its context ended, want nil", err)
	}
	if want := []string{"k/0", "k/1", "k/2", "k/3", "k/4"}; !cmp.Equal(acked, want) {
		t.Fatalf("acked %v before the stop, want %v", acked, want)
	}
	if got := committed(t, adm, "g", "events"); got[0] != 5 {
		t.Fatalf("committed offsets %v after the stop, want partition 0 at 5 (past the 5 acked records, not past k/5)", got)
	}

	var rec recorder
	subscribe(t, b, sub, rec.handle)
	eventually(t, "the rest is delivered", func() bool { return rec.distinct() == 5 })
	var ids []string
	for _, d := range rec.deliveries() {
		ids = append(ids, d.ID)
	}
	if want := []string{"k/5", "k/6", "k/7", "k/8", "k/9"}; !cmp.Equal(ids, want) {
		t.Errorf("after the restart got %v, want %v: the unacked ones again, no acked one", ids, want)
	}
}

func TestGroupSharesPartitionsAndRebalanceRedeliversNoAckedMessage(t *testing.T) {
	t.Parallel()
	const topic = "events"
	c := newCluster(t, map[string]int32{topic: 6})
	log, _ := testLogger(t)
	// No periodic commit: a partition moving from one member to the
	// other carries only what its revocation committed.
	opts := []kafkabroker.Option{kafkabroker.WithLogger(log), kafkabroker.WithCommitInterval(time.Hour)}
	pub := open(t, c.ListenAddrs(), opts...)
	first := open(t, c.ListenAddrs(), append(opts, kafkabroker.WithClientID("first"))...)
	second := open(t, c.ListenAddrs(), append(opts, kafkabroker.WithClientID("second"))...)

	// Round r is one message per key, IDs "key/r".
	ks := keys(60)
	rounds := 0
	publishRound := func() {
		publish(t, pub, messages(topic, ks, rounds+1)[rounds*len(ks):])
		rounds++
	}

	var (
		mu         sync.Mutex
		acked      = make(map[string]bool)
		ackedOrder = make(map[string][]string) // per key
		handledBy  = make(map[string]int)
		violations []string
	)
	handler := func(name string) broker.Handler {
		return func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
			time.Sleep(2 * time.Millisecond) // keep handling going while the group rebalances
			mu.Lock()
			defer mu.Unlock()
			if acked[d.ID] {
				violations = append(violations, fmt.Sprintf("%s redelivered to %s after it was acked", d.ID, name))
			}
			acked[d.ID] = true
			ackedOrder[d.Key] = append(ackedOrder[d.Key], d.ID)
			handledBy[name]++
			return broker.Ack, 0
		}
	}
	sub := broker.Subscription{Topic: topic, Group: "shared", Parallel: 4}
	for range 8 {
		publishRound()
	}
	subscribe(t, first, sub, handler("first"))
	eventually(t, "the first member handles some", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= len(ks)
	})
	// The group rebalances while the first member is busy; it hands
	// the second member half the partitions with what it acked
	// committed. Publish until the second one has something to handle.
	subscribe(t, second, sub, handler("second"))
	eventually(t, "the second member joins and handles some", func() bool {
		mu.Lock()
		n := handledBy["second"]
		mu.Unlock()
		if n == 0 {
			publishRound()
			time.Sleep(50 * time.Millisecond)
		}
		return n > 0
	})
	publishRound()
	eventually(t, "every message is acked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == rounds*len(ks)
	})

	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	for _, k := range ks {
		var want []string
		for i := range rounds {
			want = append(want, fmt.Sprintf("%s/%d", k, i))
		}
		if !cmp.Equal(ackedOrder[k], want) {
			t.Errorf("key %s acked in the order %v, want %v", k, ackedOrder[k], want)
		}
	}
	if handledBy["first"] == 0 || handledBy["second"] == 0 {
		t.Errorf("handled by member: %v; want both", handledBy)
	}
}

func TestParallelBoundsHandlersAndKeysStaySequential(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 4})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	msgs := messages("events", keys(20), 3)
	publish(t, b, msgs)

	const parallel = 2
	var (
		active     atomic.Int32
		maxActive  atomic.Int32
		reached    = make(chan struct{}) // closed once parallel handlers ran at once
		reachOnce  sync.Once
		mu         sync.Mutex
		activeKeys = make(map[string]bool)
		violations []string
		handled    = make(map[string]bool)
	)
	subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: parallel}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		mu.Lock()
		if activeKeys[d.Key] {
			violations = append(violations, d.ID+" handled while another message of its key was")
		}
		activeKeys[d.Key] = true
		mu.Unlock()
		n := active.Add(1)
		for m := maxActive.Load(); n > m && !maxActive.CompareAndSwap(m, n); m = maxActive.Load() {
		}
		if n >= parallel {
			reachOnce.Do(func() { close(reached) })
		}
		// Partitions are handled in parallel, so the first handlers
		// to wait here are of different partitions and meet.
		select {
		case <-reached:
		case <-time.After(wait):
		}
		// Give a handler beyond the bound the time to show up.
		time.Sleep(10 * time.Millisecond)
		active.Add(-1)
		mu.Lock()
		activeKeys[d.Key] = false
		handled[d.ID] = true
		mu.Unlock()
		return broker.Ack, 0
	})
	eventually(t, "every message is handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == len(msgs)
	})
	select {
	case <-reached:
	default:
		t.Errorf("never %d handlers at once", parallel)
	}
	if m := maxActive.Load(); m > parallel {
		t.Errorf("%d handlers ran at once, want at most %d", m, parallel)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
}

func TestBlockedPartitionLosesNothingAcrossPauses(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 1})
	log, _ := testLogger(t)
	// A queue of 3: while k/0 is retried, the partition's records pile
	// up and its fetching pauses; it resumes as they are handled.
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log), kafkabroker.WithQueueLimit(3))
	msgs := messages("events", []string{"k"}, 40)

	var (
		mu        sync.Mutex
		ids       []string
		published = make(chan struct{})
		done      = make(chan struct{})
	)
	subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 1}, func(_ context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
		select {
		case <-published:
		default:
			if d.ID == "k/0" {
				return broker.Retry, 5 * time.Millisecond
			}
		}
		if strings.HasSuffix(d.ID, "7") && d.Attempt < 3 {
			return broker.Retry, time.Millisecond
		}
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, d.ID)
		if len(ids) == len(msgs) {
			close(done)
		}
		return broker.Ack, 0
	})
	// In several batches, so that they reach the subscription in
	// several fetches.
	for i := 0; i < len(msgs); i += 5 {
		publish(t, b, msgs[i:i+5])
		time.Sleep(5 * time.Millisecond)
	}
	close(published)
	select {
	case <-done:
	case <-time.After(wait):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("only %d of %d messages acked: %v", len(ids), len(msgs), ids)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		if want := fmt.Sprintf("k/%d", i); id != want {
			t.Fatalf("acked %v; want k/0 to k/39 in order, once each", ids)
		}
	}
}

func TestEnsureTopic(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"existing": 2})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	adm := admin(t, c.ListenAddrs())
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()

	for _, tc := range []struct {
		topic string
		ask   int
		want  int
	}{
		{"created", 3, 3},
		{"created", 5, 3}, // exists: left as it is
		{"defaulted", 0, kafkabroker.DefaultPartitions},
		{"existing", 7, 2},
	} {
		if err := b.EnsureTopic(ctx, tc.topic, tc.ask); err != nil {
			t.Fatalf("EnsureTopic(%q, %d): %v", tc.topic, tc.ask, err)
		}
		tds, err := adm.ListTopics(ctx, tc.topic)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(tds[tc.topic].Partitions); got != tc.want {
			t.Errorf("after EnsureTopic(%q, %d) it has %d partitions, want %d", tc.topic, tc.ask, got, tc.want)
		}
	}
	// A topic just ensured can be published to and subscribed at once.
	publish(t, b, messages("defaulted", keys(3), 1))
	var rec recorder
	subscribe(t, b, broker.Subscription{Topic: "defaulted", Group: "g", Parallel: 1}, rec.handle)
	eventually(t, "the new topic's messages arrive", func() bool { return rec.distinct() == 3 })
}

func TestMissingTopicFails(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()

	err := b.Publish(ctx, []broker.Message{{Topic: "missing", Key: "k", ID: "1"}})
	if err == nil || !strings.Contains(err.Error(), `"missing"`) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Publish to a missing topic: %v; want an error naming it and saying it does not exist", err)
	}
	err = b.Subscribe(ctx, broker.Subscription{Topic: "missing", Group: "g", Parallel: 1}, (&recorder{}).handle)
	if err == nil || !strings.Contains(err.Error(), `"missing"`) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Subscribe to a missing topic: %v; want an error naming it and saying it does not exist", err)
	}
}

func TestPublishWithBrokerGoneFailsWithinDeadline(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 1})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	publish(t, b, messages("events", keys(1), 1)) // connected and ready
	c.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- b.Publish(ctx, messages("events", keys(2), 2)) }()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Publish with the broker gone returned nil")
		}
		t.Logf("Publish with the broker gone: %v", err)
	case <-time.After(wait):
		t.Fatal("Publish with the broker gone did not return after its context ended")
	}

	// Without a deadline, Close ends it.
	go func() { errc <- b.Publish(context.Background(), messages("events", keys(2), 2)) }()
	time.Sleep(100 * time.Millisecond) // let it start waiting; Close ends it either way
	closeBroker(t, b)
	select {
	case err := <-errc:
		if !errors.Is(err, kafkabroker.ErrClosed) {
			t.Errorf("Publish ended by Close returned %v, want ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Publish did not return after Close")
	}
}

func TestSubscribeRefusedByTheBrokersFailsAtOnce(t *testing.T) {
	t.Parallel()
	topicACL := func(op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "events", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	}
	// reader may read the topic but not use a consumer group.
	c := newCluster(t, map[string]int32{"events": 1},
		kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("PLAIN", "admin", "admin-password"),
		kfake.User("PLAIN", "reader", "reader-password", topicACL(kmsg.ACLOperationDescribe), topicACL(kmsg.ACLOperationRead)))
	log, _ := testLogger(t)
	admin := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log), kafkabroker.WithSASL(kafkabroker.SASLPlain, "admin", "admin-password"))
	publish(t, admin, messages("events", keys(1), 1))
	reader := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log), kafkabroker.WithSASL(kafkabroker.SASLPlain, "reader", "reader-password"))

	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	err := reader.Subscribe(ctx, broker.Subscription{Topic: "events", Group: "g", Parallel: 1}, (&recorder{}).handle)
	if ctx.Err() != nil {
		t.Fatal("Subscribe refused by the brokers kept retrying until its context ended")
	}
	if !errors.Is(err, kerr.GroupAuthorizationFailed) || !strings.Contains(err.Error(), "grant the user READ") {
		t.Errorf("Subscribe without READ on the group: %v; want GROUP_AUTHORIZATION_FAILED and what to grant", err)
	}
}

func TestOpenFailsClearlyWhenNothingListens(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	b, err := kafkabroker.Open(ctx, []string{addr})
	if err == nil {
		b.Close()
		t.Fatal("Open succeeded with nothing listening")
	}
	if !strings.Contains(err.Error(), "connect to Kafka at "+addr) || !strings.Contains(err.Error(), "--kafka-brokers") {
		t.Errorf("Open: %v; want it to name the address and the setting to check", err)
	}
	if _, err := kafkabroker.Open(ctx, nil); err == nil || !strings.Contains(err.Error(), "no Kafka brokers") {
		t.Errorf("Open with no brokers: %v", err)
	}
}

func TestSubscribeRetriesThroughOutageAndEndsWithItsContext(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 2})
	log, logs := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	publish(t, b, messages("events", keys(4), 2))
	var rec recorder
	r := subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 2}, rec.handle)
	eventually(t, "the messages arrive", func() bool { return rec.distinct() == 8 })

	c.Close()
	eventually(t, "the outage is logged", func() bool { return strings.Contains(logs.String(), "level=WARN") })
	if err := r.stop(t); err != nil {
		t.Errorf("Subscribe returned %v when its context ended during an outage, want nil", err)
	}
}

func TestSubscriptionAndPublishResumeAfterBrokerRestart(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	start := func() *kfake.Cluster {
		return newCluster(t, map[string]int32{"events": 2}, kfake.DataDir(dir), kfake.Ports(port))
	}
	c := start()
	log, logs := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	adm := admin(t, c.ListenAddrs())
	publish(t, b, messages("events", keys(4), 1))
	var rec recorder
	subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 2}, rec.handle)
	eventually(t, "the first messages are committed", func() bool {
		offsets, err := tryCommitted(t, adm, "g", "events")
		if err != nil {
			return false // the group is not there yet
		}
		var n int64
		for _, o := range offsets {
			n += o
		}
		return n == 4
	})

	c.Close()
	eventually(t, "the outage is logged", func() bool { return strings.Contains(logs.String(), "level=WARN") })
	start()
	msgs := messages("events", keys(4), 3)[4:]
	publish(t, b, msgs) // waits for the cluster to be back
	eventually(t, "the messages published after the restart arrive", func() bool { return rec.distinct() == 12 })
	for id, n := range rec.byIDs() {
		if n != 1 {
			t.Errorf("%s delivered %d times; everything acked was committed before the outage", id, n)
		}
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	t.Parallel()
	c := newCluster(t, map[string]int32{"events": 1})
	log, _ := testLogger(t)
	b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log))
	publish(t, b, messages("events", keys(1), 1))
	var rec recorder
	r := subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 1}, rec.handle)
	eventually(t, "the message arrives", func() bool { return rec.distinct() == 1 })

	closeBroker(t, b)
	select {
	case <-r.done:
		if !errors.Is(r.err, kafkabroker.ErrClosed) {
			t.Errorf("Subscribe ended by Close returned %v, want ErrClosed", r.err)
		}
	case <-time.After(wait):
		t.Fatal("Subscribe did not return after Close")
	}
	if err := b.Publish(t.Context(), messages("events", keys(1), 1)); !errors.Is(err, kafkabroker.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestSASLCredentialsNeverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	const (
		user     = "statefun-user-1f3a"
		password = "right-password-9c2e"
		wrong    = "wrong-password-7b4d"
	)
	for _, mech := range []kafkabroker.SASLMechanism{kafkabroker.SASLPlain, kafkabroker.SASLScramSHA256, kafkabroker.SASLScramSHA512} {
		t.Run(string(mech), func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, map[string]int32{"events": 1}, kfake.EnableSASL(), kfake.Superuser(string(mech), user, password))
			log, logs := testLogger(t)

			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			_, err := kafkabroker.Open(ctx, c.ListenAddrs(), kafkabroker.WithLogger(log), kafkabroker.WithSASL(mech, user, wrong))
			if err == nil {
				t.Fatal("Open with a wrong password succeeded")
			}
			if !strings.Contains(err.Error(), "user and password") {
				t.Errorf("Open with a wrong password: %v; want it to say to check the SASL user and password", err)
			}
			for _, secret := range []string{wrong, user} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error of Open holds %q: %v", secret, err)
				}
			}

			b := open(t, c.ListenAddrs(), kafkabroker.WithLogger(log), kafkabroker.WithSASL(mech, user, password))
			publish(t, b, messages("events", keys(2), 2))
			var rec recorder
			r := subscribe(t, b, broker.Subscription{Topic: "events", Group: "g", Parallel: 1}, rec.handle)
			eventually(t, "the messages arrive", func() bool { return rec.distinct() == 4 })
			if err := r.stop(t); err != nil {
				t.Errorf("Subscribe: %v", err)
			}
			closeBroker(t, b)

			for _, secret := range []string{wrong, password, user} {
				for _, line := range strings.Split(logs.String(), "\n") {
					if strings.Contains(line, secret) {
						t.Errorf("a log line holds %q: %s", secret, line)
					}
				}
			}
		})
	}
}
