package jwtauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// staticVerifier holds the RSA, ECDSA and Ed25519 public keys as PEM files
// and the HMAC secret, with the clock at t0.
func staticVerifier(t testing.TB, mod ...func(*Config)) *Verifier {
	t.Helper()
	k := testKeys()
	rsaFile, ecFile, edFile := k.pemFiles(t)
	c := Config{
		Audiences:      []string{testAudience},
		PublicKeyFiles: []string{rsaFile, ecFile, edFile},
		HMACSecret:     k.hmac,
		Now:            fixedClock(t0),
	}
	for _, m := range mod {
		m(&c)
	}
	return newVerifier(t, c)
}

func with(claims map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestVerifyAcceptsEachAlgorithm(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v := staticVerifier(t)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
	}{
		{jose.RS256, k.rsa},
		{jose.PS256, k.rsa},
		{jose.ES256, k.ec},
		{jose.EdDSA, k.ed},
		{jose.HS256, k.hmac},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			t.Parallel()
			claims := with(claimsAt(t0), "realm_access", map[string]any{"roles": []string{"a", "b"}}, "n", json.Number("12345678901234567890"))
			got, err := v.Verify(context.Background(), sign(t, tc.alg, tc.key, claims, signOpts{kid: "any-kid"}))
			if err != nil {
				t.Fatalf("a valid %s token was refused: %v", tc.alg, err)
			}
			if got.Subject != distinctiveSubject || got.Issuer != testIssuer || !got.Expiry.Equal(t0.Add(time.Hour)) {
				t.Errorf("claims = %+v", got)
			}
			if diff := cmp.Diff([]string{"other", testAudience}, got.Audience); diff != "" {
				t.Errorf("audience (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"a", "b"}, got.Strings("realm_access.roles")); diff != "" {
				t.Errorf("nested roles (-want +got):\n%s", diff)
			}
			if n, _ := got.Raw["n"].(json.Number); n != "12345678901234567890" {
				t.Errorf("a large number lost precision: %v", got.Raw["n"])
			}
		})
	}
}

// TestVerifyRefuses holds one case per check; each fails when its check
// is removed from Verify.
func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v := staticVerifier(t)
	valid := claimsAt(t0)
	rs := func(claims map[string]any) string { return sign(t, jose.RS256, k.rsa, claims, signOpts{}) }
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"expired", rs(with(valid, "exp", t0.Add(-31*time.Second).Unix())), ReasonExpired},
		{"expired at the edge of the skew", rs(with(valid, "exp", t0.Add(-30*time.Second).Unix())), ReasonExpired},
		{"not yet valid", rs(with(valid, "nbf", t0.Add(31*time.Second).Unix())), ReasonNotYetValid},
		{"issued in the future", rs(with(valid, "iat", t0.Add(31*time.Second).Unix())), ReasonIssuedInFuture},
		{"missing exp", rs(with(valid, "exp", nil)), ReasonMissingExp},
		{"exp not a number", rs(with(valid, "exp", "tomorrow")), ReasonMalformed},
		{"wrong audience", rs(with(valid, "aud", "someone-else")), ReasonWrongAudience},
		{"no audience", rs(with(valid, "aud", nil)), ReasonWrongAudience},
		{"wrong issuer", rs(with(valid, "iss", "https://evil.example.test")), ReasonWrongIssuer},
		{"no issuer", rs(with(valid, "iss", nil)), ReasonWrongIssuer},
		{"payload not an object", sign(t, jose.RS256, k.rsa, []int{1}, signOpts{}), ReasonMalformed},
		{"alg none", unsigned(valid, "AAAA"), ReasonAlgorithm},
		{"alg none with no signature", unsigned(valid, ""), ReasonMalformed},
		{"HS256 signed with the RSA public key's PEM", sign(t, jose.HS256, k.rsaPEM, valid, signOpts{}), ReasonBadSignature},
		{"HS256 signed with the RSA public key's DER", sign(t, jose.HS256, k.rsaDER, valid, signOpts{}), ReasonBadSignature},
		{"HS256 with another secret", sign(t, jose.HS256, []byte(strings.Repeat("x", 32)), valid, signOpts{}), ReasonBadSignature},
		{"signed by a key the server does not have", sign(t, jose.RS256, k.rsa2, valid, signOpts{}), ReasonBadSignature},
		{"RS384 is not accepted", sign(t, jose.RS384, k.rsa, valid, signOpts{}), ReasonAlgorithm},
		{"tampered signature", tamper(t, rs(valid), 2), ReasonBadSignature},
		{"tampered payload", swapPayload(t, rs(valid), with(valid, "sub", "admin")), ReasonBadSignature},
		{"non-canonical base64", nonCanonical(t, sign(t, jose.ES256, k.ec, valid, signOpts{})), ReasonMalformed},
		{"oversized", strings.Repeat("a", MaxTokenSize+1), ReasonTooLarge},
		{"internal type", sign(t, jose.HS256, k.hmac, valid, signOpts{headers: map[jose.HeaderKey]any{jose.HeaderType: internalType}}), ReasonWrongType},
		{"not a JWS", "abc.def", ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			claims, err := v.Verify(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", claims)
			}
			if got := reasonOf(err); got != tc.reason {
				t.Errorf("reason = %q, want %q (%v)", got, tc.reason, err)
			}
			if errors.Is(err, ErrKeysUnavailable) {
				t.Errorf("a bad token matched ErrKeysUnavailable: %v", err)
			}
		})
	}
}

// TestVerifyAcceptsWithinSkew: each boundary moved inside the skew passes,
// so the skew is applied in the right direction for each claim.
func TestVerifyAcceptsWithinSkew(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v := staticVerifier(t)
	valid := claimsAt(t0)
	for _, tc := range []struct {
		name   string
		claims map[string]any
	}{
		{"exp just past", with(valid, "exp", t0.Add(-29*time.Second).Unix())},
		{"nbf just ahead", with(valid, "nbf", t0.Add(29*time.Second).Unix())},
		{"iat just ahead", with(valid, "iat", t0.Add(29*time.Second).Unix())},
		{"no nbf nor iat", with(valid, "nbf", nil, "iat", nil)},
		{"aud as a string", with(valid, "aud", testAudience)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := v.Verify(context.Background(), sign(t, jose.ES256, k.ec, tc.claims, signOpts{})); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestVerifyAlgorithmConfusion(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsaFile, _, _ := k.pemFiles(t)
	// Only the RSA key: HS256 is not even parsed.
	v := newVerifier(t, Config{PublicKeyFiles: []string{rsaFile}, Now: fixedClock(t0)})
	valid := claimsAt(t0)
	for name, secret := range map[string][]byte{"PEM": k.rsaPEM, "DER": k.rsaDER} {
		_, err := v.Verify(context.Background(), sign(t, jose.HS256, secret, valid, signOpts{}))
		if reasonOf(err) != ReasonAlgorithm {
			t.Errorf("HS256 over the RSA key's %s: err = %v, want %q", name, err, ReasonAlgorithm)
		}
		if err != nil && !strings.Contains(err.Error(), "no HMAC secret") {
			t.Errorf("the refusal does not say HS256 needs an HMAC secret: %v", err)
		}
	}
	if _, err := v.Verify(context.Background(), sign(t, jose.HS256, k.hmac, valid, signOpts{})); reasonOf(err) != ReasonAlgorithm {
		t.Errorf("HS256 without an HMAC secret configured: err = %v, want %q", err, ReasonAlgorithm)
	}
	if _, err := v.Verify(context.Background(), sign(t, jose.RS256, k.rsa, valid, signOpts{})); err != nil {
		t.Errorf("the RS256 control token was refused: %v", err)
	}
}

// TestKeyFamilies checks the key selection itself: go-jose would refuse a
// wrongly chosen key too, so the Verify tests alone would not notice if
// this layer stopped filtering.
func TestKeyFamilies(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsaKey, _ := publicKey(&k.rsa.PublicKey)
	ecKey, _ := publicKey(&k.ec.PublicKey)
	edKey, _ := publicKey(k.ed.Public())
	hmacKey := verifyKey{family: familyHMAC, alg: jose.HS256, material: k.hmac}
	pinned := rsaKey
	pinned.alg = jose.RS256
	all := []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA, jose.HS256, jose.RS384, "none", ""}
	for _, tc := range []struct {
		name string
		key  verifyKey
		want []jose.SignatureAlgorithm
	}{
		{"RSA", rsaKey, []jose.SignatureAlgorithm{jose.RS256, jose.PS256}},
		{"RSA pinned to RS256", pinned, []jose.SignatureAlgorithm{jose.RS256}},
		{"ECDSA", ecKey, []jose.SignatureAlgorithm{jose.ES256}},
		{"Ed25519", edKey, []jose.SignatureAlgorithm{jose.EdDSA}},
		{"HMAC", hmacKey, []jose.SignatureAlgorithm{jose.HS256}},
	} {
		var got []jose.SignatureAlgorithm
		for _, alg := range all {
			if tc.key.accepts(alg) {
				got = append(got, alg)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s key accepts (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestVerifyJWKSFile(t *testing.T) {
	t.Parallel()
	k := testKeys()
	path := filepath.Join(t.TempDir(), "jwks.json")
	set := jwksOf(t,
		jwk(&k.rsa.PublicKey, "rsa-pinned", jose.RS256),
		jwk(k.ed.Public(), "ed", ""),
		jose.JSONWebKey{Key: k.hmac, KeyID: "oct", Algorithm: "HS256"}, // must be ignored
	)
	if err := os.WriteFile(path, set, 0o600); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, Config{JWKSFile: path, Now: fixedClock(t0)})
	valid := claimsAt(t0)
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, jose.RS256, k.rsa, valid, signOpts{kid: "rsa-pinned"})); err != nil {
		t.Errorf("RS256 with the pinned key: %v", err)
	}
	if _, err := v.Verify(ctx, sign(t, jose.EdDSA, k.ed, valid, signOpts{kid: "ed"})); err != nil {
		t.Errorf("EdDSA by kid: %v", err)
	}
	if _, err := v.Verify(ctx, sign(t, jose.EdDSA, k.ed, valid, signOpts{})); err != nil {
		t.Errorf("EdDSA without a kid: %v", err)
	}
	t.Run("a JWK's alg pins its algorithm", func(t *testing.T) {
		_, err := v.Verify(ctx, sign(t, jose.PS256, k.rsa, valid, signOpts{kid: "rsa-pinned"}))
		if reasonOf(err) != ReasonUnknownKey {
			t.Errorf("PS256 with a key pinned to RS256: err = %v, want %q", err, ReasonUnknownKey)
		}
	})
	t.Run("kid selects the key", func(t *testing.T) {
		_, err := v.Verify(ctx, sign(t, jose.EdDSA, k.ed, valid, signOpts{kid: "rsa-pinned"}))
		if reasonOf(err) != ReasonUnknownKey {
			t.Errorf("an Ed25519 token naming the RSA key's kid: err = %v, want %q", err, ReasonUnknownKey)
		}
	})
	t.Run("symmetric keys in a JWKS are ignored", func(t *testing.T) {
		// HS256 is on (with another secret), so only the JWKS parsing
		// keeps the oct key out.
		v := newVerifier(t, Config{JWKSFile: path, HMACSecret: []byte(strings.Repeat("s", 32)), Now: fixedClock(t0)})
		_, err := v.Verify(ctx, sign(t, jose.HS256, k.hmac, valid, signOpts{kid: "oct"}))
		if err == nil {
			t.Fatal("an HS256 token was accepted through a JWKS oct key")
		}
	})
}

// TestErrorsNeverEchoTheToken: refusals travel to callers and logs, so
// their text must not carry what the caller sent.
func TestErrorsNeverEchoTheToken(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v := staticVerifier(t)
	secrets := []string{distinctiveSubject, "iss-zq9x", "aud-zq9x", "kid-zq9x", "claim-zq9x", "typ-zq9x"}
	base := with(claimsAt(t0), "iss", "iss-zq9x", "aud", "aud-zq9x", "custom", "claim-zq9x")
	hdr := signOpts{kid: "kid-zq9x", headers: map[jose.HeaderKey]any{jose.HeaderType: "typ-zq9x"}}
	tokens := []string{
		sign(t, jose.RS256, k.rsa, base, hdr),
		sign(t, jose.RS256, k.rsa, with(base, "iss", testIssuer), hdr),
		sign(t, jose.RS256, k.rsa, with(base, "exp", t0.Add(-time.Hour).Unix()), hdr),
		sign(t, jose.RS256, k.rsa, with(base, "exp", "exp-zq9x"), hdr),
		sign(t, jose.RS256, k.rsa, with(base, "iss", 7), hdr),
		sign(t, jose.RS256, k.rsa2, base, hdr),
		sign(t, jose.RS384, k.rsa, base, hdr),
		unsigned(base, "AAAA"),
		tamper(t, sign(t, jose.RS256, k.rsa, base, hdr), 3),
		headerAlg(t, "alg-zq9x"),
	}
	for i, tok := range tokens {
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Fatalf("token %d was accepted", i)
		}
		for _, s := range append(secrets, tok, tok[:20]) {
			if strings.Contains(err.Error(), s) {
				t.Errorf("token %d: the error text %q contains %q from the token", i, err, s)
			}
		}
	}
	if _, err := BearerToken("Bearer " + distinctiveSubject + " extra"); err == nil || strings.Contains(err.Error(), distinctiveSubject) {
		t.Errorf("BearerToken echoed the header: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsaFile, _, _ := k.pemFiles(t)
	privFile := filepath.Join(t.TempDir(), "priv.pem")
	if err := os.WriteFile(privFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Config{Issuers: []string{testIssuer}, PublicKeyFiles: []string{rsaFile}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no issuer", func(c *Config) { c.Issuers = nil }, "no trusted issuer"},
		{"empty issuer", func(c *Config) { c.Issuers = []string{""} }, "empty trusted issuer"},
		{"internal issuer", func(c *Config) { c.Issuers = []string{internalIssuer} }, "reserved"},
		{"no key source", func(c *Config) { c.PublicKeyFiles = nil }, "no key source"},
		{"short HMAC secret", func(c *Config) { c.HMACSecret = make([]byte, 31) }, "at least 32"},
		{"skew over 5m", func(c *Config) { c.ClockSkew = 5*time.Minute + time.Second }, "more than 5m"},
		{"negative skew", func(c *Config) { c.ClockSkew = -time.Second }, "negative"},
		{"max stale under refresh", func(c *Config) { c.MaxStale = time.Minute }, "shorter than the refresh interval"},
		{"http to a remote host", func(c *Config) { c.JWKSURL = "http://idp.example.test/jwks" }, "use https"},
		{"other scheme", func(c *Config) { c.JWKSURL = "ftp://idp.example.test/jwks" }, "not https"},
		{"malformed URL", func(c *Config) { c.JWKSURL = "https://[::1" }, "malformed"},
		{"relative URL", func(c *Config) { c.JWKSURL = "/jwks" }, "no host"},
		{"private key file", func(c *Config) { c.PublicKeyFiles = []string{privFile} }, "never private keys"},
		{"missing key file", func(c *Config) { c.PublicKeyFiles = []string{privFile + ".missing"} }, "no such file"},
		{"missing JWKS file", func(c *Config) { c.JWKSFile = privFile + ".missing" }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mod(&c)
			v, err := New(context.Background(), c)
			if err == nil {
				_ = v.Close()
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	for _, u := range []string{"http://127.0.0.1:1/jwks", "http://localhost:1/jwks", "http://[::1]:1/jwks", "https://idp.example.test/jwks"} {
		c := ok
		c.JWKSURL = u
		c.HTTPClient = failingClient()
		v, err := New(context.Background(), c)
		if err != nil {
			t.Errorf("New refused %s: %v", u, err)
			continue
		}
		_ = v.Close()
	}
}

func TestClaimsAccessors(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v := staticVerifier(t)
	claims := with(claimsAt(t0),
		"realm_access", map[string]any{"roles": []any{"r1", 2, "r2"}, "admin": true},
		"https://example.test/roles", "url-role",
		"scope", "read write",
		"count", 42, "big", 1e3, "frac", 1.5,
	)
	c, err := v.Verify(context.Background(), sign(t, jose.EdDSA, k.ed, claims, signOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r1", "r2"}, c.Strings("realm_access.roles")); diff != "" {
		t.Errorf("Strings skips non-strings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"url-role"}, c.Strings("https://example.test/roles")); diff != "" {
		t.Errorf("a claim name with dots (-want +got):\n%s", diff)
	}
	if s, ok := c.String("scope"); !ok || s != "read write" {
		t.Errorf("String = %q, %v", s, ok)
	}
	if _, ok := c.String("count"); ok {
		t.Error("String accepted a number")
	}
	if b, ok := c.Bool("realm_access.admin"); !ok || !b {
		t.Errorf("Bool = %v, %v", b, ok)
	}
	if n, ok := c.Int("count"); !ok || n != 42 {
		t.Errorf("Int(count) = %v, %v", n, ok)
	}
	if n, ok := c.Int("big"); !ok || n != 1000 {
		t.Errorf("Int(big) = %v, %v", n, ok)
	}
	if _, ok := c.Int("frac"); ok {
		t.Error("Int accepted 1.5")
	}
	if _, ok := c.Get("realm_access.missing"); ok {
		t.Error("Get found a missing claim")
	}
	var mine struct {
		Sub   string `json:"sub"`
		Count int    `json:"count"`
	}
	if err := c.Decode(&mine); err != nil || mine.Sub != distinctiveSubject || mine.Count != 42 {
		t.Errorf("Decode = %+v, %v", mine, err)
	}
}

// unsigned hand-builds an "alg": "none" token with sig as its signature
// segment.
func unsigned(claims map[string]any, sig string) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + "." + sig
}

// headerAlg is a token whose header names alg (and a junk payload).
func headerAlg(t testing.TB, alg string) string {
	enc := base64.RawURLEncoding
	h, err := json.Marshal(map[string]string{"alg": alg})
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeToString(h) + "." + enc.EncodeToString([]byte(`{}`)) + ".AAAA"
}

// tamper changes one character in the middle of segment seg (1-based; 3
// is the signature), keeping the encoding canonical.
func tamper(t testing.TB, raw string, seg int) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	p := []byte(parts[seg-1])
	i := len(p) / 2
	if p[i] == 'A' {
		p[i] = 'B'
	} else {
		p[i] = 'A'
	}
	parts[seg-1] = string(p)
	return strings.Join(parts, ".")
}

// swapPayload replaces the payload of a signed token, keeping its header
// and signature.
func swapPayload(t testing.TB, raw string, claims map[string]any) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// nonCanonical sets an unused low bit of the signature's last character:
// a lenient decoder reads the same bytes, so without the canonical check
// this other spelling of the token would verify.
func nonCanonical(t testing.TB, raw string) string {
	t.Helper()
	sig := raw[strings.LastIndexByte(raw, '.')+1:]
	if len(sig)%4 != 2 { // ES256: 64 bytes, 86 characters
		t.Fatalf("signature of %d characters; want a length with unused bits", len(sig))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	return raw[:len(raw)-1] + string(alphabet[last|1])
}
