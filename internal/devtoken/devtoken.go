// Package devtoken issues bearer tokens (JWTs) for development and tests:
// an Ed25519 key of its own, whose public half it writes as a JWKS file
// that a statefun server is pointed at with --jwt-jwks-file. The private
// key sits unencrypted in a directory: it is for a developer's machine and
// for tests, never for production, where tokens come from an identity
// provider and the server fetches its keys (--jwt-jwks-url).
package devtoken

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
)

// Issuer signs tokens with its key.
type Issuer struct {
	// Name is the tokens' "iss"; Audience their "aud".
	Name, Audience string
	// JWKSFile holds the public key, for --jwt-jwks-file.
	JWKSFile string
	signer   jose.Signer
}

const (
	keyFile  = "signing-key.pem"
	jwksFile = "jwks.json"
	keyID    = "dev-1"
)

// Open returns the issuer whose key is in dir, making the key (and dir)
// when there is none yet.
func Open(dir, name, audience string) (*Issuer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	priv, err := loadKey(filepath.Join(dir, keyFile))
	if errors.Is(err, os.ErrNotExist) {
		priv, err = newKey(filepath.Join(dir, keyFile))
	}
	if err != nil {
		return nil, err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv.Public(), KeyID: keyID, Algorithm: string(jose.EdDSA), Use: "sig"}}}
	doc, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, err
	}
	jwks := filepath.Join(dir, jwksFile)
	if err := os.WriteFile(jwks, doc, 0o644); err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: keyID}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return &Issuer{Name: name, Audience: audience, JWKSFile: jwks, signer: signer}, nil
}

func newKey(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return priv, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block; delete it to make a new key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; delete it to make a new key", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not an Ed25519 key; delete it to make a new key", path, key)
	}
	return priv, nil
}

// Token returns a token with claims, issued now and good for ttl; "iss",
// "aud", "iat" and "exp" are set unless claims sets them.
func (i *Issuer) Token(claims map[string]any, ttl time.Duration) (string, error) {
	now := time.Now()
	all := map[string]any{"iss": i.Name, "aud": i.Audience, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	maps.Copy(all, claims)
	return jwt.Signed(i.signer).Claims(all).Serialize()
}

// ServerFlags are the flags that make a statefun server accept the
// issuer's tokens.
func (i *Issuer) ServerFlags() []string {
	return []string{"--jwt-issuer=" + i.Name, "--jwt-audience=" + i.Audience, "--jwt-jwks-file=" + i.JWKSFile}
}

// Interceptor sends each call with a token of the claims claimsOf returns
// for it (none when it returns nil).
func (i *Issuer) Interceptor(claimsOf func(method string, req any) map[string]any) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if claims := claimsOf(method, req); claims != nil {
			tok, err := i.Token(claims, 10*time.Minute)
			if err != nil {
				return err
			}
			opts = append(opts, grpc.PerRPCCredsCallOption{Creds: bearer(tok)})
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// bearer sends a token in the authorization header, over plaintext too
// (tests and a developer's machine).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// StreamInterceptor is Interceptor for streaming calls; claimsOf sees no
// request.
func (i *Issuer) StreamInterceptor(claimsOf func(method string, req any) map[string]any) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if claims := claimsOf(method, nil); claims != nil {
			tok, err := i.Token(claims, 10*time.Minute)
			if err != nil {
				return nil, err
			}
			opts = append(opts, grpc.PerRPCCredsCallOption{Creds: bearer(tok)})
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// OwnerAndAdmin returns the claims of a caller that the bank example's
// rules all allow: its "sub" is the request's account_id (when the
// request has one) and it is an administrator. Tests that are not about
// access send every call with them.
func OwnerAndAdmin(_ string, req any) map[string]any {
	claims := map[string]any{"sub": "admin", "admin": true}
	if r, ok := req.(interface{ GetAccountId() string }); ok {
		claims["sub"] = r.GetAccountId()
	}
	return claims
}
