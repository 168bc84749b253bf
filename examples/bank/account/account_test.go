package account

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
)

// The unit tests run the handlers in the generated testkit: given a
// history, when a command, then its reply or status code and its events.
// The testkit also fails a test whose handler changes its state argument.

var (
	t0 = timestamppb.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	t1 = timestamppb.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	t2 = timestamppb.New(time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC))
)

// opened is the event of Alice opening an account with cents at t0.
func opened(cents int64) *bankv1.AccountOpened {
	return &bankv1.AccountOpened{OwnerId: "alice", OwnerName: "Alice Smith", InitialDepositCents: cents, At: t0}
}

// openAccount returns a testkit whose account Alice opened with cents.
func openAccount(t *testing.T, cents int64) *bankv1.AccountTestKit {
	t.Helper()
	kit := bankv1.NewAccountTestKit(t, Account{})
	kit.Given(opened(cents))
	return kit
}

// wantError checks the status code of err and that its message mentions
// each of parts.
func wantError(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	for _, p := range parts {
		if msg := status.Convert(err).Message(); !strings.Contains(msg, p) {
			t.Errorf("message %q does not mention %q", msg, p)
		}
	}
}

// wantEvents compares events, ignoring their times (commands stamp events
// with the clock), and checks that every event has a time.
func wantEvents(t *testing.T, got []bankv1.AccountEvent, want ...bankv1.AccountEvent) {
	t.Helper()
	ignoreTimes := cmp.Options{
		protocmp.Transform(),
		protocmp.IgnoreFields(&bankv1.AccountOpened{}, "at"),
		protocmp.IgnoreFields(&bankv1.FundsDeposited{}, "at"),
		protocmp.IgnoreFields(&bankv1.FundsWithdrawn{}, "at"),
	}
	if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, e := range got {
		if !e.ProtoReflect().Has(e.ProtoReflect().Descriptor().Fields().ByName("at")) {
			t.Errorf("event %v has no time", e)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		req      *bankv1.OpenRequest
		wantCode codes.Code
		wantMsg  string
	}{
		{
			name: "with an initial deposit",
			req:  &bankv1.OpenRequest{OwnerId: "alice", OwnerName: "Alice Smith", InitialDepositCents: 1000},
		},
		{
			name: "with nothing",
			req:  &bankv1.OpenRequest{OwnerId: "alice", OwnerName: "Alice Smith"},
		},
		{
			name:     "without owner ID",
			req:      &bankv1.OpenRequest{OwnerName: "Alice Smith"},
			wantCode: codes.InvalidArgument,
			wantMsg:  "owner_id is required",
		},
		{
			name:     "without owner name",
			req:      &bankv1.OpenRequest{OwnerId: "alice"},
			wantCode: codes.InvalidArgument,
			wantMsg:  "owner_name is required",
		},
		{
			name:     "with a negative initial deposit",
			req:      &bankv1.OpenRequest{OwnerId: "alice", OwnerName: "Alice Smith", InitialDepositCents: -1},
			wantCode: codes.InvalidArgument,
			wantMsg:  "initial_deposit_cents must be zero or more, got -1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kit := bankv1.NewAccountTestKit(t, Account{})
			tt.req.AccountId = "a1"
			res := kit.Open(tt.req)
			if tt.wantCode != codes.OK {
				wantError(t, res.Err(), tt.wantCode, tt.wantMsg)
				// Still not open.
				kit.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).WantCode(codes.NotFound)
				return
			}
			res.WantReply(&bankv1.Balance{BalanceCents: tt.req.GetInitialDepositCents()})
			wantEvents(t, res.Events(), &bankv1.AccountOpened{OwnerId: "alice", OwnerName: "Alice Smith", InitialDepositCents: tt.req.GetInitialDepositCents()})
			kit.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).WantReply(&bankv1.Balance{BalanceCents: tt.req.GetInitialDepositCents()})
		})
	}
}

func TestOpenTwice(t *testing.T) {
	t.Parallel()
	kit := openAccount(t, 1000)
	res := kit.Open(&bankv1.OpenRequest{AccountId: "a1", OwnerId: "mallory", OwnerName: "Mallory", InitialDepositCents: 5})
	wantError(t, res.Err(), codes.AlreadyExists, "account a1 is already open")
	// The owner, the balance and the history are untouched.
	want := &bankv1.Account{}
	Account{}.OnAccountOpened(want, opened(1000))
	kit.WantState(want)
}

// TestNotOpen checks that every call but Open needs an open account.
func TestNotOpen(t *testing.T) {
	t.Parallel()
	calls := map[string]func(*bankv1.AccountTestKit) error{
		"Deposit": func(k *bankv1.AccountTestKit) error {
			return k.Deposit(&bankv1.DepositRequest{AccountId: "a1", AmountCents: 100}).Err()
		},
		"Withdraw": func(k *bankv1.AccountTestKit) error {
			return k.Withdraw(&bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 100}).Err()
		},
		"GetBalance": func(k *bankv1.AccountTestKit) error {
			return k.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).Err()
		},
		"GetStatement": func(k *bankv1.AccountTestKit) error {
			return k.GetStatement(&bankv1.GetStatementRequest{AccountId: "a1", OwnerId: "alice"}).Err()
		},
	}
	for method, call := range calls {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			wantError(t, call(bankv1.NewAccountTestKit(t, Account{})), codes.NotFound, "account a1 is not open")
		})
	}
}

func TestDeposit(t *testing.T) {
	t.Parallel()
	kit := openAccount(t, 1000)
	res := kit.Deposit(&bankv1.DepositRequest{AccountId: "a1", AmountCents: 250})
	res.WantReply(&bankv1.Balance{BalanceCents: 1250})
	wantEvents(t, res.Events(), &bankv1.FundsDeposited{AmountCents: 250})
	kit.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).WantReply(&bankv1.Balance{BalanceCents: 1250})
}

func TestDepositRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		balance     int64
		amountCents int64
		wantCode    codes.Code
		wantMsg     string
	}{
		{"zero", 1000, 0, codes.InvalidArgument, "amount_cents must be positive, got 0"},
		{"negative", 1000, -100, codes.InvalidArgument, "amount_cents must be positive, got -100"},
		// int64 cents hold some 92 quadrillion dollars; past that the
		// balance would wrap around to a negative number.
		{"overflowing the balance", math.MaxInt64 - 10, 11, codes.OutOfRange, "overflow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kit := openAccount(t, tt.balance)
			res := kit.Deposit(&bankv1.DepositRequest{AccountId: "a1", AmountCents: tt.amountCents})
			wantError(t, res.Err(), tt.wantCode, tt.wantMsg)
			kit.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).WantReply(&bankv1.Balance{BalanceCents: tt.balance})
		})
	}
}

func TestDepositUpToTheLargestBalance(t *testing.T) {
	t.Parallel()
	kit := openAccount(t, math.MaxInt64-10)
	kit.Deposit(&bankv1.DepositRequest{AccountId: "a1", AmountCents: 10}).WantReply(&bankv1.Balance{BalanceCents: math.MaxInt64})
}

func TestWithdraw(t *testing.T) {
	t.Parallel()
	kit := openAccount(t, 500)
	res := kit.Withdraw(&bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 200})
	res.WantReply(&bankv1.Balance{BalanceCents: 300})
	wantEvents(t, res.Events(), &bankv1.FundsWithdrawn{AmountCents: 200})
	// The whole balance may go, down to zero exactly.
	kit.Withdraw(&bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 300}).WantReply(&bankv1.Balance{BalanceCents: 0})
}

func TestWithdrawRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		balance     int64
		amountCents int64
		wantCode    codes.Code
		wantMsg     []string
	}{
		{"zero", 500, 0, codes.InvalidArgument, []string{"amount_cents must be positive, got 0"}},
		{"negative", 500, -100, codes.InvalidArgument, []string{"amount_cents must be positive, got -100"}},
		{"more than the balance", 500, 700, codes.FailedPrecondition, []string{"insufficient funds", "500 cents", "700 cents"}},
		{"from an empty account", 0, 1, codes.FailedPrecondition, []string{"insufficient funds", "0 cents", "1 cents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kit := openAccount(t, tt.balance)
			res := kit.Withdraw(&bankv1.WithdrawRequest{AccountId: "a1", AmountCents: tt.amountCents})
			wantError(t, res.Err(), tt.wantCode, tt.wantMsg...)
			kit.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).WantReply(&bankv1.Balance{BalanceCents: tt.balance})
		})
	}
}

// history is an account's events: opened with 10.00, 2.50 in, 3.00 out.
func history() []bankv1.AccountEvent {
	return []bankv1.AccountEvent{
		opened(1000),
		&bankv1.FundsDeposited{AmountCents: 250, At: t1},
		&bankv1.FundsWithdrawn{AmountCents: 300, At: t2},
	}
}

// statement is the statement of history.
func statement() *bankv1.Statement {
	return &bankv1.Statement{
		OwnerName:    "Alice Smith",
		BalanceCents: 950,
		Transactions: []*bankv1.Transaction{
			{Kind: bankv1.TransactionKind_TRANSACTION_KIND_OPENING, AmountCents: 1000, BalanceCents: 1000, At: t0},
			{Kind: bankv1.TransactionKind_TRANSACTION_KIND_DEPOSIT, AmountCents: 250, BalanceCents: 1250, At: t1},
			{Kind: bankv1.TransactionKind_TRANSACTION_KIND_WITHDRAWAL, AmountCents: 300, BalanceCents: 950, At: t2},
		},
	}
}

// TestEventsBuildTheStatement checks the On methods alone: folding the
// history gives the owner, the balance and a statement with running
// balances and the events' times.
func TestEventsBuildTheStatement(t *testing.T) {
	t.Parallel()
	kit := bankv1.NewAccountTestKit(t, Account{})
	kit.Given(history()...)
	st := statement()
	kit.WantState(&bankv1.Account{
		OwnerId:      "alice",
		OwnerName:    "Alice Smith",
		BalanceCents: 950,
		OpenedAt:     t0,
		Transactions: st.GetTransactions(),
	})
}

func TestStatement(t *testing.T) {
	t.Parallel()
	kit := bankv1.NewAccountTestKit(t, Account{})
	kit.Given(history()...)
	kit.GetStatement(&bankv1.GetStatementRequest{AccountId: "a1", OwnerId: "alice"}).WantReply(statement())
}

// TestStatementOfCommands runs the commands, refused ones included, and
// checks that the statement has exactly the accepted ones, each stamped
// with a time, in order.
func TestStatementOfCommands(t *testing.T) {
	t.Parallel()
	kit := bankv1.NewAccountTestKit(t, Account{})
	kit.Open(&bankv1.OpenRequest{AccountId: "a1", OwnerId: "alice", OwnerName: "Alice Smith", InitialDepositCents: 1000}).WantCode(codes.OK)
	kit.Deposit(&bankv1.DepositRequest{AccountId: "a1", AmountCents: 250}).WantCode(codes.OK)
	kit.Withdraw(&bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 5000}).WantCode(codes.FailedPrecondition)
	kit.Deposit(&bankv1.DepositRequest{AccountId: "a1", AmountCents: -1}).WantCode(codes.InvalidArgument)
	kit.Withdraw(&bankv1.WithdrawRequest{AccountId: "a1", AmountCents: 300}).WantCode(codes.OK)

	got := kit.GetStatement(&bankv1.GetStatementRequest{AccountId: "a1", OwnerId: "alice"}).Reply()
	// The times come from the clock: check them apart.
	for i, tx := range got.GetTransactions() {
		if tx.GetAt() == nil {
			t.Fatalf("transaction %d has no time", i)
		}
		if i > 0 && tx.GetAt().AsTime().Before(got.GetTransactions()[i-1].GetAt().AsTime()) {
			t.Errorf("transaction %d is dated before transaction %d", i, i-1)
		}
	}
	if diff := cmp.Diff(statement(), got, protocmp.Transform(), protocmp.IgnoreFields(&bankv1.Transaction{}, "at")); diff != "" {
		t.Errorf("statement (-want +got):\n%s", diff)
	}
}

func TestStatementOnlyForTheOwner(t *testing.T) {
	t.Parallel()
	for _, caller := range []string{"mallory", "", "Alice Smith"} {
		t.Run(caller, func(t *testing.T) {
			t.Parallel()
			kit := bankv1.NewAccountTestKit(t, Account{})
			kit.Given(history()...)
			res := kit.GetStatement(&bankv1.GetStatementRequest{AccountId: "a1", OwnerId: caller})
			wantError(t, res.Err(), codes.PermissionDenied, "only the owner of account a1")
			// The balance is not the owner's secret in this example.
			kit.GetBalance(&bankv1.GetBalanceRequest{AccountId: "a1"}).WantReply(&bankv1.Balance{BalanceCents: 950})
		})
	}
}
