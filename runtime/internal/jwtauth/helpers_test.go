package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testIssuer   = "https://idp.example.test"
	testAudience = "statefun-test"
	// distinctiveSubject must never show up in an error text.
	distinctiveSubject = "subject-zq9x-never-echo"
)

// t0 is the fixed clock of the tests that do not fetch keys.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

type testKeySet struct {
	rsa    *rsa.PrivateKey
	rsa2   *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	hmac   []byte
	rsaPEM []byte // PKIX "PUBLIC KEY" PEM of rsa
	rsaDER []byte
}

var testKeys = sync.OnceValue(func() *testKeySet {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := &testKeySet{}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	k.hmac = make([]byte, 32)
	_, err = rand.Read(k.hmac)
	must(err)
	k.rsaDER, err = x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	must(err)
	k.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.rsaDER})
	return k
})

// pemFiles writes the public keys as PEM files in a directory of t's.
func (k *testKeySet) pemFiles(t testing.TB) (rsaFile, ecFile, edFile string) {
	dir := t.TempDir()
	return writePEM(dir, "rsa.pem", &k.rsa.PublicKey), writePEM(dir, "ec.pem", &k.ec.PublicKey), writePEM(dir, "ed.pem", k.ed.Public())
}

func writePEM(dir, name string, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		panic(err)
	}
	return path
}

// claimsAt are valid claims for a verifier whose clock reads now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"sub": distinctiveSubject,
		"aud": []string{"other", testAudience},
		"exp": now.Add(time.Hour).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
	}
}

type signOpts struct {
	kid     string
	headers map[jose.HeaderKey]any
}

// sign makes a compact JWS of claims with key (a private key or an HMAC
// secret) and alg.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, claims any, o signOpts) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	opts = opts.WithType("JWT")
	for k, v := range o.headers {
		opts = opts.WithHeader(k, v)
	}
	if o.kid != "" {
		key = jose.JSONWebKey{Key: key, KeyID: o.kid}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func jwksOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwk(pub any, kid string, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(alg), Use: "sig"}
}

// jwksServer is an identity provider's key endpoint whose answer a test
// changes as it goes.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	body   []byte
	hits   atomic.Int64
}

func newJWKSServer(t testing.TB, status int, body []byte) *jwksServer {
	s := &jwksServer{status: status, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func newVerifier(t testing.TB, c Config) *Verifier {
	t.Helper()
	if c.Issuers == nil {
		c.Issuers = []string{testIssuer}
	}
	v, err := New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// reasonOf is the Reason of a refusal, or "" when err is not an *Error.
func reasonOf(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
