package statefun

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracesConfig is how a server exports traces, read from the standard
// OTEL_* environment variables.
type tracesConfig struct {
	enabled  bool
	protocol string // "grpc" or "http/protobuf"
}

// tracesFromEnv reads whether and how the server exports traces. Tracing
// is off by default, unlike OpenTelemetry's SDKs, whose OTEL_TRACES_EXPORTER
// defaults to otlp: a server that tries to reach a collector nobody runs
// fills its log with export errors. The rule:
//
//   - OTEL_SDK_DISABLED=true: off.
//   - OTEL_TRACES_EXPORTER=otlp: on; =none: off; any other value is refused.
//   - OTEL_TRACES_EXPORTER unset: on when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
//
// The protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL: grpc, or http/protobuf (the default).
// Everything else (endpoint, headers, TLS, timeout, sampler, service name
// and resource attributes) the OpenTelemetry SDK reads from the process
// environment itself.
func tracesFromEnv(getenv func(string) string) (tracesConfig, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return tracesConfig{}, nil
	}
	var c tracesConfig
	switch exporter := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exporter {
	case "otlp":
		c.enabled = true
	case "none":
		return tracesConfig{}, nil
	case "":
		c.enabled = getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return tracesConfig{}, fmt.Errorf("$OTEL_TRACES_EXPORTER=%q: statefun exports traces with otlp only; set it to otlp or none", exporter)
	}
	if !c.enabled {
		return c, nil
	}
	c.protocol = getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if c.protocol == "" {
		c.protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch c.protocol {
	case "":
		c.protocol = "http/protobuf"
	case "grpc", "http/protobuf":
	default:
		return tracesConfig{}, fmt.Errorf("OTLP protocol %q: statefun exports traces over grpc or http/protobuf; set $OTEL_EXPORTER_OTLP_PROTOCOL to one of them", c.protocol)
	}
	return c, nil
}

// tracesFlushTimeout bounds the flush of the last spans when a server
// stops, when its shutdown timeout left more than that.
const tracesFlushTimeout = 5 * time.Second

// startTracing returns the server's tracer provider (the no-op provider
// when tracing is off) and the function that flushes and stops it by a
// deadline.
func startTracing(ctx context.Context, c tracesConfig, log *slog.Logger) (trace.TracerProvider, func(deadline time.Time), error) {
	if !c.enabled {
		return noop.NewTracerProvider(), func(time.Time) {}, nil
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read now:
	// resource.Default reads them too, but only the first time anything
	// in the process asks for it.
	fromEnv, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, nil, fmt.Errorf("read the trace resource: %w; check $OTEL_RESOURCE_ATTRIBUTES", err)
	}
	res, err := resource.Merge(resource.Default(), fromEnv)
	if err != nil {
		return nil, nil, fmt.Errorf("read the trace resource: %w", err)
	}
	var exporter sdktrace.SpanExporter
	if c.protocol == "grpc" {
		exporter, err = otlptracegrpc.New(ctx)
	} else {
		exporter, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("set up the OTLP trace exporter: %w; check the OTEL_EXPORTER_OTLP_* variables", err)
	}
	// The provider reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	log.Info("tracing: exporting spans with OTLP", "protocol", c.protocol)
	stop := func(deadline time.Time) {
		if limit := time.Now().Add(tracesFlushTimeout); deadline.After(limit) {
			deadline = limit
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: the last spans were not all exported", "error", err)
		}
	}
	return tp, stop, nil
}
