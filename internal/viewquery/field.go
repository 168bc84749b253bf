package viewquery

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/statefun-go/statefun/runtime/store"
)

// leafClass is what a field path ends in. It is finer than store.ViewKind
// because the checks tell an enum from an int and a Timestamp from a
// Duration, which are all ViewInt to the store.
type leafClass int

const (
	leafString leafClass = iota + 1
	leafInt
	leafEnum
	leafFloat
	leafBool
	leafBytes
	leafTimestamp
	leafDuration
)

func (c leafClass) kind() store.ViewKind {
	switch c {
	case leafString:
		return store.ViewString
	case leafFloat:
		return store.ViewFloat
	case leafBool:
		return store.ViewBool
	case leafBytes:
		return store.ViewBytes
	}
	return store.ViewInt
}

const (
	timestampName protoreflect.FullName = "google.protobuf.Timestamp"
	durationName  protoreflect.FullName = "google.protobuf.Duration"
)

// segment is one name of a dotted path, where it is in the query.
type segment struct {
	name string
	off  int
}

// fieldPath is a resolved path of fields: a row column, or a parameter.
type fieldPath struct {
	name     string // the names joined by dots
	fields   []protoreflect.FieldDescriptor
	repeated bool // a field on the path is repeated
	through  string
	class    leafClass
}

func (fp *fieldPath) leaf() protoreflect.FieldDescriptor { return fp.fields[len(fp.fields)-1] }

// column is the store column of a row path.
func (fp *fieldPath) column() store.ViewColumn {
	return store.ViewColumn{Name: fp.name, Kind: fp.class.kind(), Repeated: fp.repeated}
}

// classOf returns the class of a field's values; false for a message that
// is only a step of a path, and for fields no column can hold.
func classOf(fd protoreflect.FieldDescriptor) (leafClass, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return leafString, true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return leafInt, true
	case protoreflect.EnumKind:
		return leafEnum, true
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return leafFloat, true
	case protoreflect.BoolKind:
		return leafBool, true
	case protoreflect.BytesKind:
		return leafBytes, true
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch fd.Message().FullName() {
		case timestampName:
			return leafTimestamp, true
		case durationName:
			return leafDuration, true
		}
	}
	return 0, false
}

// resolver resolves paths in one message, for the row or for the request;
// its errors name the one it is.
type resolver struct {
	md    protoreflect.MessageDescriptor
	param bool // paths are :parameters into the request
}

// resolve finds the fields of a path. Every error points at the segment
// that is wrong.
func (r resolver) resolve(segs []segment) (fieldPath, *Error) {
	var fp fieldPath
	names := make([]string, 0, len(segs))
	md := r.md
	for i, seg := range segs {
		last := i == len(segs)-1
		fd := md.Fields().ByName(protoreflect.Name(seg.name))
		if fd == nil {
			return fp, &Error{Offset: seg.off, Msg: r.unknown(md, names, seg.name)}
		}
		names = append(names, seg.name)
		path := strings.Join(names, ".")
		fp.fields = append(fp.fields, fd)
		switch {
		case fd.IsMap():
			return fp, &Error{Offset: seg.off, Msg: fmt.Sprintf("%s is a map, and maps cannot be queried; use a repeated message field instead", r.describe(path))}
		case fd.IsList() && r.param:
			return fp, &Error{Offset: seg.off, Msg: fmt.Sprintf("%s is a repeated field; a parameter holds one value", r.describe(path))}
		case fd.IsList() && !fp.repeated:
			fp.repeated = true
			fp.through = path
		}
		class, ok := classOf(fd)
		if last {
			if !ok {
				return fp, &Error{Offset: seg.off, Msg: r.notLeaf(fd, path)}
			}
			fp.class = class
			break
		}
		next := segs[i+1]
		if class == leafTimestamp || class == leafDuration {
			return fp, &Error{Offset: next.off, Msg: fmt.Sprintf("%s is a %s, compared as a whole; remove .%s", r.describe(path), fd.Message().FullName(), next.name)}
		}
		if ok || fd.Message() == nil {
			return fp, &Error{Offset: next.off, Msg: fmt.Sprintf("%s is %s, not a message: it has no field %q", r.describe(path), typeName(fd), next.name)}
		}
		md = fd.Message()
	}
	fp.name = strings.Join(names, ".")
	return fp, nil
}

// describe names a path for a message: "field address.city", or
// "parameter :filter.city".
func (r resolver) describe(path string) string {
	if r.param {
		return "parameter :" + path
	}
	return "field " + path
}

// sigil is what a path is written after: ':' for a parameter.
func (r resolver) sigil() string {
	if r.param {
		return ":"
	}
	return ""
}

func (r resolver) unknown(md protoreflect.MessageDescriptor, parents []string, name string) string {
	var msg string
	switch {
	case r.param && len(parents) == 0:
		msg = fmt.Sprintf("parameter :%s is not a field of request %s", name, md.FullName())
	case r.param:
		msg = fmt.Sprintf("parameter :%s.%s is not a field: %s has no field %q", strings.Join(parents, "."), name, md.FullName(), name)
	case len(parents) == 0:
		msg = fmt.Sprintf("unknown field %q in row message %s", name, md.FullName())
	default:
		msg = fmt.Sprintf("unknown field %q in %s (%s)", name, md.FullName(), strings.Join(parents, "."))
	}
	fields := md.Fields()
	if fields.Len() == 0 {
		return msg + "; it has no fields"
	}
	names := make([]string, fields.Len())
	for i := range names {
		fd := fields.Get(i)
		names[i] = string(fd.Name())
		if fd.JSONName() == name || strings.EqualFold(string(fd.Name()), name) {
			return fmt.Sprintf("%s; did you mean %s? (queries name fields as the .proto file does)", msg, fd.Name())
		}
	}
	near := nearest(name, names)
	const shown = 20
	if len(names) > shown {
		names = append(names[:shown:shown], "...")
	}
	if near != "" {
		return fmt.Sprintf("%s; did you mean %s? (fields: %s)", msg, near, strings.Join(names, ", "))
	}
	return msg + "; fields: " + strings.Join(names, ", ")
}

func (r resolver) notLeaf(fd protoreflect.FieldDescriptor, path string) string {
	if fd.Kind() == protoreflect.Uint64Kind || fd.Kind() == protoreflect.Fixed64Kind {
		return fmt.Sprintf("%s is a %s, which may not fit the signed 64-bit integers of a view column; make it an int64, or a uint32", r.describe(path), fd.Kind())
	}
	md := fd.Message()
	if md != nil && md.Fields().Len() > 0 {
		return fmt.Sprintf("%s is a message %s; use one of its fields, such as %s%s.%s", r.describe(path), md.FullName(), r.sigil(), path, md.Fields().Get(0).Name())
	}
	return fmt.Sprintf("%s is %s, which cannot be compared", r.describe(path), typeName(fd))
}

// nearest returns the name closest to name by edit distance, if it is
// close enough to be a typo.
func nearest(name string, names []string) string {
	best, bestDist := "", 3
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for _, n := range sorted {
		if d := editDistance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if bestDist*3 > len(name) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeName names a field's type with its article, for messages: "a
// string", "an enum shop.v1.Status", "bytes".
func typeName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		return "an enum " + string(fd.Enum().FullName())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch fd.Message().FullName() {
		case timestampName, durationName:
			return "a " + string(fd.Message().FullName())
		}
		return "a message " + string(fd.Message().FullName())
	case protoreflect.BytesKind:
		return "bytes"
	case protoreflect.Int32Kind, protoreflect.Int64Kind:
		return "an " + fd.Kind().String()
	}
	return "a " + fd.Kind().String()
}

// leafValue converts a field's value to its column's Go type.
func leafValue(fd protoreflect.FieldDescriptor, class leafClass, v protoreflect.Value) any {
	switch class {
	case leafString:
		return v.String()
	case leafInt:
		if k := fd.Kind(); k == protoreflect.Uint32Kind || k == protoreflect.Fixed32Kind {
			return int64(v.Uint())
		}
		return v.Int()
	case leafEnum:
		return int64(v.Enum())
	case leafFloat:
		return v.Float()
	case leafBool:
		return v.Bool()
	case leafBytes:
		// A copy: the value outlives the message it came from, which its
		// owner may reuse.
		return append([]byte{}, v.Bytes()...)
	case leafTimestamp, leafDuration:
		m := v.Message()
		fields := m.Descriptor().Fields()
		return nanos(m.Get(fields.ByNumber(1)).Int(), m.Get(fields.ByNumber(2)).Int())
	}
	panic(fmt.Sprintf("viewquery: no leaf class for %s", fd.FullName()))
}

// nanos returns seconds and nanoseconds as nanoseconds, saturating
// instead of wrapping past the years 1678 and 2262, so that times beyond
// them still sort after (or before) every other.
func nanos(sec, ns int64) int64 {
	const maxSec = math.MaxInt64 / 1_000_000_000
	switch {
	case sec > maxSec:
		return math.MaxInt64
	case sec < -maxSec:
		return math.MinInt64
	}
	n := sec * 1e9
	switch {
	case ns > 0 && n > math.MaxInt64-ns:
		return math.MaxInt64
	case ns < 0 && n < math.MinInt64-ns:
		return math.MinInt64
	}
	return n + ns
}
