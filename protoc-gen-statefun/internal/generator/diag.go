package generator

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Field numbers of descriptor.proto used to point at options in source
// locations.
const (
	serviceOptionsField = 3 // ServiceDescriptorProto.options
	methodOptionsField  = 4 // MethodDescriptorProto.options
	messageOptionsField = 7 // DescriptorProto.options
	fieldOptionsField   = 8 // FieldDescriptorProto.options
	statefunExtension   = 51230
	consumerExtension   = 51231
	workflowExtension   = 51232
	viewExtension       = 51233
	publisherExtension  = 51234
	accessExtension     = 51235

	entityTypeField         = 1
	entityStateField        = 2
	entityEventSourcedField = 3
	entityPassivationField  = 5
	eventSourcedEventsField = 1
	eventTypeField          = 1
	consumerNameField       = 1
	consumerSourceField     = 2
	methodReadOnlyField     = 1
	methodStartField        = 2
	methodQueryField        = 3
	methodSubscribeField    = 4
	methodAccessField       = 5
	viewNameField           = 1
	viewSourceField         = 2
	viewRowField            = 3

	// PublisherOptions, Broker and Subscription.
	publisherNameField           = 1
	publisherSourceField         = 2
	publisherEventsField         = 3
	publisherToField             = 4
	brokerNatsSubjectField       = 1
	brokerKafkaTopicField        = 2
	subscriptionFromField        = 1
	subscriptionGroupField       = 2
	subscriptionMaxAttemptsField = 3
	subscriptionDeadLetterField  = 4

	// WorkflowOptions, WorkflowStep and RetryPolicy.
	workflowTypeField        = 1
	workflowStateField       = 2
	workflowStepsField       = 3
	workflowStepTimeoutField = 4
	workflowRetryField       = 5
	workflowPassivationField = 6
	stepNameField            = 1
	stepTimeoutField         = 2
	stepRetryField           = 3
	retryInitialBackoffField = 2
	retryMaxBackoffField     = 3
	retryFailoverField       = 4
)

// diagnostic is a mistake in a user's proto file, reported as
// "file.proto:line:col: what is wrong; how to fix it".
type diagnostic struct {
	file      string
	line, col int
	msg       string
}

func (d diagnostic) Error() string {
	if d.line == 0 {
		return fmt.Sprintf("%s: %s", d.file, d.msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", d.file, d.line, d.col, d.msg)
}

// diagnostics collects every mistake of a run, so that a user fixes them all
// at once instead of one per run.
type diagnostics []diagnostic

func (ds *diagnostics) add(pos position, format string, args ...any) {
	*ds = append(*ds, diagnostic{file: pos.file, line: pos.line, col: pos.col, msg: fmt.Sprintf(format, args...)})
}

// in reports whether any mistake is in file.
func (ds diagnostics) in(file string) bool {
	for _, d := range ds {
		if d.file == file {
			return true
		}
	}
	return false
}

func (ds diagnostics) err() error {
	if len(ds) == 0 {
		return nil
	}
	sorted := append(diagnostics(nil), ds...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.line != b.line {
			return a.line < b.line
		}
		return a.col < b.col
	})
	lines := make([]string, len(sorted))
	for i, d := range sorted {
		lines[i] = d.Error()
	}
	return diagError(strings.Join(lines, "\n"))
}

// Warning is something in a user's proto file that works but is likely
// not what its author wants, such as an entity anyone may call. A protoc
// plugin can tell only through its standard error, where
// protoc-gen-statefun prints it as String does.
type Warning struct {
	File      string
	Line, Col int // 1-based; 0 when unknown
	Msg       string
}

func (w Warning) String() string {
	if w.Line == 0 {
		return fmt.Sprintf("%s: warning: %s", w.File, w.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: warning: %s", w.File, w.Line, w.Col, w.Msg)
}

// warnings collects the warnings of a run.
type warnings []Warning

func (ws *warnings) add(pos position, format string, args ...any) {
	*ws = append(*ws, Warning{File: pos.file, Line: pos.line, Col: pos.col, Msg: fmt.Sprintf(format, args...)})
}

// sorted returns the warnings in file and position order.
func (ws warnings) sorted() []Warning {
	out := append([]Warning(nil), ws...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return out
}

type diagError string

func (e diagError) Error() string { return string(e) }

// position is a place in a proto file; line and col are 1-based.
type position struct {
	file      string
	line, col int
}

func (p position) String() string {
	if p.line == 0 {
		return p.file
	}
	return fmt.Sprintf("%s:%d:%d", p.file, p.line, p.col)
}

// positionOf returns where d, or the part of d named by suffix (a path of
// field numbers below d's own source path), is declared. Compilers record
// locations for option statements but not always for fields inside an
// option's message value, so it falls back to the closest enclosing element
// that has a location.
func positionOf(d protoreflect.Descriptor, suffix ...int32) position {
	file := d.ParentFile()
	pos := position{file: file.Path()}
	locs := file.SourceLocations()
	base := locs.ByDescriptor(d).Path
	if base == nil {
		return pos
	}
	path := append(append(protoreflect.SourcePath(nil), base...), suffix...)
	for n := len(path); n >= len(base); n-- {
		loc := locs.ByPath(path[:n])
		if loc.Path != nil {
			pos.line, pos.col = loc.StartLine+1, loc.StartColumn+1
			return pos
		}
	}
	return pos
}

// positionOfElement returns where element i of the repeated field named by
// suffix (below d, as for positionOf) is written. Compilers differ inside
// an option's message value: protocompile with extra option locations
// records each element of a list literal; buf (v1.75) records the whole
// `events: [...]` entry once, under the first element's index, and no
// location for its other elements; protoc records nothing there. So: the
// element, else the entry, else what positionOf finds for the field.
func positionOfElement(d protoreflect.Descriptor, i int32, suffix ...int32) position {
	locs := d.ParentFile().SourceLocations()
	base := locs.ByDescriptor(d).Path
	if base == nil {
		return position{file: d.ParentFile().Path()}
	}
	for _, index := range []int32{i, 0} {
		path := append(append(append(protoreflect.SourcePath(nil), base...), suffix...), index)
		if loc := locs.ByPath(path); loc.Path != nil {
			return position{file: d.ParentFile().Path(), line: loc.StartLine + 1, col: loc.StartColumn + 1}
		}
	}
	return positionOf(d, suffix...)
}
