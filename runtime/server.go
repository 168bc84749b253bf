package statefun

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/runtime/internal/console"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// openStore opens the store the configuration names: Postgres when a
// database URL is set, else the embedded store in the data directory.
func openStore(ctx context.Context, c serverConfig, log *slog.Logger) (store.Store, error) {
	switch {
	case c.databaseURL != "":
		st, err := postgres.Open(ctx, c.databaseURL, postgres.WithSchema(c.schema))
		if err != nil {
			return nil, fmt.Errorf("open Postgres store: %w", err)
		}
		log.Info("store: postgres", "database", redactURL(c.databaseURL), "schema", c.schema)
		return st, nil
	case c.dataDir == ":memory:":
		log.Warn("store: in memory; everything is lost when the process ends")
		return memory.New(), nil
	default:
		st, err := embedded.Open(c.dataDir)
		if err != nil {
			return nil, fmt.Errorf("open embedded store: %w", err)
		}
		log.Info("store: embedded", "data_dir", c.dataDir)
		return st, nil
	}
}

// clusterConfig is this server's place in its cluster.
func clusterConfig(c serverConfig) (ClusterConfig, error) {
	addr := c.advertiseAddress
	if addr == "" {
		host, _, err := net.SplitHostPort(c.listen)
		if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
			return ClusterConfig{}, fmt.Errorf("--listen %q does not say how other nodes reach this one; set --advertise-address to this node's host:port", c.listen)
		}
		addr = c.listen
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return ClusterConfig{}, fmt.Errorf("--advertise-address %q: %w; use host:port", addr, err)
	}
	cc := ClusterConfig{Address: addr, Shards: c.shards, LeaseTTL: c.leaseTTL}
	if c.tlsCert != "" {
		// Peers are reached over TLS too, trusting the system's roots and
		// this node's own certificate (a cluster sharing one certificate).
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(c.tlsCert); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		cc.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))}
	}
	return cc, nil
}

// showCluster prints the cluster's nodes and how many shards each holds.
func showCluster(ctx context.Context, c serverConfig, stdout io.Writer) error {
	if c.databaseURL == "" {
		return errors.New("cluster needs the cluster's database: set --database-url or $STATEFUN_DATABASE_URL")
	}
	st, err := postgres.Open(ctx, c.databaseURL, postgres.WithSchema(c.schema))
	if err != nil {
		return fmt.Errorf("open Postgres store: %w", err)
	}
	defer st.Close()
	cs, ok := any(st).(store.Cluster)
	if !ok {
		return errors.New("this store cannot hold a cluster")
	}
	nodes, err := cs.Nodes(ctx)
	if err != nil {
		return err
	}
	leases, err := cs.Leases(ctx)
	if err != nil {
		return err
	}
	held := map[string]int{}
	free := 0
	for _, l := range leases {
		if l.Owner == "" || l.Remaining < 0 {
			free++
			continue
		}
		held[l.Owner]++
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTARTED\tLAST HEARTBEAT\tSHARDS")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%d\n", n.ID, n.Address, n.StartedAt.Format(time.RFC3339), n.Age.Round(time.Millisecond), held[n.ID])
		delete(held, n.ID)
	}
	for owner, k := range held {
		fmt.Fprintf(tw, "%s\t(left)\t\t\t%d\n", owner, k)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d shards, %d without a live lease\n", len(leases), free)
	return nil
}

// redactURL drops the password from a database URL for logging, from
// every place pgx reads one: a URL's user info and its password parameter,
// and the password key of a key=value connection string (and sslpassword,
// the client key's, in both).
func redactURL(raw string) string {
	// The same test pgconn.ParseConfig uses to tell the two forms apart.
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "(unparsable database URL)"
		}
		q := u.Query()
		for _, key := range []string{"password", "sslpassword"} {
			if q.Has(key) {
				q.Set(key, "xxxxx")
				u.RawQuery = q.Encode()
			}
		}
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(raw, "${1}xxxxx")
}

// dsnPassword matches the value of a password in a key=value connection
// string: a single-quoted value (with backslash escapes) or a bare word.
var dsnPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)

func migrate(ctx context.Context, c serverConfig, log *slog.Logger, stdout io.Writer) error {
	if c.databaseURL == "" {
		return errors.New("migrate needs a Postgres database: set --database-url or $STATEFUN_DATABASE_URL (the embedded store needs no migration)")
	}
	from, to, err := postgres.Migrate(ctx, c.databaseURL, postgres.WithSchema(c.schema))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var did string
	switch from {
	case to:
		did = fmt.Sprintf("schema %s is up to date at version %d", c.schema, to)
	case 0:
		did = fmt.Sprintf("created schema %s at version %d", c.schema, to)
	default:
		did = fmt.Sprintf("upgraded schema %s from version %d to %d", c.schema, from, to)
	}
	log.Info(did, "database", redactURL(c.databaseURL))
	fmt.Fprintln(stdout, did)
	return nil
}

// serve runs the server until ctx is done, then shuts down cleanly: stop
// taking calls, let in-flight calls finish, flush the journal, exit.
func serve(ctx context.Context, c serverConfig, log *slog.Logger, components []Component) error {
	var entities []*Entity
	var consumers []*Consumer
	var views []*View
	var publishers []*Publisher
	for _, comp := range components {
		switch comp := comp.(type) {
		case *Entity:
			entities = append(entities, comp)
		case *Consumer:
			consumers = append(consumers, comp)
		case *View:
			views = append(views, comp)
		case *Publisher:
			publishers = append(publishers, comp)
		case nil:
			return errors.New("nil component; pass the values of generated constructors such as NewShoppingCart")
		}
	}
	if len(entities) == 0 {
		return errors.New("no entities to serve; pass generated constructors to statefun.Main, e.g. statefun.Main(cartv1.NewShoppingCart(Cart{}))")
	}
	st, err := openStore(ctx, c, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", "error", err)
		}
	}()
	m := newMetrics()
	tp, stopTracing, err := startTracing(ctx, c.traces, log)
	if err != nil {
		return err
	}
	// The last spans (of the final commits too) are flushed once the
	// runtime has closed, within what is left of the shutdown timeout
	// (INVARIANTS.md, invariant 13); stopBy moves when shutdown starts.
	stopBy := time.Now().Add(c.shutdownTimeout)
	defer func() { stopTracing(stopBy) }()
	opts := []Option{WithStore(st), WithLogger(log), WithConsumers(consumers...), WithViews(views...), WithPublishers(publishers...), WithBrokers(c.brokers), WithCommitConcurrency(c.commitConcurrency), WithPassivation(c.passivation)}
	opts = append(opts, WithTracerProvider(tp), WithSecurity(c.security))
	if c.allowUnknownEvents {
		opts = append(opts, WithAllowUnknownEvents())
	}
	if c.databaseURL != "" {
		// Every server on Postgres is a node of a cluster, of one node
		// when it is alone: two servers on one database share the
		// entities instead of both serving them.
		cc, err := clusterConfig(c)
		if err != nil {
			return err
		}
		log.Info("joining the cluster", "node", cc.Address, "shards", cc.Shards, "lease_ttl", cc.LeaseTTL)
		opts = append(opts, WithCluster(cc))
	}
	rt, err := New(entities, append(opts,
		optionFunc(func(cfg *config) { cfg.observeBatch = m.observeBatch }))...)
	if err != nil {
		return err
	}
	m.register(rt)
	if err := rt.sec.readyToServe(); err != nil {
		_ = rt.Close(context.Background())
		return err
	}

	var tlsConfig *tls.Config
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			_ = rt.Close(context.Background())
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	interceptor := serverInterceptor(m, log, &rt.panicLog, rt.sec)
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(c.maxMessageBytes),
		grpc.UnaryInterceptor(interceptor),
		grpc.StreamInterceptor(rt.StreamServerInterceptor()),
	}
	if tlsConfig != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	grpcServer := grpc.NewServer(serverOpts...)
	rt.RegisterServices(grpcServer)
	healthServer := health.NewServer()
	for _, e := range entities {
		healthServer.SetServingStatus(e.service.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
	// The console and the admin API show every entity's state: on the
	// public ports only of a server that checks no access (a developer's),
	// else on the admin listener alone.
	consoleOn := c.console
	if consoleOn && c.adminListen == "" && rt.sec.guarded() {
		log.Info("the console and the admin API are not served on the public ports of a server that checks access; serve them on --admin-listen")
		consoleOn = false
	}
	public := !loopbackAddr(c.listen) || c.httpListen != "" && !loopbackAddr(c.httpListen)
	if consoleOn && c.adminListen == "" && public {
		log.Warn("the console and the admin API are on the public ports and show every entity's state to anyone who reaches them; in production set --admin-listen (with an admin token) or --console=false")
	}
	if c.adminListen != "" && c.adminToken == "" && !loopbackAddr(c.adminListen) {
		log.Warn("the admin listener takes calls from the network without a token; set $STATEFUN_ADMIN_TOKEN or --admin-token-file", "address", c.adminListen)
	}
	var consoleHandler http.Handler
	if consoleOn {
		consoleHandler = console.Handler(rt.consoleSource(), console.Options{Prefix: consolePrefix, Title: c.security.ServiceName})
		if c.adminListen == "" {
			rt.RegisterAdmin(grpcServer)
		}
	}
	// With an admin listener, the public ports serve the entities' APIs
	// and nothing else: health, reflection and metrics move to it.
	var adminServer *http.Server
	if c.adminListen == "" {
		healthpb.RegisterHealthServer(grpcServer, healthServer)
		reflection.Register(grpcServer)
	} else {
		al, err := net.Listen("tcp", c.adminListen)
		if err != nil {
			_ = rt.Close(context.Background())
			return fmt.Errorf("listen for admin calls on %s: %w; choose another address with --admin-listen", c.adminListen, err)
		}
		var adminRT *Runtime
		if consoleOn {
			adminRT = rt
		}
		adminServer, err = newAdminServer(grpcServer, m, healthServer, c, adminRT, consoleHandler)
		if err != nil {
			_ = al.Close()
			_ = rt.Close(context.Background())
			return err
		}
		go func() {
			if err := adminServer.Serve(al); !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", "error", err)
			}
		}()
		log.Info("serving admin endpoints (/metrics, /healthz, gRPC health and reflection)", "address", al.Addr().String(), "token", c.adminToken != "", "console", consoleOn)
	}

	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		_ = rt.Close(context.Background())
		return fmt.Errorf("listen for gRPC on %s: %w; choose another address with --listen", c.listen, err)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- grpcServer.Serve(lis) }()
	log.Info("serving gRPC", "address", lis.Addr().String(), "tls", tlsConfig != nil)

	var httpServer *http.Server
	if c.httpListen != "" {
		native := newConnectHandlers(rt.services, interceptor, c.maxMessageBytes)
		var publicConsole http.Handler
		if consoleOn && c.adminListen == "" {
			publicConsole = consoleHandler
		}
		httpServer, err = newHTTPServer(grpcServer, native, m, healthServer, c, tlsConfig, publicConsole)
		if err != nil {
			grpcServer.Stop()
			_ = rt.Close(context.Background())
			return err
		}
		hl, err := net.Listen("tcp", c.httpListen)
		if err != nil {
			grpcServer.Stop()
			_ = rt.Close(context.Background())
			return fmt.Errorf("listen for HTTP on %s: %w; choose another address with --http-listen, or disable it with --http-listen=", c.httpListen, err)
		}
		go func() {
			var err error
			if tlsConfig != nil {
				err = httpServer.ServeTLS(hl, "", "")
			} else {
				err = httpServer.Serve(hl)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		}()
		log.Info("serving HTTP (Connect JSON, gRPC-Web, /metrics, /healthz)", "address", hl.Addr().String())
	}

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutting down: no new calls; finishing in-flight calls and pending writes", "timeout", c.shutdownTimeout)
	case err := <-serveErr:
		failure = fmt.Errorf("server stopped: %w", err)
		log.Error("server failed; shutting down", "error", err)
	}
	stopBy = time.Now().Add(c.shutdownTimeout)
	err = shutdown(c.shutdownTimeout, log, grpcServer, httpServer, healthServer, rt)
	if adminServer != nil {
		// Last: /healthz says "not serving" while the others stop.
		_ = adminServer.Close()
	}
	return errors.Join(failure, err)
}

func shutdown(timeout time.Duration, log *slog.Logger, grpcServer *grpc.Server, httpServer *http.Server, hs *health.Server, rt *Runtime) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hs.Shutdown()
	// Hand the shards to the other nodes first, while this server still
	// takes calls: calls for them are forwarded to their new owners.
	if err := rt.Leave(ctx); err != nil {
		log.Warn("leaving the cluster", "error", err)
	}
	stopped := make(chan struct{})
	go func() {
		grpcServer.GracefulStop()
		close(stopped)
	}()
	if httpServer != nil {
		if err := httpServer.Shutdown(ctx); err != nil {
			log.Warn("HTTP calls still running at the deadline were cut", "error", err)
		}
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		log.Warn("gRPC calls still running at the deadline were cut")
		grpcServer.Stop()
	}
	if err := rt.Close(ctx); err != nil {
		return fmt.Errorf("flush the journal: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}

// newHTTPServer serves every entity method with connect-go's handlers
// (native): Connect (POST /package.Service/Method, Content-Type
// application/json or application/proto), gRPC and gRPC-Web; REST routes
// and the gRPC server's other services through vanguard; /metrics and
// /healthz; all on one port.
func newHTTPServer(grpcServer *grpc.Server, native map[string]http.Handler, m *metrics, hs *health.Server, c serverConfig, tlsConfig *tls.Config, consoleHandler http.Handler) (*http.Server, error) {
	rpc := newRPCHandler(grpcServer, native)
	// REST calls are transcoded into gRPC calls of the native handlers,
	// so that they pass through the same interceptors; the gRPC server's
	// own services (health, reflection) are passed to it.
	nativeServices := map[string]bool{}
	for path := range native {
		service, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		nativeServices[service] = true
	}
	var services []*vanguard.Service
	for name := range grpcServer.GetServiceInfo() {
		target := http.Handler(grpcServer)
		if nativeServices[name] {
			target = nativeHandlers(native)
		}
		services = append(services, vanguard.NewService(name, target))
	}
	// The transcoder enforces the request limit itself, so that an
	// oversized body is resource_exhausted (HTTP 429), as on the gRPC port,
	// rather than a failed read that it would report as unavailable (503).
	transcoder, err := vanguard.NewTranscoder(services, vanguard.WithCodec(newJSONCodec),
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC), vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(uint32(min(int64(c.maxMessageBytes), math.MaxUint32)))),
		vanguard.WithUnknownHandler(http.HandlerFunc(rpc.serveUnknown)))
	if err != nil {
		return nil, fmt.Errorf("set up HTTP/JSON: %w", err)
	}
	// The guard keeps a REST call's query parameter from overriding the
	// entity key the route's path or body binds (rest.go). The body limit
	// is for what vanguard serves; the native handlers have connect-go's
	// own (connect.WithReadMaxBytes), which makes an oversized request
	// resource_exhausted before this one would stop it, so wrapping them
	// too would only add a copy of every call's request and a reader
	// around its body.
	rpc.transcoder = http.MaxBytesHandler(newRESTQueryGuard(transcoder, grpcServer), int64(c.maxMessageBytes)+1024)
	mux := http.NewServeMux()
	if c.adminListen == "" {
		mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", healthz(hs))
	}
	if consoleHandler != nil {
		mux.Handle(consolePrefix, consoleHandler)
	}
	mux.Handle("/", rpc)
	// HTTP/1.1 for curl and browsers; HTTP/2 (also without TLS, "h2c") for
	// gRPC-Web and Connect clients that use it.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           mux,
		TLSConfig:         tlsConfig,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
	}, nil
}

// healthz answers "ok" while the server serves, 503 once it stops.
func healthz(hs *health.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// newAdminServer serves what operators and tools need and users must not
// reach: /metrics, /healthz, and over gRPC (h2c) the health service and
// reflection of the public gRPC server's services. With an admin token,
// every call but the health checks must carry it as a bearer token.
func newAdminServer(public *grpc.Server, m *metrics, hs *health.Server, c serverConfig, rt *Runtime, consoleHandler http.Handler) (*http.Server, error) {
	admin := grpc.NewServer()
	healthpb.RegisterHealthServer(admin, hs)
	if rt != nil {
		rt.RegisterAdmin(admin)
	}
	// Reflection describes the public server's services, so that grpcurl
	// pointed here lists the entities' methods.
	opts := reflection.ServerOptions{Services: public}
	reflectionv1.RegisterServerReflectionServer(admin, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(admin, reflection.NewServer(opts))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", healthz(hs))
	if consoleHandler != nil {
		mux.Handle(consolePrefix, consoleHandler)
		// The admin API over HTTP/JSON (Connect and its REST routes),
		// transcoded into the admin gRPC server.
		transcoder, err := vanguard.NewTranscoder([]*vanguard.Service{vanguard.NewService(statefunv1.AdminService_ServiceDesc.ServiceName, admin,
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC), vanguard.WithTargetCodecs(vanguard.CodecProto))})
		if err != nil {
			return nil, fmt.Errorf("set up the admin API over HTTP: %w", err)
		}
		mux.Handle("/"+statefunv1.AdminService_ServiceDesc.ServiceName+"/", transcoder)
		mux.Handle("/v1/admin/", transcoder)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isGRPC := r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
		open := r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/grpc.health.v1.Health/")
		if c.adminToken != "" && !open && !adminTokenMatches(r.Header.Get("Authorization"), c.adminToken) {
			if isGRPC {
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Grpc-Status", strconv.Itoa(int(codes.Unauthenticated)))
				w.Header().Set("Grpc-Message", "the admin endpoints need the admin token: send authorization: Bearer <$STATEFUN_ADMIN_TOKEN>")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="statefun admin"`)
			http.Error(w, "the admin endpoints need the admin token: send Authorization: Bearer <$STATEFUN_ADMIN_TOKEN>", http.StatusUnauthorized)
			return
		}
		if isGRPC {
			admin.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: handler, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}, nil
}

// loopbackAddr reports whether a listen address takes connections from
// this machine only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// consolePrefix is where the web console is served.
const consolePrefix = "/console/"

// adminTokenMatches compares an Authorization header with the admin token
// in constant time.
func adminTokenMatches(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// jsonCodec is the JSON of REST calls: protobuf's canonical JSON, as
// connect-go writes it (zero values left out), with a request that does
// not parse reported as invalid_argument (HTTP 400) naming what is wrong
// (decodeJSON), not as an unknown error.
type jsonCodec struct{ *vanguard.JSONCodec }

func newJSONCodec(res vanguard.TypeResolver) vanguard.Codec {
	c := vanguard.NewJSONCodec(res)
	c.MarshalOptions.EmitUnpopulated = false
	// Refused by name instead, as decodeJSON explains.
	c.UnmarshalOptions.DiscardUnknown = false
	return jsonCodec{c}
}

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, jsonRequestError(data, msg, err))
	}
	return nil
}

// nativeHandlers dispatches vanguard's transcoded calls to the native
// handlers by path.
type nativeHandlers map[string]http.Handler

func (n nativeHandlers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := n[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	// In process, compression saves nothing. And vanguard (v0.4.0) takes
	// connect-go's grpc-encoding header for a compressed reply even when
	// the message under compressMinBytes went out uncompressed, and labels
	// the REST reply gzip when it is not.
	r.Header.Del("Grpc-Accept-Encoding")
	h.ServeHTTP(w, r)
}
