package account

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/memory"
)

// TestDirectoryFindsAccountsByOwnerAndBalance: the directory view answers
// what an account's key cannot: an owner's accounts, page by page, and
// the accounts below a balance, lowest first, as deposits and
// withdrawals change them.
func TestDirectoryFindsAccountsByOwnerAndBalance(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := statefun.New([]*statefun.Entity{bankv1.NewAccount(Account{})},
		statefun.WithStore(memory.New()), statefun.WithViews(bankv1.NewAccountDirectory(Directory{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Close(cctx)
	})
	accounts := bankv1.NewAccountEntityClient(rt.ClientConn())
	directory := bankv1.NewAccountDirectoryViewClient(rt.ClientConn())
	for i, a := range []struct {
		id, owner string
		cents     int64
	}{{"a1", "alice", 5000}, {"a2", "bob", 300}, {"a3", "alice", 100}, {"a4", "alice", 900}} {
		if _, err := accounts.Open(ctx, &bankv1.OpenRequest{AccountId: a.id, OwnerId: a.owner, OwnerName: a.owner, InitialDepositCents: a.cents}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(2 * time.Millisecond) // opened_at orders alice's accounts
		}
	}
	if _, err := accounts.Withdraw(ctx, &bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 4500}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Deposit(ctx, &bankv1.DepositRequest{AccountId: "a3", AmountCents: 1000}); err != nil {
		t.Fatal(err)
	}

	byOwner := func() string {
		var got []string
		for a, err := range directory.AccountsByOwnerAll(ctx, &bankv1.AccountsByOwnerRequest{OwnerId: "alice", PageSize: 2}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s:%d", a.GetAccountId(), a.GetBalanceCents()))
		}
		return fmt.Sprint(got)
	}
	low := func() string {
		var got []string
		for a, err := range directory.LowBalances(ctx, &bankv1.LowBalancesRequest{BelowCents: 1000}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s:%d", a.GetAccountId(), a.GetBalanceCents()))
		}
		return fmt.Sprint(got)
	}
	// Views follow their events a little behind: wait for the last ones.
	deadline := time.Now().Add(5 * time.Second)
	want := [2]string{"[a1:500 a3:1100 a4:900]", "[a2:300 a1:500 a4:900]"}
	for {
		got := [2]string{byOwner(), low()}
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's accounts %s, want %s; balances below 1000 %s, want %s", got[0], want[0], got[1], want[1])
		}
		time.Sleep(5 * time.Millisecond)
	}
	page, err := directory.AccountsByOwner(ctx, &bankv1.AccountsByOwnerRequest{OwnerId: "alice", PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if ids := accountIDs(page.GetAccounts()); !slices.Equal(ids, []string{"a1", "a3"}) || page.GetNextPageToken() == "" {
		t.Errorf("first page of 2: %v, next token %q; want [a1 a3] and a token", ids, page.GetNextPageToken())
	}
}

func accountIDs(as []*bankv1.AccountSummary) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.GetAccountId())
	}
	return ids
}
