package jwtauth

import (
	"context"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func BenchmarkVerify(b *testing.B) {
	k := testKeys()
	v := staticVerifier(b)
	claims := claimsAt(t0)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
	}{
		{jose.RS256, k.rsa},
		{jose.ES256, k.ec},
		{jose.EdDSA, k.ed},
		{jose.HS256, k.hmac},
	} {
		tok := sign(b, tc.alg, tc.key, claims, signOpts{})
		b.Run(string(tc.alg), func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkInternal(b *testing.B) {
	k := testKeys()
	s := internalSigner(b)
	caller, err := staticVerifier(b).Verify(context.Background(), sign(b, jose.ES256, k.ec, claimsAt(t0), signOpts{}))
	if err != nil {
		b.Fatal(err)
	}
	a := Assertion{Service: "cart", Node: "10.0.0.7:8080", Method: testMethod, Caller: caller}
	b.Run("Mint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Mint(a, t0, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
	tok, err := s.Mint(a, t0, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Verify(tok, testMethod, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
