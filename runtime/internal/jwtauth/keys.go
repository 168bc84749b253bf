package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// keyFamily is the kind of a verification key. A key is only ever tried
// with algorithms of its own family: that, and go-jose's own check of the
// key type against the algorithm, is what stops algorithm confusion (an RSA
// public key used as an HMAC secret, an HMAC secret tried for RS256).
type keyFamily uint8

const (
	familyRSA keyFamily = iota + 1
	familyEC
	familyEd
	familyHMAC
)

// familyOf is the family of an algorithm this package accepts; false for
// every other algorithm, "none" included.
func familyOf(alg jose.SignatureAlgorithm) (keyFamily, bool) {
	switch alg {
	case jose.RS256, jose.PS256:
		return familyRSA, true
	case jose.ES256:
		return familyEC, true
	case jose.EdDSA:
		return familyEd, true
	case jose.HS256:
		return familyHMAC, true
	}
	return 0, false
}

// verifyKey is one key a token may be signed with.
type verifyKey struct {
	kid    string                  // "" matches any kid
	alg    jose.SignatureAlgorithm // "" allows every algorithm of the family; else only this one (a JWK's "alg")
	family keyFamily
	// material is what go-jose verifies with: *rsa.PublicKey,
	// *ecdsa.PublicKey, ed25519.PublicKey or []byte (HMAC).
	material any
}

func (k *verifyKey) accepts(alg jose.SignatureAlgorithm) bool {
	fam, ok := familyOf(alg)
	return ok && fam == k.family && (k.alg == "" || k.alg == alg)
}

// matchesKid: a key without a kid serves every token (PEM keys and the HMAC
// secret have none); a token without a kid may be signed by any key.
func (k *verifyKey) matchesKid(kid string) bool {
	return k.kid == "" || kid == "" || k.kid == kid
}

// publicKey wraps a parsed public key, refusing the kinds and sizes this
// package does not verify with.
func publicKey(pub any) (verifyKey, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return verifyKey{}, fmt.Errorf("an RSA key of %d bits is too small; use at least 2048", pub.N.BitLen())
		}
		return verifyKey{family: familyRSA, material: pub}, nil
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return verifyKey{}, errors.New("an ECDSA key not on P-256; only ES256 (P-256) is accepted")
		}
		return verifyKey{family: familyEC, material: pub}, nil
	case ed25519.PublicKey:
		return verifyKey{family: familyEd, material: pub}, nil
	}
	return verifyKey{}, fmt.Errorf("a %T is not a supported public key (RSA, ECDSA P-256 or Ed25519)", pub)
}

// maxJWKSKeys bounds a key set: a token without a kid is tried against
// every key, so the count bounds the work one token can cause.
const maxJWKSKeys = 64

// parseJWKS reads a JWK Set. Keys this package cannot or must not use are
// skipped, each with a note saying why (they are the identity provider's
// business, and one odd key must not take the others down): keys for
// encryption, symmetric keys (HS256 is configured only through
// Config.HMACSecret, never let in through a key set), private keys,
// unsupported types or curves, and keys whose "alg" is not one accepted
// here. It fails when no key is usable.
func parseJWKS(data []byte) (keys []verifyKey, skipped []string, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("the key set is not a JWKS JSON document: %w", err)
	}
	for i, raw := range set.Keys {
		if len(keys) == maxJWKSKeys {
			skipped = append(skipped, fmt.Sprintf("keys after the first %d usable ones", maxJWKSKeys))
			break
		}
		k, why := parseJWK(raw)
		if why != "" {
			skipped = append(skipped, fmt.Sprintf("key %d: %s", i, why))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("the key set has no usable signing key (of %d keys; %v)", len(set.Keys), skipped)
	}
	return keys, skipped, nil
}

func parseJWK(raw json.RawMessage) (verifyKey, string) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return verifyKey{}, "malformed or unsupported: " + err.Error()
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return verifyKey{}, `its "use" is not "sig"`
	}
	if _, symmetric := jwk.Key.([]byte); symmetric {
		return verifyKey{}, "a symmetric key; HS256 is accepted only with the configured HMAC secret"
	}
	if !jwk.IsPublic() {
		return verifyKey{}, "a private key; publish only public keys"
	}
	k, err := publicKey(jwk.Key)
	if err != nil {
		return verifyKey{}, err.Error()
	}
	if jwk.Algorithm != "" {
		alg := jose.SignatureAlgorithm(jwk.Algorithm)
		if fam, ok := familyOf(alg); !ok || fam != k.family {
			return verifyKey{}, fmt.Sprintf("its alg %q is not accepted for this kind of key", jwk.Algorithm)
		}
		k.alg = alg
	}
	k.kid = jwk.KeyID
	return k, ""
}

// readPEMKeys reads the public keys of a PEM file: "PUBLIC KEY" (PKIX),
// "RSA PUBLIC KEY" (PKCS #1) and "CERTIFICATE" blocks. The keys have no kid,
// so they serve tokens with any kid or none.
func readPEMKeys(path string) ([]verifyKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []verifyKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var pub any
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d is a %q; give public keys (\"PUBLIC KEY\") or certificates, never private keys", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		k, err := publicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found; the file should hold a \"PUBLIC KEY\" or \"CERTIFICATE\" block")
	}
	return keys, nil
}
