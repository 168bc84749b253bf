package statefun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/runtime/store"
)

// WithAllowUnknownEvents lets New start although the store holds events,
// of a hosted entity type, that the entity does not declare. By default
// New refuses: such an entity cannot be loaded, because its history
// cannot be applied. With this option the runtime logs a warning naming
// the event types and serves anyway; loading an entity whose history holds
// one fails with codes.Internal naming the entity, the event and its seq.
// The server's --allow-unknown-events flag sets it.
//
// Use it to keep serving the entities whose history is intact while a
// binary that knows the events is on its way, or during a rolling upgrade
// in which the older nodes start after a newer one has written a new type.
func WithAllowUnknownEvents() Option {
	return optionFunc(func(c *config) { c.allowUnknownEvents = true })
}

// unknownEvents names the stored event types of one entity type that the
// binary does not declare.
type unknownEvents struct {
	entityType string
	eventTypes []string
}

func (u unknownEvents) Error() string {
	return fmt.Sprintf("entity type %q has stored events this binary does not know: %s; an entity holding one could not be loaded. "+
		"Deploy a binary whose proto lists them in the entity's events (or keep them listed until no stored entity holds them), "+
		"or start with --allow-unknown-events (statefun.WithAllowUnknownEvents) to serve anyway (entities whose history holds them will fail to load)",
		u.entityType, strings.Join(u.eventTypes, ", "))
}

// checkEventTypes compares, for each hosted event-sourced entity type,
// the event types the store has recorded for it (store.Registry.EventTypes,
// a registry written in each commit's transaction, so it cannot miss a
// stored type: INVARIANTS.md, invariant 9) with those the entity
// declares, by their stored names. It refuses to start on any it does not
// know, unless allowed, in which case it logs them.
//
// Key-value entities are not checked: a stored value does not record the
// name of its state message, so there is nothing to compare; a value that
// does not decode fails its entity's load.
//
// Every node of a cluster runs the check when it starts. A node already
// running can still meet a type that a newer node writes during a rolling
// upgrade; loading an entity that holds one fails with an error that
// names it (Host.load).
func (r *Runtime) checkEventTypes(entities []*Entity) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.commitTimeout)
	defer cancel()
	stored, err := r.store.EventTypes(ctx)
	if err != nil {
		return fmt.Errorf("read the event types stored for each entity type, to check that this binary knows them: %w", err)
	}
	var errs []error
	for _, e := range entities {
		if e.knowsEvent == nil {
			continue
		}
		var unknown []string
		for _, t := range stored[e.typ] {
			if !e.knowsEvent(t) {
				unknown = append(unknown, t)
			}
		}
		if len(unknown) == 0 {
			continue
		}
		slices.Sort(unknown)
		if r.cfg.allowUnknownEvents {
			r.log.Warn("serving an entity type with stored events this binary does not know (--allow-unknown-events); entities whose history holds one will fail to load",
				"entity", e.typ, "unknown_events", strings.Join(unknown, ", "))
			continue
		}
		errs = append(errs, unknownEvents{entityType: e.typ, eventTypes: unknown})
	}
	return errors.Join(errs...)
}

// unknownEventError is a load's failure on a stored event whose type the
// entity does not declare: the binary is older than the data (a newer
// node wrote it during a rolling upgrade) or the type was dropped from the
// proto. The server started anyway (WithAllowUnknownEvents), or the type
// was written after it started.
//
// INTERNAL, not FAILED_PRECONDITION: the fault is the deployment's, not
// the caller's, and no change of the caller's request or of the entity's
// state through the API can cure it; INTERNAL reaches the operators'
// error rates and alerts (HTTP 500), while FAILED_PRECONDITION reads as a
// business refusal (handlers return it for "cart is checked out", and
// HTTP maps it to 400). It is what a load that cannot decode an event
// returns too.
func unknownEventError(ref store.Ref, e store.Event) error {
	return status.Errorf(codes.Internal, "load %s: event %d has type %q, which this binary's %q entity does not declare, so the entity cannot be loaded; "+
		"deploy a binary whose proto lists %q in the entity's events (a newer node may have written it during a rolling upgrade)",
		ref, e.Seq, e.EventType, ref.Type, e.EventType)
}
