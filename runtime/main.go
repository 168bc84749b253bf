package statefun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/gcheadroom"
)

// Main runs a statefun server hosting entities and consumers, and exits the
// process. It is the whole main function of a statefun service:
//
//	func main() { statefun.Main(cartv1.NewShoppingCart(Cart{})) }
//
// The binary it makes has four commands: serve (the default), migrate,
// cluster and version. Run it with -h for the flags; each flag can also be
// set with the environment variable named in its help.
//
// Unless GOGC or GOMEMLIMIT is set, the garbage collector gets at least
// 64 MiB of headroom above the live heap (gcHeadroom); set GOGC=100 for
// Go's default.
func Main(components ...Component) {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		gcheadroom.Start(gcHeadroom)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, components...)
	stop()
	os.Exit(code)
}

// gcHeadroom is the least room the heap gets to grow into between two
// collections, when the user set neither GOGC nor GOMEMLIMIT. At Go's
// default (GOGC=100, a collection each time the heap doubles) a server
// whose live heap is small collects many times a second under load: each
// durable write allocates a few KiB, and the collector cost the shopping
// cart server a fifth of its CPU per write (PERFORMANCE.md). With the
// floor, a small heap collects several times less often for at most this
// much more memory, and a live heap larger than it is collected exactly
// as by default, so no server's memory grows by more than 64 MiB. Only
// Main sets it: the collector's settings are the process's, and a
// program that embeds a server with Run makes its own.
const gcHeadroom = 64 << 20

// Run is Main without the process: it runs one command line with the given
// environment and output, returning the exit code, and stops serving when
// ctx is done. Tests and programs embedding a server use it.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, components ...Component) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" {
		// help [command]: the usage, with the flags of the command.
		cmd = "serve"
		if len(args) > 0 {
			cmd = args[0]
		}
		args = []string{"-h"}
	}
	switch cmd {
	case "serve", "migrate", "cluster", "version":
	default:
		fmt.Fprintf(stderr, "unknown command %q; the commands are serve, migrate, cluster and version\n", cmd)
		return 2
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	// The flag package would print a parse error and the flags itself, and
	// then Run would again: Run alone prints, once.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cfg, err := parseFlags(fs, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout, fs)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		usage(stderr, fs)
		return 2
	}
	if cmd == "version" {
		fmt.Fprintf(stdout, "statefun %s\n", Version)
		return 0
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	// Handlers that log with slog's package functions log like the
	// server: same level, same format.
	slog.SetDefault(log)
	switch cmd {
	case "migrate":
		err = migrate(ctx, cfg, log, stdout)
	case "cluster":
		err = showCluster(ctx, cfg, stdout)
	default:
		err = serve(ctx, cfg, log, components)
	}
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	return 0
}

// usage lists the commands, then the flags of fs's command.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s [command] [flags]\n", filepath.Base(os.Args[0]))
	fmt.Fprintln(w, `
commands:
  serve     serve the entities over gRPC and HTTP/JSON (the default)
  migrate   create or upgrade the Postgres schema, then exit (serve does it too, on start)
  cluster   list the cluster's nodes, their addresses, heartbeats and shards
  version   print the statefun version`)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		fmt.Fprintf(w, "\n%s takes no flags\n", fs.Name())
		return
	}
	fmt.Fprintf(w, "\nflags of %s:\n", fs.Name())
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// commandFlags are the flags of each command but serve, which takes every
// flag.
var commandFlags = map[string][]string{
	"migrate": {"database-url", "database-schema", "log-level", "log-format"},
	"cluster": {"database-url", "database-schema"},
	"version": {},
}

// serverConfig is the command line and environment of a server.
type serverConfig struct {
	listen            string
	httpListen        string
	databaseURL       string
	schema            string
	dataDir           string
	logLevel          string
	logFormat         string
	shutdownTimeout   time.Duration
	passivation       time.Duration
	maxMessageBytes   int
	commitConcurrency int
	advertiseAddress  string
	shards            int
	leaseTTL          time.Duration
	tlsCert           string
	tlsKey            string
	traces            tracesConfig // from the OTEL_* environment
	// allowUnknownEvents: WithAllowUnknownEvents.
	allowUnknownEvents bool
	// brokers: WithBrokers; the Kafka password only from the environment.
	brokers      BrokerConfig
	kafkaBrokers string
	// security: WithSecurity; secrets only from files or the environment.
	security    SecurityConfig
	adminListen string
	adminToken  string
	console     bool
}

// parseFlags parses the flags of fs's command (commandFlags) into a
// configuration; the flags of other commands keep their defaults.
func parseFlags(cmdFlags *flag.FlagSet, args []string, getenv func(string) string) (serverConfig, error) {
	var c serverConfig
	var errs []error
	fs := flag.NewFlagSet(cmdFlags.Name(), flag.ContinueOnError)
	str := func(p *string, name, env, def, help string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, help+" ($"+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, help string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("$%s=%q is not a duration (use 30s, 2m)", env, v))
			}
			def = d
		}
		fs.DurationVar(p, name, def, help+" ($"+env+")")
	}
	integer := func(p *int, name, env string, def int, help string) {
		if v := getenv(env); v != "" {
			if _, err := fmt.Sscan(v, &def); err != nil {
				errs = append(errs, fmt.Errorf("$%s=%q is not a number", env, v))
			}
		}
		fs.IntVar(p, name, def, help+" ($"+env+")")
	}
	float := func(p *float64, name, env string, help string) {
		def := 0.0
		if v := getenv(env); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				errs = append(errs, fmt.Errorf("$%s=%q is not a non-negative number", env, v))
			}
			def = f
		}
		fs.Float64Var(p, name, def, help+" ($"+env+")")
	}
	boolean := func(p *bool, name, env string, def bool, help string) {
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("$%s=%q is not a boolean (use true or false)", env, v))
			}
			def = b
		}
		fs.BoolVar(p, name, def, help+" ($"+env+")")
	}
	str(&c.listen, "listen", "STATEFUN_LISTEN", "127.0.0.1:8080", "gRPC address to listen on; use :8080 to listen on every interface")
	str(&c.httpListen, "http-listen", "STATEFUN_HTTP_LISTEN", "127.0.0.1:8081", "HTTP address for JSON (Connect protocol), gRPC-Web, /metrics and /healthz; empty to disable")
	str(&c.databaseURL, "database-url", "STATEFUN_DATABASE_URL", "", "Postgres URL, e.g. postgres://user:pass@host:5432/db; empty for the embedded store in --data-dir")
	str(&c.schema, "database-schema", "STATEFUN_DATABASE_SCHEMA", "statefun", "Postgres schema for statefun's tables")
	str(&c.dataDir, "data-dir", "STATEFUN_DATA_DIR", "statefun-data", "directory of the embedded store, used when no database URL is set")
	str(&c.logLevel, "log-level", "STATEFUN_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.logFormat, "log-format", "STATEFUN_LOG_FORMAT", "text", "text or json")
	dur(&c.shutdownTimeout, "shutdown-timeout", "STATEFUN_SHUTDOWN_TIMEOUT", 30*time.Second, "how long SIGTERM waits for in-flight calls and pending writes")
	dur(&c.passivation, "passivation-timeout", "STATEFUN_PASSIVATION_TIMEOUT", 10*time.Minute, "how long an unused entity stays in memory, for entity types whose annotation sets no passivation_timeout")
	str(&c.tlsCert, "tls-cert", "STATEFUN_TLS_CERT", "", "PEM certificate file: serve gRPC and HTTP over TLS (with --tls-key)")
	str(&c.tlsKey, "tls-key", "STATEFUN_TLS_KEY", "", "PEM private key file for --tls-cert")
	integer(&c.maxMessageBytes, "max-message-bytes", "STATEFUN_MAX_MESSAGE_BYTES", 4<<20, "largest request accepted, in bytes")
	str(&c.advertiseAddress, "advertise-address", "STATEFUN_ADVERTISE_ADDRESS", "", "host:port where the other nodes of the cluster reach this node's gRPC port; it also names the node (default: --listen, when that names a host)")
	dur(&c.leaseTTL, "lease-ttl", "STATEFUN_LEASE_TTL", 5*time.Second, "how long a dead node's shards wait before another node takes them over")
	integer(&c.shards, "shards", "STATEFUN_SHARDS", DefaultShards, "number of shards entities are spread over; fixed when the cluster's first node starts")
	integer(&c.commitConcurrency, "commit-concurrency", "STATEFUN_COMMIT_CONCURRENCY", 1, "store transactions the journal writer may have in flight at once; more than 1 helps when the database is far away and has cores to spare (see BENCHMARKS.md)")
	traces, err := tracesFromEnv(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	c.traces = traces
	str(&c.brokers.NATSURL, "nats-url", "STATEFUN_NATS_URL", "", "NATS server URL (nats://host:4222), for publishers and subscriptions on NATS JetStream")
	str(&c.brokers.NATSCredsFile, "nats-creds", "STATEFUN_NATS_CREDS", "", "NATS credentials file, if the server asks for one")
	str(&c.kafkaBrokers, "kafka-brokers", "STATEFUN_KAFKA_BROKERS", "", "Kafka seed brokers, host:port[,host:port...], for publishers and subscriptions on Kafka")
	str(&c.brokers.KafkaUser, "kafka-user", "STATEFUN_KAFKA_USER", "", "Kafka SASL user; its password is read from $STATEFUN_KAFKA_PASSWORD only, never a flag")
	str(&c.brokers.KafkaSASLMechanism, "kafka-sasl", "STATEFUN_KAFKA_SASL", "plain", "Kafka SASL mechanism for --kafka-user: plain, scram-sha-256 or scram-sha-512")
	c.brokers.KafkaPassword = getenv("STATEFUN_KAFKA_PASSWORD")
	boolean(&c.brokers.KafkaTLS, "kafka-tls", "STATEFUN_KAFKA_TLS", false, "connect to the Kafka brokers over TLS")
	var jwtIssuers, jwtAudiences, jwtKeys, jwtHMACFile, secretFile, adminTokenFile string
	var tokens TokenConfig
	str(&c.security.ServiceName, "service-name", "STATEFUN_SERVICE_NAME", defaultServiceName(), "this service's name in its deployment: what its calls to other statefun services say they come from, and what their service access rules name")
	str(&secretFile, "service-secret-file", "STATEFUN_SERVICE_SECRET_FILE", "", "file holding the secret (at least 32 bytes) the services of a deployment share to sign their calls to each other; or set $STATEFUN_SERVICE_SECRET. A cluster's nodes need none: they share the one their database records")
	str(&jwtIssuers, "jwt-issuer", "STATEFUN_JWT_ISSUER", "", "accept bearer tokens (JWTs) from these issuers (comma-separated \"iss\" values); needs a key source")
	str(&jwtAudiences, "jwt-audience", "STATEFUN_JWT_AUDIENCE", "", "a token's \"aud\" must include one of these (comma-separated); empty: not checked")
	str(&tokens.JWKSURL, "jwt-jwks-url", "STATEFUN_JWT_JWKS_URL", "", "URL of the issuer's signing keys (JWKS), fetched at start and refreshed")
	str(&tokens.JWKSFile, "jwt-jwks-file", "STATEFUN_JWT_JWKS_FILE", "", "JWKS file of the issuer's signing keys")
	str(&jwtKeys, "jwt-public-key", "STATEFUN_JWT_PUBLIC_KEY", "", "PEM files of the issuer's public keys or certificates (comma-separated)")
	str(&jwtHMACFile, "jwt-hs256-secret-file", "STATEFUN_JWT_HS256_SECRET_FILE", "", "accept HS256 tokens signed with the secret in this file (at least 32 bytes); off unless set")
	dur(&tokens.ClockSkew, "jwt-clock-skew", "STATEFUN_JWT_CLOCK_SKEW", 30*time.Second, "leeway for a token's exp, nbf and iat")
	str(&c.adminListen, "admin-listen", "STATEFUN_ADMIN_LISTEN", "", "address for /metrics, /healthz, gRPC health and reflection; when set, the public ports serve only the entities' APIs")
	str(&adminTokenFile, "admin-token-file", "STATEFUN_ADMIN_TOKEN_FILE", "", "file holding the bearer token the admin endpoints require (health checks excepted); or set $STATEFUN_ADMIN_TOKEN")
	float(&c.security.CallerRate, "rate-limit", "STATEFUN_RATE_LIMIT", "calls per second each caller may make (by token subject, service, or IP address); 0: no limit")
	integer(&c.security.CallerBurst, "rate-burst", "STATEFUN_RATE_BURST", 0, "calls a caller may make at once above --rate-limit; default: a second's worth")
	float(&c.security.ConnRate, "conn-rate-limit", "STATEFUN_CONN_RATE_LIMIT", "calls per second each client connection may make; 0: no limit")
	integer(&c.security.ConnBurst, "conn-rate-burst", "STATEFUN_CONN_RATE_BURST", 0, "calls a connection may make at once above --conn-rate-limit; default: a second's worth")
	boolean(&c.console, "console", "STATEFUN_CONSOLE", true, "serve the web console (/console/) and the read-only admin API (statefun.v1.AdminService): on the HTTP and gRPC ports of a server that checks no access, else on --admin-listen only")
	boolean(&c.allowUnknownEvents, "allow-unknown-events", "STATEFUN_ALLOW_UNKNOWN_EVENTS", false, "serve although the store holds events of an entity type that this binary does not declare; entities whose history holds one fail to load")
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	names, some := commandFlags[cmdFlags.Name()]
	fs.VisitAll(func(f *flag.Flag) {
		if !some || slices.Contains(names, f.Name) {
			cmdFlags.Var(f.Value, f.Name, f.Usage)
		}
	})
	if err := cmdFlags.Parse(args); err != nil {
		return c, err
	}
	if cmdFlags.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", cmdFlags.Arg(0))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("--tls-cert and --tls-key go together; set both or neither")
	}
	if c.maxMessageBytes <= 0 {
		return c, errors.New("--max-message-bytes must be positive")
	}
	if c.shards < 1 || c.shards > 1<<20 {
		return c, fmt.Errorf("--shards %d: use 1 to 1048576 (default %d)", c.shards, DefaultShards)
	}
	if c.passivation <= 0 {
		return c, fmt.Errorf("--passivation-timeout %v: use a positive duration (default 10m)", c.passivation)
	}
	if c.leaseTTL < 500*time.Millisecond {
		return c, fmt.Errorf("--lease-ttl %v: use at least 500ms (default 5s)", c.leaseTTL)
	}
	if c.databaseURL == "" && c.advertiseAddress != "" {
		return c, errors.New("--advertise-address makes this server a node of a cluster, which needs a database the nodes share: set --database-url (Postgres); the embedded store is single-node")
	}
	for b := range strings.SplitSeq(c.kafkaBrokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers.KafkaBrokers = append(c.brokers.KafkaBrokers, b)
		}
	}
	if c.brokers.KafkaUser != "" && c.brokers.KafkaPassword == "" {
		return c, errors.New("--kafka-user is set and $STATEFUN_KAFKA_PASSWORD is empty; set the password in the environment (it is never a flag, so that it stays out of process listings)")
	}
	if err := securityFlags(&c, getenv, tokens, jwtIssuers, jwtAudiences, jwtKeys, jwtHMACFile, secretFile, adminTokenFile); err != nil {
		return c, err
	}
	if c.commitConcurrency < 1 || c.commitConcurrency > 64 {
		return c, fmt.Errorf("--commit-concurrency %d: use 1 (the default) to 64", c.commitConcurrency)
	}
	return c, nil
}

// securityFlags completes c.security and the admin token from the flags:
// lists split, secrets read from their files or the environment.
func securityFlags(c *serverConfig, getenv func(string) string, tokens TokenConfig, issuers, audiences, keys, hmacFile, secretFile, adminTokenFile string) error {
	secret, err := secretFrom("--service-secret-file", secretFile, getenv("STATEFUN_SERVICE_SECRET"))
	if err != nil {
		return err
	}
	c.security.ServiceSecret = secret
	if c.adminToken, err = stringSecretFrom("--admin-token-file", adminTokenFile, getenv("STATEFUN_ADMIN_TOKEN")); err != nil {
		return err
	}
	if c.adminToken != "" && c.adminListen == "" {
		return errors.New("an admin token is set but no --admin-listen: the token protects the admin listener's endpoints; set --admin-listen too")
	}
	tokens.Issuers, tokens.Audiences, tokens.PublicKeyFiles = splitList(issuers), splitList(audiences), splitList(keys)
	if hmacFile != "" {
		if tokens.HMACSecret, err = secretFrom("--jwt-hs256-secret-file", hmacFile, ""); err != nil {
			return err
		}
	}
	keySource := tokens.JWKSURL != "" || tokens.JWKSFile != "" || len(tokens.PublicKeyFiles) > 0 || len(tokens.HMACSecret) > 0
	switch {
	case len(tokens.Issuers) > 0 && !keySource:
		return errors.New("--jwt-issuer needs the issuer's keys: set --jwt-jwks-url, --jwt-jwks-file, --jwt-public-key or --jwt-hs256-secret-file")
	case len(tokens.Issuers) == 0 && (keySource || len(tokens.Audiences) > 0):
		return errors.New("token keys or audiences are set but no --jwt-issuer: name the issuers whose tokens to accept")
	case len(tokens.Issuers) > 0:
		c.security.Tokens = &tokens
	}
	if c.security.CallerRate < 0 || c.security.ConnRate < 0 || c.security.CallerBurst < 0 || c.security.ConnBurst < 0 {
		return errors.New("rate limits and bursts cannot be negative")
	}
	return nil
}

// secretFrom reads a secret from file, or takes env's value; not both.
func secretFrom(flagName, file, env string) ([]byte, error) {
	switch {
	case file != "" && env != "":
		return nil, fmt.Errorf("%s and its environment variable are both set; use one", flagName)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flagName, err)
		}
		// A trailing newline (echo secret > file) is not part of it.
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	if env == "" {
		return nil, nil
	}
	return []byte(env), nil
}

func stringSecretFrom(flagName, file, env string) (string, error) {
	b, err := secretFrom(flagName, file, env)
	return string(b), err
}

func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// defaultServiceName is the executable's name, made a valid service name:
// the nodes of one service run one binary, so they agree on it.
func defaultServiceName() string {
	name := strings.ToLower(strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe"))
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, name)
	if !serviceNamePattern.MatchString(name) {
		return "statefun"
	}
	return name
}

func newLogger(c serverConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", c.logFormat)
}
