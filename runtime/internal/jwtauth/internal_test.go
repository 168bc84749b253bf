package jwtauth

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const testMethod = "/shop.Cart/AddItem"

func internalSigner(t testing.TB) *InternalSigner {
	t.Helper()
	s, err := NewInternalSigner(testKeys().hmac)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInternalRoundTrip(t *testing.T) {
	t.Parallel()
	k := testKeys()
	s := internalSigner(t)
	v := staticVerifier(t)
	user := with(claimsAt(t0),
		"realm_access", map[string]any{"roles": []string{"admin"}, "depth": map[string]any{"n": 1.25}},
		"big", json.Number("12345678901234567890"), "flag", true, "none", nil)
	caller, err := v.Verify(context.Background(), sign(t, jose.RS256, k.rsa, user, signOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []Assertion{
		{Service: "cart", Node: "10.0.0.7:8080", Method: testMethod, Caller: caller},
		{Service: "cart", Method: testMethod, Anonymous: true},
		{Service: "cart", Method: testMethod},
	} {
		tok, err := s.Mint(a, t0, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Verify(tok, testMethod, t0.Add(30*time.Second))
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		if diff := cmp.Diff(a, got, cmpopts.IgnoreUnexported(Claims{})); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}

	// Another node's signer, made from the same secret, verifies it.
	tok, err := s.Mint(Assertion{Service: "cart", Method: testMethod, Caller: caller}, t0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewInternalSigner(k.hmac)
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.Verify(tok, testMethod, t0)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := got.Caller.Int("realm_access.depth.n"); n != 0 {
		t.Error("Int read 1.25 as an integer")
	}
	if got.Caller.Raw["big"] != json.Number("12345678901234567890") {
		t.Errorf("a large number changed on the way: %v", got.Caller.Raw["big"])
	}
}

func TestInternalHandBuiltCaller(t *testing.T) {
	t.Parallel()
	s := internalSigner(t)
	caller := &Claims{Issuer: testIssuer, Subject: "u1", Audience: []string{"a"}, Expiry: t0.Add(time.Hour)}
	tok, err := s.Mint(Assertion{Service: "svc", Method: testMethod, Caller: caller}, t0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(tok, testMethod, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Caller.Subject != "u1" || got.Caller.Issuer != testIssuer || !got.Caller.Expiry.Equal(caller.Expiry) {
		t.Errorf("caller = %+v", got.Caller)
	}
}

// TestInternalRefuses holds one case per check of InternalSigner.Verify.
func TestInternalRefuses(t *testing.T) {
	t.Parallel()
	k := testKeys()
	s := internalSigner(t)
	other, err := NewInternalSigner([]byte(strings.Repeat("o", 32)))
	if err != nil {
		t.Fatal(err)
	}
	a := Assertion{Service: "cart", Method: testMethod}
	mint := func(s *InternalSigner, at time.Time) string {
		tok, err := s.Mint(a, at, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// Signed with the deployment secret, so only typ and iss tell them apart.
	internalHeader := signOpts{headers: map[jose.HeaderKey]any{jose.HeaderType: internalType}}
	internalShape := map[string]any{"iss": internalIssuer, "iat": t0.Unix(), "exp": t0.Add(time.Minute).Unix(), "svc": "cart", "mth": testMethod}
	for _, tc := range []struct {
		name, token, method, reason string
		now                         time.Time
	}{
		{"wrong secret", mint(other, t0), testMethod, ReasonBadSignature, t0},
		{"wrong method", mint(s, t0), "/shop.Cart/Checkout", ReasonWrongMethod, t0},
		{"expired", mint(s, t0), testMethod, ReasonExpired, t0.Add(time.Minute + 30*time.Second)},
		{"issued in the future", mint(s, t0.Add(31*time.Second)), testMethod, ReasonIssuedInFuture, t0},
		{"user token with the same secret", sign(t, jose.HS256, k.hmac, claimsAt(t0), signOpts{}), testMethod, ReasonWrongType, t0},
		{"internal typ but a user issuer", sign(t, jose.HS256, k.hmac, with(internalShape, "iss", testIssuer), internalHeader), testMethod, ReasonWrongIssuer, t0},
		{"no exp", sign(t, jose.HS256, k.hmac, with(internalShape, "exp", nil), internalHeader), testMethod, ReasonMissingExp, t0},
		{"no service", sign(t, jose.HS256, k.hmac, with(internalShape, "svc", nil), internalHeader), testMethod, ReasonMalformed, t0},
		{"RS256", sign(t, jose.RS256, k.rsa, internalShape, internalHeader), testMethod, ReasonAlgorithm, t0},
		{"tampered", tamper(t, mint(s, t0), 2), testMethod, ReasonBadSignature, t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Verify(tc.token, tc.method, tc.now)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if r := reasonOf(err); r != tc.reason {
				t.Errorf("reason = %q, want %q (%v)", r, tc.reason, err)
			}
		})
	}
	t.Run("within skew", func(t *testing.T) {
		if _, err := s.Verify(mint(s, t0), testMethod, t0.Add(time.Minute+29*time.Second)); err != nil {
			t.Errorf("expired less than the skew ago: %v", err)
		}
		if _, err := s.Verify(mint(s, t0.Add(29*time.Second)), testMethod, t0); err != nil {
			t.Errorf("issued less than the skew ahead: %v", err)
		}
	})
}

// TestInternalTokenRefusedByVerify: a Verifier whose HMAC secret is the
// deployment secret must still not take an internal token as a user's.
func TestInternalTokenRefusedByVerify(t *testing.T) {
	t.Parallel()
	s := internalSigner(t)
	v := staticVerifier(t, func(c *Config) { c.Audiences = nil })
	tok, err := s.Mint(Assertion{Service: "cart", Method: testMethod}, t0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); reasonOf(err) != ReasonWrongType {
		t.Errorf("err = %v, want %q", err, ReasonWrongType)
	}
}

func TestInternalMintRefuses(t *testing.T) {
	t.Parallel()
	s := internalSigner(t)
	for _, tc := range []struct {
		name string
		a    Assertion
		ttl  time.Duration
	}{
		{"no service", Assertion{Method: testMethod}, time.Minute},
		{"no method", Assertion{Service: "s"}, time.Minute},
		{"method not full", Assertion{Service: "s", Method: "AddItem"}, time.Minute},
		{"caller and anonymous", Assertion{Service: "s", Method: testMethod, Caller: &Claims{}, Anonymous: true}, time.Minute},
		{"zero ttl", Assertion{Service: "s", Method: testMethod}, 0},
		{"long ttl", Assertion{Service: "s", Method: testMethod}, time.Hour},
	} {
		if _, err := s.Mint(tc.a, t0, tc.ttl); err == nil {
			t.Errorf("%s: minted", tc.name)
		}
	}
	if _, err := NewInternalSigner(make([]byte, 31)); err == nil {
		t.Error("a 31-byte secret was accepted")
	}
}
