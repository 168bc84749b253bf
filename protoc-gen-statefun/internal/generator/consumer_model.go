package generator

import (
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// consumer is a service annotated with (statefun.v1.consumer), checked and
// resolved.
type consumer struct {
	service      *protogen.Service
	file         *protogen.File
	name         string
	source       *entity
	startFromNow bool
	handlers     []*consumerHandler
}

// consumerHandler binds one RPC of a consumer to one event of its source.
type consumerHandler struct {
	method *protogen.Method
	event  *event
}

func consumerOptions(svc *protogen.Service) *statefunv1.ConsumerOptions {
	opts := svc.Desc.Options()
	if opts == nil || !proto.HasExtension(opts, statefunv1.E_Consumer) {
		return nil
	}
	return proto.GetExtension(opts, statefunv1.E_Consumer).(*statefunv1.ConsumerOptions)
}

// resolveService finds a service named in an option: relative to the
// naming service's package first, then as a fully qualified name.
func (m *model) resolveService(from *protogen.Service, name string) *protogen.Service {
	name = strings.TrimPrefix(name, ".")
	if pkg := from.Desc.ParentFile().Package(); pkg != "" {
		if svc, ok := m.services[pkg+"."+protoreflect.FullName(name)]; ok {
			return svc
		}
	}
	return m.services[protoreflect.FullName(name)]
}

func (m *model) readConsumer(f *protogen.File, svc *protogen.Service) *consumer {
	opts := consumerOptions(svc)
	if opts == nil || viewOptions(svc) != nil || publisherOptions(svc) != nil {
		return nil // readView or readPublisher reports a view or publisher that is also a consumer
	}
	name := svc.Desc.Name()
	optsPos := func(path ...int32) position {
		return positionOf(svc.Desc, append([]int32{serviceOptionsField, consumerExtension}, path...)...)
	}
	if entityOptions(svc) != nil {
		m.diags.add(optsPos(),
			"service %s has both (statefun.v1.entity) and (statefun.v1.consumer); a service is an entity or a consumer, so split it in two", name)
		return nil
	}
	if workflowOptions(svc) != nil {
		m.diags.add(optsPos(),
			"service %s has both (statefun.v1.workflow) and (statefun.v1.consumer); a service is a workflow or a consumer, so split it in two", name)
		return nil
	}
	c := &consumer{
		service:      svc,
		file:         f,
		name:         opts.GetName(),
		startFromNow: opts.GetStartFrom() == statefunv1.ConsumerOptions_START_FROM_NOW,
	}
	switch {
	case c.name == "":
		m.diags.add(optsPos(consumerNameField),
			"consumer %s has no name; set (statefun.v1.consumer).name to a stable name its position is stored under, for example name: %q", name, kebab(string(name)))
	case strings.HasPrefix(c.name, "statefun"):
		m.diags.add(optsPos(consumerNameField),
			"consumer name %q of %s starts with \"statefun\", which is reserved for the runtime's own consumers; choose another name", c.name, name)
	case !entityTypePattern.MatchString(c.name):
		m.diags.add(optsPos(consumerNameField),
			"consumer name %q of %s is not valid; use lowercase letters, digits, '.', '_' and '-', starting with a letter, at most 128 characters", c.name, name)
	}
	var sourceSvc *protogen.Service
	switch {
	case opts.GetSource() == "":
		m.diags.add(optsPos(consumerSourceField),
			"consumer %s has no source; set (statefun.v1.consumer).source to the entity service whose events it consumes", name)
	default:
		sourceSvc = m.resolveService(svc, opts.GetSource())
		if sourceSvc == nil {
			m.diags.add(optsPos(consumerSourceField),
				"source %q of consumer %s not found; name an entity service of package %s, import the file that declares it, or give its fully qualified name", opts.GetSource(), name, svc.Desc.ParentFile().Package())
		} else if workflowOptions(sourceSvc) != nil {
			m.diags.add(optsPos(consumerSourceField),
				"source %s of consumer %s is a workflow, which has no events to consume; consume an event-sourced entity, or have a step of the workflow call the service that should act",
				sourceSvc.Desc.FullName(), name)
		} else if c.source = m.entityOf[sourceSvc]; c.source == nil {
			m.diags.add(optsPos(consumerSourceField),
				"source %s of consumer %s is not an entity; name a service with option (statefun.v1.entity)", sourceSvc.Desc.FullName(), name)
		} else if c.source.kind != eventSourced {
			m.diags.add(optsPos(consumerSourceField),
				"source %s of consumer %s is a key-value entity, which has no events to consume; consume an event-sourced entity", sourceSvc.Desc.FullName(), name)
			c.source = nil
		}
	}

	byEvent := map[*protogen.Message]*protogen.Method{}
	for _, meth := range svc.Methods {
		mname := string(svc.Desc.Name()) + "." + string(meth.Desc.Name())
		pos := positionOf(meth.Desc)
		switch {
		case meth.Desc.IsStreamingClient() || meth.Desc.IsStreamingServer():
			m.diags.add(pos, "method %s is streaming; a consumer's methods take one event and return google.protobuf.Empty", mname)
			continue
		case methodOptions(meth).GetSubscribe() != nil:
			m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodSubscribeField),
				"method %s sets (statefun.v1.method).subscribe, which applies to entity methods only; remove it: the runtime calls a consumer's methods with its source's events", mname)
			continue
		case methodOptions(meth).GetAccess() != nil:
			m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension, methodAccessField),
				"method %s declares (statefun.v1.method).access, but a consumer is called by no caller: the runtime calls it with its source's events; remove the access", mname)
			continue
		case methodOptions(meth) != nil:
			m.diags.add(positionOf(meth.Desc, methodOptionsField, statefunExtension),
				"method %s has (statefun.v1.method) options, which apply to entity, workflow and view methods only; remove them", mname)
			continue
		case meth.Output.Desc.FullName() != "google.protobuf.Empty":
			m.diags.add(pos, "method %s returns %s; a consumer's methods return google.protobuf.Empty", mname, meth.Output.Desc.FullName())
			continue
		}
		if c.source == nil {
			continue
		}
		var ev *event
		for _, e := range c.source.events {
			if e.message == meth.Input {
				ev = e
			}
		}
		if ev == nil && c.source.listed[meth.Input] {
			continue // the entity's own error about this event says it all
		}
		if ev == nil {
			m.diags.add(pos, "method %s takes %s, which is not an event of entity %s; its request type must be one of its events: %s",
				mname, meth.Input.Desc.FullName(), c.source.service.Desc.Name(), eventNames(c.source))
			continue
		}
		if prev, dup := byEvent[meth.Input]; dup {
			m.diags.add(pos, "methods %s and %s both handle %s; handle each event in one method",
				prev.Desc.Name(), meth.Desc.Name(), meth.Input.Desc.FullName())
			continue
		}
		byEvent[meth.Input] = meth
		c.handlers = append(c.handlers, &consumerHandler{method: meth, event: ev})
	}
	if len(svc.Methods) == 0 {
		m.diags.add(positionOf(svc.Desc), "consumer %s has no methods; add one RPC per event it handles, taking the event and returning google.protobuf.Empty", name)
	}
	return c
}

func eventNames(e *entity) string {
	names := make([]string, len(e.events))
	for i, ev := range e.events {
		names[i] = string(ev.message.Desc.FullName())
	}
	return strings.Join(names, ", ")
}
