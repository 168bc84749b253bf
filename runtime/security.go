package statefun

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/statefun-go/statefun/internal/access"
	"github.com/statefun-go/statefun/runtime/internal/jwtauth"
	"github.com/statefun-go/statefun/runtime/store"
)

// SecurityConfig says how a runtime establishes who makes each call, which
// the access rules of the protos (statefun.v1.access) are checked against.
// See SECURITY.md.
type SecurityConfig struct {
	// ServiceName is this service's name in its deployment: the identity
	// its calls to other statefun services carry (ServiceCredentials) and
	// the name their service rules allow. Default "statefun";
	// statefun.Main sets it from --service-name.
	ServiceName string
	// ServiceSecret is the secret the services and nodes of one
	// deployment share (at least 32 bytes): they sign the calls they make
	// to each other with it. Empty: the nodes of a cluster use the secret
	// their store records, and no other service can call this one as a
	// service.
	ServiceSecret []byte
	// Tokens configures the validation of bearer tokens (JWTs); nil: the
	// server validates none, and access rules that need one fail the
	// start.
	Tokens *TokenConfig
	// CallerRate and CallerBurst limit the calls each caller may make (a
	// token's issuer and subject, a service, or an anonymous caller's IP
	// address): calls per second, and how many may come at once. Zero:
	// no limit.
	CallerRate  float64
	CallerBurst int
	// ConnRate and ConnBurst limit the calls of each client connection.
	// Zero: no limit.
	ConnRate  float64
	ConnBurst int
}

// TokenConfig configures the validation of bearer tokens. A token is
// accepted when it is signed by a key of one of the sources, by an allowed
// algorithm (RS256, PS256, ES256, EdDSA; HS256 only with HMACSecret), from
// one of Issuers, for one of Audiences (when set), and within its
// lifetime give or take ClockSkew.
type TokenConfig struct {
	Issuers   []string
	Audiences []string
	// Key sources; at least one.
	JWKSURL        string   // fetched at start and refreshed; https, or http on loopback
	JWKSFile       string   // a JWKS document
	PublicKeyFiles []string // PEM public keys or certificates
	HMACSecret     []byte   // enables HS256 (at least 32 bytes)
	// ClockSkew is the leeway for exp, nbf and iat; default 30s.
	ClockSkew time.Duration
}

// WithSecurity sets how the runtime establishes its callers; see
// SecurityConfig.
func WithSecurity(c SecurityConfig) Option {
	return optionFunc(func(cfg *config) { cfg.security = c })
}

// serviceNamePattern is what a service's name may look like: an entity
// type's shape, safe in logs and tokens.
var serviceNamePattern = entityTypePattern

// Headers only statefun's own calls may carry: a call from outside that
// sends one is refused, so that no one can pose as a forwarding node, a
// timer or a subscription.
const internalTokenHeader = "statefun-internal-token"

var internalHeaders = []string{forwardedHeader, timerHeader, SubjectHeader}

// internalTokenTTL bounds how long a minted internal token is good for: a
// forwarded call is sent at once, so a token seen on the wire is of no use
// for long.
const internalTokenTTL = time.Minute

// callerKind says what kind of caller made a call.
type callerKind uint8

const (
	callerAnonymous callerKind = iota
	callerToken
	callerService
	callerInternal
)

// Caller is who made the call a handler serves, as the server established
// it: nobody in particular (anonymous), a user with a validated bearer
// token, another statefun service of the deployment, or this service
// itself (a sent call, a timer, a workflow step, a consumer or a
// subscription). Read it with CallerOf.
type Caller struct {
	kind    callerKind
	service string
	claims  *jwtauth.Claims
}

type callerKey struct{}

// CallerOf returns the caller of the call ctx belongs to. A handler's
// context has one: CallerOf(ctx.Context()). A context that passed through
// no statefun server (a test calling a handler) has an anonymous caller
// unless ContextWithCaller gave it one.
func CallerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// ContextWithCaller returns ctx with caller, for tests of handlers that
// read their caller: the server sets it itself.
func ContextWithCaller(ctx context.Context, caller Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// TokenCaller returns a caller with a validated token of these claims
// ("sub", "iss" and the rest, as JSON would decode them), for tests.
func TokenCaller(claims map[string]any) Caller {
	return Caller{kind: callerToken, claims: jwtauth.ClaimsFromMap(claims)}
}

// Anonymous reports whether the caller sent no token and is no service.
func (c Caller) Anonymous() bool { return c.kind == callerAnonymous }

// Internal reports whether the call is this service's own: a sent call,
// a timer, a workflow step, a consumer's or a subscription's call, or an
// in-process call through Runtime.ClientConn. Access rules do not apply
// to it: the code that made it is this service's.
func (c Caller) Internal() bool { return c.kind == callerInternal }

// Service returns the name of the statefun service that made the call,
// when another service of the deployment made it.
func (c Caller) Service() (string, bool) { return c.service, c.kind == callerService }

// Claims returns the validated claims of the caller's token, or nil when
// the caller sent none.
func (c Caller) Claims() *Claims {
	if c.kind != callerToken || c.claims == nil {
		return nil
	}
	return &Claims{c: c.claims}
}

// String describes the caller for logs, without its claims.
func (c Caller) String() string {
	switch c.kind {
	case callerToken:
		return "token"
	case callerService:
		return "service " + c.service
	case callerInternal:
		return "internal"
	}
	return "anonymous"
}

// Claims are the validated claims of a caller's bearer token. A name is
// a claim's name or a dotted path into nested objects
// ("realm_access.roles"). The methods of a nil *Claims return zero
// values.
type Claims struct{ c *jwtauth.Claims }

// Subject returns the "sub" claim.
func (c *Claims) Subject() string {
	if c == nil {
		return ""
	}
	return c.c.Subject
}

// Issuer returns the "iss" claim.
func (c *Claims) Issuer() string {
	if c == nil {
		return ""
	}
	return c.c.Issuer
}

// Audience returns the "aud" claim, as a list of the caller's own (the
// claims are shared by the calls that carry the same token).
func (c *Claims) Audience() []string {
	if c == nil {
		return nil
	}
	return slices.Clone(c.c.Audience)
}

// Expiry returns the "exp" claim.
func (c *Claims) Expiry() time.Time {
	if c == nil {
		return time.Time{}
	}
	return c.c.Expiry
}

// String returns a string claim.
func (c *Claims) String(name string) (string, bool) {
	if c == nil {
		return "", false
	}
	return c.c.String(name)
}

// Strings returns a claim that is a string or a list of strings (roles,
// groups, scopes); other elements are skipped.
func (c *Claims) Strings(name string) []string {
	if c == nil {
		return nil
	}
	return c.c.Strings(name)
}

// Bool returns a boolean claim.
func (c *Claims) Bool(name string) (bool, bool) {
	if c == nil {
		return false, false
	}
	return c.c.Bool(name)
}

// Int returns an integer claim.
func (c *Claims) Int(name string) (int64, bool) {
	if c == nil {
		return 0, false
	}
	return c.c.Int(name)
}

// Decode decodes every claim into v, a pointer to a struct with json
// tags, for a typed view of a token's custom claims.
func (c *Claims) Decode(v any) error {
	if c == nil {
		return errors.New("no claims: the caller sent no token")
	}
	return c.c.Decode(v)
}

// security is the runtime's side of access control.
type security struct {
	name      string
	verifier  *jwtauth.Verifier // nil: no tokens validated
	internal  atomic.Pointer[jwtauth.InternalSigner]
	ownSecret bool                      // the secret was configured, not read from the store
	policies  map[string]*access.Policy // by full method; none: open to anyone
	log       *slog.Logger
	denyLog   logLimiter
	keysLog   logLimiter
	denied    sync.Map // method -> *deniedCounts
	// needToken and needService: methods whose rules allow callers with
	// a token, or other services (readyToServe).
	needToken, needService []string
	tokens                 tokenCache
	callers                *rateLimits
	conns                  *rateLimits
	now                    func() time.Time
}

// deniedCounts counts a method's denials by code.
type deniedCounts struct{ unauthenticated, permissionDenied, rateLimited atomic.Uint64 }

// newSecurity compiles the access rules of services and prepares token
// validation. It fails when the rules need what the configuration lacks.
func newSecurity(ctx context.Context, c SecurityConfig, services []boundService, log *slog.Logger) (*security, error) {
	s := &security{name: c.ServiceName, log: log, policies: map[string]*access.Policy{}, now: time.Now}
	if s.name == "" {
		s.name = "statefun"
	}
	if !serviceNamePattern.MatchString(s.name) {
		return nil, fmt.Errorf("service name %q is not valid: use lowercase letters, digits, '.', '_' and '-', starting with a letter", s.name)
	}
	var errs []error
	var needToken, needService []string
	for _, svc := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc.desc.ServiceName))
		if err != nil {
			continue // a service without a registered descriptor (the workflow runner) declares no access
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		policies, err := access.ForService(sd)
		if err != nil {
			errs = append(errs, fmt.Errorf("access rules of %s: %w; regenerate with protoc-gen-statefun, which reports where", sd.FullName(), err))
			continue
		}
		for method, p := range policies {
			if p == nil {
				continue
			}
			s.policies[method] = p
			if p.NeedsToken() {
				needToken = append(needToken, method)
			}
			if p.NeedsService() {
				needService = append(needService, method)
			}
		}
	}
	s.needToken, s.needService = needToken, needService
	if len(c.ServiceSecret) > 0 {
		signer, err := jwtauth.NewInternalSigner(c.ServiceSecret)
		if err != nil {
			errs = append(errs, fmt.Errorf("service secret: %w", err))
		} else {
			s.internal.Store(signer)
			s.ownSecret = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Tokens != nil {
		v, err := jwtauth.New(ctx, jwtauth.Config{
			Issuers: c.Tokens.Issuers, Audiences: c.Tokens.Audiences,
			JWKSURL: c.Tokens.JWKSURL, JWKSFile: c.Tokens.JWKSFile, PublicKeyFiles: c.Tokens.PublicKeyFiles,
			HMACSecret: c.Tokens.HMACSecret, ClockSkew: c.Tokens.ClockSkew, Log: log,
		})
		if err != nil {
			return nil, fmt.Errorf("token validation: %w", err)
		}
		s.verifier = v
	}
	if c.CallerRate > 0 {
		s.callers = newRateLimits(c.CallerRate, c.CallerBurst)
	}
	if c.ConnRate > 0 {
		s.conns = newRateLimits(c.ConnRate, c.ConnBurst)
	}
	return s, nil
}

// readyToServe reports what a server taking calls from outside lacks to
// let in the callers its access rules allow. A runtime serving only
// in-process calls (tests) needs neither: those calls are its own.
func (s *security) readyToServe() error {
	var errs []error
	if len(s.needToken) > 0 && s.verifier == nil {
		errs = append(errs, fmt.Errorf("the access rules of %s allow callers with a token, and the server validates none: configure --jwt-issuer and a key source (--jwt-jwks-url, --jwt-jwks-file or --jwt-public-key)", firstAndMore(s.needToken)))
	}
	if len(s.needService) > 0 && s.internal.Load() == nil {
		// Not an error: the server serves its other methods; these admit
		// no service until it has the secret.
		s.log.Warn("access rules allow other statefun services, whose calls are signed with the deployment's secret, and this server has none: those rules admit no service until --service-secret-file (or $STATEFUN_SERVICE_SECRET) is set", "methods", firstAndMore(s.needService))
	}
	return errors.Join(errs...)
}

// guarded reports whether the server checks who calls: access rules or
// token validation are configured.
func (s *security) guarded() bool { return len(s.policies) > 0 || s.verifier != nil }

// useClusterSecret makes the secret the cluster's store records the one
// internal calls are signed with, unless one was configured.
func (s *security) useClusterSecret(ctx context.Context, cs store.Cluster) error {
	if s.ownSecret {
		return nil
	}
	candidate := make([]byte, 32)
	if _, err := rand.Read(candidate); err != nil {
		return err
	}
	secret, err := cs.Secret(ctx, candidate)
	if err != nil {
		return fmt.Errorf("read the cluster's secret: %w", err)
	}
	signer, err := jwtauth.NewInternalSigner(secret)
	if err != nil {
		return fmt.Errorf("the cluster's secret: %w", err)
	}
	s.internal.Store(signer)
	return nil
}

func (s *security) close() {
	if s != nil && s.verifier != nil {
		_ = s.verifier.Close()
	}
}

// unaryInterceptor establishes the caller of every call from outside and
// checks the method's access rules before the handler runs.
func (s *security) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	msg, _ := req.(proto.Message)
	ctx, err := s.authorize(ctx, info.FullMethod, msg)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// streamInterceptor does the same for a streaming call (a view's
// streaming query), when its request arrives and before the handler sees
// it.
func (s *security) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &authorizedStream{ServerStream: ss, s: s, method: info.FullMethod, ctx: ss.Context()})
}

type authorizedStream struct {
	grpc.ServerStream
	s       *security
	method  string
	ctx     context.Context
	checked bool
}

func (a *authorizedStream) Context() context.Context { return a.ctx }

func (a *authorizedStream) RecvMsg(m any) error {
	if err := a.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if a.checked {
		return nil
	}
	msg, _ := m.(proto.Message)
	ctx, err := a.s.authorize(a.ctx, a.method, msg)
	if err != nil {
		return err
	}
	a.ctx, a.checked = ctx, true
	return nil
}

// authorize establishes the caller, applies the rate limits and checks the
// method's access; it returns ctx with the caller, or the call's error.
func (s *security) authorize(ctx context.Context, method string, req proto.Message) (context.Context, error) {
	// The connection's limit is charged before a token is checked, so
	// that a flood of bad tokens costs its connection its budget rather
	// than the server its CPU; except for a call carrying an internal
	// token, which may be a forwarded one (checked below).
	md, _ := metadata.FromIncomingContext(ctx)
	hasInternal := len(md.Get(internalTokenHeader)) > 0
	if !hasInternal && !s.allowConn(ctx) {
		return ctx, s.deny(ctx, method, codes.ResourceExhausted, fmt.Sprintf("this connection exceeded its limit of %g calls per second; slow down or open another connection", s.conns.rate))
	}
	caller, forwarded, code, msg := s.authenticate(ctx, md, method)
	// A forwarded call was charged at the node its caller reached; the
	// connection it came on is a node's, shared by all the calls it
	// forwards.
	if hasInternal && !forwarded && !s.allowConn(ctx) {
		return ctx, s.deny(ctx, method, codes.ResourceExhausted, fmt.Sprintf("this connection exceeded its limit of %g calls per second; slow down or open another connection", s.conns.rate))
	}
	if code != codes.OK {
		return ctx, s.deny(ctx, method, code, msg)
	}
	if s.callers != nil && caller.kind != callerInternal && !forwarded {
		if !s.callers.allow(s.rateKey(ctx, caller), s.now()) {
			return ctx, s.deny(ctx, method, codes.ResourceExhausted, fmt.Sprintf("this caller exceeded its limit of %g calls per second; slow down", s.callers.rate))
		}
	}
	if strings.HasPrefix(method, internalServicePrefix) && caller.kind != callerInternal {
		// The runtime's own services (the workflow runner) take calls from
		// the service itself only, forwarded between its nodes.
		return ctx, s.deny(ctx, method, codes.PermissionDenied, "this method is statefun's own: only the service's nodes call it")
	}
	if p := s.policies[method]; p != nil && caller.kind != callerInternal {
		var m protoreflect.Message
		if req != nil {
			m = req.ProtoReflect()
		}
		if d := p.Check(caller.forCheck(), m); d != nil {
			code := codes.PermissionDenied
			if d.Unauthenticated {
				code = codes.Unauthenticated
			}
			return ctx, s.deny(ctx, method, code, d.Msg)
		}
	}
	if caller.kind == callerAnonymous {
		// The zero Caller is anonymous: a server that checks nobody
		// allocates no context per call for it.
		return ctx, nil
	}
	return context.WithValue(ctx, callerKey{}, caller), nil
}

// allowConn charges the call to its connection's limit.
func (s *security) allowConn(ctx context.Context) bool {
	if s.conns == nil {
		return true
	}
	p, ok := peer.FromContext(ctx)
	return !ok || p.Addr == nil || s.conns.allow(p.Addr.String(), s.now())
}

// internalServicePrefix starts the methods of the runtime's own services.
const internalServicePrefix = "/statefun.internal."

// authenticate establishes who makes a call from its metadata md: an internal
// token (another node, or another service of the deployment), a bearer
// token, or nobody. forwarded says another node of this service passed the
// call on. A refusal comes with its code and message.
func (s *security) authenticate(ctx context.Context, md metadata.MD, method string) (caller Caller, forwarded bool, code codes.Code, msg string) {
	if tok := md.Get(internalTokenHeader); len(tok) > 0 {
		signer := s.internal.Load()
		switch {
		case signer == nil:
			return Caller{}, false, codes.Unauthenticated, "internal call refused: this server has no service secret to check it with; give every service and node of the deployment the same --service-secret-file"
		case len(tok) != 1:
			return Caller{}, false, codes.Unauthenticated, "internal call refused: it carries more than one internal token"
		}
		a, err := signer.Verify(tok[0], method, s.now())
		if err != nil {
			return Caller{}, false, codes.Unauthenticated, fmt.Sprintf("internal call refused: %v; the services and nodes of a deployment need the same service secret", err)
		}
		// Only a node forwarding a call (Node set) passes on its caller or
		// the service's own identity; a service calling directly is that
		// service, whatever name it gives.
		fwd := a.Node != ""
		switch {
		case fwd && a.Caller != nil:
			return Caller{kind: callerToken, claims: a.Caller}, true, codes.OK, ""
		case fwd && a.Anonymous:
			return Caller{kind: callerAnonymous}, true, codes.OK, ""
		case fwd && a.Service == s.name:
			return Caller{kind: callerInternal}, true, codes.OK, ""
		case a.Service == s.name:
			return Caller{}, false, codes.PermissionDenied, "internal call refused: a service call names this service itself; give every service of the deployment its own --service-name"
		}
		return Caller{kind: callerService, service: a.Service}, fwd, codes.OK, ""
	}
	for _, h := range internalHeaders {
		if len(md.Get(h)) > 0 {
			return Caller{}, false, codes.PermissionDenied, fmt.Sprintf("the %s header is set only by statefun's own nodes, timers and subscriptions; a call from outside may not send it", h)
		}
	}
	auth := md.Get("authorization")
	switch {
	case len(auth) == 0:
		return Caller{kind: callerAnonymous}, false, codes.OK, ""
	case s.verifier == nil:
		// The server validates no tokens: the header is not its to
		// judge (a gateway in front of it may use it).
		return Caller{kind: callerAnonymous}, false, codes.OK, ""
	case len(auth) > 1:
		return Caller{}, false, codes.Unauthenticated, "send one authorization header, not several"
	}
	raw, err := jwtauth.BearerToken(auth[0])
	if err != nil {
		return Caller{}, false, codes.Unauthenticated, err.Error()
	}
	if raw == "" {
		return Caller{kind: callerAnonymous}, false, codes.OK, ""
	}
	if claims, ok := s.tokens.get(raw, s.now()); ok {
		return Caller{kind: callerToken, claims: claims}, false, codes.OK, ""
	}
	claims, err := s.verifier.Verify(ctx, raw)
	switch {
	case errors.Is(err, jwtauth.ErrKeysUnavailable):
		// The details (the issuer's URL, the fetch's error) are the
		// operator's: logged, not told to the caller.
		if ok, _ := s.keysLog.allow(s.now()); ok {
			s.log.Warn("token refused: the issuer's signing keys are not available", "error", err)
		}
		return Caller{}, false, codes.Unavailable, "the server cannot check tokens right now: its issuer's signing keys are not available; retry later"
	case err != nil:
		return Caller{}, false, codes.Unauthenticated, "bearer token refused: " + err.Error()
	}
	s.tokens.put(raw, claims, s.now())
	return Caller{kind: callerToken, claims: claims}, false, codes.OK, ""
}

// forCheck is the caller as the access rules see it.
func (c Caller) forCheck() access.Caller {
	switch c.kind {
	case callerToken:
		claims := c.claims
		return access.Caller{Kind: access.Token, Issuer: claims.Issuer, Audience: claims.Audience, Claim: claims.Get}
	case callerService:
		return access.Caller{Kind: access.Service, Service: c.service}
	}
	return access.Caller{Kind: access.Anonymous}
}

// rateKey names the caller a rate limit counts calls of.
func (s *security) rateKey(ctx context.Context, c Caller) string {
	switch c.kind {
	case callerToken:
		return "t:" + c.claims.Issuer + "\x00" + c.claims.Subject
	case callerService:
		return "s:" + c.service
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "a:" + clientNetwork(p.Addr.String())
	}
	return "a:"
}

// deny counts a refused call, logs it (at a bounded rate: a flood of bad
// calls must not flood the log) and returns its error. The message names
// the rule, never a token's contents.
func (s *security) deny(ctx context.Context, method string, code codes.Code, msg string) error {
	v, ok := s.denied.Load(method)
	if !ok {
		v, _ = s.denied.LoadOrStore(method, new(deniedCounts))
	}
	counts := v.(*deniedCounts)
	switch code {
	case codes.Unauthenticated, codes.Unavailable:
		counts.unauthenticated.Add(1)
	case codes.ResourceExhausted:
		counts.rateLimited.Add(1)
	default:
		counts.permissionDenied.Add(1)
	}
	if ok, suppressed := s.denyLog.allow(s.now()); ok {
		args := []any{"method", method, "code", code.String(), "reason", msg}
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			args = append(args, "peer", p.Addr.String())
		}
		if suppressed > 0 {
			args = append(args, "suppressed", suppressed)
		}
		s.log.Warn("call refused", args...)
	}
	return status.Error(code, msg)
}

// mintForward returns the internal token a node sends with a call it
// forwards: the caller of ctx (who the owner acts for) and this node.
func (s *security) mintForward(ctx context.Context, method, node string) (string, error) {
	signer := s.internal.Load()
	if signer == nil {
		return "", errors.New("this node has no secret to sign forwarded calls with")
	}
	a := jwtauth.Assertion{Service: s.name, Node: node, Method: method}
	switch c := CallerOf(ctx); c.kind {
	case callerToken:
		a.Caller = c.claims
	case callerService:
		a.Service = c.service
	case callerAnonymous:
		a.Anonymous = true
	}
	return signer.Mint(a, s.now(), internalTokenTTL)
}

// AccessStats counts the calls refused by access rules and rate limits.
type AccessStats struct {
	Method                                         string
	Unauthenticated, PermissionDenied, RateLimited uint64
}

func (s *security) stats() []AccessStats {
	if s == nil {
		return nil
	}
	var out []AccessStats
	s.denied.Range(func(k, v any) bool {
		c := v.(*deniedCounts)
		out = append(out, AccessStats{Method: k.(string), Unauthenticated: c.unauthenticated.Load(), PermissionDenied: c.permissionDenied.Load(), RateLimited: c.rateLimited.Load()})
		return true
	})
	return out
}

// firstAndMore names the first of several methods and how many more.
func firstAndMore(methods []string) string {
	if len(methods) == 1 {
		return methods[0]
	}
	return fmt.Sprintf("%s and %d more methods", methods[0], len(methods)-1)
}

// ServiceCredentials identify this service to the other statefun services
// of its deployment: dial one with
// grpc.WithPerRPCCredentials(creds), and its service access rules
// (statefun.v1.access, service: "<name>") can allow the calls. Each call
// carries a token naming service, signed with the secret the deployment's
// services share, good for that method and for a minute. Send them over
// TLS outside a private network: a token seen on the wire can be replayed
// for that minute.
func ServiceCredentials(service string, secret []byte) (credentials.PerRPCCredentials, error) {
	if !serviceNamePattern.MatchString(service) {
		return nil, fmt.Errorf("service name %q is not valid: use lowercase letters, digits, '.', '_' and '-', starting with a letter", service)
	}
	signer, err := jwtauth.NewInternalSigner(secret)
	if err != nil {
		return nil, fmt.Errorf("service secret: %w", err)
	}
	return serviceCredentials{name: service, signer: signer}, nil
}

type serviceCredentials struct {
	name   string
	signer *jwtauth.InternalSigner
}

func (c serviceCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok || ri.Method == "" {
		return nil, errors.New("statefun service credentials: the call's method is unknown; use them as per-call credentials of a gRPC connection")
	}
	tok, err := c.signer.Mint(jwtauth.Assertion{Service: c.name, Method: ri.Method}, time.Now(), internalTokenTTL)
	if err != nil {
		return nil, err
	}
	return map[string]string{internalTokenHeader: tok}, nil
}

// RequireTransportSecurity is false: the nodes of a deployment often talk
// over a private network without TLS.
func (serviceCredentials) RequireTransportSecurity() bool { return false }
