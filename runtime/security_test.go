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
	ctx := serverContext(ContextWithCaller(context.Background(), TokenCaller(map[string]any{"sub": "mallory"})), "/m")
	if c := CallerOf(ctx); !c.Internal() {
		t.Errorf("in-process call's caller: %v, want internal", c)
	}
}
