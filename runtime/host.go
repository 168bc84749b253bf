package statefun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Host runs the instances of one entity type: it loads an instance on first
// use, runs its commands one at a time and journals what they change.
// Generated service glue holds a Host and calls Command and Read with it.
type Host[S proto.Message] struct {
	cfg   EntityConfig[S]
	store *memoryStore
	log   *slog.Logger

	mu        sync.Mutex
	instances map[string]*instance[S]
}

// instance is one entity held in memory. mu is the single-writer lock:
// commands take it exclusively, reads share it.
type instance[S proto.Message] struct {
	mu    sync.RWMutex
	state S
	// seq is the number of events applied (event-sourced) or the version of
	// the state (key-value).
	seq int64
	// broken is set when the instance must not be used again: a handler
	// panicked or the store refused a write. The next request reloads it.
	broken atomic.Bool
}

func newHost[S proto.Message](r *Runtime, cfg EntityConfig[S]) *Host[S] {
	return &Host[S]{cfg: cfg, store: r.store, log: r.log, instances: map[string]*instance[S]{}}
}

// Command runs fn, a command handler, against the entity id: exclusively,
// with the current state. When fn succeeds, its events are applied (or its
// new state taken) and journaled before the reply is released. When fn fails,
// nothing it emitted is kept.
func Command[S, R proto.Message](ctx context.Context, h *Host[S], id string, fn func(*CommandContext, S) (R, error)) (R, error) {
	var zero R
	inst, err := h.instance(ctx, id)
	if err != nil {
		return zero, err
	}
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.broken.Load() {
		// Another command reset this instance while we waited for it.
		return zero, status.Error(codes.Aborted, "entity was reset by a concurrent failure; retry the call")
	}
	cc := &CommandContext{ctx: ctx, entityID: id, kind: h.cfg.Kind}
	reply, err := callHandler(func() (R, error) { return fn(cc, inst.state) })
	if err != nil {
		if errors.Is(err, errPanic) {
			h.reset(id, inst)
			h.log.Error("command handler panicked; entity reset", "entity", h.cfg.Type, "id", id, "error", err)
			return zero, status.Error(codes.Internal, "command handler panicked")
		}
		return zero, err
	}
	if err := h.commit(ctx, id, inst, cc); err != nil {
		h.reset(id, inst)
		return zero, err
	}
	// The reply may share memory with the state, which the next command
	// changes in place; the caller gets its own copy.
	return proto.Clone(reply).(R), nil
}

// Read runs fn, a read-only handler, against the entity id. Reads of one
// entity run concurrently with each other, never with a command.
func Read[S, R proto.Message](ctx context.Context, h *Host[S], id string, fn func(*ReadContext, S) (R, error)) (R, error) {
	var zero R
	inst, err := h.instance(ctx, id)
	if err != nil {
		return zero, err
	}
	inst.mu.RLock()
	defer inst.mu.RUnlock()
	if inst.broken.Load() {
		return zero, status.Error(codes.Aborted, "entity was reset by a concurrent failure; retry the call")
	}
	rc := &ReadContext{ctx: ctx, entityID: id}
	reply, err := callHandler(func() (R, error) { return fn(rc, inst.state) })
	if err != nil {
		if errors.Is(err, errPanic) {
			h.reset(id, inst)
			h.log.Error("read handler panicked; entity reset", "entity", h.cfg.Type, "id", id, "error", err)
			return zero, status.Error(codes.Internal, "read handler panicked")
		}
		return zero, err
	}
	return proto.Clone(reply).(R), nil
}

var errPanic = errors.New("handler panicked")

// callHandler runs a user handler, turning a panic into errPanic and a nil
// reply into an error, so that one bad call cannot take the server down.
func callHandler[R proto.Message](fn func() (R, error)) (reply R, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	reply, err = fn()
	if err == nil && any(reply) == nil {
		return reply, status.Error(codes.Internal, "handler returned neither a reply nor an error")
	}
	return reply, err
}

// commit applies what a successful command produced and journals it.
func (h *Host[S]) commit(ctx context.Context, id string, inst *instance[S], cc *CommandContext) error {
	ref := entityRef{typ: h.cfg.Type, id: id}
	switch h.cfg.Kind {
	case EventSourced:
		if len(cc.events) == 0 {
			return nil
		}
		stored := make([]storedEvent, len(cc.events))
		for i, e := range cc.events {
			payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.msg)
			if err != nil {
				return status.Errorf(codes.Internal, "encode event %s: %v", e.typ, err)
			}
			stored[i] = storedEvent{seq: inst.seq + int64(i) + 1, typ: e.typ, payload: payload}
		}
		if err := h.store.appendEvents(ctx, ref, stored); err != nil {
			return storeError(err)
		}
		for _, e := range cc.events {
			if err := applyEvent(h.cfg.ApplyEvent, inst.state, e.msg); err != nil {
				return status.Errorf(codes.Internal, "apply event %s: %v", e.typ, err)
			}
		}
		inst.seq += int64(len(cc.events))
	case KeyValue:
		if cc.newState == nil {
			return nil
		}
		next, ok := cc.newState.(S)
		if !ok {
			return status.Errorf(codes.Internal, "new state has type %T", cc.newState)
		}
		payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(next)
		if err != nil {
			return status.Errorf(codes.Internal, "encode state: %v", err)
		}
		if err := h.store.putValue(ctx, ref, storedValue{version: inst.seq + 1, payload: payload}); err != nil {
			return storeError(err)
		}
		inst.state = next
		inst.seq++
	}
	return nil
}

func applyEvent[S proto.Message](apply func(S, proto.Message), state S, event proto.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	apply(state, event)
	return nil
}

func storeError(err error) error {
	if errors.Is(err, errConflict) {
		return status.Errorf(codes.Aborted, "%v; the entity was reloaded, retry the call", err)
	}
	return status.Errorf(codes.Unavailable, "store: %v", err)
}

// instance finds the entity in memory or loads it from the store.
func (h *Host[S]) instance(ctx context.Context, id string) (*instance[S], error) {
	h.mu.Lock()
	inst, ok := h.instances[id]
	if !ok {
		inst = &instance[S]{}
		h.instances[id] = inst
		// Hold the instance's write lock while loading, so concurrent
		// first requests wait for one load instead of each loading.
		inst.mu.Lock()
		h.mu.Unlock()
		err := h.load(ctx, id, inst)
		if err != nil {
			inst.broken.Store(true)
			h.mu.Lock()
			delete(h.instances, id)
			h.mu.Unlock()
		}
		inst.mu.Unlock()
		return inst, err
	}
	h.mu.Unlock()
	return inst, nil
}

func (h *Host[S]) load(ctx context.Context, id string, inst *instance[S]) error {
	ref := entityRef{typ: h.cfg.Type, id: id}
	inst.state = h.cfg.NewState()
	switch h.cfg.Kind {
	case EventSourced:
		events, err := h.store.loadEvents(ctx, ref)
		if err != nil {
			return status.Errorf(codes.Unavailable, "load %s %q: %v", h.cfg.Type, id, err)
		}
		for _, e := range events {
			msg := h.cfg.NewEvent(e.typ)
			if msg == nil {
				return status.Errorf(codes.Internal, "load %s %q: event %d has type %q, which this entity does not declare; add it to the entity's events", h.cfg.Type, id, e.seq, e.typ)
			}
			if err := proto.Unmarshal(e.payload, msg); err != nil {
				return status.Errorf(codes.Internal, "load %s %q: decode event %d (%s): %v", h.cfg.Type, id, e.seq, e.typ, err)
			}
			if err := applyEvent(h.cfg.ApplyEvent, inst.state, msg); err != nil {
				return status.Errorf(codes.Internal, "load %s %q: apply event %d (%s): %v", h.cfg.Type, id, e.seq, e.typ, err)
			}
			inst.seq = e.seq
		}
	case KeyValue:
		v, err := h.store.loadValue(ctx, ref)
		if err != nil {
			return status.Errorf(codes.Unavailable, "load %s %q: %v", h.cfg.Type, id, err)
		}
		if v.version > 0 {
			if err := proto.Unmarshal(v.payload, inst.state); err != nil {
				return status.Errorf(codes.Internal, "load %s %q: decode state: %v", h.cfg.Type, id, err)
			}
		}
		inst.seq = v.version
	}
	return nil
}

// reset drops an instance from memory; the next request reloads it from the
// store, so nothing the store did not accept survives in memory.
func (h *Host[S]) reset(id string, inst *instance[S]) {
	inst.broken.Store(true)
	h.mu.Lock()
	if h.instances[id] == inst {
		delete(h.instances, id)
	}
	h.mu.Unlock()
}
