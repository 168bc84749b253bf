package statefun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// The HTTP port serves the entities' methods with connect-go's own
// handlers: Connect (unary, JSON and binary), gRPC and gRPC-Web, read and
// written by connect-go, each call passed to the entity's generated gRPC
// method handler with the server's interceptor chain, as the grpc-go
// server of the gRPC port passes it. Nothing is transcoded and no grpc-go
// server stands in between: transcoding through vanguard into the gRPC
// server cost 15 to 50 µs of server CPU per call (TRANSPORT.md).

// compressMinBytes is the size under which a reply is sent uncompressed,
// even to a client that accepts gzip: compressing a small JSON reply
// costs more CPU than sending its few bytes saves.
const compressMinBytes = 1024

// newConnectHandlers returns a connect-go handler for every method of
// services, by its path ("/package.Service/Method"). Each call passes
// through interceptor, the chain the gRPC port's calls pass through.
func newConnectHandlers(services []boundService, interceptor grpc.UnaryServerInterceptor, maxMessageBytes int) map[string]http.Handler {
	shared := []connect.HandlerOption{
		connect.WithCodec(protoRPCCodec),
		connect.WithCodec(jsonRPCCodec("json")),
		// connect-go tells a JSON body with this parameter by the
		// codec's name.
		connect.WithCodec(jsonRPCCodec("json; charset=utf-8")),
		// A larger request is resource_exhausted (HTTP 429), as on the
		// gRPC port.
		connect.WithReadMaxBytes(maxMessageBytes),
		connect.WithCompressMinBytes(compressMinBytes),
	}
	handlers := map[string]http.Handler{}
	for _, svc := range services {
		for _, m := range svc.desc.Methods {
			procedure := "/" + svc.desc.ServiceName + "/" + m.MethodName
			// A method marked free of side effects may be called with
			// Connect's GET, as vanguard allowed.
			idempotency := connect.WithIdempotency(idempotencyOf(svc.desc.ServiceName, m.MethodName))
			handlers[procedure] = connect.NewUnaryHandler(procedure, methodHandler(svc.impl, m.Handler, procedure, interceptor),
				connect.WithHandlerOptions(shared...), idempotency)
		}
	}
	return handlers
}

// methodHandler serves one method: it gives the generated gRPC method
// handler the call's context (its metadata and method, as a grpc-go
// server would), the request's decoder and the interceptor chain, and
// turns what it returns into connect-go's reply or error.
func methodHandler(impl any, handle grpc.MethodHandler, procedure string, interceptor grpc.UnaryServerInterceptor) func(context.Context, *connect.Request[rpcRequest]) (*connect.Response[rpcReply], error) {
	return func(ctx context.Context, req *connect.Request[rpcRequest]) (*connect.Response[rpcReply], error) {
		if len(req.Msg.data) == 0 && req.Msg.codec == protoRPCCodec && req.Peer().Protocol == connect.ProtocolConnect {
			// An empty Connect body is an empty message to connect-go,
			// which no statefun method takes; say so, rather than name
			// the first key field missing. (An empty JSON body is not
			// JSON: its decoder refuses it.) In gRPC's framing an empty
			// message is one the client meant to send, and its missing
			// key is the error.
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("request body is empty; send the request message (every statefun method needs its entity key)"))
		}
		call := &callStream{method: procedure}
		ctx = metadata.NewIncomingContext(ctx, incomingMetadata(req.Header()))
		if addr := req.Peer().Addr; addr != "" {
			// Rate limits and refusal logs name the client, as for a call
			// on the gRPC port.
			ctx = peer.NewContext(ctx, &peer.Peer{Addr: peerAddr(addr)})
		}
		ctx = grpc.NewContextWithServerTransportStream(ctx, call)
		reply, err := handle(impl, ctx, req.Msg.decode, interceptor)
		if err != nil {
			return nil, call.connectError(err)
		}
		msg, ok := reply.(proto.Message)
		if !ok {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("reply %T is not a protobuf message", reply))
		}
		res := connect.NewResponse(&rpcReply{msg: msg})
		call.copyMetadata(res.Header(), res.Trailer())
		return res, nil
	}
}

// idempotencyOf returns the idempotency level a method's proto declares.
func idempotencyOf(service, method string) connect.IdempotencyLevel {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service + "." + method))
	if err != nil {
		return connect.IdempotencyUnknown
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return connect.IdempotencyUnknown
	}
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	return connect.IdempotencyLevel(opts.GetIdempotencyLevel())
}

// rpcRequest is a request as connect-go hands it over: its bytes, still
// encoded. connect-go cannot know the method's Go request type; the
// generated method handler does, and decodes into it with decode.
type rpcRequest struct {
	data  []byte
	codec *rpcCodec // nil when connect-go had nothing to decode
}

func (r *rpcRequest) decode(v any) error {
	msg, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request %T is not a protobuf message", v)
	}
	if r.codec == nil {
		// connect-go calls no codec for an empty message in gRPC's
		// framing: it is the empty message.
		return nil
	}
	return r.codec.unmarshal(r.data, msg)
}

// rpcReply is a reply as the generated method handler returned it.
type rpcReply struct{ msg proto.Message }

// rpcCodec is a connect.Codec of rpcRequest and rpcReply.
type rpcCodec struct {
	name string
	// unmarshal decodes a request, failing with a gRPC status error
	// (INVALID_ARGUMENT) that says what is wrong with it.
	unmarshal     func([]byte, proto.Message) error
	marshalAppend func([]byte, proto.Message) ([]byte, error)
}

var protoRPCCodec = &rpcCodec{
	name: "proto",
	unmarshal: func(data []byte, msg proto.Message) error {
		if err := proto.Unmarshal(data, msg); err != nil {
			return status.Errorf(codes.InvalidArgument, "request is not a valid %s: %v", msg.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	},
	marshalAppend: proto.MarshalOptions{}.MarshalAppend,
}

// jsonRPCCodec is protobuf's canonical JSON, as connect-go writes it (zero
// values left out), reading requests as decodeJSON does.
func jsonRPCCodec(name string) *rpcCodec {
	return &rpcCodec{
		name: name,
		unmarshal: func(data []byte, msg proto.Message) error {
			if len(data) == 0 {
				return status.Error(codes.InvalidArgument, "request body is empty; send a JSON object, e.g. {}")
			}
			if err := decodeJSON(data, msg); err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			return nil
		},
		marshalAppend: protojson.MarshalOptions{}.MarshalAppend,
	}
}

func (c *rpcCodec) Name() string { return c.name }

func (c *rpcCodec) Marshal(v any) ([]byte, error) { return c.MarshalAppend(nil, v) }

// MarshalAppend lets connect-go encode into a buffer of its pool.
func (c *rpcCodec) MarshalAppend(dst []byte, v any) ([]byte, error) {
	r, ok := v.(*rpcReply)
	if !ok {
		return nil, fmt.Errorf("statefun: %T is not an entity method's reply", v)
	}
	return c.marshalAppend(dst, r.msg)
}

// Unmarshal keeps the request's bytes for the method handler to decode:
// a copy, because connect-go reuses data once Unmarshal returns.
func (c *rpcCodec) Unmarshal(data []byte, v any) error {
	r, ok := v.(*rpcRequest)
	if !ok {
		return fmt.Errorf("statefun: %T is not an entity method's request", v)
	}
	r.data, r.codec = bytes.Clone(data), c
	return nil
}

// incomingMetadata turns a call's HTTP headers into the incoming metadata
// a grpc-go server would give its handler: lowercase keys, binary values
// (keys ending in -bin) decoded. The protocol's own headers are left out:
// connect-go has acted on them.
func incomingMetadata(h http.Header) metadata.MD {
	md := make(metadata.MD, len(h))
	for k, vs := range h {
		if strings.HasPrefix(k, "Connect-") || strings.HasPrefix(k, "Grpc-") {
			continue
		}
		switch k {
		case "Content-Length", "Content-Encoding", "Accept-Encoding", "Te":
			continue
		}
		key := metadataKey(k)
		if strings.HasSuffix(key, "-bin") {
			decoded := make([]string, 0, len(vs))
			for _, v := range vs {
				if b, err := connect.DecodeBinaryHeader(v); err == nil {
					decoded = append(decoded, string(b))
				}
			}
			vs = decoded
		}
		md[key] = vs
	}
	return md
}

// commonMetadataKeys are the lowercase keys of the headers most calls
// carry (and those the runtime reads: trace context, idempotency keys), so
// that incomingMetadata need not lowercase, and allocate, them anew for
// every call.
var commonMetadataKeys = map[string]string{
	"Accept":          "accept",
	"Content-Type":    "content-type",
	"User-Agent":      "user-agent",
	"Traceparent":     "traceparent",
	"Tracestate":      "tracestate",
	"Baggage":         "baggage",
	"Idempotency-Key": "idempotency-key",
	"Authorization":   "authorization",
}

// peerAddr is a client's address as connect-go reports it (host:port),
// as the net.Addr a grpc-go peer has.
type peerAddr string

func (a peerAddr) Network() string { return "tcp" }
func (a peerAddr) String() string  { return string(a) }

// metadataKey is a header's name as a metadata key: lowercase.
func metadataKey(header string) string {
	if key, ok := commonMetadataKeys[header]; ok {
		return key
	}
	return strings.ToLower(header)
}

// callStream is what grpc.Method, grpc.SetHeader, grpc.SendHeader and
// grpc.SetTrailer find in the context of a call connect-go serves: the
// method's name, and the metadata to send with the reply.
type callStream struct {
	method string

	mu      sync.Mutex
	header  metadata.MD
	trailer metadata.MD
}

func (s *callStream) Method() string { return s.method }

func (s *callStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}

// SendHeader sets the headers: a unary reply's headers leave with it.
func (s *callStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *callStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

// copyMetadata adds the headers and trailers the handler set to the
// reply's.
func (s *callStream) copyMetadata(header, trailer http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	addMetadata(header, s.header)
	addMetadata(trailer, s.trailer)
}

func addMetadata(h http.Header, md metadata.MD) {
	for k, vs := range md {
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = connect.EncodeBinaryHeader([]byte(v))
			}
			h.Add(k, v)
		}
	}
}

// connectError turns a handler's error, a gRPC status, into connect-go's
// error of the same code, message and details, with the metadata the
// handler set.
func (s *callStream) connectError(err error) *connect.Error {
	st, ok := status.FromError(err)
	if !ok {
		// As a grpc-go server reports a handler's context error.
		st = status.FromContextError(err)
	}
	code := connect.Code(st.Code())
	if st.Code() == codes.OK {
		code = connect.CodeUnknown
	}
	ce := connect.NewError(code, errors.New(st.Message()))
	for _, d := range st.Proto().GetDetails() {
		if detail, err := connect.NewErrorDetail(d); err == nil {
			ce.AddDetail(detail)
		}
	}
	s.copyMetadata(ce.Meta(), ce.Meta())
	return ce
}
