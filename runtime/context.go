package statefun

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// CommandContext is the runtime half of a generated command context
// (ShoppingCartContext and the like). Generated code wraps it in a typed API
// that accepts only the entity's own events; call that instead.
type CommandContext struct {
	ctx      context.Context
	entityID string
	kind     Kind
	events   []pendingEvent
	calls    []*Call
	newState proto.Message
	// oneEvent holds the first event, so that a command that emits one,
	// the usual kind, needs no allocation for it.
	oneEvent [1]pendingEvent
}

type pendingEvent struct {
	typ string
	msg proto.Message
}

// Context returns the request's context: its deadline, cancellation and
// metadata.
func (c *CommandContext) Context() context.Context { return c.ctx }

// EntityID returns the ID of the entity the command addresses.
func (c *CommandContext) EntityID() string { return c.entityID }

// Emit records an event, stored under eventType, to be applied and journaled
// when the command returns without error. Generated code calls it.
func (c *CommandContext) Emit(eventType string, event proto.Message) {
	if c.events == nil {
		c.events = c.oneEvent[:0:1]
	}
	c.events = append(c.events, pendingEvent{typ: eventType, msg: event})
}

// SetState records the new state of a key-value entity, to replace the
// current one when the command returns without error. Generated code calls
// it. The runtime keeps the message: the handler must not change it after.
func (c *CommandContext) SetState(state proto.Message) {
	c.newState = state
}

// Send records a call to make once the command's events are durable.
// Generated code calls it.
func (c *CommandContext) Send(call *Call) {
	c.calls = append(c.calls, call)
}

// ReadContext is the runtime half of a generated read context.
type ReadContext struct {
	ctx      context.Context
	entityID string
}

// Context returns the request's context.
func (c *ReadContext) Context() context.Context { return c.ctx }

// EntityID returns the ID of the entity the read addresses.
func (c *ReadContext) EntityID() string { return c.entityID }
