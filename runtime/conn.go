package statefun

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// localConn dispatches calls to registered service implementations in
// process, through the same generated handlers a gRPC server would use.
type localConn struct {
	methods map[string]localMethod
}

type localMethod struct {
	impl    any
	handler grpc.MethodHandler
}

func newLocalConn(services []boundService) *localConn {
	c := &localConn{methods: map[string]localMethod{}}
	for _, s := range services {
		for _, m := range s.desc.Methods {
			c.methods["/"+s.desc.ServiceName+"/"+m.MethodName] = localMethod{impl: s.impl, handler: m.Handler}
		}
	}
	return c
}

func (c *localConn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request %T is not a protobuf message", args)
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "reply %T is not a protobuf message", reply)
	}
	// Copy through the wire format so that neither side can change the
	// other's message, exactly as over a network.
	wire, err := proto.Marshal(in)
	if err != nil {
		return status.Errorf(codes.Internal, "encode request: %v", err)
	}
	res, err := m.handler(m.impl, serverContext(ctx, method), decoder(wire), keepRequest)
	if err != nil {
		return err
	}
	resMsg, ok := res.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "reply %T is not a protobuf message", res)
	}
	wire, err = proto.Marshal(resMsg)
	if err != nil {
		return status.Errorf(codes.Internal, "encode reply: %v", err)
	}
	return proto.Unmarshal(wire, out)
}

func (c *localConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "statefun entities have no streaming methods")
}

// invokeEncoded calls method with a request already in wire format and
// discards the reply: the call dispatcher makes stored calls this way.
func (c *localConn) invokeEncoded(ctx context.Context, method string, request []byte) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s: the entity is not hosted by this server", method)
	}
	_, err := m.handler(m.impl, serverContext(ctx, method), decoder(request), keepRequest)
	return err
}

// keepRequest puts the decoded request in the call's context, where a
// node of a cluster finds it to forward the call to the entity's owner.
func keepRequest(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withRequest(ctx, req), req)
}

// serverContext turns a caller's context into what a handler behind a
// gRPC server would see: the caller's outgoing metadata (an idempotency
// key, say) as incoming metadata, and the method's name for grpc.Method.
// The caller's own incoming metadata is not passed on, as over a network:
// a handler that calls another entity must not lend it its idempotency
// key.
func serverContext(ctx context.Context, method string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md.Copy())
	return grpc.NewContextWithServerTransportStream(ctx, localStream(method))
}

// localStream names the method of an in-process call; an in-process
// call has no headers or trailers to send.
type localStream string

func (s localStream) Method() string             { return string(s) }
func (localStream) SetHeader(metadata.MD) error  { return nil }
func (localStream) SendHeader(metadata.MD) error { return nil }
func (localStream) SetTrailer(metadata.MD) error { return nil }

// decoder returns the request decoder a generated method handler calls:
// it fills the handler's request message from wire.
func decoder(wire []byte) func(any) error {
	return func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok {
			return fmt.Errorf("request %T is not a protobuf message", v)
		}
		return proto.Unmarshal(wire, msg)
	}
}
