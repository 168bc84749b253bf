package kafkabroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// How a subscription paces itself. None of these is a correctness
// setting: offsets are committed only past acknowledged records whatever
// the interval; a longer one only means more redelivered after a crash.
const (
	// commitInterval is how often acknowledged offsets are committed.
	// They are also committed when partitions are revoked and when the
	// subscription ends.
	commitInterval = 200 * time.Millisecond
	// drainWait bounds the wait for handlers in flight when partitions
	// are taken away or the subscription ends. A handler still running
	// after it finishes in the background, and what it acknowledges is
	// not committed (so it is handled again).
	drainWait = 10 * time.Second
	// commitTimeout bounds one offset commit (the client retries inside
	// it), so that a broker outage cannot stall a revocation.
	commitTimeout = 10 * time.Second
	// leaveTimeout bounds leaving the group at the end; the group
	// notices a member that could not say goodbye at its session
	// timeout instead.
	leaveTimeout = 5 * time.Second
	// pollRecords bounds the records taken per poll; rebalances wait
	// while a poll's records are handed to the partitions.
	pollRecords = 1000
	// errorLogEvery spaces out the log lines of a failure that repeats
	// (a broker outage fails every fetch and commit).
	errorLogEvery = 10 * time.Second
)

type topicPartition struct {
	topic     string
	partition int32
}

// subscription is one Subscribe call: a consumer group client, a
// goroutine per assigned partition handing that partition's records to
// the handler one at a time, and a committer.
//
// Ownership of partitions comes from the group's callbacks, which
// franz-go runs neither during a poll's hand-out (BlockRebalanceOnPoll)
// nor concurrently with each other. A partition is in parts from its
// assignment until it is revoked or lost; only partitions in parts are
// committed, under commitMu, and a revocation takes a partition out of
// parts under commitMu before waiting for its handler and committing its
// last acknowledged offset itself. So no commit is ever made for a
// partition after the callback that took it away returned.
type subscription struct {
	b      *Broker
	sub    broker.Subscription
	h      broker.Handler
	log    *slog.Logger
	ctx    context.Context // the handlers'; ends when Subscribe is to return
	cancel context.CancelCauseFunc
	sem    chan struct{} // one token per handler running (Subscription.Parallel)

	commitMu sync.Mutex // held while committing and while taking partitions away

	mu      sync.Mutex
	parts   map[topicPartition]*partition
	closing bool // no partition is started once set
	joined  bool // the group assigned this member once (even nothing)

	// refused is why the brokers refused the subscription before it
	// was ever assigned anything (no READ on the group): a setup error
	// Subscribe returns, where later failures are retried.
	refused error

	errMu      sync.Mutex
	lastErrLog time.Time
	suppressed int
}

// partition hands one partition's records to the handler in offset
// order, one at a time, and keeps the offset to commit.
type partition struct {
	s    *subscription
	cl   *kgo.Client
	tp   topicPartition
	wake chan struct{} // a record was queued
	stop chan struct{} // closed when the partition is taken away
	done chan struct{} // closed when run returned

	mu      sync.Mutex
	queue   []*kgo.Record
	paused  bool // fetching paused because queue is full
	stopped bool
	// acked is the offset after the last record acknowledged, with its
	// leader epoch: what a commit of this partition sends. Records are
	// acknowledged in offset order, so every record before it was acked.
	acked     kgo.EpochOffset
	committed int64 // the last acked.Offset committed
}

// Subscribe implements broker.Subscriber with the consumer group
// sub.Group on sub.Topic. A group new to the topic starts at its oldest
// record. Each partition assigned to this member is handled one record at
// a time, up to sub.Parallel partitions at once (more than the partitions
// assigned gives nothing more).
//
// It fails at once if the topic does not exist, or if the brokers refuse
// this user the topic or the group before the group ever assigned it
// anything. After that, broker failures are logged and retried until ctx
// ends; then it waits (at most drainWait) for handlers in flight, commits
// what they acknowledged, leaves the group and returns nil. It returns
// ErrClosed when Close ended it.
func (b *Broker) Subscribe(ctx context.Context, sub broker.Subscription, h broker.Handler) error {
	switch {
	case sub.Topic == "":
		return errors.New("kafkabroker: subscribe: no topic")
	case sub.Group == "":
		return fmt.Errorf("kafkabroker: subscribe to Kafka topic %q: no consumer group; name one, stable across restarts", sub.Topic)
	case h == nil:
		return fmt.Errorf("kafkabroker: subscribe to Kafka topic %q: nil handler", sub.Topic)
	}
	if err := b.checkOpen(); err != nil {
		return err
	}
	exists, err := b.topicExists(ctx, sub.Topic)
	if err != nil {
		if ctx.Err() != nil {
			return nil // ended before it began: nothing was delivered, nothing is wrong
		}
		return fmt.Errorf("kafkabroker: subscribe to Kafka topic %q: %w", sub.Topic, err)
	}
	if !exists {
		return fmt.Errorf("kafkabroker: subscribe to Kafka topic %q: the topic does not exist; create it first", sub.Topic)
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := &subscription{
		b:      b,
		sub:    sub,
		h:      h,
		log:    b.log.With("topic", sub.Topic, "group", sub.Group),
		ctx:    runCtx,
		cancel: cancel,
		sem:    make(chan struct{}, max(sub.Parallel, 1)),
		parts:  make(map[topicPartition]*partition),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.subs[s] = struct{}{}
	b.subsWG.Add(1)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		b.subsWG.Done()
	}()

	opts, err := b.clientOpts()
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumerGroup(sub.Group),
		kgo.ConsumeTopics(sub.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Offsets are committed only past acknowledged records (commit).
		kgo.DisableAutoCommit(),
		// Revocations wait until a poll's records are handed to their
		// partitions, so that none goes to a partition already gone.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, revoked map[string][]int32) {
			s.release(cl, revoked, true)
		}),
		// Lost means the group already gave them to another member
		// (session expired, fenced): committing would be wrong, and
		// would be refused.
		kgo.OnPartitionsLost(func(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
			s.release(cl, lost, false)
		}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkabroker: subscribe to Kafka topic %q: configure the client: %w", sub.Topic, err)
	}
	s.run(cl)
	if s.refused != nil {
		return fmt.Errorf("kafkabroker: subscribe to Kafka topic %q as consumer group %q: %w; grant the user READ on the group and on the topic", sub.Topic, sub.Group, s.refused)
	}
	if errors.Is(context.Cause(runCtx), ErrClosed) {
		return fmt.Errorf("kafkabroker: subscription to Kafka topic %q (group %q): %w", sub.Topic, sub.Group, ErrClosed)
	}
	return nil
}

// topicExists asks a broker, bypassing the client's metadata cache (a
// topic just made by EnsureTopic may be cached as missing), and without
// letting the broker create it.
func (b *Broker) topicExists(ctx context.Context, topic string) (bool, error) {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, b.cl)
	if err != nil {
		return false, fmt.Errorf("describe it: %w", err)
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != topic {
			continue
		}
		switch err := kerr.ErrorForCode(rt.ErrorCode); {
		case err == nil, errors.Is(err, kerr.LeaderNotAvailable): // just created
			return true, nil
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			return false, nil
		case errors.Is(err, kerr.TopicAuthorizationFailed):
			return false, fmt.Errorf("describe it: %w; grant the user DESCRIBE and READ on it", err)
		default:
			return false, fmt.Errorf("describe it: %w", err)
		}
	}
	return false, nil
}

// run polls until s.ctx ends, then winds down: handlers finish, their
// acknowledgements are committed, the group is left.
func (s *subscription) run(cl *kgo.Client) {
	committerDone := make(chan struct{})
	go s.commitLoop(cl, committerDone)

	s.poll(cl)
	s.cancel(nil) // when poll ended on its own (refused): handlers and committer end too
	// A leave (below) revokes everything, which waits for this.
	cl.AllowRebalance()

	s.mu.Lock()
	s.closing = true
	all := make(map[string][]int32)
	for tp := range s.parts {
		all[tp.topic] = append(all[tp.topic], tp.partition)
	}
	s.mu.Unlock()
	s.release(cl, all, true)
	<-committerDone

	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), leaveTimeout)
	if err := cl.LeaveGroupContext(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Debug("kafka: leaving the consumer group failed; the group will notice at its session timeout", "err", err)
	}
	cancel()
	cl.Close()
}

func (s *subscription) poll(cl *kgo.Client) {
	for {
		fetches := cl.PollRecords(s.ctx, pollRecords)
		if s.ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		failed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			failed = true
			if isRefusal(err) && !s.wasAssigned() {
				s.refused = err
				return
			}
			s.logError("kafka: fetching failed; retrying", err, "partition", partition)
		})
		if s.refused != nil {
			return
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			s.mu.Lock()
			w := s.parts[topicPartition{p.Topic, p.Partition}]
			s.mu.Unlock()
			if w == nil {
				// franz-go assigns (OnPartitionsAssigned) before it
				// fetches, and revokes only between polls; only
				// the end of the subscription (closing) leaves a
				// partition without its goroutine.
				if !s.isClosing() {
					s.log.Error("kafka: records for a partition not assigned to this subscription; dropped", "partition", p.Partition)
				}
				return
			}
			w.push(p.Records)
		})
		cl.AllowRebalance()
		if failed && fetches.NumRecords() == 0 {
			// Some errors come back at once; do not spin on them.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

// isRefusal reports whether err says the brokers will not let this user
// consume, as opposed to a failure that may pass.
func isRefusal(err error) bool {
	return errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.SaslAuthenticationFailed)
}

func (s *subscription) wasAssigned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined
}

func (s *subscription) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// assigned starts a goroutine for each partition the group gave us.
func (s *subscription) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined = true
	if s.closing {
		return
	}
	var started []int32
	for topic, ps := range assigned {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if s.parts[tp] != nil {
				continue
			}
			w := &partition{
				s:         s,
				cl:        cl,
				tp:        tp,
				wake:      make(chan struct{}, 1),
				stop:      make(chan struct{}),
				done:      make(chan struct{}),
				acked:     kgo.EpochOffset{Epoch: -1, Offset: -1},
				committed: -1,
			}
			s.parts[tp] = w
			started = append(started, p)
			go w.run()
		}
	}
	if len(started) > 0 {
		s.log.Info("kafka: partitions assigned", "partitions", started)
	}
}

// release takes partitions away: revoked (commit what was acknowledged,
// we still own them until we return) or lost (commit nothing: they
// belong to another member already). It returns once their handlers
// finished, or after drainWait.
func (s *subscription) release(cl *kgo.Client, tps map[string][]int32, commit bool) {
	var ws []*partition
	s.commitMu.Lock()
	s.mu.Lock()
	for topic, ps := range tps {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if w := s.parts[tp]; w != nil {
				delete(s.parts, tp)
				ws = append(ws, w)
			}
		}
	}
	s.mu.Unlock()
	s.commitMu.Unlock()
	if len(ws) == 0 {
		return
	}

	for _, w := range ws {
		w.stopNow()
	}
	deadline := time.NewTimer(drainWait)
	defer deadline.Stop()
	expired := false
	var stuck []int32
	for _, w := range ws {
		if !expired {
			select {
			case <-w.done:
				continue
			case <-deadline.C:
				expired = true
			}
		}
		select {
		case <-w.done:
		default:
			// Left to finish in the background.
			stuck = append(stuck, w.tp.partition)
		}
	}
	if len(stuck) > 0 {
		s.log.Warn("kafka: handlers still running after the partitions were taken away; what they acknowledge now is not committed, so it is handled again",
			"partitions", stuck, "waited", drainWait)
	}

	if commit {
		s.commitMu.Lock()
		s.commit(cl, ws)
		s.commitMu.Unlock()
	}
	var released []int32
	for _, w := range ws {
		released = append(released, w.tp.partition)
		w.mu.Lock()
		if w.paused {
			// Pausing outlives the assignment; we may get the
			// partition back.
			w.paused = false
			cl.ResumeFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
		}
		w.mu.Unlock()
	}
	if !s.isClosing() {
		if commit {
			s.log.Info("kafka: partitions revoked", "partitions", released)
		} else {
			s.log.Warn("kafka: partitions lost; their records not yet committed are handled again by their new owner", "partitions", released)
		}
	}
}

func (s *subscription) commitLoop(cl *kgo.Client, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.b.cfg.commitInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.commitMu.Lock()
		s.mu.Lock()
		ws := make([]*partition, 0, len(s.parts))
		for _, w := range s.parts {
			ws = append(ws, w)
		}
		s.mu.Unlock()
		s.commit(cl, ws)
		s.commitMu.Unlock()
	}
}

// commit commits the acknowledged offsets of ws that moved since their
// last commit. The caller holds commitMu and owns ws. A failed commit is
// logged and left for the next one: until then, those records would be
// handled again after a crash, never skipped.
func (s *subscription) commit(cl *kgo.Client, ws []*partition) {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	sent := make(map[topicPartition]*partition)
	for _, w := range ws {
		w.mu.Lock()
		acked, committed := w.acked, w.committed
		w.mu.Unlock()
		if acked.Offset <= committed {
			continue
		}
		if offsets[w.tp.topic] == nil {
			offsets[w.tp.topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[w.tp.topic][w.tp.partition] = acked
		sent[w.tp] = w
	}
	if len(sent) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), commitTimeout)
	defer cancel()
	var failed error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			failed = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				tp := topicPartition{t.Topic, p.Partition}
				w := sent[tp]
				if w == nil {
					continue
				}
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					failed = err
					continue
				}
				w.mu.Lock()
				w.committed = max(w.committed, offsets[tp.topic][tp.partition].Offset)
				w.mu.Unlock()
			}
		}
	})
	if failed != nil {
		s.logError("kafka: committing acknowledged offsets failed; retrying with the next commit", failed)
	}
}

// logError logs err, or counts it when the last such line is recent.
func (s *subscription) logError(msg string, err error, args ...any) {
	if errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		return
	}
	s.errMu.Lock()
	now := time.Now()
	if !s.lastErrLog.IsZero() && now.Sub(s.lastErrLog) < errorLogEvery {
		s.suppressed++
		s.errMu.Unlock()
		return
	}
	suppressed := s.suppressed
	s.lastErrLog, s.suppressed = now, 0
	s.errMu.Unlock()
	args = append(args, "err", err)
	if suppressed > 0 {
		args = append(args, "errors_not_logged", suppressed)
	}
	s.log.Warn(msg, args...)
}

func (w *partition) push(recs []*kgo.Record) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, recs...)
	if !w.paused && len(w.queue) >= w.s.b.cfg.queueLimit {
		// A Retry can hold the partition for long: stop fetching it
		// rather than hold its backlog in memory. The client
		// refetches from the first record it did not hand out.
		w.paused = true
		w.cl.PauseFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *partition) stopNow() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		close(w.stop)
	}
}

func (w *partition) run() {
	defer close(w.done)
	for {
		r, ok := w.next()
		if !ok || !w.handle(r) {
			return
		}
	}
}

// next waits for the partition's next record; false once stopped.
func (w *partition) next() (*kgo.Record, bool) {
	for {
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			return nil, false
		}
		if len(w.queue) > 0 {
			r := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			if w.paused && len(w.queue) <= w.s.b.cfg.queueLimit/2 {
				w.paused = false
				w.cl.ResumeFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
			}
			w.mu.Unlock()
			return r, true
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.stop:
			return nil, false
		}
	}
}

// handle delivers r until the handler acknowledges it (true), or the
// partition is stopped first (false). Nothing after r on the partition
// is handled meanwhile: that is the order per key.
func (w *partition) handle(r *kgo.Record) bool {
	s := w.s
	for attempt := 1; ; attempt++ {
		select {
		case <-w.stop:
			return false
		default:
		}
		select {
		case s.sem <- struct{}{}:
		case <-w.stop:
			return false
		}
		v, delay := s.h(s.ctx, broker.Delivery{Message: message(r), Attempt: attempt})
		<-s.sem
		if v == broker.Ack {
			w.mu.Lock()
			w.acked = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
			w.mu.Unlock()
			return true
		}
		if v != broker.Retry {
			s.log.Warn("kafka: handler returned an unknown verdict; retrying the message", "verdict", int(v), "partition", r.Partition, "offset", r.Offset)
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-w.stop:
				t.Stop()
				return false
			}
		}
	}
}
