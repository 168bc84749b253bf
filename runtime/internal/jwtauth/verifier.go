package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	gojson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Config says which tokens a Verifier accepts.
type Config struct {
	// Issuers the server trusts: a token's "iss" must be one of them.
	// Required. "statefun.internal" is reserved for internal tokens.
	Issuers []string
	// Audiences, when not empty: a token's "aud" must contain one of them.
	Audiences []string

	// Key sources; at least one is required.

	// JWKSURL is the identity provider's key set, fetched in the background:
	// every RefreshInterval, and out of turn (at most once per
	// MinRefetchInterval) when a token names a kid the cached set lacks, as
	// after a key rotation. https only (http for loopback hosts, for tests).
	JWKSURL string
	// JWKSFile is a JWKS JSON file, read once by New.
	JWKSFile string
	// PublicKeyFiles are PEM files of RSA, ECDSA P-256 or Ed25519 public
	// keys ("PUBLIC KEY" blocks) or certificates. Their keys have no kid
	// and serve tokens with any kid or none.
	PublicKeyFiles []string
	// HMACSecret enables HS256 (and nothing else does): at least 32 bytes.
	HMACSecret []byte

	// ClockSkew is the leeway for exp, nbf and iat: default 30s, at most 5m.
	ClockSkew time.Duration
	// RefreshInterval is how often the JWKS URL is fetched: default 5m.
	RefreshInterval time.Duration
	// MinRefetchInterval spaces out-of-turn fetches: default 30s.
	MinRefetchInterval time.Duration
	// MaxStale is how long keys fetched from JWKSURL stay usable while
	// every later fetch fails: default 24h, at least RefreshInterval. Past
	// it, Verify fails with ErrKeysUnavailable.
	MaxStale time.Duration
	// HTTPClient fetches JWKSURL: default a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock: default time.Now.
	Now func() time.Time
	// Log receives JWKS fetch failures (one per attempt, so at most one per
	// retry interval): default discards.
	Log *slog.Logger
}

// Verifier checks bearer JWTs. It is safe for concurrent use.
type Verifier struct {
	issuers   []string
	audiences []string
	static    []verifyKey
	remote    *remoteKeys // nil without a JWKS URL
	algs      []jose.SignatureAlgorithm
	skew      time.Duration
	now       func() time.Time
	closeOnce sync.Once
}

const (
	defaultClockSkew   = 30 * time.Second
	maxClockSkew       = 5 * time.Minute
	defaultRefresh     = 5 * time.Minute
	defaultMinRefetch  = 30 * time.Second
	defaultMaxStale    = 24 * time.Hour
	defaultHTTPTimeout = 10 * time.Second
)

// New checks c, reads the key files, and starts the background fetch of
// JWKSURL. It neither waits for nor fails on that fetch: an identity
// provider that is down while the server starts makes Verify answer
// ErrKeysUnavailable until it is back, not the server fail to start. It
// fails on a configuration mistake, a malformed URL or an unreadable key
// file. ctx is not the fetch loop's lifetime (Close is); only its values
// are kept.
func New(ctx context.Context, c Config) (*Verifier, error) {
	if err := c.fill(); err != nil {
		return nil, fmt.Errorf("jwtauth: %w", err)
	}
	v := &Verifier{
		issuers:   slices.Clone(c.Issuers),
		audiences: slices.Clone(c.Audiences),
		algs:      []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA},
		skew:      c.ClockSkew,
		now:       c.Now,
	}
	if c.HMACSecret != nil {
		v.algs = append(v.algs, jose.HS256)
		v.static = append(v.static, verifyKey{family: familyHMAC, alg: jose.HS256, material: slices.Clone(c.HMACSecret)})
	}
	for _, path := range c.PublicKeyFiles {
		keys, err := readPEMKeys(path)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: public key file %s: %w", path, err)
		}
		v.static = append(v.static, keys...)
	}
	if c.JWKSFile != "" {
		data, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: JWKS file: %w", err)
		}
		keys, skipped, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: JWKS file %s: %w", c.JWKSFile, err)
		}
		if len(skipped) > 0 {
			c.Log.Info("jwtauth: some keys of the JWKS file are not used", "file", c.JWKSFile, "skipped", skipped)
		}
		v.static = append(v.static, keys...)
	}
	if c.JWKSURL != "" {
		v.remote = &remoteKeys{
			url:        c.JWKSURL,
			client:     c.HTTPClient,
			now:        c.Now,
			log:        c.Log,
			refresh:    c.RefreshInterval,
			minRefetch: c.MinRefetchInterval,
			maxStale:   c.MaxStale,
		}
		startRemote(context.WithoutCancel(ctx), v.remote)
	}
	return v, nil
}

func (c *Config) fill() error {
	if len(c.Issuers) == 0 {
		return errors.New("no trusted issuer configured; name the identity provider's issuer (its tokens' \"iss\")")
	}
	for _, iss := range c.Issuers {
		switch iss {
		case "":
			return errors.New("an empty trusted issuer; every issuer must be the exact \"iss\" of the provider's tokens")
		case internalIssuer:
			return fmt.Errorf("the issuer %q is reserved for statefun's internal tokens; trust the identity provider's issuer instead", internalIssuer)
		}
	}
	if c.JWKSURL == "" && c.JWKSFile == "" && len(c.PublicKeyFiles) == 0 && c.HMACSecret == nil {
		return errors.New("no key source configured; give a JWKS URL, a JWKS file, public key files or an HMAC secret")
	}
	if c.HMACSecret != nil && len(c.HMACSecret) < minSecret {
		return fmt.Errorf("the HMAC secret has %d bytes; HS256 needs at least %d random bytes", len(c.HMACSecret), minSecret)
	}
	if c.JWKSURL != "" {
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name string
		val  *time.Duration
		def  time.Duration
	}{
		{"clock skew", &c.ClockSkew, defaultClockSkew},
		{"refresh interval", &c.RefreshInterval, defaultRefresh},
		{"min refetch interval", &c.MinRefetchInterval, defaultMinRefetch},
		{"max stale", &c.MaxStale, defaultMaxStale},
	} {
		if *d.val < 0 {
			return fmt.Errorf("the %s is negative; leave it zero for the default (%s)", d.name, d.def)
		}
		if *d.val == 0 {
			*d.val = d.def
		}
	}
	if c.ClockSkew > maxClockSkew {
		return fmt.Errorf("the clock skew %s is more than %s; keep clocks in sync (NTP) rather than widening the window in which expired tokens pass", c.ClockSkew, maxClockSkew)
	}
	if c.MaxStale < c.RefreshInterval {
		return fmt.Errorf("the max staleness %s is shorter than the refresh interval %s, so keys would lapse between refreshes; make it at least the refresh interval", c.MaxStale, c.RefreshInterval)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout, CheckRedirect: checkRedirect}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Close stops the background fetch of the JWKS URL and waits for it.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		if v.remote != nil {
			v.remote.cancel()
			<-v.remote.done
		}
	})
	return nil
}

// Verify checks raw (a JWT in compact serialization, without "Bearer ")
// and returns its claims. A refusal is an *Error; one that is the server's
// fault (no usable keys) also matches ErrKeysUnavailable.
//
// Verify does no network I/O. When the key a token needs may be in the
// JWKS but is not in hand (a kid the cached set lacks, or no fresh keys
// at all), it asks the fetch loop for a refetch, at most once per
// MinRefetchInterval, and waits for it at most until ctx is done or one
// second has passed; then it decides with what it has. A rotated key is
// thus accepted on its first use, and a flood of tokens with made-up kids
// costs the identity provider one request per MinRefetchInterval.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if len(raw) > MaxTokenSize {
		return nil, refuse(ReasonTooLarge, "the token is larger than 16 KiB; no JWT this server accepts is that large")
	}
	if !canonicalCompact(raw) {
		return nil, refuse(ReasonMalformed, "the token is not a JWS in compact serialization (three canonical base64url segments joined by dots); send the JWT the identity provider issued, unaltered")
	}
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		if alg, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, refuse(ReasonAlgorithm, algorithmRefusal(alg.Got, v.algs))
		}
		return nil, refuse(ReasonMalformed, "the token's header or payload does not decode as a JWS; send the JWT the identity provider issued, unaltered")
	}
	hdr := tok.Headers[0]
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); strings.EqualFold(typ, internalType) {
		return nil, refuse(ReasonWrongType, "the token is a statefun internal token, which is good only between statefun nodes; send a token from the identity provider")
	}
	payload, err := v.verifySignature(ctx, tok, jose.SignatureAlgorithm(hdr.Algorithm), hdr.KeyID)
	if err != nil {
		return nil, err
	}
	claims, err := claimsFromPayload(payload)
	if err != nil {
		return nil, refuse(ReasonMalformed, err.Error()+"; the identity provider issued a token this server cannot read")
	}
	if err := v.checkClaims(claims, v.now()); err != nil {
		return nil, err
	}
	return claims, nil
}

// algorithmRefusal names the token's algorithm only when it is a JOSE
// name (a fixed set), so that no header text of the caller's is echoed.
func algorithmRefusal(got jose.SignatureAlgorithm, accepted []jose.SignatureAlgorithm) string {
	names := make([]string, len(accepted))
	for i, a := range accepted {
		names[i] = string(a)
	}
	list := strings.Join(names, ", ")
	switch got {
	case "none", "None", "NONE":
		return "the token is unsigned (alg none), which is never accepted; send a signed token (" + list + ")"
	case jose.HS256, jose.HS384, jose.HS512:
		if !slices.Contains(accepted, jose.HS256) {
			return "the token is signed with " + string(got) + ", but this server has no HMAC secret configured; accepted: " + list
		}
	case jose.RS384, jose.RS512, jose.PS384, jose.PS512, jose.ES384, jose.ES512:
	default:
		return "the token is signed with an algorithm this server does not know; accepted: " + list
	}
	return "the token is signed with " + string(got) + ", which this server does not accept; accepted: " + list
}

// verifySignature tries the keys that may have signed the token: those of
// the token's algorithm family (and, for a JWK with "alg", that algorithm
// only) whose kid matches. It returns the verified payload.
func (v *Verifier) verifySignature(ctx context.Context, tok *jwt.JSONWebToken, alg jose.SignatureAlgorithm, kid string) ([]byte, error) {
	tried := 0
	if p, ok := tryKeys(tok, v.static, alg, kid, &tried); ok {
		return p, nil
	}
	// HS256 keys never come from a JWKS, so for an HS256 token the remote
	// keys, fresh or not, change nothing.
	if v.remote == nil || alg == jose.HS256 {
		return nil, signatureRefusal(tried, kid)
	}
	st, fresh := v.remote.current(v.now())
	if fresh {
		if p, ok := tryKeys(tok, st.keys, alg, kid, &tried); ok {
			return p, nil
		}
	}
	if !fresh || (kid != "" && !st.hasKid(kid)) {
		v.remote.refetch(ctx)
		var again *remoteState
		again, fresh = v.remote.current(v.now())
		if fresh && again.generation != st.generation {
			if p, ok := tryKeys(tok, again.keys, alg, kid, &tried); ok {
				return p, nil
			}
		}
		st = again
	}
	if !fresh {
		return nil, &Error{
			Reason: ReasonKeysUnavailable,
			detail: "the server holds no current signing keys from its JWKS URL (" + st.why() + "); this is the server's trouble, not the token's: retry, and check that the identity provider is reachable",
			cause:  st.lastErr,
		}
	}
	return nil, signatureRefusal(tried, kid)
}

func signatureRefusal(tried int, kid string) *Error {
	if tried > 0 {
		return refuse(ReasonBadSignature, "the token's signature does not verify with the key it names; send the token exactly as the identity provider issued it, and check that the server trusts that provider's keys")
	}
	if kid != "" {
		return refuse(ReasonUnknownKey, "the token names a signing key (kid) the server does not have for its algorithm; check that the server's key source is the issuing provider's, and that its keys are current")
	}
	return refuse(ReasonUnknownKey, "the server has no key for the token's algorithm; check that the server's key source is the issuing provider's")
}

func tryKeys(tok *jwt.JSONWebToken, keys []verifyKey, alg jose.SignatureAlgorithm, kid string, tried *int) ([]byte, bool) {
	for i := range keys {
		k := &keys[i]
		if !k.accepts(alg) || !k.matchesKid(kid) {
			continue
		}
		*tried++
		var payload gojson.RawMessage
		if tok.Claims(k.material, &payload) == nil {
			return payload, true
		}
	}
	return nil, false
}

func (v *Verifier) checkClaims(c *Claims, now time.Time) error {
	if _, ok := c.Raw["exp"]; !ok {
		return refuse(ReasonMissingExp, `the token has no "exp" claim, and tokens that never expire are refused; have the identity provider issue tokens with an expiry`)
	}
	if !now.Before(c.Expiry.Add(v.skew)) {
		return refuse(ReasonExpired, fmt.Sprintf("the token expired more than the allowed clock skew (%s) ago; get a fresh token", v.skew))
	}
	if !c.NotBefore.IsZero() && now.Add(v.skew).Before(c.NotBefore) {
		return refuse(ReasonNotYetValid, fmt.Sprintf("the token's \"nbf\" is later than now plus the allowed clock skew (%s); use it once it is valid, or check the clocks", v.skew))
	}
	if !c.IssuedAt.IsZero() && now.Add(v.skew).Before(c.IssuedAt) {
		return refuse(ReasonIssuedInFuture, fmt.Sprintf("the token's \"iat\" is later than now plus the allowed clock skew (%s); check the clocks of the server and the identity provider", v.skew))
	}
	if !slices.Contains(v.issuers, c.Issuer) {
		if c.Issuer == "" {
			return refuse(ReasonWrongIssuer, `the token has no "iss" claim; send a token from an issuer the server trusts`)
		}
		return refuse(ReasonWrongIssuer, "the token's issuer is not one the server trusts; send a token from a trusted identity provider, or add its issuer to the server's configuration")
	}
	if len(v.audiences) > 0 && !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		return refuse(ReasonWrongAudience, "the token's audience (\"aud\") does not name this server; request a token for this server's audience")
	}
	return nil
}
