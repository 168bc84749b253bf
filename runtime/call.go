package statefun

import (
	"errors"
	"fmt"

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

// Field numbers of a stored call: a message {string method = 1; bytes
// request = 2;}, written by hand to keep it off the public API.
const (
	callMethodField  = 1
	callRequestField = 2
)

func encodeCall(c *Call) ([]byte, error) {
	req, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.request)
	if err != nil {
		return nil, fmt.Errorf("encode the request of call %s: %w", c.method, err)
	}
	b := protowire.AppendTag(nil, callMethodField, protowire.BytesType)
	b = protowire.AppendString(b, c.method)
	b = protowire.AppendTag(b, callRequestField, protowire.BytesType)
	return protowire.AppendBytes(b, req), nil
}

// storedCall is a decoded call: its method and its encoded request.
type storedCall struct {
	method  string
	request []byte
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
