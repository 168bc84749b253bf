package statefun

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// RequestMetricsForTest returns the gRPC server's metrics interceptor and
// the registry it records into.
func RequestMetricsForTest() (grpc.UnaryServerInterceptor, *prometheus.Registry) {
	m := newMetrics()
	return m.unaryInterceptor, m.registry
}
