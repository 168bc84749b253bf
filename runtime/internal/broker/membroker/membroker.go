// Package membroker is a broker in memory, for tests of what the runtime
// builds on brokers: it keeps every topic's messages in a log, dedups by
// ID like JetStream within its lifetime, and hands a group's messages to
// its subscribers in log order, one key at a time, acknowledging each
// only after its handler returned Ack. Faults are switched on by the test
// (Fail).
package membroker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/broker"
)

// Broker is an in-memory broker.
type Broker struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a log grows or an ack lands
	logs    map[string][]broker.Message
	ids     map[string]bool   // topic + "\x00" + ID: stored once
	acked   map[string][]bool // group + "\x00" + topic: per log index
	busy    map[string]bool   // group + "\x00" + topic + "\x00" + key: in a handler
	tries   map[string][]int  // attempts per log index, per group and topic
	offered map[string]int    // messages Publish accepted per topic, repeats too
	fail    error
	lose    int // acknowledgements still to lose
	closed  bool
}

// New returns an empty broker.
func New() *Broker {
	return &Broker{
		changed: make(chan struct{}), logs: map[string][]broker.Message{}, ids: map[string]bool{},
		acked: map[string][]bool{}, busy: map[string]bool{}, tries: map[string][]int{}, offered: map[string]int{},
	}
}

// Name implements broker.Broker.
func (b *Broker) Name() string { return "memory" }

// Fail makes every Publish fail with err until Fail(nil): a broker outage.
func (b *Broker) Fail(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

// LoseAcks makes the next n acknowledgements get lost: their messages
// are delivered again, as after a subscriber crashed between handling a
// message and acknowledging it.
func (b *Broker) LoseAcks(n int) {
	b.mu.Lock()
	b.lose = n
	b.mu.Unlock()
}

// Messages returns a copy of a topic's log.
func (b *Broker) Messages(topic string) []broker.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]broker.Message(nil), b.logs[topic]...)
}

// Offered returns how many messages were published to a topic, those
// dropped as repeats of an ID included.
func (b *Broker) Offered(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.offered[topic]
}

// Publish implements broker.Publisher.
func (b *Broker) Publish(ctx context.Context, msgs []broker.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return errors.New("membroker: closed")
	case b.fail != nil:
		return b.fail
	}
	for _, m := range msgs {
		b.offered[m.Topic]++
		if m.ID != "" {
			if b.ids[m.Topic+"\x00"+m.ID] {
				continue
			}
			b.ids[m.Topic+"\x00"+m.ID] = true
		}
		m.Headers = clone(m.Headers)
		m.Body = append([]byte(nil), m.Body...)
		b.logs[m.Topic] = append(b.logs[m.Topic], m)
	}
	b.wakeLocked()
	return nil
}

func (b *Broker) wakeLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Subscribe implements broker.Subscriber.
func (b *Broker) Subscribe(ctx context.Context, sub broker.Subscription, h broker.Handler) error {
	parallel := max(sub.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	gk := sub.Group + "\x00" + sub.Topic
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil
		}
		log := b.logs[sub.Topic]
		acked := b.acked[gk]
		for len(acked) < len(log) {
			acked = append(acked, false)
			b.tries[gk] = append(b.tries[gk], 0)
		}
		b.acked[gk] = acked
		// The first unacked message of each key that no handler holds.
		var next []int
		seenKey := map[string]bool{}
		for i, m := range log {
			if acked[i] || seenKey[m.Key] {
				continue
			}
			seenKey[m.Key] = true
			if !b.busy[gk+"\x00"+m.Key] {
				next = append(next, i)
			}
		}
		changed := b.changed
		var started []int
		for _, i := range next {
			if len(sem) == cap(sem) {
				break
			}
			sem <- struct{}{}
			b.busy[gk+"\x00"+log[i].Key] = true
			b.tries[gk][i]++
			started = append(started, i)
		}
		b.mu.Unlock()
		for _, i := range started {
			d := broker.Delivery{Message: log[i], Attempt: b.attempt(gk, i)}
			d.Headers = clone(d.Headers)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				verdict, delay := h(ctx, d)
				if verdict == broker.Retry {
					select {
					case <-time.After(delay):
					case <-ctx.Done():
					}
				}
				b.mu.Lock()
				switch {
				case verdict == broker.Ack && b.lose > 0:
					b.lose-- // handled, and delivered again
				case verdict == broker.Ack:
					b.acked[gk][i] = true
				}
				delete(b.busy, gk+"\x00"+d.Key)
				b.wakeLocked()
				b.mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (b *Broker) attempt(gk string, i int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tries[gk][i]
}

// Close implements broker.Broker.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	b.wakeLocked()
	b.mu.Unlock()
	return nil
}

func clone(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}
