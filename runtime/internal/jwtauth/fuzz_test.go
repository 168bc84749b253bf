package jwtauth

import (
	"context"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer a.b.c", "bearer x", "Bearer  a", "Basic abc", "Bearer a b", "Bearer \x00", "Bearer é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := BearerToken(header)
		if err != nil {
			if tok != "" {
				t.Fatalf("a token with an error: %q", tok)
			}
			if _, ok := err.(*Error); !ok { //nolint:errorlint // BearerToken returns *Error itself, unwrapped
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if header == "" {
			if tok != "" {
				t.Fatal("a token from an empty header")
			}
			return
		}
		if tok == "" || !compactCharset(tok) || len(tok) > MaxTokenSize {
			t.Fatalf("accepted token %q outside the JWS charset or size", tok)
		}
		if !strings.HasSuffix(header, " "+tok) || !strings.EqualFold(header[:len(header)-len(tok)], "Bearer ") {
			t.Fatalf("token %q is not the header's single bearer token", tok)
		}
	})
}

func FuzzVerify(f *testing.F) {
	k := testKeys()
	v := staticVerifier(f)
	claims := claimsAt(t0)
	valid := []string{
		sign(f, jose.RS256, k.rsa, claims, signOpts{kid: "k"}),
		sign(f, jose.ES256, k.ec, claims, signOpts{}),
		sign(f, jose.EdDSA, k.ed, claims, signOpts{}),
		sign(f, jose.HS256, k.hmac, claims, signOpts{}),
	}
	for _, tok := range valid {
		f.Add(tok)
		for i := 0; i < len(tok); i += 7 {
			b := []byte(tok)
			b[i] ^= 1
			f.Add(string(b))
		}
		f.Add(tok[:len(tok)-1])
		f.Add(tok + "A")
		f.Add(strings.Replace(tok, ".", "..", 1))
	}
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := v.Verify(context.Background(), raw)
		if err == nil {
			for _, tok := range valid {
				if raw == tok {
					return
				}
			}
			t.Fatalf("accepted a token that is not one of the valid ones: %q (%+v)", raw, claims)
		}
		if claims != nil {
			t.Fatal("claims with an error")
		}
	})
}
