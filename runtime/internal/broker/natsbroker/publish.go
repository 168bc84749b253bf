package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// Publish sends msgs and returns once the server stored every one of them
// (package doc: Publishing). It checks every message before it sends any.
func (b *Broker) Publish(ctx context.Context, msgs []broker.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		nm, err := toNATS(m)
		if err != nil {
			return fmt.Errorf("natsbroker: publish message %d of %d (id %q): %w", i+1, len(msgs), m.ID, err)
		}
		out[i] = nm
	}
	if err := b.live(ctx); err != nil {
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(out))
	wait := func(i int) error {
		f := futures[i]
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return b.publishError(msgs[i], err)
		case <-ctx.Done():
			return fmt.Errorf("natsbroker: publish to %q: no acknowledgement from NATS before the context ended: %w", msgs[i].Topic, ctx.Err())
		case <-b.closed:
			return errClosed
		}
	}
	for i, nm := range out {
		if i >= publishWindow {
			if err := wait(i - publishWindow); err != nil {
				return err
			}
		}
		// No retry on "no responders": the retry would come after the
		// messages sent since, out of order (package doc: Order).
		f, err := b.js.PublishMsgAsync(nm, jetstream.WithRetryAttempts(0))
		if err != nil {
			return b.publishError(msgs[i], err)
		}
		futures = append(futures, f)
	}
	for i := max(0, len(out)-publishWindow); i < len(out); i++ {
		if err := wait(i); err != nil {
			return err
		}
	}
	return nil
}

// live fails if the broker is closed or ctx ended.
func (b *Broker) live(ctx context.Context) error {
	select {
	case <-b.closed:
		return errClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsbroker: %w", err)
	}
	return nil
}

func (b *Broker) publishError(m broker.Message, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("natsbroker: publish to %q: no JetStream stream stores this subject (%w); call EnsureStream for it at start (natsbroker.WithStream), or create a stream that covers it (nats stream add)", m.Topic, err)
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrDisconnected):
		return fmt.Errorf("natsbroker: publish to %q: not connected to NATS at %s (reconnecting): %w", m.Topic, b.addr, err)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("natsbroker: publish to %q: %w", m.Topic, errClosed)
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return fmt.Errorf("natsbroker: publish to %q: no acknowledgement from NATS at %s within %v: %w", m.Topic, b.addr, b.cfg.publishTimeout, err)
	}
	return fmt.Errorf("natsbroker: publish to %q on %s: %w", m.Topic, b.addr, err)
}

func toNATS(m broker.Message) (*nats.Msg, error) {
	if err := validSubject(m.Topic, false); err != nil {
		return nil, err
	}
	h := nats.Header{}
	for k, v := range m.Headers {
		if err := validHeader(k, v); err != nil {
			return nil, err
		}
		if reservedHeader(k) {
			return nil, fmt.Errorf("header %q is reserved (NATS's own headers start with \"Nats-\"; %s carries Message.Key); rename it", k, KeyHeader)
		}
		h.Set(k, v)
	}
	if m.Key != "" {
		if err := validHeader(KeyHeader, m.Key); err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		h.Set(KeyHeader, m.Key)
	}
	if m.ID != "" {
		if err := validHeader(jetstream.MsgIDHeader, m.ID); err != nil {
			return nil, fmt.Errorf("id: %w", err)
		}
		h.Set(jetstream.MsgIDHeader, m.ID)
	}
	nm := &nats.Msg{Subject: m.Topic, Data: m.Body}
	if len(h) > 0 {
		nm.Header = h
	}
	return nm, nil
}

// reservedHeader reports whether name is one the adapter or NATS gives a
// meaning to.
func reservedHeader(name string) bool {
	return strings.EqualFold(name, KeyHeader) || (len(name) >= 5 && strings.EqualFold(name[:5], "Nats-"))
}

// validHeader checks that name and value can travel in a NATS header
// block, which is text lines of "name: value".
func validHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for _, r := range name {
		if r <= ' ' || r == ':' || r == 0x7f {
			return fmt.Errorf("header name %q holds a space, a control character or ':'", name)
		}
	}
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("value of header %q holds a line break", name)
	}
	if strings.HasPrefix(value, " ") || strings.HasPrefix(value, "\t") {
		// NATS drops the blanks between "name:" and the value.
		return fmt.Errorf("value of header %q starts with a blank, which NATS would drop", name)
	}
	return nil
}

// fromNATS is the broker.Message of a received message.
func fromNATS(m jetstream.Msg) broker.Message {
	out := broker.Message{Topic: m.Subject(), Body: m.Data()}
	for k, vs := range m.Headers() {
		if len(vs) == 0 {
			continue
		}
		switch {
		case k == KeyHeader:
			out.Key = vs[0]
		case k == jetstream.MsgIDHeader:
			out.ID = vs[0]
		case reservedHeader(k):
		default:
			if out.Headers == nil {
				out.Headers = make(map[string]string)
			}
			out.Headers[k] = vs[0]
		}
	}
	return out
}
