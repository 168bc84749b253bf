package jwtauth

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	const tok = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_"
	for _, tc := range []struct {
		header, want string
		reason       string
	}{
		{"", "", ""},
		{"Bearer " + tok, tok, ""},
		{"bearer " + tok, tok, ""},
		{"BEARER " + tok, tok, ""},
		{"Bearer", "", ReasonMalformed},
		{"Bearer ", "", ReasonMalformed},
		{"Bearer  " + tok, "", ReasonMalformed},
		{"Bearer " + tok + " ", "", ReasonMalformed},
		{"Bearer " + tok + " x", "", ReasonMalformed},
		{"Bearer\t" + tok, "", ReasonMalformed},
		{"Basic dXNlcjpwYXNz", "", ReasonMalformed},
		{tok, "", ReasonMalformed},
		{"Bearer " + tok + "=", "", ReasonMalformed},
		{"Bearer " + tok + "+/", "", ReasonMalformed},
		{"Bearer " + strings.Repeat("a", MaxTokenSize+1), "", ReasonTooLarge},
	} {
		got, err := BearerToken(tc.header)
		if got != tc.want || reasonOf(err) != tc.reason {
			t.Errorf("BearerToken(%.30q) = %q, %v; want %q, reason %q", tc.header, got, err, tc.want, tc.reason)
		}
		if err != nil && strings.Contains(err.Error(), tok[:10]) {
			t.Errorf("the error echoes the header: %v", err)
		}
	}
}
