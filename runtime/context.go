package statefun

import (
	"context"
	"time"

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
	timers   []timerOp
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

// ScheduleCall records a timer: call is made at due (or as soon as
// possible after it), at least once, by the node that owns this entity
// then. The timer is stored with the command's events when the command
// returns without error; nothing is scheduled otherwise. name is unique
// per entity: scheduling a name again replaces its pending timer, as does
// a later command. Generated code calls it.
func (c *CommandContext) ScheduleCall(name string, due time.Time, call *Call) {
	c.timers = append(c.timers, timerOp{name: name, due: due, call: call})
}

// ScheduleCallAfter is ScheduleCall at delay after now (the runtime's
// clock when the command returns). Generated code calls it.
func (c *CommandContext) ScheduleCallAfter(name string, delay time.Duration, call *Call) {
	c.timers = append(c.timers, timerOp{name: name, delay: delay, relative: true, call: call})
}

// CancelTimer records the cancelling of the entity's pending timer name,
// if there is one, when the command returns without error. Generated code
// calls it.
func (c *CommandContext) CancelTimer(name string) {
	c.timers = append(c.timers, timerOp{name: name, cancel: true})
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
