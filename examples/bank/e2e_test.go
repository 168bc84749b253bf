package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	"github.com/statefun-go/statefun/examples/internal/e2e"
	"github.com/statefun-go/statefun/internal/devtoken"
)

// TestDirectoryEndToEnd builds the bank server, opens accounts over gRPC,
// and asks the account directory view over gRPC (paged and streamed) and
// HTTP/JSON; then it kills the server (kill -9), starts it again, and the
// view still answers, and follows new events: on the embedded store and
// on Postgres.
func TestDirectoryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := e2e.Build(t, ".")
	iss := newIssuer(t)
	t.Run("embedded", func(t *testing.T) {
		checkDirectory(t, bin, iss, "--data-dir", t.TempDir())
	})
	t.Run("postgres", func(t *testing.T) {
		checkDirectory(t, bin, iss, e2e.PostgresFlags(t, "e2e_bank")...)
	})
}

// newIssuer is a token issuer of the test's own, whose key the servers
// the test starts trust.
func newIssuer(t *testing.T) *devtoken.Issuer {
	t.Helper()
	iss, err := devtoken.Open(t.TempDir(), "bank-test", "bank")
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// startBank starts the bank server trusting iss, with a connection whose
// calls carry tokens every rule allows (devtoken.OwnerAndAdmin): the tests
// that use it are not about access.
func startBank(t *testing.T, bin string, iss *devtoken.Issuer, flags ...string) *e2e.Server {
	t.Helper()
	srv := e2e.Start(t, bin, append(iss.ServerFlags(), flags...)...)
	srv.Conn = srv.Dial(t, grpc.WithUnaryInterceptor(iss.Interceptor(devtoken.OwnerAndAdmin)), grpc.WithStreamInterceptor(iss.StreamInterceptor(devtoken.OwnerAndAdmin)))
	return srv
}

// bearer returns the Authorization header of a token with claims.
func bearer(t *testing.T, iss *devtoken.Issuer, claims map[string]any) map[string]string {
	t.Helper()
	tok, err := iss.Token(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

func checkDirectory(t *testing.T, bin string, iss *devtoken.Issuer, storeFlags ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := startBank(t, bin, iss, storeFlags...)
	admin := bearer(t, iss, map[string]any{"sub": "ops", "admin": true})
	accounts := bankv1.NewAccountServiceClient(srv.Conn)
	for _, id := range []string{"a1", "a2", "a3"} {
		if _, err := accounts.Open(ctx, &bankv1.OpenRequest{AccountId: id, OwnerId: "alice", OwnerName: "Alice", InitialDepositCents: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := accounts.Withdraw(ctx, &bankv1.WithdrawRequest{AccountId: "a2", AmountCents: 900}); err != nil {
		t.Fatal(err)
	}
	waitForLow(t, ctx, srv, "[a2:100]")
	// Rows of different accounts reach the view in no set order: a2's
	// withdrawal can be visible before a1's opening.
	waitForOwned(t, ctx, srv, "alice", 3)

	// HTTP/JSON, Connect protocol: the first page of one, then the next.
	var page struct {
		Accounts []struct {
			AccountID string `json:"accountId"`
		}
		NextPageToken string
	}
	postView(t, srv, admin, "AccountsByOwner", `{"owner_id":"alice","page_size":2}`, &page)
	if len(page.Accounts) != 2 || page.NextPageToken == "" {
		t.Fatalf("first page over HTTP: %+v, want 2 accounts and a next_page_token", page)
	}
	tok := page.NextPageToken
	page.Accounts, page.NextPageToken = nil, "" // JSON leaves an empty token out
	postView(t, srv, admin, "AccountsByOwner", fmt.Sprintf(`{"owner_id":"alice","page_size":2,"page_token":%q}`, tok), &page)
	if len(page.Accounts) != 1 || page.NextPageToken != "" {
		t.Fatalf("last page over HTTP: %+v, want 1 account and no token", page)
	}
	code, body := srv.PostWith(t, admin, "/bank.v1.AccountDirectoryService/AccountsByOwner", `{"owner_id":"alice","page_token":"forged"}`)
	if code != http.StatusBadRequest {
		t.Errorf("a forged page token over HTTP: %d %s, want 400", code, body)
	}

	// kill -9: the rows are in the store; the updater resumes.
	srv.Kill(t)
	srv = startBank(t, bin, iss, storeFlags...)
	defer srv.Stop(t)
	accounts = bankv1.NewAccountServiceClient(srv.Conn)
	waitForLow(t, ctx, srv, "[a2:100]")
	if _, err := accounts.Withdraw(ctx, &bankv1.WithdrawRequest{AccountId: "a3", AmountCents: 500}); err != nil {
		t.Fatal(err)
	}
	waitForLow(t, ctx, srv, "[a2:100 a3:500]")
}

// waitForLow waits until the accounts below 600 cents, streamed over gRPC,
// are want.
func waitForLow(t *testing.T, ctx context.Context, srv *e2e.Server, want string) {
	t.Helper()
	directory := bankv1.NewAccountDirectoryViewClient(srv.Conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []string
		for a, err := range directory.LowBalances(ctx, &bankv1.LowBalancesRequest{BelowCents: 600}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s:%d", a.GetAccountId(), a.GetBalanceCents()))
		}
		if fmt.Sprint(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("accounts below 600 cents: %v, want %s\n%s", got, want, srv.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForOwned waits until the directory lists n accounts of owner.
func waitForOwned(t *testing.T, ctx context.Context, srv *e2e.Server, owner string, n int) {
	t.Helper()
	directory := bankv1.NewAccountDirectoryViewClient(srv.Conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := directory.AccountsByOwner(ctx, &bankv1.AccountsByOwnerRequest{OwnerId: owner, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetAccounts()) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("accounts of %s: %d, want %d\n%s", owner, len(res.GetAccounts()), n, srv.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func postView(t *testing.T, srv *e2e.Server, headers map[string]string, method, body string, out any) {
	t.Helper()
	code, res := srv.PostWith(t, headers, "/bank.v1.AccountDirectoryService/"+method, body)
	if code != http.StatusOK {
		t.Fatalf("%s over HTTP: %d %s", method, code, res)
	}
	if err := json.Unmarshal([]byte(res), out); err != nil {
		t.Fatalf("%s over HTTP: %v: %s", method, err, res)
	}
}
