package statefun

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Call is a call to an entity method that a command asks for: it is made
// after the command's events are durable, never before, and at least once.
// Generated <Entity><Method>Call functions build one; a command passes it
// to its context's Send.
type Call struct {
	method  string // full gRPC method name, "/package.Service/Method"
	request proto.Message
}

// NewCall returns a call of method (its full gRPC name) with request.
// Generated code calls it.
func NewCall(method string, request proto.Message) *Call {
	return &Call{method: method, request: request}
}

// callEventType is the stored type of a sent call. The journal is the
// outbox: a call is stored with the events of the command that sent it, in
// the same transaction, so it exists exactly when they do. Entities skip it
// on replay; the call dispatcher reads it from the feed. protoc-gen-statefun
// reserves the "statefun." prefix, so no user event can be mistaken for it.
const callEventType = "statefun.call"

// Field numbers of a stored call, written by hand to keep it off the
// public API:
//
//	message StoredCall {
//	  string method = 1;
//	  bytes request = 2;
//	  // The sending command's trace context (W3C traceparent, tracestate,
//	  // baggage), when it was traced. Added after the first two: a call
//	  // stored without it decodes as untraced, and a decoder that predates
//	  // it skips it.
//	  repeated TraceHeader trace = 3;
//	}
//	message TraceHeader { string key = 1; string value = 2; }
const (
	callMethodField  = 1
	callRequestField = 2
	callTraceField   = 3
	traceKeyField    = 1
	traceValueField  = 2
)

// encodeCall encodes c, with the trace context tc (nil when untraced).
func encodeCall(c *Call, tc map[string]string) ([]byte, error) {
	req, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.request)
	if err != nil {
		return nil, fmt.Errorf("encode the request of call %s: %w", c.method, err)
	}
	b := protowire.AppendTag(nil, callMethodField, protowire.BytesType)
	b = protowire.AppendString(b, c.method)
	b = protowire.AppendTag(b, callRequestField, protowire.BytesType)
	b = protowire.AppendBytes(b, req)
	keys := make([]string, 0, len(tc))
	for k := range tc {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic, like the request
	for _, k := range keys {
		var h []byte
		h = protowire.AppendTag(h, traceKeyField, protowire.BytesType)
		h = protowire.AppendString(h, k)
		h = protowire.AppendTag(h, traceValueField, protowire.BytesType)
		h = protowire.AppendString(h, tc[k])
		b = protowire.AppendTag(b, callTraceField, protowire.BytesType)
		b = protowire.AppendBytes(b, h)
	}
	return b, nil
}

// storedCall is a decoded call: its method, its encoded request and the
// trace context it was sent in (nil if none).
type storedCall struct {
	method  string
	request []byte
	trace   map[string]string
}

func decodeCall(b []byte) (storedCall, error) {
	var c storedCall
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return c, errors.New("stored call is corrupt")
		}
		b = b[n:]
		switch {
		case num == callMethodField && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return c, errors.New("stored call is corrupt")
			}
			c.method, b = v, b[n:]
		case num == callRequestField && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return c, errors.New("stored call is corrupt")
			}
			c.request, b = v, b[n:]
		case num == callTraceField && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return c, errors.New("stored call is corrupt")
			}
			// Trace context is best effort: a malformed header is dropped,
			// the call is still made.
			if k, val, ok := decodeTraceHeader(v); ok {
				if c.trace == nil {
					c.trace = map[string]string{}
				}
				c.trace[k] = val
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return c, errors.New("stored call is corrupt")
			}
			b = b[n:]
		}
	}
	if c.method == "" {
		return c, errors.New("stored call has no method")
	}
	return c, nil
}

func decodeTraceHeader(b []byte) (key, value string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", false
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != traceKeyField && num != traceValueField) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", "", false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeString(b)
		if n < 0 {
			return "", "", false
		}
		if num == traceKeyField {
			key = v
		} else {
			value = v
		}
		b = b[n:]
	}
	return key, value, key != ""
}
