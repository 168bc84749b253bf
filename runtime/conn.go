package statefun

import (
	"context"
	"fmt"
	"io"

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
	streams map[string]localStreamMethod
}

type localStreamMethod struct {
	impl    any
	handler grpc.StreamHandler
	desc    grpc.StreamDesc
}

type localMethod struct {
	impl    any
	handler grpc.MethodHandler
}

func newLocalConn(services []boundService) *localConn {
	c := &localConn{methods: map[string]localMethod{}, streams: map[string]localStreamMethod{}}
	for _, s := range services {
		for _, m := range s.desc.Methods {
			c.methods["/"+s.desc.ServiceName+"/"+m.MethodName] = localMethod{impl: s.impl, handler: m.Handler}
		}
		for _, m := range s.desc.Streams {
			c.streams["/"+s.desc.ServiceName+"/"+m.StreamName] = localStreamMethod{impl: s.impl, handler: m.Handler, desc: m}
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

// NewStream serves a server-streaming call in process (a view's
// streaming query): the handler runs on its own goroutine and hands each
// message over, copied through the wire format like a unary call's.
func (c *localConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	m, ok := c.streams[method]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "unknown streaming method %s", method)
	}
	if desc.ClientStreams || m.desc.ClientStreams {
		return nil, status.Errorf(codes.Unimplemented, "%s streams requests; in process, only server streaming is served", method)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &localPipe{ctx: ctx, cancel: cancel, request: make(chan []byte, 1), replies: make(chan []byte), done: make(chan struct{})}
	sctx := serverContext(ctx, method)
	go func() {
		defer close(p.done)
		p.err = m.handler(m.impl, &localServerStream{ctx: sctx, pipe: p})
	}()
	return &localClientStream{pipe: p}, nil
}

// localPipe connects the two ends of an in-process server-streaming call.
type localPipe struct {
	ctx     context.Context
	cancel  context.CancelFunc
	request chan []byte // the one request
	replies chan []byte
	done    chan struct{} // closed when the handler returned, with err
	err     error
}

type localClientStream struct {
	pipe *localPipe
	sent bool
}

func (s *localClientStream) Header() (metadata.MD, error) { return nil, nil }
func (s *localClientStream) Trailer() metadata.MD         { return nil }
func (s *localClientStream) CloseSend() error             { return nil }
func (s *localClientStream) Context() context.Context     { return s.pipe.ctx }

func (s *localClientStream) SendMsg(m any) error {
	if s.sent {
		return status.Error(codes.Internal, "a server-streaming call takes one request")
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request %T is not a protobuf message", m)
	}
	wire, err := proto.Marshal(msg)
	if err != nil {
		return status.Errorf(codes.Internal, "encode request: %v", err)
	}
	s.sent = true
	s.pipe.request <- wire
	return nil
}

func (s *localClientStream) RecvMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "reply %T is not a protobuf message", m)
	}
	select {
	case wire := <-s.pipe.replies:
		return proto.Unmarshal(wire, msg)
	case <-s.pipe.done:
		s.pipe.cancel()
		if s.pipe.err != nil {
			return s.pipe.err
		}
		return io.EOF
	case <-s.pipe.ctx.Done():
		return status.FromContextError(s.pipe.ctx.Err()).Err()
	}
}

type localServerStream struct {
	ctx  context.Context
	pipe *localPipe
}

func (s *localServerStream) SetHeader(metadata.MD) error  { return nil }
func (s *localServerStream) SendHeader(metadata.MD) error { return nil }
func (s *localServerStream) SetTrailer(metadata.MD)       {}
func (s *localServerStream) Context() context.Context     { return s.ctx }

func (s *localServerStream) SendMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "reply %T is not a protobuf message", m)
	}
	wire, err := proto.Marshal(msg)
	if err != nil {
		return status.Errorf(codes.Internal, "encode reply: %v", err)
	}
	select {
	case s.pipe.replies <- wire:
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

func (s *localServerStream) RecvMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request %T is not a protobuf message", m)
	}
	select {
	case wire := <-s.pipe.request:
		return proto.Unmarshal(wire, msg)
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
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
	// The caller's outgoing headers are this call's incoming ones, not
	// the handler's: a handler calling another service with its context
	// must not pass them on (statefun's own, such as ce-subject, would be
	// refused there), as a grpc-go server's handler passes none.
	ctx = metadata.NewOutgoingContext(ctx, metadata.MD{})
	// An in-process call is the service's own (a sent call, a timer, a
	// subscription, or the program embedding the runtime): whoever the
	// caller of the context was, this call is made by the service, and
	// routed to another node, it says so.
	ctx = context.WithValue(ctx, callerKey{}, Caller{kind: callerInternal})
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
