package statefun

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Broker names, as in PublisherConfig.Broker and SubscriptionConfig.Broker.
const (
	BrokerNATS  = "nats"
	BrokerKafka = "kafka"
)

// PublisherConfig describes a publisher of an entity type's events to the
// runtime. Generated code fills it in from (statefun.v1.publisher);
// programs do not build it by hand.
type PublisherConfig struct {
	// Name is the stable name the publisher's position is stored under.
	Name string
	// EntityType is the stored type name of the entity whose events it
	// publishes.
	EntityType string
	// Broker is BrokerNATS or BrokerKafka.
	Broker string
	// Topic is the NATS subject or Kafka topic.
	Topic string
	// Events are the stored event types to publish; empty means all of
	// the entity's events.
	Events []string
	// JSON encodes message bodies as protobuf JSON rather than binary.
	JSON bool
	// StartFromNow makes a publisher without a stored position skip the
	// history and start with the next event.
	StartFromNow bool
	// NewEvent returns an empty message for a stored event type, or nil
	// when the type is not one of the entity's events.
	NewEvent func(eventType string) proto.Message
}

// Publisher is a publisher ready to run: the value a generated constructor
// such as NewUserEventsPublisher returns. Pass it to Main, or to New with
// WithPublishers.
type Publisher struct {
	cfg PublisherConfig
	err error
}

func (*Publisher) isComponent() {}

// NewPublisher turns a configuration into a Publisher. Generated code calls
// it; a configuration error is reported by New.
func NewPublisher(cfg PublisherConfig) *Publisher {
	p := &Publisher{cfg: cfg}
	switch {
	case !entityTypePattern.MatchString(cfg.Name):
		p.err = fmt.Errorf("publisher name %q is not valid: use lowercase letters, digits, '.', '_' and '-', starting with a letter", cfg.Name)
	case cfg.EntityType == "" || cfg.Topic == "" || cfg.NewEvent == nil:
		p.err = fmt.Errorf("publisher %q: incomplete configuration; regenerate the code with protoc-gen-statefun", cfg.Name)
	case cfg.Broker != BrokerNATS && cfg.Broker != BrokerKafka:
		p.err = fmt.Errorf("publisher %q: unknown broker %q; regenerate the code with protoc-gen-statefun", cfg.Name, cfg.Broker)
	}
	return p
}

// Name returns the publisher's stable name.
func (p *Publisher) Name() string { return p.cfg.Name }

// SubscriptionConfig binds a broker topic to one method of an entity.
// Generated code fills it in from (statefun.v1.method).subscribe, in the
// entity's EntityConfig.
type SubscriptionConfig struct {
	// Method is the full gRPC method name, "/pkg.Service/Method".
	Method string
	// Broker is BrokerNATS or BrokerKafka.
	Broker string
	// Topic is the NATS subject or Kafka topic to read.
	Topic string
	// Group names the subscription's progress at the broker; empty means
	// "statefun-<entity type>-<method name>".
	Group string
	// MaxAttempts is how many times a message is tried before it goes to
	// DeadLetter; 0 means 10.
	MaxAttempts int
	// DeadLetter is the topic (same broker) for messages that cannot be
	// handled; empty means Topic + ".dead-letter".
	DeadLetter string
	// Type is the CloudEvents type the method takes (the stored event
	// type, when its request is an entity's event): a message with
	// another ce-type is acknowledged and skipped, so that one topic can
	// carry several event types, each to its own method. Empty takes
	// every message.
	Type string
	// KeyFromSubject says the request has no key fields: the entity is
	// the message's CloudEvents subject (ce-subject), passed to the
	// method as the ce-subject metadata.
	KeyFromSubject bool
	// NewRequest and NewResponse return the method's empty request and
	// response messages.
	NewRequest, NewResponse func() proto.Message
}

// SubjectHeader is the gRPC metadata key (and HTTP header) that carries a
// CloudEvents subject: the entity a subscribed method whose request has no
// key fields is addressed to.
const SubjectHeader = "ce-subject"

// SubjectKey returns the entity ID a method whose request has no key
// fields is addressed to: the ce-subject metadata of the call. Generated
// code calls it.
func SubjectKey(ctx context.Context, method string) (string, error) {
	values := metadata.ValueFromIncomingContext(ctx, SubjectHeader)
	if len(values) != 1 || values[0] == "" {
		return "", status.Errorf(codes.InvalidArgument,
			"%s takes its entity from the %s metadata (the CloudEvents subject of the broker message it is subscribed to); send one %s with the entity ID", method, SubjectHeader, SubjectHeader)
	}
	return values[0], nil
}
