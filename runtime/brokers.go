package statefun

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/statefun-go/statefun/runtime/internal/broker"
	"github.com/statefun-go/statefun/runtime/internal/broker/kafkabroker"
	"github.com/statefun-go/statefun/runtime/internal/broker/natsbroker"
)

// topicMaker is a broker that can make sure a topic exists (a JetStream
// stream covering a subject; a Kafka topic) before it is used.
type topicMaker interface {
	EnsureTopic(ctx context.Context, topic string) error
}

func ensureTopic(ctx context.Context, b broker.Broker, topic string) error {
	if m, ok := b.(topicMaker); ok {
		return m.EnsureTopic(ctx, topic)
	}
	return nil
}

// openBroker connects to the broker called name, as cfg says; a test's
// config may replace it (config.openBroker).
func openBroker(ctx context.Context, name string, cfg BrokerConfig, log *slog.Logger) (broker.Broker, error) {
	switch name {
	case BrokerNATS:
		opts := []natsbroker.Option{natsbroker.WithLogger(log)}
		if cfg.NATSCredsFile != "" {
			opts = append(opts, natsbroker.WithCredsFile(cfg.NATSCredsFile))
		}
		b, err := natsbroker.Open(ctx, cfg.NATSURL, opts...)
		if err != nil {
			return nil, err
		}
		return natsStreams{b}, nil
	case BrokerKafka:
		opts := []kafkabroker.Option{kafkabroker.WithLogger(log)}
		if cfg.KafkaUser != "" {
			mech, err := saslMechanism(cfg.KafkaSASLMechanism)
			if err != nil {
				return nil, err
			}
			opts = append(opts, kafkabroker.WithSASL(mech, cfg.KafkaUser, cfg.KafkaPassword))
		}
		if cfg.KafkaTLS {
			opts = append(opts, kafkabroker.WithTLS(nil))
		}
		b, err := kafkabroker.Open(ctx, cfg.KafkaBrokers, opts...)
		if err != nil {
			return nil, err
		}
		return kafkaTopics{b}, nil
	}
	return nil, fmt.Errorf("no broker named %q; use %q or %q", name, BrokerNATS, BrokerKafka)
}

func saslMechanism(name string) (kafkabroker.SASLMechanism, error) {
	switch strings.ToLower(name) {
	case "", "plain":
		return kafkabroker.SASLPlain, nil
	case "scram-sha-256":
		return kafkabroker.SASLScramSHA256, nil
	case "scram-sha-512":
		return kafkabroker.SASLScramSHA512, nil
	}
	return "", fmt.Errorf("--kafka-sasl %q: use plain, scram-sha-256 or scram-sha-512", name)
}

// kafkaPartitions is how many partitions a topic the server creates gets:
// the most subscribers of one group that can read it at once.
const kafkaPartitions = 12

// kafkaTopics makes sure of a topic by creating it when it is missing.
type kafkaTopics struct{ *kafkabroker.Broker }

func (b kafkaTopics) EnsureTopic(ctx context.Context, topic string) error {
	return b.Broker.EnsureTopic(ctx, topic, kafkaPartitions)
}

// natsStreams makes sure of a subject by the stream that stores it.
type natsStreams struct{ *natsbroker.Broker }

func (b natsStreams) EnsureTopic(ctx context.Context, subject string) error {
	return b.EnsureStream(ctx, "", subject)
}
