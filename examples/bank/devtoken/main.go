// Command devtoken prints a bearer token for the bank example, signed
// with a development key it keeps in ./statefun-dev-keys (made on first
// use, with the JWKS file the server reads):
//
//	go run ./examples/bank/devtoken -sub alice          # alice's token
//	go run ./examples/bank/devtoken -sub ops -admin     # an administrator's
//
// Start the bank server with the flags it prints to stderr. The key is
// for a developer's machine only.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/statefun-go/statefun/internal/devtoken"
)

func main() {
	sub := flag.String("sub", "", "the user ID (the token's \"sub\"); a user's account ID is their user ID")
	admin := flag.Bool("admin", false, "add the claim \"admin\": true (bank administrators may close accounts)")
	ttl := flag.Duration("ttl", time.Hour, "how long the token is good for")
	dir := flag.String("keys", "statefun-dev-keys", "directory of the development key")
	flag.Parse()
	if *sub == "" {
		fmt.Fprintln(os.Stderr, "-sub is required: the user the token is for, e.g. -sub alice")
		os.Exit(2)
	}
	issuer, err := devtoken.Open(*dir, "statefun-dev", "bank")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	claims := map[string]any{"sub": *sub}
	if *admin {
		claims["admin"] = true
	}
	tok, err := issuer.Token(claims, *ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "server flags: %s\n", strings.Join(issuer.ServerFlags(), " "))
	fmt.Println(tok)
}
