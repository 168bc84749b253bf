package postgres_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/statefun-go/statefun/runtime/store"
)

// FuzzRefRoundTrip commits an event and a value with an arbitrary entity
// type, ID, event type and payload, and reads them back: every byte of an
// ID and a payload must survive (they are bytea), SQL metacharacters must
// mean nothing, and names Postgres text cannot hold (invalid UTF-8, NUL)
// must be refused with an error that says so, with nothing written.
//
//	go test -run '^$' -fuzz '^FuzzRefRoundTrip$' -fuzztime 30s ./runtime/store/postgres
//
// Normal test runs execute the seeds (f.Add and testdata/fuzz).
func FuzzRefRoundTrip(f *testing.F) {
	f.Add("shopping-cart", "c1", "ItemAdded", []byte("payload"))
	f.Add("cart", "'; DROP TABLE events; --", "E", []byte{})
	f.Add("cart'--", `" OR 1=1`, "$1", []byte{0})
	f.Add("{{schema}}", "\x00\xff\xfe", "%s", []byte{0xff})
	f.Add("t\x00", "id", "E", []byte("NUL in a type name"))
	f.Add("t", "id", "bad\xffutf8", []byte("invalid UTF-8 in an event type"))
	f.Add("t", strings.Repeat("x", 4000), "E", []byte("compressible long id"))
	f.Add("\xce", "id", "\x93", []byte("halves of one rune"))
	s, _ := openStore(f)
	f.Cleanup(func() { _ = s.Close() })
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, typ, id, eventType string, payload []byte) {
		ctx := t.Context()
		ref := store.Ref{Type: fmt.Sprintf("%d|%s", n.Add(1), typ), ID: id}
		err := s.Commit(ctx, &store.Batch{
			Events: []store.Event{{Entity: ref, Seq: 1, EventType: eventType, Payload: payload}},
			Values: []store.Value{{Entity: ref, Version: 1, Payload: payload}},
		})
		// Each name on its own: "\xce" and "\x93" are each invalid, and
		// together valid.
		textOK := utf8.ValidString(typ) && utf8.ValidString(eventType) && !strings.ContainsRune(typ+eventType, 0)
		if err != nil {
			switch msg := err.Error(); {
			case !textOK && strings.Contains(msg, "UTF-8"):
			case strings.Contains(msg, "index row"):
				// Postgres's btree limit on (type, id): the runtime refuses
				// IDs long enough to reach it before they get here.
			default:
				t.Fatalf("commit %q (event type %q): %v", ref, eventType, err)
			}
			if textOK {
				var got int
				if err := s.ReadEvents(ctx, ref, 0, func(store.Event) error { got++; return nil }); err != nil || got != 0 {
					t.Fatalf("after a refused commit: %d events stored, %v", got, err)
				}
			}
			return
		}
		if !textOK {
			t.Fatalf("commit with type %q and event type %q succeeded; Postgres text cannot hold them", typ, eventType)
		}
		var got []store.Event
		if err := s.ReadEvents(ctx, ref, 0, func(e store.Event) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Entity != ref || got[0].EventType != eventType || !bytes.Equal(got[0].Payload, payload) {
			t.Fatalf("events of %q: %+v, want the one written", ref, got)
		}
		v, found, err := s.LoadValue(ctx, ref)
		if err != nil || !found || v.Version != 1 || !bytes.Equal(v.Payload, payload) {
			t.Fatalf("value of %q: %+v, %v, %v; want the one written", ref, v, found, err)
		}
	})
}
