// Package kafkabroker is the broker.Broker of Kafka, through franz-go.
//
// # Guarantees
//
//   - At least once. Publish returns once every record is stored with
//     acks=all; a subscription commits a partition's offset only past
//     records its handler acknowledged (broker.Ack), so a crash, a
//     rebalance or a restart hands the unacknowledged ones out again, and
//     nothing acknowledged is skipped.
//   - Order per key. Records are partitioned by Message.Key (the Java
//     client's murmur2 hash, so other Kafka clients agree), and a
//     partition is handled one record at a time. The producer is
//     idempotent (franz-go's default: at most 5 requests in flight per
//     broker, which the broker orders by sequence number), so retries
//     inside the client neither reorder nor duplicate; and when a record
//     fails, the client fails every record buffered after it on its
//     partition, so a failed Publish never leaves a later record of a key
//     stored without an earlier one it was given.
//   - Duplicates across producer sessions. Kafka deduplicates only within
//     one producer session: a Publish that failed (or a process that
//     restarted) and is published again may store a message twice. Each
//     record carries Message.ID in the IDHeader header, and the subscriber
//     side deduplicates by it (the runtime uses it as an idempotency key).
//   - A retried record blocks its partition. While a handler asks for a
//     Retry, nothing after that record on its partition is handled, so a
//     message that can never be handled must go to a dead-letter topic:
//     the runtime's handler publishes it there after N attempts and
//     returns Ack.
//   - Delivery.Attempt counts deliveries by this subscription since it
//     was assigned the partition: Kafka keeps no delivery count, so after
//     a restart or a rebalance a record starts again at attempt 1.
//
// # Connecting and failures
//
// Open fails when no broker answers (nothing listening, a TLS listener
// spoken to in clear, a refused password), naming the addresses and what
// to check; it does not wait for the cluster to come up. The SASL user
// and password never appear in an error or a log line. After Open, the
// client rides out broker outages: a Publish waits (the client retries)
// until the brokers are back, ctx ends or Close, so give it a deadline;
// a subscription logs and retries until its context ends.
//
// # Topics
//
// The client never asks brokers to create topics as a side effect: a
// Publish to a missing topic fails (UNKNOWN_TOPIC_OR_PARTITION, after the
// client's few metadata retries), and Subscribe to a missing topic fails
// at once. The runtime creates its destinations at start with EnsureTopic.
package kafkabroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// IDHeader is the record header that carries Message.ID. A subscriber
// takes it out of Headers into ID; a header of that name given in
// Message.Headers is replaced by the ID.
const IDHeader = "statefun-id"

// DefaultPartitions is the partition count EnsureTopic gives a topic when
// asked for none: the upper bound of how many servers of one group can
// share a topic's messages.
const DefaultPartitions = 12

// ErrClosed is returned by calls on a Broker after Close, and by calls in
// flight when Close ends them.
var ErrClosed = errors.New("kafkabroker: broker closed")

var _ broker.Broker = (*Broker)(nil)

// SASLMechanism names a SASL mechanism, as Kafka spells it.
type SASLMechanism string

// The SASL mechanisms WithSASL accepts.
const (
	SASLPlain       SASLMechanism = "PLAIN"
	SASLScramSHA256 SASLMechanism = "SCRAM-SHA-256"
	SASLScramSHA512 SASLMechanism = "SCRAM-SHA-512"
)

// Option configures Open.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	mechanism      SASLMechanism
	user, password string
	tls            *tls.Config
	log            *slog.Logger
	clientID       string
	// queueLimit bounds the records a subscription holds for one
	// partition before it pauses fetching it (a Retry can block a
	// partition for long).
	queueLimit int
	// commitInterval is how often subscriptions commit (tests stretch
	// it to see the commits made at revocation and at the end).
	commitInterval time.Duration
}

// WithSASL authenticates with the given mechanism (SASLPlain,
// SASLScramSHA256 or SASLScramSHA512), user and password. The password and
// user are never logged nor put in an error message. PLAIN sends the
// password as is: use it only with WithTLS.
func WithSASL(mechanism SASLMechanism, user, password string) Option {
	return optionFunc(func(c *config) { c.mechanism, c.user, c.password = mechanism, user, password })
}

// WithTLS connects over TLS with cfg; a nil cfg means the system's roots
// and TLS 1.2 or later. The server name is set per broker when cfg has
// none.
func WithTLS(cfg *tls.Config) Option {
	return optionFunc(func(c *config) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.tls = cfg
	})
}

// WithLogger sends the adapter's and the client's logs to l (slog.Default
// otherwise). The client's own informational logs (group joins, partition
// assignments) go at debug level, its warnings and errors as such.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}

// WithClientID names the client to the brokers (their logs, quotas and
// metrics), "statefun" by default.
func WithClientID(id string) Option {
	return optionFunc(func(c *config) { c.clientID = id })
}

// Broker is a connection to a Kafka cluster: a producer, and one consumer
// group client per Subscribe. It is safe for concurrent use.
type Broker struct {
	cfg     config
	brokers []string
	cl      *kgo.Client // publishes and administers topics
	admin   *kadm.Client
	log     *slog.Logger

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
	subsWG sync.WaitGroup
	done   chan struct{} // closed by Close
	close  sync.Once
}

// Open connects to the Kafka cluster at brokers (host:port seeds) and
// checks that one of them answers, authenticating if WithSASL says so, so
// that a wrong address, TLS setting or password fails here rather than at
// the first Publish.
func Open(ctx context.Context, brokers []string, opts ...Option) (*Broker, error) {
	brokers = slices.DeleteFunc(slices.Clone(brokers), func(s string) bool { return strings.TrimSpace(s) == "" })
	if len(brokers) == 0 {
		return nil, errors.New("kafkabroker: no Kafka brokers given; name at least one host:port (--kafka-brokers)")
	}
	cfg := config{log: slog.Default(), clientID: "statefun", queueLimit: 1000, commitInterval: commitInterval}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	b := &Broker{
		cfg:     cfg,
		brokers: brokers,
		log:     cfg.log,
		subs:    make(map[*subscription]struct{}),
		done:    make(chan struct{}),
	}
	copts, err := b.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(copts...)
	if err != nil {
		return nil, fmt.Errorf("kafkabroker: configure the Kafka client for %s: %w", b.addrs(), err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, b.connectError(err)
	}
	b.cl = cl
	b.admin = kadm.NewClient(cl)
	return b, nil
}

// clientOpts are the options every client of b shares: the producer's
// and each subscription's.
func (b *Broker) clientOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(b.brokers...),
		kgo.ClientID(b.cfg.clientID),
		kgo.WithLogger(kgoLogger{b.log}),
		// acks=all is franz-go's default; said here because the
		// guarantees in the package doc rest on it.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Publish hands over a whole batch and waits for it: lingering
		// for more records only adds its wait to every publish (10 ms by
		// default, 16 ms of commit-to-subscriber lag measured).
		kgo.ProducerLinger(0),
	}
	if b.cfg.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(b.cfg.tls.Clone()))
	}
	if b.cfg.mechanism != "" {
		if b.cfg.user == "" || b.cfg.password == "" {
			return nil, fmt.Errorf("kafkabroker: SASL %s needs a user and a password; set both", b.cfg.mechanism)
		}
		switch b.cfg.mechanism {
		case SASLPlain:
			opts = append(opts, kgo.SASL(plain.Auth{User: b.cfg.user, Pass: b.cfg.password}.AsMechanism()))
		case SASLScramSHA256:
			opts = append(opts, kgo.SASL(scram.Auth{User: b.cfg.user, Pass: b.cfg.password}.AsSha256Mechanism()))
		case SASLScramSHA512:
			opts = append(opts, kgo.SASL(scram.Auth{User: b.cfg.user, Pass: b.cfg.password}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("kafkabroker: unknown SASL mechanism %q; use %s, %s or %s", b.cfg.mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
	}
	return opts, nil
}

func (b *Broker) addrs() string { return strings.Join(b.brokers, ",") }

// connectError says what failing to reach the cluster most likely means.
// It never includes the SASL user or password.
func (b *Broker) connectError(err error) error {
	var (
		hint string
		dial *net.OpError
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState):
		hint = "check the SASL user and password"
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		hint = fmt.Sprintf("the brokers do not accept SASL %s; use a mechanism their listener enables", b.cfg.mechanism)
	case errors.As(err, &dial) && dial.Op == "dial":
		hint = "check the addresses (--kafka-brokers)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		hint = "no broker answered in time; check the addresses (--kafka-brokers), and whether their listener expects TLS"
	default:
		// The broker closed the connection: a TLS listener spoken to
		// in clear, or the reverse, or credentials some brokers
		// refuse by hanging up rather than answering.
		hint = "check the addresses (--kafka-brokers), and whether their listener expects TLS"
		if b.cfg.mechanism != "" {
			hint += fmt.Sprintf(", and the SASL %s user and password", b.cfg.mechanism)
		} else {
			hint += " or SASL"
		}
	}
	return fmt.Errorf("kafkabroker: connect to Kafka at %s: %w; %s", b.addrs(), err, hint)
}

// Name implements broker.Broker.
func (b *Broker) Name() string { return "kafka" }

// EnsureTopic creates topic with the given number of partitions
// (DefaultPartitions if partitions < 1) and the brokers' default
// replication factor, unless it exists: an existing topic is left as it
// is, whatever its partition count. Creating needs the CREATE permission
// on the cluster or topic; an existing topic needs only DESCRIBE.
func (b *Broker) EnsureTopic(ctx context.Context, topic string, partitions int) error {
	if topic == "" {
		return errors.New("kafkabroker: ensure topic: empty topic name")
	}
	if partitions < 1 {
		partitions = DefaultPartitions
	}
	if partitions > math.MaxInt32 {
		return fmt.Errorf("kafkabroker: ensure Kafka topic %q: %d partitions is more than Kafka allows", topic, partitions)
	}
	if err := b.checkOpen(); err != nil {
		return err
	}
	exists, err := b.topicExists(ctx, topic)
	if err != nil {
		return fmt.Errorf("kafkabroker: ensure Kafka topic %q: %w", topic, err)
	}
	if exists {
		return nil
	}
	resp, err := b.admin.CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		b.log.Info("created Kafka topic", "topic", topic, "partitions", partitions)
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists): // created meanwhile
		return nil
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("kafkabroker: create Kafka topic %q (%d partitions): %w; create it by hand, or grant the user CREATE on it", topic, partitions, err)
	default:
		if resp.ErrMessage != "" {
			err = fmt.Errorf("%w (%s)", err, resp.ErrMessage)
		}
		return fmt.Errorf("kafkabroker: create Kafka topic %q (%d partitions): %w", topic, partitions, err)
	}
}

func (b *Broker) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Publish implements broker.Publisher. It hands every message to the
// client at once (they are batched per partition) and waits for all of
// them; the first failure is returned. When ctx ends first it returns
// ctx's error without waiting for the records already sent: the client
// cannot take back a record it sent to the broker (it would break the
// idempotent sequence), so those may still be stored, which the contract
// allows.
func (b *Broker) Publish(ctx context.Context, msgs []broker.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := b.checkOpen(); err != nil {
		return err
	}
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("kafkabroker: publish: message %d (id %q) has no topic", i, m.ID)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafkabroker: publish %d messages to Kafka: %w", len(msgs), err)
	}

	var (
		mu        sync.Mutex
		remaining = len(msgs)
		first     error
		allDone   = make(chan struct{})
	)
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && first == nil {
			first = publishError(r.Topic, err)
		}
		if remaining--; remaining == 0 {
			close(allDone)
		}
	}
	for _, m := range msgs {
		// Produce blocks only while the client's buffer is full, and
		// gives up (failing the record through promise) when ctx ends.
		b.cl.Produce(ctx, record(m), promise)
	}
	select {
	case <-allDone:
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			return fmt.Errorf("kafkabroker: publish %d messages: %w", len(msgs), first)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafkabroker: publish %d messages to Kafka at %s: not all acknowledged: %w", len(msgs), b.addrs(), ctx.Err())
	case <-b.done:
		return fmt.Errorf("kafkabroker: publish %d messages: %w", len(msgs), ErrClosed)
	}
}

func publishError(topic string, err error) error {
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return fmt.Errorf("topic %q: %w; the topic does not exist: create it (the runtime does at start, with EnsureTopic)", topic, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("topic %q: %w; grant the user WRITE on it", topic, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("topic %q: %w", topic, ErrClosed)
	default:
		return fmt.Errorf("topic %q: %w", topic, err)
	}
}

// record is m as a Kafka record: key, body, and headers in name order
// (a stable order for whoever reads them raw), then the ID.
func record(m broker.Message) *kgo.Record {
	r := &kgo.Record{Topic: m.Topic, Value: m.Body}
	if m.Key != "" {
		r.Key = []byte(m.Key)
	}
	names := make([]string, 0, len(m.Headers))
	for name := range m.Headers {
		if name != IDHeader {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	r.Headers = make([]kgo.RecordHeader, 0, len(names)+1)
	for _, name := range names {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: name, Value: []byte(m.Headers[name])})
	}
	if m.ID != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: IDHeader, Value: []byte(m.ID)})
	}
	return r
}

// message is the broker.Message a record carries, the inverse of record.
// Headers is nil when the record has no header but the ID.
func message(r *kgo.Record) broker.Message {
	m := broker.Message{Topic: r.Topic, Key: string(r.Key), Body: r.Value}
	for _, h := range r.Headers {
		if h.Key == IDHeader {
			m.ID = string(h.Value)
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string, len(r.Headers))
		}
		m.Headers[h.Key] = string(h.Value)
	}
	return m
}

// Close ends every subscription (their Subscribe returns ErrClosed after
// committing what was acknowledged), fails publishes in flight, and
// closes the connections. It returns nil; calling it again does nothing.
func (b *Broker) Close() error {
	b.close.Do(func() {
		b.mu.Lock()
		b.closed = true
		for s := range b.subs {
			s.cancel(ErrClosed)
		}
		b.mu.Unlock()
		// Subscriptions first: a handler winding down may still publish
		// (a dead letter) through b.cl.
		b.subsWG.Wait()
		close(b.done)
		b.cl.Close()
	})
	return nil
}
