package breaking

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// messages compares a stored message's old and new version, and through
// its fields every message and enum it holds. via names what stores it.
//
// The rule is wire compatibility with no room for misreading: stored bytes
// must decode under the new version to what they meant under the old one.
func (c *checker) messages(o, n protoreflect.MessageDescriptor, via string) {
	key := [2]protoreflect.FullName{o.FullName(), n.FullName()}
	if c.seenMessages[key] {
		return
	}
	c.seenMessages[key] = true

	oldFields, newFields := o.Fields(), n.Fields()
	for i := 0; i < oldFields.Len(); i++ {
		of := oldFields.Get(i)
		nf := newFields.ByNumber(of.Number())
		if nf == nil {
			if !fieldNumberReserved(n, of.Number()) {
				c.add(positionOf(n),
					fmt.Sprintf("add reserved %d; and reserved %q; to %s, so that no later field reads the old data as its own", of.Number(), of.Name(), n.Name()),
					"field %s = %d of %s (%s in the old version) was removed without reserving its number, but %s is stored with it",
					of.Name(), of.Number(), n.FullName(), positionOf(of), via)
			}
			continue
		}
		c.field(of, nf, via)
	}
	for i := 0; i < newFields.Len(); i++ {
		nf := newFields.Get(i)
		if oldFields.ByNumber(nf.Number()) == nil && fieldNumberReserved(o, nf.Number()) {
			c.add(positionOf(nf),
				fmt.Sprintf("give %s a number never used before and keep %d reserved", nf.Name(), nf.Number()),
				"field %s = %d of %s reuses number %d, which the old version reserved for a removed field, and %s may hold that field",
				nf.Name(), nf.Number(), n.FullName(), nf.Number(), via)
		}
	}
	c.droppedReservations(o.ReservedRanges(), n, via)
	c.oneofs(o, n, via)
}

// field compares a field kept under its number. Its name may change: binary
// data does not hold it.
func (c *checker) field(of, nf protoreflect.FieldDescriptor, via string) {
	same := of.IsMap() == nf.IsMap() && of.IsList() == nf.IsList()
	if same && of.IsMap() {
		same = c.sameValue(of.MapKey(), nf.MapKey(), via) && c.sameValue(of.MapValue(), nf.MapValue(), via)
	} else if same {
		same = c.sameValue(of, nf, via)
	}
	if !same {
		c.add(positionOf(nf),
			fmt.Sprintf("keep it %s; for a value of another type, add a field with a new number and reserve %d", typeString(of), of.Number()),
			"field %s = %d of %s changed type from %s to %s, but %s holds %s values under that number",
			nf.Name(), nf.Number(), nf.ContainingMessage().FullName(), typeString(of), typeString(nf), via, typeString(of))
		return
	}
	if nf.Cardinality() == protoreflect.Required && of.Cardinality() != protoreflect.Required {
		c.add(positionOf(nf), "keep it optional",
			"field %s = %d of %s became required, but %s may lack it, and then fails to decode",
			nf.Name(), nf.Number(), nf.ContainingMessage().FullName(), via)
	}
}

// sameValue reports whether a stored value of field (or map key or value)
// o reads the same as one of n, and compares the messages or enums they
// hold.
func (c *checker) sameValue(o, n protoreflect.FieldDescriptor, via string) bool {
	if o.Kind() != n.Kind() {
		return false
	}
	switch o.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !c.sameType(o.Message(), n.Message()) {
			return false
		}
		c.messages(o.Message(), n.Message(), via)
	case protoreflect.EnumKind:
		if !c.sameType(o.Enum(), n.Enum()) {
			return false
		}
		c.enums(o.Enum(), n.Enum(), via)
	}
	return true
}

// sameType reports whether a field's message or enum type is the same in
// both versions: the same name, or a renamed type (the old name is gone and
// the new name is new), which is then compared field by field. Another type
// that exists in both versions is a different type, even if it happens to
// have the same shape.
func (c *checker) sameType(o, n protoreflect.Descriptor) bool {
	if o.FullName() == n.FullName() {
		return true
	}
	_, oldNameKept := c.newFiles.FindDescriptorByName(o.FullName())
	_, newNameOld := c.oldFiles.FindDescriptorByName(n.FullName())
	return oldNameKept != nil && newNameOld != nil
}

// oneofs refuses two fields of the old version that may both be set in
// stored data but now share a oneof: decoding keeps only the last of them.
// A field joining a oneof with new fields only, or leaving one, is safe.
func (c *checker) oneofs(o, n protoreflect.MessageDescriptor, via string) {
	newFields := n.Fields()
	for i := 0; i < newFields.Len(); i++ {
		nf := newFields.Get(i)
		oneof := nf.ContainingOneof()
		of := o.Fields().ByNumber(nf.Number())
		if oneof == nil || oneof.IsSynthetic() || of == nil {
			continue
		}
		members := oneof.Fields()
		for j := 0; j < members.Len(); j++ {
			other := members.Get(j)
			oldOther := o.Fields().ByNumber(other.Number())
			// Each pair is reported once, at its later field.
			if other.Number() >= nf.Number() || oldOther == nil || sameRealOneof(of, oldOther) {
				continue
			}
			c.add(positionOf(nf),
				fmt.Sprintf("keep %s and %s out of one oneof; a oneof may group new fields only", other.Name(), nf.Name()),
				"field %s = %d of %s joined oneof %s with field %s = %d, but %s may hold both, and decoding keeps only one",
				nf.Name(), nf.Number(), n.FullName(), oneof.Name(), other.Name(), other.Number(), via)
			break
		}
	}
}

func sameRealOneof(a, b protoreflect.FieldDescriptor) bool {
	oa, ob := a.ContainingOneof(), b.ContainingOneof()
	return oa != nil && !oa.IsSynthetic() && oa == ob
}

// droppedReservations refuses a field number reserved in the old version
// that the new one neither reserves nor uses (a use is reported as a
// reuse): without the reservation, the next version could reuse it.
func (c *checker) droppedReservations(old protoreflect.FieldRanges, n protoreflect.MessageDescriptor, via string) {
	for i := 0; i < old.Len(); i++ {
		r := old.Get(i) // [start, end)
		for num := r[0]; num < r[1]; {
			if nr := n.ReservedRanges(); nr.Has(num) {
				num = coveringEnd(nr, num)
				continue
			}
			if n.Fields().ByNumber(num) != nil {
				num++
				continue
			}
			c.add(positionOf(n),
				fmt.Sprintf("keep reserved %d; in %s", num, n.Name()),
				"reserved field number %d of %s was dropped, but %s may hold the removed field under it, and a new field could take the number",
				num, n.FullName(), via)
			break
		}
	}
}

// coveringEnd returns the end of the reserved range that holds num.
func coveringEnd(ranges protoreflect.FieldRanges, num protoreflect.FieldNumber) protoreflect.FieldNumber {
	for i := 0; i < ranges.Len(); i++ {
		if r := ranges.Get(i); r[0] <= num && num < r[1] {
			return r[1]
		}
	}
	return num + 1
}

func fieldNumberReserved(m protoreflect.MessageDescriptor, num protoreflect.FieldNumber) bool {
	return m.ReservedRanges().Has(num)
}

// enums compares a stored enum's old and new version. Binary data holds an
// enum's numbers, never its value names.
func (c *checker) enums(o, n protoreflect.EnumDescriptor, via string) {
	key := [2]protoreflect.FullName{o.FullName(), n.FullName()}
	if c.seenEnums[key] {
		return
	}
	c.seenEnums[key] = true

	oldValues, newValues := o.Values(), n.Values()
	for i := 0; i < oldValues.Len(); i++ {
		ov := oldValues.Get(i)
		if newValues.ByNumber(ov.Number()) != nil {
			continue
		}
		if nv := newValues.ByName(ov.Name()); nv != nil {
			c.add(positionOf(nv),
				fmt.Sprintf("keep %s = %d; for a new value, add a name with a new number", ov.Name(), ov.Number()),
				"value %s of enum %s changed number from %d to %d, but %s holds the number %d",
				ov.Name(), n.FullName(), ov.Number(), nv.Number(), via, ov.Number())
			continue
		}
		if !n.ReservedRanges().Has(ov.Number()) {
			c.add(positionOf(n),
				fmt.Sprintf("add reserved %d; and reserved %q; to %s, so that no later value takes the number", ov.Number(), ov.Name(), n.Name()),
				"value %s = %d of enum %s (%s in the old version) was removed without reserving its number, but %s may hold it",
				ov.Name(), ov.Number(), n.FullName(), positionOf(ov), via)
		}
	}
	for i := 0; i < newValues.Len(); i++ {
		nv := newValues.Get(i)
		if oldValues.ByNumber(nv.Number()) == nil && o.ReservedRanges().Has(nv.Number()) {
			c.add(positionOf(nv),
				fmt.Sprintf("give %s a number never used before and keep %d reserved", nv.Name(), nv.Number()),
				"value %s = %d of enum %s reuses number %d, which the old version reserved for a removed value, and %s may hold that value",
				nv.Name(), nv.Number(), n.FullName(), nv.Number(), via)
		}
	}
	oldReserved := o.ReservedRanges()
	for i := 0; i < oldReserved.Len(); i++ {
		r := oldReserved.Get(i) // [start, end], inclusive
		for num := r[0]; num <= r[1]; {
			if nr := n.ReservedRanges(); nr.Has(num) {
				end := coveringEnumEnd(nr, num)
				if end >= r[1] {
					break
				}
				num = end + 1
				continue
			}
			if newValues.ByNumber(num) != nil {
				if num == r[1] {
					break
				}
				num++
				continue
			}
			c.add(positionOf(n),
				fmt.Sprintf("keep reserved %d; in %s", num, n.Name()),
				"reserved number %d of enum %s was dropped, but %s may hold the removed value under it, and a new value could take the number",
				num, n.FullName(), via)
			break
		}
	}
}

// coveringEnumEnd returns the last number of the reserved range that holds
// num.
func coveringEnumEnd(ranges protoreflect.EnumRanges, num protoreflect.EnumNumber) protoreflect.EnumNumber {
	for i := 0; i < ranges.Len(); i++ {
		if r := ranges.Get(i); r[0] <= num && num <= r[1] {
			return r[1]
		}
	}
	return num
}

// typeString renders a field's type as it is written in a .proto file.
func typeString(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd.IsMap():
		return fmt.Sprintf("map<%s, %s>", valueTypeString(fd.MapKey()), valueTypeString(fd.MapValue()))
	case fd.IsList():
		return "repeated " + valueTypeString(fd)
	}
	return valueTypeString(fd)
}

func valueTypeString(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		return string(fd.Message().FullName())
	case protoreflect.GroupKind:
		return "group " + string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	}
	return fd.Kind().String()
}
