// Package breaking refuses proto changes that would make data already stored
// by statefun unreadable or misread: it compares an old and a new version of
// a user's protos and reports each such change as
// "file.proto:line:col: what is wrong; how to fix it".
//
// Stored data outlives the code that wrote it. An entity's events and states
// are stored under names written in the annotations (the entity type, the
// event types; see invariant 9 in INVARIANTS.md) and as protobuf binary,
// which depends on field numbers and wire types only; a workflow's history
// names its type and steps and holds its state. So the check looks at
// exactly those: the stored names, and the binary shape of every message
// and enum reachable from an entity's state and events or a workflow's
// state, nested ones included.
//
// What it refuses:
//
//   - an entity that existed and is gone (the service, or its entity
//     option), or whose type changed or was removed;
//   - an entity switched between event_sourced and key_value;
//   - a stored event type name that changed (the event option's type, or
//     the message's simple name when the option sets none: renaming an
//     event message without setting type to the old name changes it);
//   - an event removed from an entity's events (stored histories contain it);
//   - a workflow that existed and is gone, or whose type changed or was
//     removed; a step removed or renamed (stored workflows may be at it);
//   - a view's row message changed in any of the ways below while the
//     view kept its name and version (its stored rows are read as the new
//     message; a raised version is rebuilt from the source's events);
//   - in a stored message: a field whose type changed (another scalar kind,
//     even a wire-compatible one such as int32 to int64 or string to bytes,
//     which can misread or fail on invalid UTF-8; another message or enum;
//     singular, repeated or map), a field that became required, a field
//     removed without reserving its number, a field number the old version
//     reserved used again, a reserved number dropped, and two existing
//     fields put into one oneof (stored data may hold both; decoding keeps
//     one);
//   - in a stored enum: a value removed without reserving its number, a
//     value whose number changed, a reserved number used again or dropped.
//
// What it allows: new fields, events, entities, workflows, steps and views;
// any change to a view whose version is raised, or a removed view;
// renamed fields (binary data does not hold field names; JSON does, and
// statefun stores binary); a renamed or moved event message that keeps its
// stored type; a renamed state message, or a renamed message or enum inside
// stored data when the old name is gone and the new one is new (it is
// compared field by field); fields moved out of a oneof; proto3 optional
// added or removed.
//
// It does not see inside google.protobuf.Any (whose stored type URLs name
// messages by full name), and it is about stored data only: clients of the
// API need buf breaking as well.
package breaking

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Position is a place in a proto file; Line and Col are 1-based, and 0 when
// the file has no source information.
type Position struct {
	File      string
	Line, Col int
}

func (p Position) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Finding is one change that breaks stored data.
type Finding struct {
	// Pos is where the change is in the new version; for something removed,
	// the element that held it (its message, enum, entity option or file).
	Pos Position
	// Message says what is wrong, naming the old location of anything
	// removed.
	Message string
	// Fix says how to fix it.
	Fix string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s; %s", f.Pos, f.Message, f.Fix)
}

// Check compares the old and the new version of a set of protos and returns
// every change that would make stored data unreadable or misread, sorted by
// position. Only entities, workflows and views of the old version are
// checked: a new one has no stored data yet.
func Check(oldFiles, newFiles *protoregistry.Files) []Finding {
	c := &checker{
		oldFiles:     oldFiles,
		newFiles:     newFiles,
		seenMessages: map[[2]protoreflect.FullName]bool{},
		seenEnums:    map[[2]protoreflect.FullName]bool{},
	}
	newEntities := readEntities(newFiles)
	byService := map[protoreflect.FullName]*entity{}
	byType := map[string]*entity{}
	for _, e := range newEntities {
		byService[e.service.FullName()] = e
		if _, dup := byType[e.typ]; !dup {
			byType[e.typ] = e
		}
	}
	for _, old := range readEntities(oldFiles) {
		// The service name matches first, so that a changed type is reported
		// as such; then the type, so that a renamed or moved service that
		// keeps its type keeps its data.
		e := byService[old.service.FullName()]
		if e == nil && old.typ != "" {
			e = byType[old.typ]
		}
		if e == nil {
			c.entityRemoved(old)
			continue
		}
		c.entity(old, e)
	}
	workflowsByService := map[protoreflect.FullName]*workflow{}
	workflowsByType := map[string]*workflow{}
	for _, w := range readWorkflows(newFiles) {
		workflowsByService[w.service.FullName()] = w
		if _, dup := workflowsByType[w.typ]; !dup {
			workflowsByType[w.typ] = w
		}
	}
	for _, old := range readWorkflows(oldFiles) {
		w := workflowsByService[old.service.FullName()]
		if w == nil && old.typ != "" {
			w = workflowsByType[old.typ]
		}
		if w == nil {
			c.workflowRemoved(old)
			continue
		}
		c.workflow(old, w)
	}
	viewsByService := map[protoreflect.FullName]*view{}
	viewsByName := map[string]*view{}
	for _, v := range readViews(newFiles) {
		viewsByService[v.service.FullName()] = v
		if _, dup := viewsByName[v.name]; !dup {
			viewsByName[v.name] = v
		}
	}
	for _, old := range readViews(oldFiles) {
		v := viewsByService[old.service.FullName()]
		if v == nil && old.name != "" {
			v = viewsByName[old.name]
		}
		if v != nil {
			// A removed view leaves rows that nothing reads.
			c.view(old, v)
		}
	}
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i].Pos, c.findings[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return c.findings
}

type checker struct {
	oldFiles, newFiles *protoregistry.Files
	findings           []Finding
	// Each pair of old and new message (or enum) is compared once, under
	// the first entity that reaches it; this also ends recursive types.
	seenMessages map[[2]protoreflect.FullName]bool
	seenEnums    map[[2]protoreflect.FullName]bool
}

func (c *checker) add(pos Position, fix, format string, args ...any) {
	c.findings = append(c.findings, Finding{Pos: pos, Message: fmt.Sprintf(format, args...), Fix: fix})
}

// Field numbers of descriptor.proto and annotations.proto that lead to
// options in source locations.
const (
	fileSyntaxField     = 12 // FileDescriptorProto.syntax
	filePackageField    = 2  // FileDescriptorProto.package
	serviceOptionsField = 3  // ServiceDescriptorProto.options
	messageOptionsField = 7  // DescriptorProto.options
	statefunExtension   = 51230
	workflowExtension   = 51232

	entityTypeField         = 1
	entityEventSourcedField = 3
	entityKeyValueField     = 4
	eventSourcedEventsField = 1
	eventTypeField          = 1
	workflowTypeField       = 1
	workflowStepsField      = 3
)

// positionOf returns where d, or the part of d named by suffix (a path of
// field numbers below d's own source path), is declared, falling back to
// the closest enclosing element that has a location. It is the generator's
// rule, so that both point at the same places.
func positionOf(d protoreflect.Descriptor, suffix ...int32) Position {
	file := d.ParentFile()
	pos := Position{File: file.Path()}
	locs := file.SourceLocations()
	base := locs.ByDescriptor(d).Path
	if base == nil {
		return pos
	}
	path := append(append(protoreflect.SourcePath(nil), base...), suffix...)
	for n := len(path); n >= len(base); n-- {
		loc := locs.ByPath(path[:n])
		if loc.Path != nil {
			pos.Line, pos.Col = loc.StartLine+1, loc.StartColumn+1
			return pos
		}
	}
	return pos
}

// filePosition returns the position of a file's package statement (or its
// syntax statement), where something removed from the whole file is
// reported.
func filePosition(file protoreflect.FileDescriptor) Position {
	pos := Position{File: file.Path()}
	locs := file.SourceLocations()
	for _, path := range []protoreflect.SourcePath{{filePackageField}, {fileSyntaxField}} {
		if loc := locs.ByPath(path); loc.Path != nil {
			pos.Line, pos.Col = loc.StartLine+1, loc.StartColumn+1
			return pos
		}
	}
	return pos
}
