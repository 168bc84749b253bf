// Package jwtauth verifies the bearer JWTs callers present to a statefun
// server (Verifier), and mints and verifies the internal tokens statefun's
// own processes attach when one node forwards a call to another or one
// statefun service calls another (InternalSigner). All JOSE parsing and
// cryptography is go-jose's; this package decides which keys and
// algorithms go-jose may use and what the claims must say.
//
// # Threat model
//
// The caller is untrusted: anything in a token may be chosen to mislead.
// What is refused, and why:
//
//   - Unsigned tokens ("alg": "none") and algorithms outside a fixed list
//     (RS256, PS256, ES256, EdDSA; HS256 only with a configured HMAC
//     secret): the list is given to go-jose at parse time, so an attacker
//     cannot pick the algorithm the server checks with.
//   - Algorithm confusion: a key is tried only with algorithms of its own
//     kind, and a JWK that names an "alg" only with that one. An RSA public
//     key (public by definition) is never used as an HMAC secret, and
//     symmetric keys in a JWKS are ignored, so HS256 cannot be switched on
//     through a key set.
//   - Tokens without "exp", expired, not yet valid, or issued in the future
//     (beyond a clock skew of at most five minutes); tokens from an issuer
//     not configured; tokens for another audience when audiences are set.
//   - Oversized input (over 16 KiB) before any decoding, and non-canonical
//     base64url, so that one token has one spelling.
//   - Internal tokens presented as user tokens and the reverse: internal
//     tokens carry their own "typ" and issuer, each verifier refuses the
//     other's, and a Verifier refuses to trust the internal issuer.
//
// Keys from a JWKS URL are fetched in the background over https only, in
// responses of at most 1 MiB, and trusted for a bounded time (MaxStale)
// when the identity provider stops answering: the server then fails closed
// with ErrKeysUnavailable rather than trusting keys that may have been
// revoked. A token naming an unknown key causes at most one fetch per
// MinRefetchInterval, so made-up kids cannot be used to flood the provider.
//
// Error texts say what is wrong and how to fix it but never quote the
// token (claims, subject, header values): they travel back to callers and
// into logs.
//
// Internal tokens are HS256 under a secret the nodes of a deployment share,
// short-lived and bound to the one gRPC method they were minted for. They
// prove that a statefun node made the call, not who the end user is: the
// user's identity rides inside, as the claims the first node verified.
// Anyone holding the secret can mint them; guard it like a signing key.
package jwtauth
