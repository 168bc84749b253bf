package statefun

import (
	"context"
	"log/slog"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
)

// ConnectHandlerForTest returns the HTTP port's native handlers of rt's
// entities, behind the server's interceptor chain, without a server.
func ConnectHandlerForTest(rt *Runtime, log *slog.Logger) http.Handler {
	return nativeHandlers(newConnectHandlers(rt.services, serverInterceptor(newMetrics(), log, &rt.panicLog, rt.sec), 4<<20))
}

// GRPCMethodForTest returns what the gRPC port runs for a call of method
// ("/package.Service/Method") once grpc-go has read it: the generated
// method handler behind the server's interceptor chain, given the request's
// decoder, in a context that carries the call's metadata and method as
// grpc-go's does. The benchmarks set the HTTP port's cost against it.
func GRPCMethodForTest(rt *Runtime, log *slog.Logger, method string) func(ctx context.Context, md metadata.MD, dec func(any) error) (any, error) {
	interceptor := serverInterceptor(newMetrics(), log, &rt.panicLog, rt.sec)
	for _, svc := range rt.services {
		for _, m := range svc.desc.Methods {
			if "/"+svc.desc.ServiceName+"/"+m.MethodName != method {
				continue
			}
			return func(ctx context.Context, md metadata.MD, dec func(any) error) (any, error) {
				ctx = metadata.NewIncomingContext(ctx, md)
				ctx = grpc.NewContextWithServerTransportStream(ctx, &callStream{method: method})
				return m.Handler(svc.impl, ctx, dec, interceptor)
			}
		}
	}
	return nil
}

// HTTPPortHandlerForTest returns the whole HTTP port's handler of rt's
// entities (its mux, body limit, the native handlers and vanguard behind
// them), as serve builds it, without a listener.
func HTTPPortHandlerForTest(rt *Runtime, log *slog.Logger) (http.Handler, error) {
	m := newMetrics()
	interceptor := serverInterceptor(m, log, &rt.panicLog, rt.sec)
	grpcServer := grpc.NewServer(grpc.UnaryInterceptor(interceptor))
	rt.RegisterServices(grpcServer)
	const maxMessageBytes = 4 << 20
	srv, err := newHTTPServer(grpcServer, newConnectHandlers(rt.services, interceptor, maxMessageBytes), m, health.NewServer(),
		serverConfig{maxMessageBytes: maxMessageBytes}, nil, nil)
	if err != nil {
		return nil, err
	}
	return srv.Handler, nil
}
