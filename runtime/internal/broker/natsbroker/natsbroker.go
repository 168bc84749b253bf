// Package natsbroker is the broker.Broker of NATS JetStream, through
// nats.go's jetstream package.
//
// # Streams
//
// JetStream stores a message only if some stream covers its subject; a
// publish to any other subject is lost by core NATS. So the adapter never
// publishes blind: the runtime calls EnsureStream (or passes WithStream to
// Open) at start for each subject it publishes to. EnsureStream does
// nothing for a subject a stream already covers (one an operator made,
// with whatever limits and replicas they chose) and otherwise creates a
// stream with file storage and a duplicate window (WithDuplicateWindow,
// two minutes by default) named by StreamName. A Publish to a subject no
// stream covers fails with an error naming the subject. Subscribe reads
// from the stream that covers the subscription's topic, found by asking
// the server, and fails at once if there is none.
//
// # Publishing
//
// Publish sends a batch without waiting between messages (asynchronous
// publishes, at most 256 unacknowledged per call), each with the header
// Nats-Msg-Id set to Message.ID and the header statefun-key set to
// Message.Key, and returns once the server acknowledged every one. A
// message is acknowledged only once its stream stored it. Any failure
// (no stream, a lost connection, an acknowledgement that did not come
// within WithPublishTimeout or before ctx ended) fails the whole call; the
// caller publishes the batch again, and the server drops the messages
// already stored whose IDs it still remembers (the duplicate window).
//
// Order: the server stores the messages one connection sends to a stream
// in the order it sent them. For that to survive a failure, what a stream
// stored of a failed call must be a prefix of what was sent to it, so
// that publishing the batch again appends the rest after it. Two things
// nats.go does by default would break that, and both are off: it keeps
// messages published while it reconnects in a buffer and sends them on
// the new connection after the ones lost with the old one (here a publish
// while disconnected fails at once), and it publishes again, later, a
// message that met no stream (here it does not). What remains: a stream
// whose limits refuse a message (DiscardNew, a full disk) may store later
// messages of the same call; the streams EnsureStream creates have no
// limits, so they refuse none for being full.
//
// Names that are NATS's own (any header whose name starts with "Nats-")
// and statefun-key cannot be set in Message.Headers: Publish refuses them
// rather than letting them change what the server does. They are not
// passed back in a received message's Headers either.
//
// # Subscribing
//
// A Subscription is a durable pull consumer named ConsumerName(Group,
// Topic) on the stream covering Topic, filtered to Topic, acknowledged
// explicitly, delivering from the first message the stream holds when it
// is created, with MaxAckPending = Parallel. Every server of a group shares
// that consumer, and so its MaxAckPending: N servers with Parallel P hold
// at most P unacknowledged messages between them, not N×P (the last
// Subscribe to start sets it). A process fetches at most as many messages
// as it has free slots (Parallel), queues them by key, handles one message
// of a key at a time in the order received and up to Parallel at once, and
// while a message waits or is handled tells the server every AckWait/3
// that it is still in progress. One key with many messages waiting can
// thus hold every slot: its messages are handled one by one meanwhile.
//
// Ack is acknowledged and the adapter waits for the server to confirm it
// (a double ack) before the slot is free; Retry is a negative
// acknowledgement with the delay, after which the server delivers the
// message again. Delivery.Attempt is the server's count of deliveries.
// The server delivers again, after AckWait (WithAckWait, 30 seconds by
// default), a message whose subscriber died without answering.
//
// When Subscribe's ctx ends it stops fetching, gives back (negative
// acknowledgement without delay) the messages it received and had not
// started, waits up to WithStopTimeout for the handlers running (whose ctx
// has ended too) and returns nil.
//
// # Guarantees
//
//   - At least once: a message is acknowledged only after its handler
//     returned Ack. A handler can see a message again: after a Retry,
//     after its subscriber died, or when an acknowledgement was lost.
//   - Duplicates published within the duplicate window (the same
//     Message.ID) are stored once: the server drops the repeats. After the
//     window they are stored again.
//   - Order per key holds for one subscriber only while no message of
//     that key is retried: JetStream delivers a message it was told to
//     retry (or whose AckWait ran out) after the messages that came after
//     it, which this process may have handled meanwhile. Nothing here
//     holds a key back while one of its messages waits to be retried.
//   - Across several servers of one Group, JetStream hands each message to
//     any of them: two messages of one key may be handled at once, by two
//     servers, and in either order.
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// KeyHeader is the message header that carries Message.Key.
const KeyHeader = "statefun-key"

const (
	defaultDuplicateWindow = 2 * time.Minute
	defaultAckWait         = 30 * time.Second
	defaultPublishTimeout  = 30 * time.Second
	defaultStopTimeout     = 10 * time.Second
	// publishWindow is how many messages one Publish has sent without an
	// acknowledgement at most: enough to keep the connection busy, few
	// enough that a large batch does not queue up behind the server.
	publishWindow = 256
	// fetchWait is how long one pull request waits for messages. A
	// Subscribe whose ctx ended returns after the pending one expired, so
	// that the server sends nothing to a subscription that no longer
	// listens (such a message would wait for AckWait).
	fetchWait = time.Second
)

var _ broker.Broker = (*Broker)(nil)

// Broker is a connection to a NATS server with JetStream. Its methods may
// be called concurrently.
type Broker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	cfg  config
	log  *slog.Logger
	addr string // the URL with its credentials taken out, for messages

	closeOnce sync.Once
	closed    chan struct{}
}

type config struct {
	log             *slog.Logger
	credsFile       string
	user, password  string
	token           string
	streams         []streamSpec
	duplicateWindow time.Duration
	streamConfig    func(*jetstream.StreamConfig)
	ackWait         time.Duration
	publishTimeout  time.Duration
	stopTimeout     time.Duration
}

type streamSpec struct {
	name     string
	subjects []string
}

// Option configures Open.
type Option func(*config)

// WithLogger sets where the broker logs disconnections, reconnections and
// the failures it retries. The default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithCredsFile authenticates with a NATS credentials file (a user JWT and
// its NKey seed).
func WithCredsFile(path string) Option { return func(c *config) { c.credsFile = path } }

// WithUserPassword authenticates with a user name and password.
func WithUserPassword(user, password string) Option {
	return func(c *config) { c.user, c.password = user, password }
}

// WithToken authenticates with a token.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithStream has Open call EnsureStream(ctx, name, subjects...).
func WithStream(name string, subjects ...string) Option {
	return func(c *config) {
		c.streams = append(c.streams, streamSpec{name, append([]string(nil), subjects...)})
	}
}

// WithDuplicateWindow sets the duplicate window of the streams
// EnsureStream creates: how long the server remembers a message ID to
// drop a repeat. Default two minutes.
func WithDuplicateWindow(d time.Duration) Option {
	return func(c *config) { c.duplicateWindow = d }
}

// WithStreamConfig lets fn change the configuration of each stream
// EnsureStream creates (replicas, limits, storage...) after the adapter
// filled in its name, subjects, storage and duplicate window.
func WithStreamConfig(fn func(*jetstream.StreamConfig)) Option {
	return func(c *config) { c.streamConfig = fn }
}

// WithAckWait sets the AckWait of the consumers Subscribe creates: how
// long the server waits for news of a delivered message before it
// delivers it again. Default 30 seconds. A live subscriber reports
// progress every AckWait/3, so this only decides how soon the messages of
// a subscriber that died go to another.
func WithAckWait(d time.Duration) Option { return func(c *config) { c.ackWait = d } }

// WithPublishTimeout sets how long Publish waits for the server to
// acknowledge a message before it fails, when ctx allows longer. Default
// 30 seconds.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *config) { c.publishTimeout = d }
}

// WithStopTimeout sets how long Subscribe waits, once its ctx ended, for
// the handlers still running before it returns anyway. Default 10
// seconds.
func WithStopTimeout(d time.Duration) Option { return func(c *config) { c.stopTimeout = d } }

// Open connects to the NATS server(s) at natsURL (comma-separated URLs,
// as nats.go takes them), checks that JetStream is enabled, and ensures
// the streams given with WithStream. The connection reconnects forever
// after it was once established.
func Open(ctx context.Context, natsURL string, opts ...Option) (*Broker, error) {
	cfg := config{
		log:             slog.Default(),
		duplicateWindow: defaultDuplicateWindow,
		ackWait:         defaultAckWait,
		publishTimeout:  defaultPublishTimeout,
		stopTimeout:     defaultStopTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	addr := redactURL(natsURL)
	switch {
	case strings.TrimSpace(natsURL) == "":
		return nil, errors.New("natsbroker: no NATS URL; pass --nats-url (for example nats://127.0.0.1:4222)")
	case cfg.log == nil:
		return nil, errors.New("natsbroker: WithLogger(nil); pass a logger or leave the option out")
	case cfg.duplicateWindow < 0, cfg.ackWait <= 0, cfg.publishTimeout <= 0, cfg.stopTimeout <= 0:
		return nil, fmt.Errorf("natsbroker: durations must be positive (duplicate window %v, ack wait %v, publish timeout %v, stop timeout %v)",
			cfg.duplicateWindow, cfg.ackWait, cfg.publishTimeout, cfg.stopTimeout)
	}
	log := cfg.log.With("broker", "nats")

	nopts := []nats.Option{
		nats.Name("statefun"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Publishing while disconnected fails at once instead of queuing
		// behind the messages lost with the connection (package doc:
		// Order).
		nats.ReconnectBufSize(-1),
		// A connection that went quiet is declared dead within about 30s,
		// failing what waits on it.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("natsbroker: disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("natsbroker: reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("natsbroker: NATS reported an error", "subject", subject, "err", err)
		}),
	}
	if deadline, ok := ctx.Deadline(); ok {
		nopts = append(nopts, nats.Timeout(max(time.Until(deadline), time.Millisecond)))
	}
	if cfg.credsFile != "" {
		nopts = append(nopts, nats.UserCredentials(cfg.credsFile))
	}
	if cfg.user != "" || cfg.password != "" {
		nopts = append(nopts, nats.UserInfo(cfg.user, cfg.password))
	}
	if cfg.token != "" {
		nopts = append(nopts, nats.Token(cfg.token))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsbroker: connect to NATS at %s: %w", addr, err)
	}
	nc, err := nats.Connect(natsURL, nopts...)
	if err != nil {
		return nil, connectError(addr, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(1<<16),
		jetstream.WithPublishAsyncTimeout(cfg.publishTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsbroker: JetStream on %s: %w", addr, err)
	}
	b := &Broker{nc: nc, js: js, cfg: cfg, log: log, addr: addr, closed: make(chan struct{})}
	if _, err := js.AccountInfo(ctx); err != nil {
		b.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("natsbroker: NATS at %s has no JetStream for this account: %w; start the server with JetStream (nats-server -js) or enable it for the account", addr, err)
		}
		return nil, fmt.Errorf("natsbroker: check JetStream on NATS at %s: %w; start the server with JetStream (nats-server -js)", addr, err)
	}
	for _, s := range cfg.streams {
		if err := b.EnsureStream(ctx, s.name, s.subjects...); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

func connectError(addr string, err error) error {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("natsbroker: connect to NATS at %s: %w; check the credentials (creds file, user and password, or token)", addr, err)
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("natsbroker: connect to NATS at %s: %w; start a server with JetStream (nats-server -js) or pass --nats-url", addr, err)
	}
	return fmt.Errorf("natsbroker: connect to NATS at %s: %w; start a server with JetStream (nats-server -js), pass --nats-url, or check the credentials", addr, err)
}

// redactURL returns the URL list with any user, password or token taken
// out, for error messages.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "@") {
			parts[i] = p
			continue
		}
		u, err := url.Parse(p)
		if err != nil || u.Host == "" {
			// Not parseable: keep only what follows the last '@', which is
			// the host and port.
			parts[i] = "[redacted]@" + p[strings.LastIndex(p, "@")+1:]
			continue
		}
		u.User = url.User("redacted")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// Name returns "nats".
func (b *Broker) Name() string { return "nats" }

// Close closes the connection. A Publish in flight returns an error; a
// Subscribe stops, waits for its handlers (WithStopTimeout) and returns an
// error.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		b.nc.Close()
	})
	return nil
}

var errClosed = errors.New("natsbroker: broker closed")

// StreamName is the name EnsureStream gives the stream it creates for
// subject when given no name: the subject with every character a stream
// name cannot hold replaced (see sanitize).
func StreamName(subject string) string { return sanitize(subject) }

// ConsumerName is the durable consumer a Subscription of group to topic
// reads with. It names the topic too, so that one group can read several
// subjects of one stream.
func ConsumerName(group, topic string) string { return sanitize(group + "_" + topic) }

// sanitize turns s into a name JetStream accepts for a stream or
// consumer: letters, digits, '-' and '_'. If it had to change or shorten
// s, it appends a hash of s, so that two different inputs ("a.b", "a_b")
// do not meet on one name.
func sanitize(s string) string {
	const maxLen = 64
	var sb strings.Builder
	changed := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			sb.WriteRune(r)
		default:
			sb.WriteByte('_')
			changed = true
		}
	}
	out := sb.String()
	if !changed && len(out) <= maxLen && out != "" {
		return out
	}
	h := fnv.New32a()
	h.Write([]byte(s))
	if len(out) > maxLen-9 {
		out = out[:maxLen-9]
	}
	return fmt.Sprintf("%s_%08x", out, h.Sum32())
}

// EnsureStream makes sure that a stream stores each of subjects. For a
// subject some stream already covers it does nothing; the others go to a
// new stream named name (StreamName(subjects[0]) if name is empty) with
// file storage and the duplicate window. It fails if a stream named name
// exists but does not cover them, or if they overlap a stream that covers
// them only in part.
func (b *Broker) EnsureStream(ctx context.Context, name string, subjects ...string) error {
	if len(subjects) == 0 {
		return fmt.Errorf("natsbroker: EnsureStream(%q) without subjects; name the subjects to store", name)
	}
	if name == "" {
		name = StreamName(subjects[0])
	}
	var missing []string
	for _, s := range subjects {
		if err := validSubject(s, true); err != nil {
			return fmt.Errorf("natsbroker: ensure stream %q: %w", name, err)
		}
		covering, err := b.streamFor(ctx, s)
		if err != nil {
			return fmt.Errorf("natsbroker: ensure stream %q: %w", name, err)
		}
		if covering == "" {
			missing = append(missing, s)
		} else {
			b.log.Debug("natsbroker: subject already stored by a stream", "subject", s, "stream", covering)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sc := jetstream.StreamConfig{
		Name:       name,
		Subjects:   missing,
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		Duplicates: b.cfg.duplicateWindow,
	}
	if b.cfg.streamConfig != nil {
		b.cfg.streamConfig(&sc)
	}
	_, err := b.js.CreateStream(ctx, sc)
	switch {
	case err == nil:
		b.log.Info("natsbroker: created stream", "stream", name, "subjects", missing)
		return nil
	case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
		// Another server may have created it just now, with the same
		// subjects: then they are covered.
		for _, s := range missing {
			covering, err2 := b.streamFor(ctx, s)
			if err2 != nil || covering == "" {
				return fmt.Errorf("natsbroker: stream %q exists on %s but does not store %q: %w; add the subject to it (nats stream edit) or pass another stream name", name, b.addr, s, err)
			}
		}
		return nil
	}
	return fmt.Errorf("natsbroker: create stream %q for %q on %s: %w; if another stream holds some of these subjects, give this one other subjects or add them to that stream", name, missing, b.addr, err)
}

// streamFor returns the name of the stream whose subjects cover subject,
// or "" if none does. It fails if streams cover subject
// only in part (a wildcard subject spread over several streams).
func (b *Broker) streamFor(ctx context.Context, subject string) (string, error) {
	l := b.js.ListStreams(ctx, jetstream.WithStreamListSubject(subject))
	var partial []string
	var found *jetstream.StreamInfo
	for info := range l.Info() {
		covers := false
		for _, p := range info.Config.Subjects {
			if subjectCovers(p, subject) {
				covers = true
			}
		}
		if covers && found == nil {
			found = info
		} else {
			partial = append(partial, info.Config.Name)
		}
	}
	if err := l.Err(); err != nil {
		return "", fmt.Errorf("list the streams of %q on %s: %w", subject, b.addr, err)
	}
	if found != nil && len(partial) == 0 {
		return found.Config.Name, nil
	}
	if len(partial) > 0 {
		if found != nil {
			partial = append(partial, found.Config.Name)
		}
		return "", fmt.Errorf("subject %q is stored only in part by streams %q; use a subject that one stream covers whole", subject, partial)
	}
	return "", nil
}

// subjectCovers reports whether every subject matching subject also
// matches pattern (both may hold wildcards).
func subjectCovers(pattern, subject string) bool {
	pt := strings.Split(pattern, ".")
	st := strings.Split(subject, ".")
	for i, t := range pt {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || st[i] == ">" {
			return false
		}
		if t == "*" {
			continue
		}
		if st[i] != t {
			return false
		}
	}
	return len(pt) == len(st)
}

// validSubject checks s is a NATS subject: dot-separated non-empty tokens
// without whitespace; wildcards ('*' as a token, '>' as the last) only if
// wildcards.
func validSubject(s string, wildcards bool) error {
	if s == "" {
		return errors.New("empty subject")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
		if strings.ContainsAny(t, " \t\r\n") {
			return fmt.Errorf("subject %q holds whitespace", s)
		}
		if t == "*" || (t == ">" && i == len(toks)-1) {
			if !wildcards {
				return fmt.Errorf("subject %q holds a wildcard; publish to a concrete subject", s)
			}
			continue
		}
		if strings.ContainsAny(t, "*>") {
			return fmt.Errorf("subject %q holds '*' or '>' inside a token", s)
		}
	}
	return nil
}
