package jwtauth

import "errors"

// Reasons a token is refused: short fixed strings, fit for a metric label
// or a log field. They never carry anything from the token.
const (
	ReasonMalformed       = "malformed"
	ReasonTooLarge        = "too large"
	ReasonAlgorithm       = "algorithm not allowed"
	ReasonWrongType       = "wrong token type"
	ReasonUnknownKey      = "unknown key"
	ReasonBadSignature    = "bad signature"
	ReasonMissingExp      = "missing exp"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not yet valid"
	ReasonIssuedInFuture  = "issued in the future"
	ReasonWrongIssuer     = "wrong issuer"
	ReasonWrongAudience   = "wrong audience"
	ReasonWrongMethod     = "wrong method"
	ReasonKeysUnavailable = "keys unavailable"
)

// ErrKeysUnavailable is matched (errors.Is) by the error Verify returns
// when the keys a token may be signed with are not in hand: the JWKS URL has
// not answered yet, or has failed for longer than Config.MaxStale. It is the
// server's trouble, not the caller's: map it to UNAVAILABLE, not
// UNAUTHENTICATED, so that clients retry.
var ErrKeysUnavailable = errors.New("jwtauth: signing keys unavailable")

// Error is why a token was refused. Its text names what is wrong and what
// to do about it, and never contains anything taken from the token (no
// claim values, no header values, no part of the raw token): it may travel
// back to the caller and into logs.
type Error struct {
	// Reason is one of the Reason constants.
	Reason string
	detail string
	cause  error
}

func (e *Error) Error() string { return "jwt " + e.Reason + ": " + e.detail }

// Unwrap gives the cause of a refusal that has one (the last JWKS fetch
// error for ReasonKeysUnavailable). Its text is the server's, never the
// token's.
func (e *Error) Unwrap() error { return e.cause }

// Is makes errors.Is(err, ErrKeysUnavailable) hold for ReasonKeysUnavailable.
func (e *Error) Is(target error) bool {
	return target == ErrKeysUnavailable && e.Reason == ReasonKeysUnavailable
}

func refuse(reason, detail string) *Error { return &Error{Reason: reason, detail: detail} }
