package jwtauth

import "strings"

// MaxTokenSize bounds a token before any parsing: a real JWT is a few
// hundred bytes to a few KiB, and larger input only buys an attacker
// decoding and hashing work.
const MaxTokenSize = 16 << 10

// BearerToken takes the token out of an Authorization header value of the
// form "Bearer <token>" (the scheme in any case, one space, then the token
// in the JWS compact charset: base64url and dots). An empty header gives
// ("", nil): no token, which the caller treats as an anonymous call or
// refuses, as its policy says. Anything else malformed is an *Error whose
// text explains the expected form without repeating the header, which may
// hold a credential.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", nil
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", refuse(ReasonMalformed, `the authorization header is not of the form "Bearer <token>"; send the JWT after "Bearer " and one space`)
	}
	if token == "" {
		return "", refuse(ReasonMalformed, `the authorization header has no token after "Bearer "; send "Bearer <token>"`)
	}
	if len(token) > MaxTokenSize {
		return "", refuse(ReasonTooLarge, "the bearer token is larger than 16 KiB; no JWT this server accepts is that large")
	}
	if !compactCharset(token) {
		return "", refuse(ReasonMalformed, `the bearer token has characters a JWT cannot have (a JWT is base64url segments joined by dots); send "Bearer <token>" with exactly one space and nothing after the token`)
	}
	return token, nil
}

// compactCharset reports whether s holds only base64url characters and
// dots, the alphabet of a JWS in compact serialization.
func compactCharset(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// canonicalCompact reports whether raw is three dot-separated segments,
// each canonical unpadded base64url: the unused low bits of a segment's
// last character must be zero. go-jose decodes leniently and checks the
// signature over its re-encoding of the header, so without this check
// several distinct strings would verify as the same token, which would
// defeat anyone who keys a cache or a replay list on the token text.
func canonicalCompact(raw string) bool {
	if !compactCharset(raw) || strings.Count(raw, ".") != 2 {
		return false
	}
	for seg := range strings.SplitSeq(raw, ".") {
		if !canonicalSegment(seg) {
			return false
		}
	}
	return true
}

func canonicalSegment(seg string) bool {
	if seg == "" {
		return false
	}
	last := base64urlValue(seg[len(seg)-1])
	switch len(seg) % 4 {
	case 0:
		return true
	case 2: // the last character carries 2 bits of the last byte
		return last&0x0f == 0
	case 3: // the last character carries 4 bits of the last byte
		return last&0x03 == 0
	default: // one character cannot encode a byte
		return false
	}
}

func base64urlValue(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	default: // '_'
		return 63
	}
}
