package pgproxy

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
)

func untyped(code uint32, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, body...)
}

func typed(typ byte, body string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(body)))
	return append(b, body...)
}

// TestFramer feeds both directions of a connection that asks for SSL, is
// refused, and runs an extended-protocol query, split at every byte
// boundary to prove that the framing survives any chunking.
func TestFramer(t *testing.T) {
	t.Parallel()
	var client, server []byte
	client = append(client, untyped(sslRequest, "")...)
	client = append(client, untyped(196608, "user\x00postgres\x00\x00")...)
	client = append(client, typed('P', "\x00SELECT 1\x00\x00\x00")...)
	client = append(client, typed('B', "\x00\x00\x00\x00\x00\x00\x00\x00")...)
	client = append(client, typed('E', "\x00\x00\x00\x00\x00")...)
	client = append(client, typed('S', "")...)
	client = append(client, typed('Q', "COMMIT\x00")...)
	server = append(server, 'N')
	server = append(server, typed('R', "\x00\x00\x00\x00")...)
	server = append(server, typed('Z', "I")...)
	server = append(server, typed('1', "")...)
	server = append(server, typed('D', "\x00\x01\x00\x00\x00\x011")...)
	server = append(server, typed('Z', "I")...)
	server = append(server, typed('Z', "I")...)

	for split := 1; split < 8; split++ {
		var raw atomic.Int32
		counts := map[byte]int{}
		fromClient := &framer{untyped: 1, onMessage: func(typ byte, _ *framer) { counts[typ]++ },
			onUntyped: func(code uint32, f *framer) {
				if code == sslRequest {
					raw.Add(1)
					f.untyped++
				}
			}}
		trips := 0
		fromServer := &framer{rawBytes: &raw, onMessage: func(typ byte, _ *framer) {
			if typ == 'Z' {
				trips++
			}
		}}
		for i := 0; i < len(client); i += split {
			fromClient.feed(client[i:min(i+split, len(client))])
		}
		for i := 0; i < len(server); i += split {
			fromServer.feed(server[i:min(i+split, len(server))])
		}
		if fromClient.lost || fromServer.lost {
			t.Fatalf("split %d: lost the framing", split)
		}
		if counts['E'] != 1 || counts['Q'] != 1 || counts['S'] != 1 || counts['P'] != 1 {
			t.Errorf("split %d: client messages %v", split, counts)
		}
		if trips != 3 {
			t.Errorf("split %d: %d ReadyForQuery, want 3", split, trips)
		}
	}
}
