package main

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	"github.com/statefun-go/statefun/examples/internal/e2e"
	"github.com/statefun-go/statefun/internal/devtoken"
)

// TestAccessEndToEnd runs the bank server with its access rules and
// tries, over gRPC and over HTTP/JSON, the calls its rules allow and every
// attack of RELIABILITY.md's security section: each is refused with the
// right code, names the rule without echoing the token, and changes
// nothing.
func TestAccessEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := e2e.Build(t, ".")
	iss := newIssuer(t)
	srv := e2e.Start(t, bin, append(iss.ServerFlags(), "--data-dir", t.TempDir())...)
	defer srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	accounts := bankv1.NewAccountServiceClient(srv.Conn)

	alice := token(t, iss, map[string]any{"sub": "alice"})
	bob := token(t, iss, map[string]any{"sub": "bob"})
	ops := token(t, iss, map[string]any{"sub": "ops", "admin": true})
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	if _, err := accounts.Open(as(alice), &bankv1.OpenRequest{AccountId: "alice", OwnerId: "alice", OwnerName: "Alice", InitialDepositCents: 1000}); err != nil {
		t.Fatal(err)
	}
	// Anyone with a token may deposit into any account.
	if _, err := accounts.Deposit(as(bob), &bankv1.DepositRequest{AccountId: "alice", AmountCents: 500}); err != nil {
		t.Fatalf("bob's deposit into alice's account: %v", err)
	}

	// Attacks on Withdraw, alice's account: over gRPC, then HTTP/JSON.
	attacks := []struct {
		name  string
		token string // "" sends no authorization header
		code  codes.Code
		// want is in the error message; nothing of the token is.
		want string
	}{
		{"no token", "", codes.Unauthenticated, "token"},
		{"another user's token", bob, codes.PermissionDenied, "account_id"},
		{"expired", token(t, iss, map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()}), codes.Unauthenticated, "expired"},
		{"not yet valid", token(t, iss, map[string]any{"sub": "alice", "nbf": time.Now().Add(time.Hour).Unix()}), codes.Unauthenticated, "not yet valid"},
		{"wrong audience", token(t, iss, map[string]any{"sub": "alice", "aud": "payroll"}), codes.Unauthenticated, "audience"},
		{"wrong issuer", token(t, iss, map[string]any{"sub": "alice", "iss": "https://evil.example"}), codes.Unauthenticated, "issuer"},
		{"alg none", unsigned(map[string]any{"sub": "alice", "iss": iss.Name, "aud": iss.Audience, "exp": time.Now().Add(time.Hour).Unix()}), codes.Unauthenticated, "malformed"},
		{"alg none with a signature", unsigned(map[string]any{"sub": "alice", "iss": iss.Name, "aud": iss.Audience, "exp": time.Now().Add(time.Hour).Unix()}) + "c2lnbmVk", codes.Unauthenticated, "algorithm"},
		{"HS256 signed with the server's public key", hmacWithPublicKey(t, iss, map[string]any{"sub": "alice", "iss": iss.Name, "aud": iss.Audience, "exp": time.Now().Add(time.Hour).Unix()}), codes.Unauthenticated, ""},
		{"tampered signature", tamperSignature(alice), codes.Unauthenticated, "signature"},
		{"bob's token with its subject rewritten to alice", rewriteSubject(t, bob, "alice"), codes.Unauthenticated, "signature"},
		{"not a JWT", "let-me-in", codes.Unauthenticated, "malformed"},
	}
	for _, a := range attacks {
		t.Run("grpc/"+a.name, func(t *testing.T) {
			c := ctx
			if a.token != "" {
				c = as(a.token)
			}
			_, err := accounts.Withdraw(c, &bankv1.WithdrawRequest{AccountId: "alice", AmountCents: 100})
			checkRefusal(t, err, a.code, a.want, a.token)
		})
		t.Run("http/"+a.name, func(t *testing.T) {
			headers := map[string]string{}
			if a.token != "" {
				headers["Authorization"] = "Bearer " + a.token
			}
			code, body := srv.PostWith(t, headers, "/bank.v1.AccountService/Withdraw", `{"account_id":"alice","amount_cents":100}`)
			wantHTTP := map[codes.Code]int{codes.Unauthenticated: http.StatusUnauthorized, codes.PermissionDenied: http.StatusForbidden}[a.code]
			if code != wantHTTP || !strings.Contains(body, a.want) {
				t.Errorf("HTTP status %d, body %s; want %d naming %q", code, body, wantHTTP, a.want)
			}
			if a.token != "" && strings.Contains(body, a.token) {
				t.Errorf("the refusal echoes the token: %s", body)
			}
		})
	}
	// Outsiders cannot pose as a node forwarding a call, or forge one.
	forged := metadata.AppendToOutgoingContext(ctx, "statefun-forwarded-by", "127.0.0.1:1", "authorization", "Bearer "+bob)
	_, err := accounts.Withdraw(forged, &bankv1.WithdrawRequest{AccountId: "alice", AmountCents: 100})
	checkRefusal(t, err, codes.PermissionDenied, "statefun-forwarded-by", "")
	forgedToken := metadata.AppendToOutgoingContext(ctx, "statefun-internal-token", unsigned(map[string]any{"svc": "bank"}))
	_, err = accounts.Withdraw(forgedToken, &bankv1.WithdrawRequest{AccountId: "alice", AmountCents: 100})
	checkRefusal(t, err, codes.Unauthenticated, "internal call refused", "")

	// Nothing above moved money: 1000 + 500.
	if b, err := accounts.GetBalance(as(alice), &bankv1.GetBalanceRequest{AccountId: "alice"}); err != nil || b.GetBalanceCents() != 1500 {
		t.Fatalf("balance after the attacks: %v, %v; want 1500", b, err)
	}
	// What the rules allow: the owner withdraws and reads the statement,
	// an administrator reads the balance and closes the account.
	if _, err := accounts.Withdraw(as(alice), &bankv1.WithdrawRequest{AccountId: "alice", AmountCents: 100}); err != nil {
		t.Fatalf("alice withdrawing from her account: %v", err)
	}
	code, body := srv.PostWith(t, map[string]string{"Authorization": "Bearer " + ops}, "/bank.v1.AccountService/GetBalance", `{"account_id":"alice"}`)
	if code != http.StatusOK || !strings.Contains(body, `"balanceCents":"1400"`) {
		t.Fatalf("an administrator's GetBalance over HTTP: %d %s", code, body)
	}
	_, err = accounts.GetStatement(as(bob), &bankv1.GetStatementRequest{AccountId: "alice", OwnerId: "alice"})
	checkRefusal(t, err, codes.PermissionDenied, "account_id", bob)
	_, err = accounts.Close(as(alice), &bankv1.CloseRequest{AccountId: "alice", Reason: "moving"})
	checkRefusal(t, err, codes.PermissionDenied, "admin", alice)
	if _, err := accounts.Close(as(ops), &bankv1.CloseRequest{AccountId: "alice", Reason: "moving"}); err != nil {
		t.Fatalf("an administrator closing the account: %v", err)
	}
	st, err := accounts.GetStatement(as(alice), &bankv1.GetStatementRequest{AccountId: "alice", OwnerId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if last := st.GetTransactions()[len(st.GetTransactions())-1]; last.GetNote() != "closed by ops: moving" || last.GetAmountCents() != 1400 {
		t.Errorf("the closing transaction: %v; want 1400 paid out, closed by ops", last)
	}
	// The directory is for administrators; an owner may list their own.
	directory := bankv1.NewAccountDirectoryViewClient(srv.Conn)
	_, err = directory.AccountsByOwner(as(bob), &bankv1.AccountsByOwnerRequest{OwnerId: "alice"})
	checkRefusal(t, err, codes.PermissionDenied, "admin", bob)
	for a, err := range directory.LowBalances(as(alice), &bankv1.LowBalancesRequest{BelowCents: 1 << 40}) {
		checkRefusal(t, err, codes.PermissionDenied, "admin", alice)
		if a != nil {
			t.Errorf("a refused stream sent %v", a)
		}
		break
	}

	// A server that checks access keeps its console and admin API off
	// its public ports.
	for _, path := range []string{"/console/", "/v1/admin/consumers"} {
		if code, _ := srv.Call(t, http.MethodGet, path, ""); code == http.StatusOK {
			t.Errorf("GET %s on the public port: %d, want it not served", path, code)
		}
	}

	// Every refusal was counted: the token attacks on both ports and the
	// forged internal token; another user's token on both ports and the
	// forged forwarding header.
	metrics := srv.Get(t, "/metrics")
	if testing.Verbose() {
		for line := range strings.SplitSeq(metrics, "\n") {
			if strings.Contains(line, "access_denied") && !strings.HasSuffix(line, " 0") {
				t.Log(line)
			}
		}
	}
	for _, line := range []string{
		`statefun_access_denied_total{code="unauthenticated",method="/bank.v1.AccountService/Withdraw"} 23`,
		`statefun_access_denied_total{code="permission_denied",method="/bank.v1.AccountService/Withdraw"} 3`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

// checkRefusal: err has code and names want, and says nothing of tok.
func checkRefusal(t *testing.T, err error, code codes.Code, want, tok string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), want) {
		t.Errorf("error %v, want %v naming %q", err, code, want)
	}
	if tok != "" && strings.Contains(st.Message(), tok) {
		t.Errorf("the refusal echoes the token: %v", err)
	}
	for _, secret := range []string{"alice", "bob"} {
		if want != secret && strings.Contains(st.Message(), `"`+secret+`"`) {
			t.Errorf("the refusal quotes a claim or field value (%s): %v", secret, err)
		}
	}
}

func token(t *testing.T, iss *devtoken.Issuer, claims map[string]any) string {
	t.Helper()
	tok, err := iss.Token(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned is a token with "alg": "none" and no signature.
func unsigned(claims map[string]any) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(claims)
	return header + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
}

// hmacWithPublicKey signs claims with HS256, using the server's public key
// as the secret: the classic confusion attack on a server that would take
// its verification key for an HMAC secret.
func hmacWithPublicKey(t *testing.T, iss *devtoken.Issuer, claims map[string]any) string {
	t.Helper()
	doc, err := os.ReadFile(iss.JWKSFile)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	pub := set.Keys[0].Key.(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secret := append(append([]byte{}, der...), pub...) // at least 32 bytes either way
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", set.Keys[0].KeyID))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tamperSignature changes one character of the signature.
func tamperSignature(tok string) string {
	i := strings.LastIndex(tok, ".") + 3
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// rewriteSubject replaces the payload's "sub", keeping the signature.
func rewriteSubject(t *testing.T, tok, sub string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = sub
	payload, _ = json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

// TestAccessInACluster runs two bank servers as a cluster on Postgres and
// makes every call through the first: calls for the second's accounts are
// forwarded, and the owner acts for the caller the first established (a
// withdrawal by the owner passes, one by another user does not, a closing
// records the administrator).
func TestAccessInACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := e2e.Build(t, ".")
	iss := newIssuer(t)
	flags := append(iss.ServerFlags(), e2e.PostgresFlags(t, "e2e_bank_access")...)
	a := e2e.Start(t, bin, append(flags, "--lease-ttl", "1s")...)
	defer a.Stop(t)
	b := e2e.Start(t, bin, append(flags, "--lease-ttl", "1s")...)
	defer b.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Both nodes serve shards before the calls start.
	deadline := time.Now().Add(30 * time.Second)
	for shardsOwned(t, a) == 0 || shardsOwned(t, b) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the nodes did not share the shards: %d and %d", shardsOwned(t, a), shardsOwned(t, b))
		}
		time.Sleep(50 * time.Millisecond)
	}
	accounts := bankv1.NewAccountServiceClient(a.Conn)
	as := func(claims map[string]any) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token(t, iss, claims))
	}
	for i := range 12 {
		id := fmt.Sprintf("user-%d", i)
		if _, err := accounts.Open(as(map[string]any{"sub": id}), &bankv1.OpenRequest{AccountId: id, OwnerId: id, OwnerName: id, InitialDepositCents: 100}); err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		if _, err := accounts.Withdraw(as(map[string]any{"sub": id}), &bankv1.WithdrawRequest{AccountId: id, AmountCents: 10}); err != nil {
			t.Fatalf("%s withdrawing from their account: %v", id, err)
		}
		_, err := accounts.Withdraw(as(map[string]any{"sub": "mallory"}), &bankv1.WithdrawRequest{AccountId: id, AmountCents: 10})
		checkRefusal(t, err, codes.PermissionDenied, "account_id", "")
		if _, err := accounts.Close(as(map[string]any{"sub": "ops", "admin": true}), &bankv1.CloseRequest{AccountId: id, Reason: "audit"}); err != nil {
			t.Fatalf("close %s: %v", id, err)
		}
		st, err := accounts.GetStatement(as(map[string]any{"sub": id}), &bankv1.GetStatementRequest{AccountId: id, OwnerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if last := st.GetTransactions()[len(st.GetTransactions())-1]; last.GetNote() != "closed by ops: audit" {
			t.Errorf("%s: the closing says %q, want it closed by ops", id, last.GetNote())
		}
	}
	if !strings.Contains(a.Get(t, "/metrics"), "statefun_cluster_forwards_total ") || forwards(t, a) == 0 {
		t.Fatalf("no call was forwarded: the test proves nothing about forwarding\n%s", a.Log())
	}
}

func shardsOwned(t *testing.T, s *e2e.Server) int {
	return metricValue(t, s, "statefun_cluster_shards_owned ")
}

func forwards(t *testing.T, s *e2e.Server) int {
	return metricValue(t, s, "statefun_cluster_forwards_total ")
}

func metricValue(t *testing.T, s *e2e.Server, prefix string) int {
	t.Helper()
	for line := range strings.SplitSeq(s.Get(t, "/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			var n float64
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("metric %s%s: %v", prefix, v, err)
			}
			return int(n)
		}
	}
	return 0
}
