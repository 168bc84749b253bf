package jwtauth

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// failingClient fails every request without touching the network.
func failingClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("no network in tests")
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// remoteVerifier verifies against srv's key set. RefreshInterval is long,
// so only the fetches the test causes happen while it runs.
func remoteVerifier(t *testing.T, srv *jwksServer, mod ...func(*Config)) *Verifier {
	t.Helper()
	c := Config{
		JWKSURL:            srv.URL + "/jwks",
		RefreshInterval:    time.Hour,
		MinRefetchInterval: time.Nanosecond,
	}
	for _, m := range mod {
		m(&c)
	}
	return newVerifier(t, c)
}

func TestJWKSRotationRefetchesUnknownKid(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, http.StatusOK, jwksOf(t, jwk(&k.rsa.PublicKey, "old", jose.RS256)))
	v := remoteVerifier(t, srv)
	ctx := context.Background()
	oldTok := sign(t, jose.RS256, k.rsa, claimsAt(time.Now()), signOpts{kid: "old"})
	eventually(t, "the first key set", func() bool { _, err := v.Verify(ctx, oldTok); return err == nil })

	// The provider rotates: the new key is published and used at once.
	srv.set(http.StatusOK, jwksOf(t, jwk(&k.rsa.PublicKey, "old", jose.RS256), jwk(k.ed.Public(), "new", "")))
	newTok := sign(t, jose.EdDSA, k.ed, claimsAt(time.Now()), signOpts{kid: "new"})
	eventually(t, "the rotated key", func() bool {
		_, err := v.Verify(ctx, newTok)
		if err != nil && reasonOf(err) != ReasonUnknownKey {
			t.Fatalf("unexpected refusal: %v", err)
		}
		return err == nil
	})
}

func TestJWKSRefetchIsRateLimited(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, http.StatusOK, jwksOf(t, jwk(&k.rsa.PublicKey, "known", "")))
	v := remoteVerifier(t, srv, func(c *Config) { c.MinRefetchInterval = time.Hour })
	ctx := context.Background()
	good := sign(t, jose.RS256, k.rsa, claimsAt(time.Now()), signOpts{kid: "known"})
	eventually(t, "the first key set", func() bool { _, err := v.Verify(ctx, good); return err == nil })
	for i := range 10 {
		tok := sign(t, jose.RS256, k.rsa2, claimsAt(time.Now()), signOpts{kid: "made-up-" + string(rune('a'+i))})
		if _, err := v.Verify(ctx, tok); reasonOf(err) != ReasonUnknownKey {
			t.Fatalf("made-up kid: err = %v, want %q", err, ReasonUnknownKey)
		}
	}
	if hits := srv.hits.Load(); hits != 1 {
		t.Errorf("the JWKS was fetched %d times; made-up kids within MinRefetchInterval must cause no fetch", hits)
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, http.StatusServiceUnavailable, []byte("down"))
	v := remoteVerifier(t, srv) // New does not fail while the provider is down
	ctx := context.Background()
	tok := sign(t, jose.ES256, k.ec, claimsAt(time.Now()), signOpts{kid: "ec"})

	// Until a fetch has failed, the error says the first fetch is pending;
	// wait for the failure's own text.
	eventually(t, "the fetch failure", func() bool {
		_, err := v.Verify(ctx, tok)
		if !errors.Is(err, ErrKeysUnavailable) || reasonOf(err) != ReasonKeysUnavailable {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
		return strings.Contains(err.Error(), "503")
	})

	srv.set(http.StatusOK, jwksOf(t, jwk(&k.ec.PublicKey, "ec", jose.ES256)))
	eventually(t, "keys after the provider is back", func() bool {
		_, err := v.Verify(ctx, tok)
		if err != nil && !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("unexpected refusal: %v", err)
		}
		return err == nil
	})
}

// fakeClock is a settable clock for MaxStale.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestJWKSMaxStale(t *testing.T) {
	t.Parallel()
	k := testKeys()
	clock := &fakeClock{now: t0}
	srv := newJWKSServer(t, http.StatusOK, jwksOf(t, jwk(&k.rsa.PublicKey, "rsa", "")))
	v := remoteVerifier(t, srv, func(c *Config) {
		c.Now = clock.Now
		c.MaxStale = 2 * time.Hour
	})
	ctx := context.Background()
	// Valid throughout: issued at t0, expiring long after the test's clock.
	tok := sign(t, jose.RS256, k.rsa, with(claimsAt(t0), "exp", t0.Add(48*time.Hour).Unix()), signOpts{kid: "rsa"})
	eventually(t, "the first key set", func() bool { _, err := v.Verify(ctx, tok); return err == nil })

	srv.set(http.StatusInternalServerError, nil)
	clock.Advance(2*time.Hour - time.Minute)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("keys within MaxStale were not used while the provider is down: %v", err)
	}
	clock.Advance(2 * time.Minute)
	_, err := v.Verify(ctx, tok)
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("keys older than MaxStale were still trusted: err = %v", err)
	}
	if !strings.Contains(err.Error(), "500") {
		t.Errorf("the error does not carry the last fetch failure: %v", err)
	}
}

func TestJWKSResponseTooBig(t *testing.T) {
	t.Parallel()
	k := testKeys()
	// A valid key set padded past 1 MiB: only the size bound refuses it.
	body := jwksOf(t, jwk(&k.rsa.PublicKey, "rsa", ""))
	body = append(body, bytes.Repeat([]byte(" "), maxJWKSResponse)...)
	srv := newJWKSServer(t, http.StatusOK, body)
	v := remoteVerifier(t, srv)
	tok := sign(t, jose.RS256, k.rsa, claimsAt(time.Now()), signOpts{kid: "rsa"})
	eventually(t, "the size refusal", func() bool {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Fatal("a key set over 1 MiB was used")
		}
		return strings.Contains(err.Error(), "larger than 1 MiB")
	})
}

func TestJWKSStaticKeysServeWhileRemoteIsDown(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, http.StatusServiceUnavailable, nil)
	v := remoteVerifier(t, srv, func(c *Config) { c.HMACSecret = k.hmac })
	if _, err := v.Verify(context.Background(), sign(t, jose.HS256, k.hmac, claimsAt(time.Now()), signOpts{})); err != nil {
		t.Fatalf("an HS256 token was refused because the JWKS URL is down: %v", err)
	}
	// A forged HS256 token is the caller's fault, not the server's.
	forged := sign(t, jose.HS256, []byte(strings.Repeat("f", 32)), claimsAt(time.Now()), signOpts{})
	if _, err := v.Verify(context.Background(), forged); reasonOf(err) != ReasonBadSignature {
		t.Errorf("forged HS256 token while the JWKS URL is down: err = %v, want %q", err, ReasonBadSignature)
	}
}

func TestCloseStopsTheFetchLoop(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, http.StatusServiceUnavailable, nil)
	v, err := New(context.Background(), Config{Issuers: []string{testIssuer}, JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = v.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	_ = v.Close() // idempotent
	select {
	case <-v.remote.done:
	default:
		t.Fatal("the fetch loop is still running after Close")
	}
}

// TestJWKSRedirectToPlainHTTPIsRefused: a redirect may not take the fetch
// off https (or loopback).
func TestJWKSRedirectToPlainHTTPIsRefused(t *testing.T) {
	for target, ok := range map[string]bool{
		"http://keys.example.com/jwks.json":  false,
		"https://keys.example.com/jwks.json": true,
		"http://127.0.0.1:9/jwks.json":       true,
	} {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkRedirect(req, []*http.Request{{}}); (err == nil) != ok {
			t.Errorf("redirect to %s: %v, want allowed %v", target, err, ok)
		}
	}
}
