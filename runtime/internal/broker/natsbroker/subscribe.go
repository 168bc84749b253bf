package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

const (
	// ackTimeout bounds the wait for the server to confirm an Ack.
	ackTimeout = 10 * time.Second
	// panicRetry is the delay before a message whose handler panicked is
	// delivered again.
	panicRetry = time.Second
	maxBackoff = 5 * time.Second
)

// Subscribe delivers the messages of sub to h until ctx ends (package doc:
// Subscribing). It fails at once if no stream covers sub.Topic or the
// consumer cannot be created; after that it retries, logging, whatever
// fails, until ctx ends or the broker is closed.
func (b *Broker) Subscribe(ctx context.Context, sub broker.Subscription, h broker.Handler) error {
	what := fmt.Sprintf("natsbroker: subscribe to %q (group %q)", sub.Topic, sub.Group)
	switch {
	case h == nil:
		return fmt.Errorf("%s: nil handler", what)
	case sub.Group == "":
		return fmt.Errorf("%s: empty group; name the durable reader", what)
	case sub.Parallel < 0:
		return fmt.Errorf("%s: Parallel %d; it must be at least 1", what, sub.Parallel)
	}
	if err := validSubject(sub.Topic, true); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if sub.Parallel == 0 {
		sub.Parallel = 1
	}
	if err := b.live(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s := &subscriber{
		b:        b,
		sub:      sub,
		h:        h,
		consumer: ConsumerName(sub.Group, sub.Topic),
		log:      b.log.With("topic", sub.Topic, "group", sub.Group),
		keys:     make(map[string]*keyQueue),
		held:     make(map[jetstream.Msg]struct{}),
		slots:    make(chan struct{}, sub.Parallel),
	}
	cons, err := s.setup(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.run(ctx, cons)
}

type subscriber struct {
	b        *Broker
	sub      broker.Subscription
	h        broker.Handler
	consumer string
	log      *slog.Logger

	// slots holds a token for each message this process holds (queued or
	// being handled): at most Parallel.
	slots chan struct{}
	wg    sync.WaitGroup // the key workers

	mu   sync.Mutex
	keys map[string]*keyQueue       // a key's messages waiting, while its worker runs
	held map[jetstream.Msg]struct{} // every message received and not yet answered
}

type keyQueue struct{ msgs []jetstream.Msg }

// setup finds the stream covering the topic and creates or updates the
// group's durable consumer on it.
func (s *subscriber) setup(ctx context.Context) (jetstream.Consumer, error) {
	stream, err := s.b.streamFor(ctx, s.sub.Topic)
	if err != nil {
		return nil, err
	}
	if stream == "" {
		return nil, fmt.Errorf("no JetStream stream on %s stores this subject; call EnsureStream for it (natsbroker.WithStream) or create a stream that covers it (nats stream add)", s.b.addr)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       s.consumer,
		Description:   fmt.Sprintf("statefun group %q reading %q", s.sub.Group, s.sub.Topic),
		FilterSubject: s.sub.Topic,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.b.cfg.ackWait,
		MaxAckPending: s.sub.Parallel,
		MaxDeliver:    -1,
	}
	cons, err := s.b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %q on stream %q: %w; if it exists with another configuration, delete it (nats consumer rm %s %s) or use another group",
			s.consumer, stream, err, stream, s.consumer)
	}
	return cons, nil
}

func (s *subscriber) run(ctx context.Context, cons jetstream.Consumer) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.b.closed:
			cancel()
		case <-runCtx.Done():
		}
	}()
	workersDone := make(chan struct{})
	go s.heartbeat(workersDone)

	backoff := 100 * time.Millisecond
	for runCtx.Err() == nil {
		// Fetch as many messages as there are free slots, at least one.
		select {
		case s.slots <- struct{}{}:
		case <-runCtx.Done():
			continue
		}
		n := 1
	more:
		for n < s.sub.Parallel {
			select {
			case s.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		start := time.Now()
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			s.release(n)
			cons = s.failed(runCtx, cons, err, &backoff)
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			s.dispatch(runCtx, msg)
		}
		s.release(n - got)
		if err := batch.Error(); err != nil {
			cons = s.failed(runCtx, cons, err, &backoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if got == 0 && time.Since(start) < fetchWait/10 {
			// The server answered at once with nothing: do not spin.
			sleep(runCtx, fetchWait/10)
		}
	}

	go func() {
		s.wg.Wait()
		close(workersDone)
	}()
	select {
	case <-workersDone:
	case <-time.After(s.b.cfg.stopTimeout):
		s.log.Warn("natsbroker: handlers still running after the stop timeout; returning without them", "timeout", s.b.cfg.stopTimeout)
	}
	if ctx.Err() == nil {
		return errClosed
	}
	return nil
}

func (s *subscriber) release(n int) {
	for range n {
		<-s.slots
	}
}

// failed logs a failed fetch, waits, and sets the consumer up again (it
// may have been deleted, with its stream or by hand). It returns the
// consumer to fetch from next.
func (s *subscriber) failed(ctx context.Context, cons jetstream.Consumer, err error, backoff *time.Duration) jetstream.Consumer {
	if ctx.Err() != nil {
		return cons
	}
	if errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrDisconnected) {
		err = fmt.Errorf("not connected to NATS at %s (reconnecting): %w", s.b.addr, err)
	}
	s.log.Warn("natsbroker: fetching messages failed; retrying", "err", err, "retry_in", *backoff)
	sleep(ctx, *backoff)
	*backoff = min(2**backoff, maxBackoff)
	if ctx.Err() != nil {
		return cons
	}
	c, err := s.setup(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("natsbroker: setting the consumer up again failed; retrying", "err", err)
		}
		return cons
	}
	return c
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// dispatch queues msg behind the messages of its key that this process
// holds, starting the key's worker if none runs. A message without a key
// has a worker of its own. It owns one slot, given back when answered.
func (s *subscriber) dispatch(ctx context.Context, msg jetstream.Msg) {
	key := msg.Headers().Get(KeyHeader)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[msg] = struct{}{}
	if key == "" {
		s.wg.Add(1)
		go s.work(ctx, &keyQueue{msgs: []jetstream.Msg{msg}}, "")
		return
	}
	q := s.keys[key]
	if q == nil {
		q = &keyQueue{}
		s.keys[key] = q
		s.wg.Add(1)
		go s.work(ctx, q, key)
	}
	q.msgs = append(q.msgs, msg)
}

// work handles the messages of q one at a time, in order, until q is
// empty.
func (s *subscriber) work(ctx context.Context, q *keyQueue, key string) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(q.msgs) == 0 {
			if key != "" {
				delete(s.keys, key)
			}
			s.mu.Unlock()
			return
		}
		msg := q.msgs[0]
		q.msgs[0] = nil
		q.msgs = q.msgs[1:]
		s.mu.Unlock()

		s.handle(ctx, msg)

		s.mu.Lock()
		delete(s.held, msg)
		s.mu.Unlock()
		s.release(1)
	}
}

// handle runs the handler on msg and answers the server: Ack (confirmed)
// or a negative acknowledgement with the delay. A message reached after
// ctx ended is given back without running the handler.
func (s *subscriber) handle(ctx context.Context, msg jetstream.Msg) {
	if ctx.Err() != nil {
		s.answer(msg, broker.Retry, 0, "")
		return
	}
	d := broker.Delivery{Message: fromNATS(msg), Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
	} else {
		s.log.Warn("natsbroker: message without JetStream metadata; counting it as a first delivery", "id", d.ID, "err", err)
	}
	v, delay := s.call(ctx, d)
	s.answer(msg, v, delay, d.ID)
}

func (s *subscriber) call(ctx context.Context, d broker.Delivery) (v broker.Verdict, delay time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("natsbroker: handler panicked; the message will be delivered again", "id", d.ID, "attempt", d.Attempt,
				"panic", r, "stack", string(debug.Stack()), "retry_in", panicRetry)
			v, delay = broker.Retry, panicRetry
		}
	}()
	return s.h(ctx, d)
}

func (s *subscriber) answer(msg jetstream.Msg, v broker.Verdict, delay time.Duration, id string) {
	var err error
	switch v {
	case broker.Ack:
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err = msg.DoubleAck(ctx)
		cancel()
	case broker.Retry:
		if delay > 0 {
			err = msg.NakWithDelay(delay)
		} else {
			err = msg.Nak()
		}
	default:
		s.log.Error("natsbroker: handler returned an unknown verdict; the message will be delivered again", "id", id, "verdict", int(v))
		err = msg.Nak()
	}
	if err != nil && !s.isClosed() {
		s.log.Warn("natsbroker: answering the server about a message failed; it will be delivered again after the ack wait",
			"id", id, "verdict", int(v), "err", err, "ack_wait", s.b.cfg.ackWait)
	}
}

func (s *subscriber) isClosed() bool {
	select {
	case <-s.b.closed:
		return true
	default:
		return false
	}
}

// heartbeat tells the server, every AckWait/3, that each message held is
// still in progress, so that a message waiting behind others of its key or
// a long handler is not delivered again. It stops when done is closed.
func (s *subscriber) heartbeat(done <-chan struct{}) {
	t := time.NewTicker(s.b.cfg.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(s.held))
		for m := range s.held {
			msgs = append(msgs, m)
		}
		s.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) && !s.isClosed() {
				s.log.Debug("natsbroker: progress report failed", "err", err)
			}
		}
	}
}
