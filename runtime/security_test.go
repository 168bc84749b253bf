package statefun

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/runtime/internal/jwtauth"
)

var deploymentSecret = bytes.Repeat([]byte("s"), 32)

func testSecurity(t *testing.T, c SecurityConfig) *security {
	t.Helper()
	s, err := newSecurity(context.Background(), c, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

func incoming(pairs ...string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 4242}})
	return metadata.NewIncomingContext(ctx, metadata.Pairs(pairs...))
}

// TestRateLimitPerCaller: a caller past its burst is refused with
// RESOURCE_EXHAUSTED; another caller is not.
func TestRateLimitPerCaller(t *testing.T) {
	s := testSecurity(t, SecurityConfig{CallerRate: 1, CallerBurst: 2})
	for i := range 2 {
		if _, err := s.authorize(incoming(), "/m", nil); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	if _, err := s.authorize(incoming(), "/m", nil); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the third call at once: %v, want ResourceExhausted", err)
	}
	other := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 8), Port: 1}})
	if _, err := s.authorize(other, "/m", nil); err != nil {
		t.Fatalf("another caller: %v", err)
	}
	if got := s.stats(); len(got) != 1 || got[0].RateLimited != 1 {
		t.Errorf("stats %+v, want one rate-limited call", got)
	}
}

// TestRateLimitPerConnection counts a connection's calls whoever makes them.
func TestRateLimitPerConnection(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ConnRate: 1, ConnBurst: 1})
	if _, err := s.authorize(incoming(), "/m", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.authorize(incoming(), "/m", nil); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the second call on the connection: %v, want ResourceExhausted", err)
	}
}

// TestInternalHeadersNeedAnInternalToken: an outsider cannot pose as a
// forwarding node, a timer or a subscription.
func TestInternalHeadersNeedAnInternalToken(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ServiceSecret: deploymentSecret})
	for _, h := range []string{forwardedHeader, timerHeader, SubjectHeader} {
		if _, err := s.authorize(incoming(h, "x"), "/m", nil); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), h) {
			t.Errorf("a call with %s and no internal token: %v, want PermissionDenied naming it", h, err)
		}
	}
	other, err := jwtauth.NewInternalSigner(bytes.Repeat([]byte("o"), 32))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.Mint(jwtauth.Assertion{Service: "statefun", Method: "/m"}, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.authorize(incoming(internalTokenHeader, forged, forwardedHeader, "x"), "/m", nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an internal token signed with another secret: %v, want Unauthenticated", err)
	}
}

// TestForwardedCallKeepsItsCaller: the token a node forwards with makes
// the receiving node act for the caller the first one established.
func TestForwardedCallKeepsItsCaller(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ServiceSecret: deploymentSecret})
	for name, c := range map[string]Caller{
		"token":     TokenCaller(map[string]any{"sub": "alice", "iss": "idp"}),
		"anonymous": {},
		"internal":  {kind: callerInternal},
		"service":   {kind: callerService, service: "lockout"},
	} {
		tok, err := s.mintForward(ContextWithCaller(context.Background(), c), "/m", "node-a")
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := s.authorize(incoming(internalTokenHeader, tok, forwardedHeader, "node-a"), "/m", nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := CallerOf(ctx)
		if got.kind != c.kind || got.service != c.service || got.Claims().Subject() != c.Claims().Subject() {
			t.Errorf("%s: the receiving node acts for %v (sub %q), want %v (sub %q)", name, got, got.Claims().Subject(), c, c.Claims().Subject())
		}
		if _, err := s.authorize(incoming(internalTokenHeader, tok), "/other", nil); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: the token used for another method: %v, want Unauthenticated", name, err)
		}
	}
}

// TestServiceCredentials: another service's calls carry its name.
func TestServiceCredentials(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ServiceName: "auth", ServiceSecret: deploymentSecret})
	creds, err := ServiceCredentials("lockout", deploymentSecret)
	if err != nil {
		t.Fatal(err)
	}
	ctx := credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{Method: "/auth.v1.Users/Lock"})
	md, err := creds.GetRequestMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.authorize(incoming(internalTokenHeader, md[internalTokenHeader]), "/auth.v1.Users/Lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := CallerOf(got).Service(); !ok || name != "lockout" {
		t.Errorf("caller %v, want service lockout", CallerOf(got))
	}
	if _, err := ServiceCredentials("Lock Out", deploymentSecret); err == nil {
		t.Error("ServiceCredentials accepted an invalid name")
	}
}

// TestInProcessCallsAreInternal: a call through the runtime's in-process
// connection is the service's own, whatever caller its context had.
func TestInProcessCallsAreInternal(t *testing.T) {
	caller := ContextWithCaller(context.Background(), TokenCaller(map[string]any{"sub": "mallory"}))
	ctx := serverContext(metadata.AppendToOutgoingContext(caller, SubjectHeader, "o-1"), "/m")
	if c := CallerOf(ctx); !c.Internal() {
		t.Errorf("in-process call's caller: %v, want internal", c)
	}
	// The caller's headers reach the handler as its call's, and go no
	// further: a handler calling another service with its context sends
	// none of them.
	if got := metadata.ValueFromIncomingContext(ctx, SubjectHeader); len(got) != 1 || got[0] != "o-1" {
		t.Errorf("the handler's incoming %s: %q, want o-1", SubjectHeader, got)
	}
	if md, _ := metadata.FromOutgoingContext(ctx); len(md) != 0 {
		t.Errorf("the handler's context would send its caller's headers on: %v", md)
	}
}

// hs256Token signs claims with secret, as an issuer configured with an
// HMAC secret would.
func hs256Token(t testing.TB, secret []byte, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withClock makes s and its verifier read the time from *now.
func withClock(t *testing.T, s *security, secret []byte, now *time.Time) {
	t.Helper()
	clock := func() time.Time { return *now }
	v, err := jwtauth.New(context.Background(), jwtauth.Config{Issuers: []string{"idp"}, HMACSecret: secret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	s.verifier, s.now = v, clock
}

// TestTokenCacheEndsAtExpiry: a token validated once is not admitted from
// the cache after its exp.
func TestTokenCacheEndsAtExpiry(t *testing.T) {
	secret := bytes.Repeat([]byte("h"), 32)
	s := testSecurity(t, SecurityConfig{})
	now := time.Unix(1_900_000_000, 0)
	withClock(t, s, secret, &now)
	tok := hs256Token(t, secret, map[string]any{"iss": "idp", "sub": "alice", "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix()})
	for range 2 { // validated, then from the cache
		ctx, err := s.authorize(incoming("authorization", "Bearer "+tok), "/m", nil)
		if err != nil || CallerOf(ctx).Claims().Subject() != "alice" {
			t.Fatalf("a valid token: %v, caller %v", err, CallerOf(ctx))
		}
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.authorize(incoming("authorization", "Bearer "+tok), "/m", nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the token after its exp: %v, want Unauthenticated", err)
	}
}

// BenchmarkAuthorizeToken is the server's cost of a bearer token per call:
// validated every time, and as a client sends it, the same token again.
func BenchmarkAuthorizeToken(b *testing.B) {
	secret := bytes.Repeat([]byte("h"), 32)
	s, err := newSecurity(context.Background(), SecurityConfig{Tokens: &TokenConfig{Issuers: []string{"idp"}, HMACSecret: secret}}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	tok := hs256Token(b, secret, map[string]any{"iss": "idp", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	ctx := incoming("authorization", "Bearer "+tok)
	b.Run("HS256/cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.authorize(ctx, "/m", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("HS256/uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.tokens.mu.Lock()
			clear(s.tokens.entries)
			s.tokens.mu.Unlock()
			if _, err := s.authorize(ctx, "/m", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRuntimeServicesAreInternalOnly: the runtime's own services (the
// workflow runner) refuse every caller but the service itself, as a node
// forwards to another.
func TestRuntimeServicesAreInternalOnly(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ServiceSecret: deploymentSecret})
	const runStep = "/statefun.internal.v1.WorkflowRunnerService/RunStep"
	if _, err := s.authorize(incoming(), runStep, nil); status.Code(err) != codes.PermissionDenied {
		t.Errorf("an anonymous RunStep: %v, want PermissionDenied", err)
	}
	creds, err := ServiceCredentials("lockout", deploymentSecret)
	if err != nil {
		t.Fatal(err)
	}
	md, err := creds.GetRequestMetadata(credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{Method: runStep}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.authorize(incoming(internalTokenHeader, md[internalTokenHeader]), runStep, nil); status.Code(err) != codes.PermissionDenied {
		t.Errorf("another service's RunStep: %v, want PermissionDenied", err)
	}
	tok, err := s.mintForward(ContextWithCaller(context.Background(), Caller{kind: callerInternal}), runStep, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.authorize(incoming(internalTokenHeader, tok, forwardedHeader, "node-a"), runStep, nil); err != nil {
		t.Errorf("the service's own RunStep, forwarded: %v", err)
	}
}

// TestForwardedCallsSkipRateLimits: a call another node forwards was
// charged where its caller reached the cluster; the nodes' connection is
// not limited as a client's.
func TestForwardedCallsSkipRateLimits(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ServiceSecret: deploymentSecret, CallerRate: 1, CallerBurst: 1, ConnRate: 1, ConnBurst: 1})
	for i := range 5 {
		tok, err := s.mintForward(context.Background(), "/m", "node-a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.authorize(incoming(internalTokenHeader, tok, forwardedHeader, "node-a"), "/m", nil); err != nil {
			t.Fatalf("forwarded call %d: %v", i, err)
		}
	}
	if _, err := s.authorize(incoming(), "/m", nil); err != nil {
		t.Fatalf("a client's first call: %v", err)
	}
	if _, err := s.authorize(incoming(), "/m", nil); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a client's second call at once: %v, want ResourceExhausted", err)
	}
}

// TestServiceCallNamingThisServiceIsRefused: another service cannot pass
// for this one (whose own calls skip the rules) by giving its name.
func TestServiceCallNamingThisServiceIsRefused(t *testing.T) {
	s := testSecurity(t, SecurityConfig{ServiceName: "auth", ServiceSecret: deploymentSecret})
	creds, err := ServiceCredentials("auth", deploymentSecret)
	if err != nil {
		t.Fatal(err)
	}
	md, err := creds.GetRequestMetadata(credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{Method: "/m"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.authorize(incoming(internalTokenHeader, md[internalTokenHeader]), "/m", nil); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a service call naming this service: %v, want PermissionDenied", err)
	}
}

// TestAnonymousCallersOfOneIPv6NetworkShareALimit: a client holding a /64
// cannot take a new limit per address.
func TestAnonymousCallersOfOneIPv6NetworkShareALimit(t *testing.T) {
	s := testSecurity(t, SecurityConfig{CallerRate: 1, CallerBurst: 1})
	from := func(ip string) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}})
	}
	if _, err := s.authorize(from("2001:db8:1:2::1"), "/m", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.authorize(from("2001:db8:1:2::99"), "/m", nil); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("another address of the same /64 at once: %v, want ResourceExhausted", err)
	}
	if _, err := s.authorize(from("2001:db8:1:3::1"), "/m", nil); err != nil {
		t.Errorf("another /64: %v", err)
	}
}
