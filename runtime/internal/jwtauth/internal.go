package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	gojson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// internalType is the "typ" header of internal tokens. Verify refuses
	// it, and InternalSigner.Verify requires it, so that a token of one kind never
	// passes as the other even when both are signed with the same secret.
	internalType = "statefun-internal+jwt"
	// internalIssuer is the "iss" of internal tokens; New refuses to trust
	// it for user tokens.
	internalIssuer = "statefun.internal"
	// minSecret is the least HMAC key length: HS256 wants a key at least as
	// long as its hash.
	minSecret = 32
	// internalSkew is the leeway for the clocks of a deployment's nodes.
	internalSkew = 30 * time.Second
	// maxInternalTTL keeps internal tokens short-lived: they are minted
	// per call, so a stolen one is good for a moment, not a session.
	maxInternalTTL = 10 * time.Minute
)

var internalAlgs = []jose.SignatureAlgorithm{jose.HS256}

// Assertion is what an internal token says: which statefun service (and
// node) makes the call, for which method, and on whose behalf.
type Assertion struct {
	// Service is the calling statefun service's name (a service
	// principal). Required.
	Service string
	// Node is the address of the node that made the call, when a node
	// forwards a call; may be empty.
	Node string
	// Method is the full gRPC method the token is good for
	// ("/pkg.Service/Method"). Required; the receiver checks it is the
	// method called, so a token cannot be replayed against another method.
	Method string
	// Caller is the end user the call is made for, when a node forwards a
	// call it received with a verified JWT: the receiving node acts with
	// that identity. nil when the call is the service's own, or an
	// anonymous caller's (then Anonymous is true).
	Caller    *Claims
	Anonymous bool
}

// internalPayload is the JSON of an internal token.
type internalPayload struct {
	Iss       string          `json:"iss"`
	Iat       int64           `json:"iat"`
	Exp       int64           `json:"exp"`
	Service   string          `json:"svc"`
	Node      string          `json:"node,omitempty"`
	Method    string          `json:"mth"`
	Caller    json.RawMessage `json:"caller,omitempty"`
	Anonymous bool            `json:"anon,omitempty"`
}

// InternalSigner mints and verifies the internal tokens of one deployment
// secret. It holds the go-jose signer, so minting does not rebuild it per
// call: make one per secret and share it (it is safe for concurrent use).
type InternalSigner struct {
	secret []byte
	signer jose.Signer
}

// NewInternalSigner prepares minting and verifying with secret, the key
// the nodes of a deployment share: at least 32 random bytes.
func NewInternalSigner(secret []byte) (*InternalSigner, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("jwtauth: the internal token secret has %d bytes; it needs at least %d random bytes, the same on every node", len(secret), minSecret)
	}
	secret = bytes.Clone(secret)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType(internalType))
	if err != nil {
		return nil, fmt.Errorf("jwtauth: %w", err)
	}
	return &InternalSigner{secret: secret, signer: signer}, nil
}

// Mint returns an internal token asserting a, valid from now for ttl
// (keep it short: a minute; at most 10 minutes).
func (s *InternalSigner) Mint(a Assertion, now time.Time, ttl time.Duration) (string, error) {
	switch {
	case a.Service == "":
		return "", errors.New("jwtauth: an internal token needs the calling service's name")
	case !strings.HasPrefix(a.Method, "/"):
		return "", errors.New(`jwtauth: an internal token needs the full gRPC method it is for ("/pkg.Service/Method")`)
	case a.Caller != nil && a.Anonymous:
		return "", errors.New("jwtauth: an internal token is for a caller or for an anonymous one, not both")
	case ttl <= 0 || ttl > maxInternalTTL:
		return "", fmt.Errorf("jwtauth: an internal token's ttl must be positive and at most %s, not %s", maxInternalTTL, ttl)
	}
	p := internalPayload{
		Iss:       internalIssuer,
		Iat:       now.Unix(),
		Exp:       now.Add(ttl).Unix(),
		Service:   a.Service,
		Node:      a.Node,
		Method:    a.Method,
		Anonymous: a.Anonymous,
	}
	if a.Caller != nil {
		caller, err := callerJSON(a.Caller)
		if err != nil {
			return "", fmt.Errorf("jwtauth: the caller's claims: %w", err)
		}
		p.Caller = caller
	}
	// The payload is marshalled here rather than by go-jose's jwt builder,
	// which round-trips claims through float64 and would alter large
	// numbers in the caller's claims.
	payload, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("jwtauth: %w", err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("jwtauth: signing an internal token: %w", err)
	}
	return jws.CompactSerialize()
}

// callerJSON is the caller's claims as a JSON object: the verified payload
// itself when the claims came from Verify, so the receiver decodes exactly
// what this node verified.
func callerJSON(c *Claims) ([]byte, error) {
	if c.payload != nil {
		return c.payload, nil
	}
	raw := c.Raw
	if raw == nil {
		// Claims built by hand: carry the registered claims they set.
		raw = map[string]any{}
		setIf := func(name string, v any, ok bool) {
			if ok {
				raw[name] = v
			}
		}
		setIf("iss", c.Issuer, c.Issuer != "")
		setIf("sub", c.Subject, c.Subject != "")
		setIf("aud", c.Audience, len(c.Audience) > 0)
		setIf("exp", c.Expiry.Unix(), !c.Expiry.IsZero())
		setIf("nbf", c.NotBefore.Unix(), !c.NotBefore.IsZero())
		setIf("iat", c.IssuedAt.Unix(), !c.IssuedAt.IsZero())
	}
	return json.Marshal(raw)
}

// Verify checks an internal token minted with the same secret for method
// and returns its assertion. A refusal is an *Error.
func (s *InternalSigner) Verify(raw, method string, now time.Time) (Assertion, error) {
	if len(raw) > MaxTokenSize {
		return Assertion{}, refuse(ReasonTooLarge, "the internal token is larger than 16 KiB")
	}
	if !canonicalCompact(raw) {
		return Assertion{}, refuse(ReasonMalformed, "the internal token is not a JWS in compact serialization")
	}
	tok, err := jwt.ParseSigned(raw, internalAlgs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return Assertion{}, refuse(ReasonAlgorithm, "the internal token is not signed with HS256; internal tokens are minted only by statefun nodes")
		}
		return Assertion{}, refuse(ReasonMalformed, "the internal token's header or payload does not decode as a JWS")
	}
	if typ, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); typ != internalType {
		return Assertion{}, refuse(ReasonWrongType, "the token is not a statefun internal token; a user's token goes in the authorization header, not the internal one")
	}
	var payload gojson.RawMessage
	if err := tok.Claims(s.secret, &payload); err != nil {
		return Assertion{}, refuse(ReasonBadSignature, "the internal token's signature does not verify; every node of the deployment must share the same internal secret")
	}
	var p internalPayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Assertion{}, refuse(ReasonMalformed, "the internal token's payload does not decode; are all nodes on the same statefun version?")
	}
	switch {
	case p.Iss != internalIssuer:
		return Assertion{}, refuse(ReasonWrongIssuer, "the token's issuer is not statefun's internal issuer; internal tokens are minted only by statefun nodes")
	case p.Exp == 0:
		return Assertion{}, refuse(ReasonMissingExp, "the internal token has no expiry")
	case !now.Before(time.Unix(p.Exp, 0).Add(internalSkew)):
		return Assertion{}, refuse(ReasonExpired, "the internal token has expired; check that the nodes' clocks agree (within 30s)")
	case now.Add(internalSkew).Before(time.Unix(p.Iat, 0)):
		return Assertion{}, refuse(ReasonIssuedInFuture, "the internal token was issued in the future; check that the nodes' clocks agree (within 30s)")
	case p.Method != method:
		return Assertion{}, refuse(ReasonWrongMethod, "the internal token was minted for another method; mint one per call, for the method called")
	case p.Service == "":
		return Assertion{}, refuse(ReasonMalformed, "the internal token names no calling service")
	case p.Anonymous && p.Caller != nil:
		return Assertion{}, refuse(ReasonMalformed, "the internal token names both a caller and an anonymous one")
	}
	a := Assertion{Service: p.Service, Node: p.Node, Method: p.Method, Anonymous: p.Anonymous}
	if p.Caller != nil {
		caller, err := claimsFromPayload(p.Caller)
		if err != nil {
			return Assertion{}, refuse(ReasonMalformed, "the internal token's caller claims do not decode: "+err.Error())
		}
		a.Caller = caller
	}
	return a, nil
}
