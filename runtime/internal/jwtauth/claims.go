package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Claims are the claims of a verified token.
type Claims struct {
	Issuer   string
	Subject  string
	Audience []string
	// Expiry, NotBefore and IssuedAt are zero when the claim is absent.
	Expiry, NotBefore, IssuedAt time.Time
	// Raw holds every claim of the payload, decoded with UseNumber, so
	// numbers are json.Number and keep their precision.
	Raw map[string]any

	// payload is the verified JSON the claims were decoded from: Decode
	// reads it, and an internal token carries it verbatim, so the receiving
	// node decodes exactly what the first node verified.
	payload []byte
}

// Get returns the claim at path: a top-level claim name, or, when no
// top-level claim has that exact name, a dotted path into nested objects
// ("realm_access.roles"). The exact name is tried first because claim names
// are often URLs, which hold dots ("https://example.com/roles").
func (c *Claims) Get(path string) (any, bool) {
	if c == nil || c.Raw == nil {
		return nil, false
	}
	if v, ok := c.Raw[path]; ok {
		return v, true
	}
	var cur any = c.Raw
	for name := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[name]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// String returns the claim at path when it is a string.
func (c *Claims) String(path string) (string, bool) {
	v, _ := c.Get(path)
	s, ok := v.(string)
	return s, ok
}

// Strings returns the claim at path as a list: a string is a list of one,
// an array gives its string elements (others are skipped), anything else
// gives nil. Role and scope claims come in both shapes.
func (c *Claims) Strings(path string) []string {
	v, _ := c.Get(path)
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Bool returns the claim at path when it is a JSON boolean.
func (c *Claims) Bool(path string) (bool, bool) {
	v, _ := c.Get(path)
	b, ok := v.(bool)
	return b, ok
}

// Int returns the claim at path when it is a JSON number with an integral
// value that fits in an int64 (1e3 counts; 1.5 does not).
func (c *Claims) Int(path string) (int64, bool) {
	v, _ := c.Get(path)
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// Decode unmarshals the whole payload into v (encoding/json rules), for
// callers who prefer a struct of their own claims.
func (c *Claims) Decode(v any) error {
	payload := c.payload
	if payload == nil {
		var err error
		if payload, err = json.Marshal(c.Raw); err != nil {
			return err
		}
	}
	return json.Unmarshal(payload, v)
}

// claimsFromPayload decodes a verified payload. The registered claims are
// read from the decoded map by their exact names (encoding/json would match
// struct fields case-insensitively, letting "ISS" stand in for "iss"). The
// returned error is a description for an *Error: it names the claim at
// fault, never its value.
func claimsFromPayload(payload []byte) (*Claims, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, errors.New("the token payload is not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("the token payload has data after its JSON object")
	}
	c := &Claims{Raw: raw, payload: payload}
	var ok bool
	if c.Issuer, ok = optionalString(raw, "iss"); !ok {
		return nil, errors.New(`the "iss" claim is not a string`)
	}
	if c.Subject, ok = optionalString(raw, "sub"); !ok {
		return nil, errors.New(`the "sub" claim is not a string`)
	}
	switch aud := raw["aud"].(type) {
	case nil:
	case string:
		c.Audience = []string{aud}
	case []any:
		c.Audience = make([]string, len(aud))
		for i, a := range aud {
			if c.Audience[i], ok = a.(string); !ok {
				return nil, errors.New(`the "aud" claim is not a string or an array of strings`)
			}
		}
	default:
		return nil, errors.New(`the "aud" claim is not a string or an array of strings`)
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"exp", &c.Expiry}, {"nbf", &c.NotBefore}, {"iat", &c.IssuedAt}} {
		t, err := numericDate(raw, f.name)
		if err != nil {
			return nil, err
		}
		*f.dst = t
	}
	return c, nil
}

func optionalString(raw map[string]any, name string) (string, bool) {
	v, present := raw[name]
	if !present {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

// maxNumericDate keeps a NumericDate within what time.Time arithmetic
// handles (year 9999), so a huge "exp" cannot overflow into the past.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate claim (seconds since the epoch, possibly
// fractional). Absent gives the zero time.
func numericDate(raw map[string]any, name string) (time.Time, error) {
	v, present := raw[name]
	if !present {
		return time.Time{}, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, errors.New(`the "` + name + `" claim is not a number of seconds since the epoch`)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, errors.New(`the "` + name + `" claim is not a number of seconds since the epoch between 1970 and 9999`)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// ClaimsFromMap returns the claims a token with this payload would have,
// for tests of code that reads claims: the map goes through JSON, so its
// values read back as a verified token's do. It panics on a map that is
// not a valid payload, which only a test passes.
func ClaimsFromMap(m map[string]any) *Claims {
	payload, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("jwtauth: claims do not encode as JSON: %v", err))
	}
	c, err := claimsFromPayload(payload)
	if err != nil {
		panic(fmt.Sprintf("jwtauth: claims are not a token payload: %v", err))
	}
	return c
}
