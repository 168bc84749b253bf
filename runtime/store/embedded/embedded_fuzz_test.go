package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// Fuzz targets of the embedded store's file layout:
//
//	go test -run '^$' -fuzz '^FuzzRefRoundTrip$' -fuzztime 30s ./runtime/store/embedded
//
// Normal test runs execute their seeds (f.Add and testdata/fuzz).

func openFuzzStore(f *testing.F) *Store {
	f.Helper()
	// No fsync: the fuzzer tests the layout, not the disk.
	s, err := Open(f.TempDir(), WithNoSync(true))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	return s
}

// FuzzRefRoundTrip stores an event and a value under an arbitrary entity
// type and ID, and a second entity whose type and ID are the same bytes
// split elsewhere ("ab"+"c" against "a"+"bc"): each must read back
// exactly what was written for it, never the other's. Keys over the
// store's limit must be refused with an error that names the limit, with
// nothing written.
func FuzzRefRoundTrip(f *testing.F) {
	f.Add("shopping-cart", "c1", []byte("payload"), uint8(3))
	f.Add("a", "bc", []byte{}, uint8(2))
	f.Add("", "", []byte{0}, uint8(0))
	f.Add("t\x00", "\x00id\xff", []byte{1, 2, 3}, uint8(1))
	f.Add("t", strings.Repeat("x", maxEntityKey), []byte("too long"), uint8(5))
	f.Add(strings.Repeat("y", 200), "\x80\x01", []byte("varint-looking id"), uint8(201))
	s := openFuzzStore(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, typ, id string, payload []byte, split uint8) {
		ctx := context.Background()
		// A fresh namespace per input, so that inputs never see each
		// other's entities.
		ns := fmt.Sprintf("%d|", n.Add(1))
		a := store.Ref{Type: ns + typ, ID: id}
		joined := typ + id
		k := int(split) % (len(joined) + 1)
		b := store.Ref{Type: ns + joined[:k], ID: joined[k:]}
		refs := []store.Ref{a}
		if b != a {
			refs = append(refs, b)
		}
		for i, ref := range refs {
			body := append(bytes.Clone(payload), byte(i))
			err := s.Commit(ctx, &store.Batch{
				Events: []store.Event{{Entity: ref, Seq: 1, EventType: "E", Payload: body}},
				Values: []store.Value{{Entity: ref, Version: 1, Payload: body}},
			})
			tooLong := len(entityKey(nil, ref)) > maxEntityKey
			switch {
			case tooLong && (err == nil || !strings.Contains(err.Error(), "limit")):
				t.Fatalf("commit of a %d-byte key: %v, want an error naming the limit", len(entityKey(nil, ref)), err)
			case !tooLong && err != nil:
				t.Fatalf("commit to %q: %v", ref, err)
			}
			var got []store.Event
			if err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			v, found, err := s.LoadValue(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if tooLong {
				if len(got) != 0 || found {
					t.Fatalf("a refused commit stored %d events, value %v", len(got), found)
				}
				continue
			}
			if len(got) != 1 || got[0].Entity != ref || got[0].Seq != 1 || got[0].EventType != "E" || !bytes.Equal(got[0].Payload, body) {
				t.Fatalf("events of %q: %+v, want the one written", ref, got)
			}
			if !found || v.Version != 1 || !bytes.Equal(v.Payload, body) {
				t.Fatalf("value of %q: %+v (found %v), want the one written", ref, v, found)
			}
		}
	})
}

// FuzzDamagedRecord writes arbitrary bytes where the store keeps an
// entity's event, value and snapshot, and an arbitrary foreign key next to
// its events, as a damaged disk or another program could. Reading must
// not panic: it returns what decodes, or an error that says the record is
// damaged; and a new commit to a neighbouring entity must still work.
func FuzzDamagedRecord(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0x05, 'E'}, []byte{0x01})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte{0x00, 0x01})
	f.Add([]byte{0x01, 'E', 'p', 'a', 'y'}, []byte{0x0d, 's', 'h', 'o', 'p', 'p', 'i', 'n', 'g', '-', 'c', 'a', 'r', 't'})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1}, []byte{0x02, 'f', 'z', 0x01, 'x', 0, 0, 0, 0, 0, 0, 0, 9})
	// A key that starts like the events of entity f/z (which every input
	// before this one wrote to) but is no event key. It hid the head of
	// f/z's history from the fence, so that a stale commit of event 1
	// would have overwritten the stored one.
	f.Add([]byte{}, []byte{0x01, 'f', 0x01, 'z', 0x05})
	s := openFuzzStore(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, raw, foreignKey []byte) {
		ctx := context.Background()
		ref := store.Ref{Type: "fz", ID: fmt.Sprint(n.Add(1))}
		err := s.db.Update(func(tx *bolt.Tx) error {
			key := entityKey(nil, ref)
			if err := tx.Bucket(eventsBucket).Put(eventKey(nil, ref, 1), raw); err != nil {
				return err
			}
			if err := tx.Bucket(valuesBucket).Put(key, raw); err != nil {
				return err
			}
			if err := tx.Bucket(snapshotsBucket).Put(key, raw); err != nil {
				return err
			}
			if len(foreignKey) > 0 && len(foreignKey) <= bolt.MaxKeySize {
				return tx.Bucket(eventsBucket).Put(foreignKey, []byte("x"))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		damagedOK := func(what string, err error) {
			if err != nil && !strings.Contains(err.Error(), "damaged") {
				t.Fatalf("%s of a damaged record: %v, want an error that says it is damaged", what, err)
			}
		}
		damagedOK("ReadEvents", s.ReadEvents(ctx, ref, 0, func(store.Event) error { return nil }))
		_, _, err = s.LoadValue(ctx, ref)
		damagedOK("LoadValue", err)
		_, _, err = s.LatestSnapshot(ctx, ref)
		damagedOK("LatestSnapshot", err)
		// The foreign key may sort anywhere, between any two entities'
		// histories; finding the head of a history must ignore it.
		for _, neighbour := range []store.Ref{{Type: "fz", ID: ref.ID + "n"}, {Type: "f", ID: "z"}, {Type: string(foreignKey), ID: ""}} {
			if len(entityKey(nil, neighbour)) > maxEntityKey {
				continue
			}
			var head int64
			if err := s.ReadEvents(ctx, neighbour, 0, func(e store.Event) error { head = e.Seq; return nil }); err != nil {
				damagedOK("ReadEvents of a neighbour", err)
				continue
			}
			if head > 0 {
				// The fence: a stale writer's event 1 must be refused.
				err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: neighbour, Seq: 1, EventType: "stale"}}})
				var conflict *store.ConflictError
				if !errors.As(err, &conflict) {
					t.Fatalf("a stale commit of event 1 to %q (head %d) next to a foreign key %x: %v, want a conflict", neighbour, head, foreignKey, err)
				}
			}
			err := s.Commit(ctx, &store.Batch{Events: []store.Event{{Entity: neighbour, Seq: head + 1, EventType: "E"}}})
			if err != nil {
				t.Fatalf("commit to %q next to a foreign key %x: %v", neighbour, foreignKey, err)
			}
		}
	})
}
