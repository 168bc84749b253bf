package statefun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// WithPublishers adds publishers of entity events to brokers: values of
// generated constructors such as NewUserEventsPublisher. They start with
// the runtime and stop when it closes. The brokers they name must be
// configured with WithBrokers.
func WithPublishers(publishers ...*Publisher) Option {
	return optionFunc(func(c *config) { c.publishers = append(c.publishers, publishers...) })
}

// WithoutSubscriptions hosts the entities without reading the topics their
// methods subscribe to: for tests that call the methods themselves, or a
// server that should only answer calls. No broker is then needed for them.
func WithoutSubscriptions() Option {
	return optionFunc(func(c *config) { c.noSubscriptions = true })
}

// BrokerConfig says how to reach the message brokers that publishers and
// subscriptions use. Credentials are never logged.
type BrokerConfig struct {
	// NATSURL is the NATS server URL, such as nats://127.0.0.1:4222; a
	// comma-separated list for a cluster.
	NATSURL string
	// NATSCredsFile is a NATS credentials file (JWT and NKey), if the
	// server asks for one.
	NATSCredsFile string
	// KafkaBrokers are the seed brokers, host:port.
	KafkaBrokers []string
	// KafkaUser and KafkaPassword authenticate with SASL when set, by
	// KafkaSASLMechanism: "plain" (the default, with KafkaTLS only),
	// "scram-sha-256" or "scram-sha-512".
	KafkaUser, KafkaPassword string
	KafkaSASLMechanism       string
	// KafkaTLS connects to the brokers over TLS.
	KafkaTLS bool
}

// WithBrokers sets how to reach the brokers. A runtime opens a connection
// only to the brokers its publishers and subscriptions use, and fails to
// start when one they use is not configured or does not answer.
func WithBrokers(b BrokerConfig) Option {
	return optionFunc(func(c *config) { c.brokers = b })
}

// publishTimeout bounds one publish: a broker that does not acknowledge in
// time is treated as down, and the publish is tried again.
const publishTimeout = 10 * time.Second

// eventing is a runtime's broker connections, publishers and
// subscriptions.
type eventing struct {
	rt      *Runtime
	brokers map[string]broker.Broker
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stats   eventingCounters

	stopOnce sync.Once // Leave and Close both stop it
	stopErr  error
}

// EventingStats count what the publishers and subscriptions did.
type EventingStats struct {
	Published      uint64 // messages the brokers acknowledged
	PublishFailed  uint64 // publishes that failed, to be retried
	Handled        uint64 // subscribed messages whose call succeeded
	Skipped        uint64 // subscribed messages of another ce-type
	Retried        uint64 // subscribed messages to be tried again
	DeadLettered   uint64 // subscribed messages sent to a dead-letter topic
	DeadLetterFail uint64 // dead-letter publishes that failed (the message is tried again)
}

type eventingCounters struct {
	published, publishFailed, handled, skipped, retried, deadLettered, deadLetterFail atomic.Uint64
}

func (ev *eventing) snapshot() EventingStats {
	if ev == nil {
		return EventingStats{}
	}
	c := &ev.stats
	return EventingStats{
		Published: c.published.Load(), PublishFailed: c.publishFailed.Load(), Handled: c.handled.Load(), Skipped: c.skipped.Load(),
		Retried: c.retried.Load(), DeadLettered: c.deadLettered.Load(), DeadLetterFail: c.deadLetterFail.Load(),
	}
}

// subscriptionsOf returns the subscriptions of the valid entities, with
// their defaults filled in; none when off (WithoutSubscriptions).
func subscriptionsOf(entities []*Entity, off bool) []SubscriptionConfig {
	var subs []SubscriptionConfig
	for _, e := range entities {
		if off || e == nil || e.err != nil {
			continue
		}
		for _, s := range e.subscriptions {
			subs = append(subs, withSubscriptionDefaults(s, e.typ))
		}
	}
	return subs
}

// validateEventing checks the publishers and the subscriptions against the
// entities hosted and the brokers configured.
func validateEventing(publishers []*Publisher, subs []SubscriptionConfig, kinds map[string]Kind, b BrokerConfig, testBroker bool) []error {
	var errs []error
	configured := func(name string) error {
		switch {
		case testBroker:
			return nil
		case name == BrokerNATS && b.NATSURL == "":
			return errors.New("pass --nats-url (or set STATEFUN_NATS_URL), or WithBrokers(BrokerConfig{NATSURL: ...}) in code")
		case name == BrokerKafka && len(b.KafkaBrokers) == 0:
			return errors.New("pass --kafka-brokers (or set STATEFUN_KAFKA_BROKERS), or WithBrokers(BrokerConfig{KafkaBrokers: ...}) in code")
		}
		return nil
	}
	seen := map[string]bool{}
	for _, p := range publishers {
		switch {
		case p == nil:
			errs = append(errs, errors.New("nil publisher; pass the value of a generated constructor"))
			continue
		case p.err != nil:
			errs = append(errs, p.err)
			continue
		case seen[p.cfg.Name]:
			errs = append(errs, fmt.Errorf("publisher %q is registered twice; each publisher runs once", p.cfg.Name))
			continue
		}
		seen[p.cfg.Name] = true
		if kind, ok := kinds[p.cfg.EntityType]; !ok {
			errs = append(errs, fmt.Errorf("publisher %q publishes the events of entity type %q, which this server does not host; pass its entity to the server too", p.cfg.Name, p.cfg.EntityType))
		} else if kind != EventSourced {
			errs = append(errs, fmt.Errorf("publisher %q: entity type %q is not event-sourced; only events are published", p.cfg.Name, p.cfg.EntityType))
		}
		if err := configured(p.cfg.Broker); err != nil {
			errs = append(errs, fmt.Errorf("publisher %q publishes to %s %q, and no %s broker is configured: %w", p.cfg.Name, p.cfg.Broker, p.cfg.Topic, p.cfg.Broker, err))
		}
	}
	for _, s := range subs {
		if err := configured(s.Broker); err != nil {
			errs = append(errs, fmt.Errorf("%s subscribes to %s %q, and no %s broker is configured: %w", s.Method, s.Broker, s.Topic, s.Broker, err))
		}
	}
	return errs
}

// startEventing opens the brokers the publishers and subscriptions use,
// makes sure their topics exist, and starts the subscriptions; the
// publishers are consumers (startConsumers runs them).
func (r *Runtime) startEventing(ctx context.Context, publishers []*Publisher, subs []SubscriptionConfig) ([]*Consumer, error) {
	ev := &eventing{rt: r, brokers: map[string]broker.Broker{}}
	ev.ctx, ev.cancel = context.WithCancel(context.Background())
	r.eventing = ev
	topics := map[string][]string{} // broker -> topics to make sure of
	for _, p := range publishers {
		topics[p.cfg.Broker] = append(topics[p.cfg.Broker], p.cfg.Topic)
	}
	for _, s := range subs {
		topics[s.Broker] = append(topics[s.Broker], s.Topic, s.DeadLetter)
	}
	for _, name := range []string{BrokerNATS, BrokerKafka} {
		if len(topics[name]) == 0 {
			continue
		}
		open := func(ctx context.Context, name string) (broker.Broker, error) {
			return openBroker(ctx, name, r.cfg.brokers, r.log)
		}
		if r.cfg.openBroker != nil {
			open = r.cfg.openBroker
		}
		b, err := open(ctx, name)
		if err != nil {
			ev.close()
			return nil, err
		}
		ev.brokers[name] = b
		for _, t := range slices.Compact(slices.Sorted(slices.Values(topics[name]))) {
			if err := ensureTopic(ctx, b, t); err != nil {
				ev.close()
				return nil, fmt.Errorf("%s: make sure %q exists: %w", name, t, err)
			}
		}
	}
	consumers := make([]*Consumer, 0, len(publishers))
	for _, p := range publishers {
		pub := &publisher{cfg: p.cfg, broker: ev.brokers[p.cfg.Broker], stats: &ev.stats, log: r.log.With("publisher", p.cfg.Name)}
		pub.batch.send = pub.send
		consumers = append(consumers, NewConsumer(ConsumerConfig{
			Name: publisherConsumerName(p.cfg.Name), EntityType: p.cfg.EntityType,
			StartFromNow: p.cfg.StartFromNow, Handle: pub.handle,
		}))
	}
	for _, s := range subs {
		sub := &subscription{cfg: s, broker: ev.brokers[s.Broker], rt: r, stats: &ev.stats, log: r.log.With("subscription", s.Method, "topic", s.Topic)}
		ev.wg.Add(1)
		go func() {
			defer ev.wg.Done()
			sub.run(ev.ctx)
		}()
	}
	return consumers, nil
}

// publisherConsumerName is the consumer that runs a publisher: its
// position is stored under it.
func publisherConsumerName(name string) string { return "statefun.publisher." + name }

func withSubscriptionDefaults(s SubscriptionConfig, entityType string) SubscriptionConfig {
	if s.Group == "" {
		method := s.Method[strings.LastIndexByte(s.Method, '/')+1:]
		s.Group = "statefun-" + strings.ReplaceAll(entityType, ".", "-") + "-" + method
	}
	if s.MaxAttempts <= 0 {
		s.MaxAttempts = 10
	}
	if s.DeadLetter == "" {
		s.DeadLetter = s.Topic + ".dead-letter"
	}
	return s
}

// shutdown stops the subscriptions (the calls they make finish first) and
// closes the brokers. Publishers stop with the consumers, before this.
func (ev *eventing) shutdown(ctx context.Context) error {
	if ev == nil {
		return nil
	}
	ev.stopOnce.Do(func() {
		ev.cancel()
		done := make(chan struct{})
		go func() { ev.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			ev.stopErr = fmt.Errorf("subscriptions did not stop in time: %w", ctx.Err())
		}
		ev.stopErr = errors.Join(ev.stopErr, ev.close())
	})
	return ev.stopErr
}

func (ev *eventing) close() error {
	var errs []error
	for _, b := range ev.brokers {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// publisher publishes one entity type's events: a consumer of its feed
// whose handler returns once the broker stored the event, so that the
// consumer's position passes an event only after that (at least once, in
// order per entity, nothing before it is durable).
type publisher struct {
	cfg    PublisherConfig
	broker broker.Broker
	stats  *eventingCounters
	log    *slog.Logger
	batch  publishBatcher
}

func (p *publisher) wants(eventType string) bool {
	if eventType == callEventType {
		return false // a call the entity sent: not one of its events
	}
	return len(p.cfg.Events) == 0 || slices.Contains(p.cfg.Events, eventType)
}

func (p *publisher) handle(ec *EventContext, eventType string, payload []byte) error {
	if !p.wants(eventType) {
		return nil
	}
	body, contentType := payload, "application/protobuf"
	if p.cfg.JSON {
		msg := p.cfg.NewEvent(eventType)
		if msg == nil {
			return fmt.Errorf("publisher %q: event type %q of %s/%s is not an event of the entity; regenerate the code", p.cfg.Name, eventType, p.cfg.EntityType, ec.entityID)
		}
		if err := proto.Unmarshal(payload, msg); err != nil {
			return DecodeEventError(eventType, err)
		}
		var err error
		if body, err = protojson.Marshal(msg); err != nil {
			return fmt.Errorf("publisher %q: encode %s as JSON: %w", p.cfg.Name, eventType, err)
		}
		contentType = "application/json"
	}
	id := p.cfg.EntityType + "/" + ec.entityID + "/" + strconv.FormatInt(ec.seq, 10)
	msg := broker.Message{
		Topic: p.cfg.Topic, Key: ec.entityID, ID: id, Body: body,
		Headers: map[string]string{
			"ce-specversion": "1.0",
			"ce-id":          id,
			"ce-source":      "statefun:" + p.cfg.EntityType,
			"ce-type":        eventType,
			"ce-subject":     ec.entityID,
			"ce-time":        time.Now().UTC().Format(time.RFC3339Nano),
			"content-type":   contentType,
		},
	}
	ctx, cancel := context.WithTimeout(ec.ctx, publishTimeout)
	defer cancel()
	if err := p.batch.publish(ctx, msg); err != nil {
		p.stats.publishFailed.Add(1)
		return fmt.Errorf("publisher %q: publish %s to %s %q: %w", p.cfg.Name, id, p.cfg.Broker, p.cfg.Topic, err)
	}
	p.stats.published.Add(1)
	return nil
}

func (p *publisher) send(ctx context.Context, msgs []broker.Message) error {
	return p.broker.Publish(ctx, msgs)
}

// publishBatcher sends the messages of the entities a publisher handles
// at the same time in one Publish: up to consumerParallelism entities are
// in flight, and the messages they hand over while a Publish is under way
// go together in the next one. A batch holds at most one message per
// entity (each waits for its own before the next), so per-entity order is
// kept by the order of the batches.
type publishBatcher struct {
	send     func(context.Context, []broker.Message) error
	mu       sync.Mutex
	pending  []pendingMessage
	flushing bool
}

type pendingMessage struct {
	msg  broker.Message
	ctx  context.Context
	done chan error
}

func (b *publishBatcher) publish(ctx context.Context, msg broker.Message) error {
	p := pendingMessage{msg: msg, ctx: ctx, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, p)
	if !b.flushing {
		b.flushing = true
		go b.flush()
	}
	b.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // sent or not: the consumer tries again
	}
}

func (b *publishBatcher) flush() {
	for {
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.flushing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		msgs := make([]broker.Message, 0, len(batch))
		var deadline time.Time
		for _, p := range batch {
			msgs = append(msgs, p.msg)
			if d, ok := p.ctx.Deadline(); ok && d.After(deadline) {
				deadline = d
			}
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := b.send(ctx, msgs)
		cancel()
		for _, p := range batch {
			p.done <- err
		}
	}
}

// subscription turns a topic's messages into calls of one entity method.
type subscription struct {
	cfg    SubscriptionConfig
	broker broker.Broker
	rt     *Runtime
	stats  *eventingCounters
	log    *slog.Logger
}

// subscriptionParallel is how many messages of one subscription a node
// handles at once.
const subscriptionParallel = 16

func (s *subscription) run(ctx context.Context) {
	retry := consumerRetryFirst
	for ctx.Err() == nil {
		err := s.broker.Subscribe(ctx, broker.Subscription{Topic: s.cfg.Topic, Group: s.cfg.Group, Parallel: subscriptionParallel}, s.handle)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Error("cannot subscribe; retrying", "retry_in", retry, "error", err)
		if !sleep(ctx, jitter(retry)) {
			return
		}
		retry = min(2*retry, consumerRetryMax)
	}
}

// handle makes the call a message stands for: Ack once it succeeded, Retry
// after a backoff when it failed, and the dead-letter topic for a message
// that can never succeed or failed MaxAttempts times.
func (s *subscription) handle(ctx context.Context, d broker.Delivery) (broker.Verdict, time.Duration) {
	if t, ok := d.Headers["ce-type"]; ok && s.cfg.Type != "" && t != s.cfg.Type {
		s.stats.skipped.Add(1)
		return broker.Ack, 0 // another method's type
	}
	req := s.cfg.NewRequest()
	if err := decodeMessage(d, req); err != nil {
		return s.deadLetter(ctx, d, err)
	}
	md := metadata.MD{}
	if d.ID != "" {
		// A message delivered again (the broker's at least once, a
		// publisher's repeat) gets the first delivery's answer.
		md.Set(IdempotencyKeyHeader, "sub:"+s.cfg.Group+":"+d.ID)
	}
	if s.cfg.KeyFromSubject {
		subject := d.Headers["ce-subject"]
		if subject == "" {
			return s.deadLetter(ctx, d, fmt.Errorf("the message has no ce-subject header, and %s takes its entity from it", s.cfg.Method))
		}
		md.Set(SubjectHeader, subject)
	}
	callCtx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, md), s.rt.storeTimeout())
	err := s.rt.conn.Invoke(callCtx, s.cfg.Method, req, s.cfg.NewResponse())
	cancel()
	switch {
	case err == nil:
		s.stats.handled.Add(1)
		return broker.Ack, 0
	case ctx.Err() != nil:
		return broker.Retry, 0 // stopping: the message is delivered again
	case status.Code(err) == codes.InvalidArgument:
		return s.deadLetter(ctx, d, err) // the same message fails the same way
	case d.Attempt >= s.cfg.MaxAttempts:
		return s.deadLetter(ctx, d, fmt.Errorf("failed %d times, the last: %w", d.Attempt, err))
	}
	s.stats.retried.Add(1)
	delay := min(consumerRetryFirst<<min(d.Attempt-1, 10), consumerRetryMax)
	s.log.Warn("subscribed call failed; retrying", "id", d.ID, "attempt", d.Attempt, "retry_in", delay, "error", err)
	return broker.Retry, jitter(delay)
}

// deadLetter publishes d to the dead-letter topic with why, and
// acknowledges it; if that publish fails the message is tried again.
func (s *subscription) deadLetter(ctx context.Context, d broker.Delivery, why error) (broker.Verdict, time.Duration) {
	headers := make(map[string]string, len(d.Headers)+3)
	for k, v := range d.Headers {
		headers[k] = v
	}
	headers["statefun-error"] = why.Error()
	headers["statefun-attempts"] = strconv.Itoa(d.Attempt)
	headers["statefun-topic"] = d.Topic
	msg := broker.Message{Topic: s.cfg.DeadLetter, Key: d.Key, ID: d.ID, Headers: headers, Body: d.Body}
	pubCtx, cancel := context.WithTimeout(ctx, publishTimeout)
	err := s.broker.Publish(pubCtx, []broker.Message{msg})
	cancel()
	if err != nil {
		s.stats.deadLetterFail.Add(1)
		s.log.Error("cannot send a message to the dead-letter topic; retrying it", "id", d.ID, "dead_letter", s.cfg.DeadLetter, "error", err)
		return broker.Retry, jitter(consumerRetryMax)
	}
	s.stats.deadLettered.Add(1)
	s.log.Error("message sent to the dead-letter topic", "id", d.ID, "dead_letter", s.cfg.DeadLetter, "attempts", d.Attempt, "error", why)
	return broker.Ack, 0
}

// decodeMessage decodes a message's body as req: protobuf JSON when its
// content type says JSON, protobuf binary otherwise.
func decodeMessage(d broker.Delivery, req proto.Message) error {
	ct := d.Headers["content-type"]
	if ct == "" {
		ct = d.Headers["ce-datacontenttype"]
	}
	if mt, _, _ := strings.Cut(ct, ";"); strings.HasSuffix(strings.TrimSpace(mt), "json") {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(d.Body, req); err != nil {
			return fmt.Errorf("decode the JSON body as %s: %w", req.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	}
	if err := proto.Unmarshal(d.Body, req); err != nil {
		return fmt.Errorf("decode the protobuf body as %s: %w (a JSON body needs content-type application/json)", req.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
