package breaking

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// entity is a service with the (statefun.v1.entity) option, read the way
// the generator reads it. Mistakes the generator reports (a missing state, an
// unknown event) are skipped here: the generator refuses such protos anyway.
type entity struct {
	service protoreflect.ServiceDescriptor
	typ     string
	kind    string // "event_sourced", "key_value", or "" when unset
	state   protoreflect.MessageDescriptor
	events  []event
}

type event struct {
	message protoreflect.MessageDescriptor
	typ     string // the stored event type name
}

// readEntities returns the entities declared in files, by service name.
func readEntities(files *protoregistry.Files) []*entity {
	var entities []*entity
	files.RangeFiles(func(file protoreflect.FileDescriptor) bool {
		services := file.Services()
		for i := 0; i < services.Len(); i++ {
			if e := readEntity(files, services.Get(i)); e != nil {
				entities = append(entities, e)
			}
		}
		return true
	})
	sort.Slice(entities, func(i, j int) bool { return entities[i].service.FullName() < entities[j].service.FullName() })
	return entities
}

func readEntity(files *protoregistry.Files, svc protoreflect.ServiceDescriptor) *entity {
	opts := svc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Entity) || proto.HasExtension(opts, statefunv1.E_Consumer) || proto.HasExtension(opts, statefunv1.E_View) {
		return nil
	}
	eo := proto.GetExtension(opts, statefunv1.E_Entity).(*statefunv1.EntityOptions)
	e := &entity{service: svc, typ: eo.GetType(), state: resolveMessage(files, svc, eo.GetState())}
	switch eo.GetKind().(type) {
	case *statefunv1.EntityOptions_EventSourced:
		e.kind = "event_sourced"
	case *statefunv1.EntityOptions_KeyValue:
		e.kind = "key_value"
	}
	seen := map[string]bool{}
	for _, ref := range eo.GetEventSourced().GetEvents() {
		msg := resolveMessage(files, svc, ref)
		if msg == nil {
			continue
		}
		ev := event{message: msg, typ: eventType(msg)}
		if seen[ev.typ] {
			continue
		}
		seen[ev.typ] = true
		e.events = append(e.events, ev)
	}
	return e
}

// resolveMessage finds a message named in an entity option: relative to the
// service's package first, then as a fully qualified name.
func resolveMessage(files *protoregistry.Files, svc protoreflect.ServiceDescriptor, name string) protoreflect.MessageDescriptor {
	name = strings.TrimPrefix(name, ".")
	if name == "" {
		return nil
	}
	var candidates []protoreflect.FullName
	if pkg := svc.ParentFile().Package(); pkg != "" {
		candidates = append(candidates, pkg.Append(protoreflect.Name(name)))
	}
	candidates = append(candidates, protoreflect.FullName(name))
	for _, full := range candidates {
		if d, err := files.FindDescriptorByName(full); err == nil {
			if msg, ok := d.(protoreflect.MessageDescriptor); ok {
				return msg
			}
		}
	}
	return nil
}

// eventType is the name an event is stored under: the event option's type,
// or the message's simple name.
func eventType(msg protoreflect.MessageDescriptor) string {
	if opts := msg.Options(); opts != nil && proto.HasExtension(opts, statefunv1.E_Event) {
		if t := proto.GetExtension(opts, statefunv1.E_Event).(*statefunv1.EventOptions).GetType(); t != "" {
			return t
		}
	}
	return string(msg.Name())
}

func (e *entity) optionPosition(suffix ...int32) Position {
	return positionOf(e.service, append([]int32{serviceOptionsField, statefunExtension}, suffix...)...)
}

func (e *entity) eventsPosition() Position {
	return e.optionPosition(entityEventSourcedField, eventSourcedEventsField)
}

func (c *checker) entityRemoved(old *entity) {
	fix := fmt.Sprintf("keep service %s with option (statefun.v1.entity) and type: %q (the service may be renamed or moved if it keeps the type)", old.service.FullName(), old.typ)
	pos := Position{File: old.service.ParentFile().Path()}
	if svc, err := c.newFiles.FindDescriptorByName(old.service.FullName()); err == nil {
		pos = positionOf(svc)
	} else if file, err := c.newFiles.FindFileByPath(old.service.ParentFile().Path()); err == nil {
		pos = filePosition(file)
	}
	c.add(pos, fix, "entity %q (service %s, %s in the old version) was removed, but its stored data stays in the store and names it",
		old.typ, old.service.FullName(), positionOf(old.service))
}

func (c *checker) entity(old, e *entity) {
	if old.typ != e.typ {
		fix := fmt.Sprintf("set type: %q again; a new type starts with no data", old.typ)
		if e.typ == "" {
			c.add(e.optionPosition(entityTypeField), fix, "the type %q of entity %s was removed, but its stored data is kept under that type",
				old.typ, e.service.FullName())
		} else {
			c.add(e.optionPosition(entityTypeField), fix, "the type of entity %s changed from %q to %q, but its stored data is kept under %q",
				e.service.FullName(), old.typ, e.typ, old.typ)
		}
	}
	if old.kind != "" && e.kind != "" && old.kind != e.kind {
		field := int32(entityEventSourcedField)
		if e.kind == "key_value" {
			field = entityKeyValueField
		}
		c.add(e.optionPosition(field),
			fmt.Sprintf("keep it %s; to change how it is stored, declare a new entity with a new type and move the data over", old.kind),
			"entity %q changed from %s to %s, but its stored data is in the %s form", old.typ, old.kind, e.kind, old.kind)
	}
	if old.state != nil && e.state != nil {
		c.messages(old.state, e.state, fmt.Sprintf("the state of entity %q", old.typ))
	}
	if old.kind == "event_sourced" && e.kind == "event_sourced" {
		c.events(old, e)
	}
}

func (c *checker) events(old, e *entity) {
	byType := map[string]event{}
	byMessage := map[protoreflect.FullName]event{}
	for _, ev := range e.events {
		byType[ev.typ] = ev
		byMessage[ev.message.FullName()] = ev
	}
	for _, oe := range old.events {
		if ev, ok := byType[oe.typ]; ok {
			c.messages(oe.message, ev.message, fmt.Sprintf("event %q of entity %q", oe.typ, old.typ))
			continue
		}
		setType := fmt.Sprintf("option (statefun.v1.event) = { type: %q }", oe.typ)
		if ev, ok := byMessage[oe.message.FullName()]; ok {
			c.add(positionOf(ev.message, messageOptionsField, statefunExtension, eventTypeField),
				fmt.Sprintf("set %s on %s", setType, ev.message.Name()),
				"event %s of entity %q is now stored as %q, but stored histories hold it as %q",
				ev.message.FullName(), old.typ, ev.typ, oe.typ)
			continue
		}
		if _, err := c.newFiles.FindDescriptorByName(oe.message.FullName()); err == nil {
			c.add(e.eventsPosition(),
				fmt.Sprintf("keep %s listed in event_sourced.events and stop emitting it instead", oe.message.Name()),
				"event %q (message %s) was removed from the events of entity %q, but stored histories may contain it",
				oe.typ, oe.message.FullName(), old.typ)
			continue
		}
		c.add(e.eventsPosition(),
			fmt.Sprintf("if you renamed the message, set %s on it; otherwise restore %s and keep it listed", setType, oe.message.Name()),
			"event type %q of entity %q (message %s, %s in the old version) is no longer stored by any of its events, but stored histories contain it",
			oe.typ, old.typ, oe.message.FullName(), positionOf(oe.message))
	}
}
