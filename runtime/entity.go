package statefun

import (
	"fmt"
	"regexp"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Kind says how an entity's state changes.
type Kind int

const (
	// EventSourced entities change by emitting events; the state is the
	// fold of the events.
	EventSourced Kind = iota + 1
	// KeyValue entities change by replacing the state whole.
	KeyValue
)

func (k Kind) String() string {
	switch k {
	case EventSourced:
		return "event-sourced"
	case KeyValue:
		return "key-value"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// EntityConfig describes an entity type to the runtime. Generated code fills
// it in from the proto options; programs do not build it by hand.
type EntityConfig[S proto.Message] struct {
	// Type is the stable entity type name stored with every event.
	Type string
	// Kind says how the state changes.
	Kind Kind
	// Service is the gRPC service whose methods address the entity.
	Service *grpc.ServiceDesc
	// SnapshotEvery is the number of events between snapshots; 0 means the
	// runtime's default. Event-sourced entities only.
	SnapshotEvery int
	// PassivationTimeout is how long an idle entity stays in memory; 0 means
	// the runtime's default.
	PassivationTimeout time.Duration
	// NewState returns the state of an entity that has no history.
	NewState func() S
	// NewEvent returns an empty event message for a stored event type name,
	// or nil when the name is not an event of this entity. Event-sourced
	// entities only.
	NewEvent func(eventType string) proto.Message
	// ApplyEvent applies one event, made by NewEvent or emitted by a
	// command, to the state. Event-sourced entities only.
	ApplyEvent func(state S, event proto.Message)
	// NewService returns the gRPC service implementation bound to a host.
	NewService func(*Host[S]) any
	// Subscriptions bind broker topics to methods of the entity.
	Subscriptions []SubscriptionConfig
}

// Entity is an entity type ready to be hosted: the value a generated
// constructor such as NewShoppingCart returns. Pass it to New or Main.
type Entity struct {
	typ     string
	kind    Kind
	service *grpc.ServiceDesc
	// bind creates the entity's host inside a runtime and returns the gRPC
	// service implementation that addresses it.
	bind func(*Runtime) any
	// knowsEvent reports whether the entity can apply events stored under
	// a type name; nil for key-value entities. The startup check
	// (checkEventTypes) asks it about every stored type.
	knowsEvent    func(eventType string) bool
	subscriptions []SubscriptionConfig
	err           error
}

var entityTypePattern = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,127}$`)

// NewEntity turns a configuration into an Entity. Generated code calls it.
// A configuration error is reported by New, so that a generated constructor
// never panics.
func NewEntity[S proto.Message](cfg EntityConfig[S]) *Entity {
	e := &Entity{typ: cfg.Type, kind: cfg.Kind, service: cfg.Service, subscriptions: cfg.Subscriptions}
	e.err = cfg.validate()
	e.bind = func(r *Runtime) any {
		return cfg.NewService(newHost(r, cfg))
	}
	if cfg.Kind == EventSourced && cfg.NewEvent != nil {
		// A sent call is stored as an event of its sender (callEventType).
		e.knowsEvent = func(t string) bool { return t == callEventType || cfg.NewEvent(t) != nil }
	}
	return e
}

// Type returns the entity's stable type name.
func (e *Entity) Type() string { return e.typ }

func (cfg *EntityConfig[S]) validate() error {
	switch {
	case !entityTypePattern.MatchString(cfg.Type):
		return fmt.Errorf("entity type %q is not valid: use lowercase letters, digits, '.', '_' and '-', starting with a letter", cfg.Type)
	case cfg.Service == nil || cfg.NewService == nil || cfg.NewState == nil:
		return fmt.Errorf("entity %q: incomplete configuration; regenerate the code with protoc-gen-statefun", cfg.Type)
	case cfg.Kind == EventSourced && (cfg.NewEvent == nil || cfg.ApplyEvent == nil):
		return fmt.Errorf("entity %q: event-sourced without event functions; regenerate the code with protoc-gen-statefun", cfg.Type)
	case cfg.Kind != EventSourced && cfg.Kind != KeyValue:
		return fmt.Errorf("entity %q: unknown kind %v", cfg.Type, cfg.Kind)
	case cfg.SnapshotEvery < 0 || cfg.PassivationTimeout < 0:
		return fmt.Errorf("entity %q: snapshot interval and passivation timeout must not be negative", cfg.Type)
	}
	return nil
}
