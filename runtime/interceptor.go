package statefun

import (
	"context"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverInterceptor is what every call a server takes passes through,
// whichever port and protocol it came by: the gRPC port's grpc-go server
// installs it, and the HTTP port's connect-go handlers (connecthandler.go)
// hand it to the same generated method handlers. One chain, so that
// metrics, panic recovery, the caller and its access check (security.go)
// and the request kept for forwarding cannot differ between gRPC,
// gRPC-Web and Connect.
// Tracing spans and the debug request log are taken further in, by the
// entity host (observed, trace.go), and so apply to every path too.
func serverInterceptor(m *metrics, log *slog.Logger, panicLog *logLimiter, sec *security) grpc.UnaryServerInterceptor {
	return chainUnary(m.unaryInterceptor, recoverInterceptor(log, panicLog), sec.unaryInterceptor, keepRequest)
}

// chainUnary runs interceptors in order, the first outermost, around the
// handler.
func chainUnary(interceptors ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return interceptors[0](ctx, req, info, chainedHandler(interceptors[1:], info, handler))
	}
}

// chainedHandler is the handler the interceptor before rest calls: the
// rest of the chain, then handler.
func chainedHandler(rest []grpc.UnaryServerInterceptor, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) grpc.UnaryHandler {
	if len(rest) == 0 {
		return handler
	}
	return func(ctx context.Context, req any) (any, error) {
		return rest[0](ctx, req, info, chainedHandler(rest[1:], info, handler))
	}
}

// recoverInterceptor turns a panic outside an entity handler (the entity
// host catches those itself) into INTERNAL for that call only, and logs
// it with its stack, rate-limited by limit like entity handlers' panics.
func recoverInterceptor(log *slog.Logger, limit *logLimiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (res any, err error) {
		defer func() {
			if p := recover(); p != nil {
				logPanic(ctx, log, limit, "panic serving a call", &panicError{value: p, stack: debug.Stack()}, "method", info.FullMethod)
				err = status.Error(codes.Internal, "internal error; see the server log")
			}
		}()
		return handler(ctx, req)
	}
}
