package account

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/memory"
)

// These tests host the entity in a runtime, in process, on an in-memory
// store: what the testkit leaves out.

func newRuntime(t *testing.T, opts ...statefun.Option) (*statefun.Runtime, *bankv1.AccountEntityClient) {
	t.Helper()
	rt, err := statefun.New([]*statefun.Entity{bankv1.NewAccount(Account{})}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return rt, bankv1.NewAccountEntityClient(rt.ClientConn())
}

// TestAccountSurvivesRestart stores an account's events with one runtime
// and loads them into a second: replaying them must give the same balance
// and statement, and the account must still count as open.
func TestAccountSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := memory.New()
	rt, accounts := newRuntime(t, statefun.WithStore(st))
	if _, err := accounts.Open(ctx, &bankv1.OpenRequest{AccountId: "a1", OwnerId: "alice", OwnerName: "Alice Smith", InitialDepositCents: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Deposit(ctx, &bankv1.DepositRequest{AccountId: "a1", AmountCents: 250}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.Withdraw(ctx, &bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 300}); err != nil {
		t.Fatal(err)
	}
	before, err := accounts.GetStatement(ctx, &bankv1.GetStatementRequest{AccountId: "a1", OwnerId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	_, accounts = newRuntime(t, statefun.WithStore(st))
	after, err := accounts.GetStatement(ctx, &bankv1.GetStatementRequest{AccountId: "a1", OwnerId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after, protocmp.Transform()); diff != "" {
		t.Errorf("statement changed across a restart (-before +after):\n%s", diff)
	}
	if after.GetBalanceCents() != 950 || len(after.GetTransactions()) != 3 {
		t.Errorf("statement after restart = %v, want 950 cents and 3 transactions", after)
	}
	_, err = accounts.Open(ctx, &bankv1.OpenRequest{AccountId: "a1", OwnerId: "alice", OwnerName: "Alice Smith"})
	wantError(t, err, codes.AlreadyExists)
}

// TestMissingAccountID checks that a request without its key is refused
// before it reaches a handler.
func TestMissingAccountID(t *testing.T) {
	t.Parallel()
	_, accounts := newRuntime(t)
	_, err := accounts.Deposit(t.Context(), &bankv1.DepositRequest{AmountCents: 100})
	wantError(t, err, codes.InvalidArgument, "field account_id of bank.v1.DepositRequest is empty")
}
