package statefun

import (
	"log/slog"

	"google.golang.org/grpc"
)

// RecoverInterceptorForTest returns the gRPC server's recover interceptor,
// logging to log with a limiter of its own.
func RecoverInterceptorForTest(log *slog.Logger) grpc.UnaryServerInterceptor {
	return recoverInterceptor(log, &logLimiter{})
}
