// Package broker is what the runtime needs from a message broker: publish
// an entity's events in order, durably, and deliver a topic's messages to a
// handler, acknowledging each only once it was handled. Adapters live in
// subpackages (natsbroker: NATS JetStream; kafkabroker: Kafka through
// franz-go); brokertest is the conformance suite both pass.
//
// The runtime's guarantees (at least once, in order per entity, nothing
// published before it is durable, nothing skipped) come from the event
// feed: a publisher is a consumer of the feed whose position moves only
// after the broker acknowledged a message. An adapter's part is to
// acknowledge only what the broker stored, to keep the order of the
// messages it is given for one key, and to deduplicate by Message.ID where
// the broker can.
package broker

import (
	"context"
	"time"
)

// Message is one message to publish, or one received.
type Message struct {
	// Topic is the NATS subject or Kafka topic. On a received message,
	// the one it came from.
	Topic string
	// Key orders messages: those with the same key reach subscribers in
	// the order they were published (the Kafka partition key; the entity
	// ID for an entity's events). May be empty on a received message.
	Key string
	// ID identifies the message for deduplication (the JetStream
	// Nats-Msg-Id; a Kafka header). Publishing the same ID twice within
	// the broker's window stores it once where the broker supports it.
	ID string
	// Headers are sent as message headers: the CloudEvents attributes in
	// binary mode ("ce-id", "ce-type", ...) and "content-type". Names
	// are as given; adapters do not rename them.
	Headers map[string]string
	// Body is the payload.
	Body []byte
}

// Publisher sends messages to a broker.
type Publisher interface {
	// Publish sends msgs and returns once the broker acknowledged that it
	// stored every one of them, or an error (after which any of them may
	// or may not be stored: the caller publishes them again). Messages
	// with the same Key are stored in the order given. It returns early
	// with ctx's error when ctx ends.
	Publish(ctx context.Context, msgs []Message) error
}

// Delivery is a received message and how many times it was delivered.
type Delivery struct {
	Message
	// Attempt counts deliveries of this message, from 1.
	Attempt int
}

// Verdict is what a handler decided about a delivery.
type Verdict int

const (
	// Ack means handled: the broker may forget the message.
	Ack Verdict = iota
	// Retry means deliver it again after the delay given with it. For a
	// broker that orders a partition (Kafka), nothing after it on that
	// partition is handled meanwhile.
	Retry
)

// Handler handles one delivery. It returns Ack, or Retry and the delay
// before the next attempt. A message that must go to a dead-letter topic
// is published there by the handler, which then returns Ack.
type Handler func(ctx context.Context, d Delivery) (Verdict, time.Duration)

// Subscription describes what to receive.
type Subscription struct {
	// Topic is the subject or topic to read.
	Topic string
	// Group names the durable reader: every server of a group shares its
	// progress, and each message goes to one of them (a JetStream durable
	// consumer; a Kafka consumer group). Stable across restarts.
	Group string
	// Parallel is how many deliveries may be handled at once (at least 1).
	// Messages of one key are still handled one at a time, in order.
	Parallel int
}

// Subscriber receives messages from a broker.
type Subscriber interface {
	// Subscribe delivers the messages of sub to h until ctx ends, then
	// returns nil; it returns an error at once if the subscription cannot
	// be set up (no such stream, bad credentials), and keeps retrying
	// (logging) when the broker goes away after that. A message is
	// acknowledged to the broker only after h returned Ack for it.
	Subscribe(ctx context.Context, sub Subscription, h Handler) error
}

// Broker is one connection to a broker, for both directions.
type Broker interface {
	Publisher
	Subscriber
	// Name says which broker, for logs and errors ("nats", "kafka").
	Name() string
	// Close closes the connection. Calls in flight end with an error.
	Close() error
}
