package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/statefun-go/statefun/examples/bank/account"
	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	transferv1 "github.com/statefun-go/statefun/examples/transfer/gen/transfer/v1"
	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/memory"
)

// These tests host the accounts and the workflow in one runtime, in
// process, on the in-memory store, as main does: the runtime runs the
// steps on its own, and the test only starts transfers and reads them.

// flakyAccounts is the bank's account handler whose deposits into some
// accounts first fail with UNAVAILABLE (an error that asks for a retry, so
// the account stores no answer for it and runs the retry), or are refused
// for good, and which records the idempotency key of every deposit.
type flakyAccounts struct {
	account.Account

	mu sync.Mutex
	// failures counts, by account, the deposits still to fail; -1
	// refuses them all (the account is frozen).
	failures map[string]int
	// keys lists, by account, the idempotency keys its deposits carried.
	keys map[string][]string
}

func (a *flakyAccounts) Deposit(ctx *bankv1.AccountContext, acc *bankv1.Account, req *bankv1.DepositRequest) (*bankv1.Balance, error) {
	md, _ := metadata.FromIncomingContext(ctx.Context())
	a.mu.Lock()
	a.keys[ctx.EntityID()] = append(a.keys[ctx.EntityID()], strings.Join(md.Get(statefun.IdempotencyKeyHeader), ","))
	n := a.failures[ctx.EntityID()]
	if n > 0 {
		a.failures[ctx.EntityID()] = n - 1
	}
	a.mu.Unlock()
	switch {
	case n < 0:
		return nil, status.Errorf(codes.FailedPrecondition, "account %s is frozen", ctx.EntityID())
	case n > 0:
		return nil, status.Errorf(codes.Unavailable, "account %s cannot take deposits right now", ctx.EntityID())
	}
	return a.Account.Deposit(ctx, acc, req)
}

func (a *flakyAccounts) depositKeys(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.keys[id]...)
}

// waitEnded polls the transfer until its workflow completed or failed, for
// at most 20s, and returns it.
func waitEnded(t *testing.T, transfers *transferv1.TransferWorkflowClient, id string) *transferv1.GetResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := transfers.Get(t.Context(), &transferv1.GetRequest{TransferId: id})
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		switch res.GetStatus().GetPhase() {
		case statefunv1.WorkflowStatus_PHASE_COMPLETED, statefunv1.WorkflowStatus_PHASE_FAILED:
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer %s has not ended within 20s: %v", id, res)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTransfersInProcess(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	accounts := &flakyAccounts{
		// carol's first two deposits fail: the third attempt gets through.
		// dave refuses every deposit: the transfer to him is refunded.
		failures: map[string]int{"carol": 2, "dave": -1},
		keys:     map[string][]string{},
	}
	rt, err := statefun.New([]*statefun.Entity{bankv1.NewAccount(accounts), transferv1.NewTransfer(Transfer{})},
		statefun.WithStore(memory.New()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(cctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	bank := bankv1.NewAccountEntityClient(rt.ClientConn())
	transfers := transferv1.NewTransferWorkflowClient(rt.ClientConn())

	opening := map[string]int64{"alice": 10000, "bob": 5000, "carol": 0, "dave": 0}
	for id, cents := range opening {
		if _, err := bank.Open(ctx, &bankv1.OpenRequest{AccountId: id, OwnerId: id, OwnerName: id, InitialDepositCents: cents}); err != nil {
			t.Fatal(err)
		}
	}
	type want struct {
		phase  statefunv1.WorkflowStatus_Phase
		stage  transferv1.Transfer_Stage
		reason string // a part of the reason
	}
	cases := []struct {
		req  *transferv1.StartRequest
		want want
	}{
		{&transferv1.StartRequest{TransferId: "ok", FromAccount: "alice", ToAccount: "bob", AmountCents: 2500},
			want{statefunv1.WorkflowStatus_PHASE_COMPLETED, transferv1.Transfer_STAGE_COMPLETED, ""}},
		{&transferv1.StartRequest{TransferId: "too-much", FromAccount: "bob", ToAccount: "alice", AmountCents: 100000},
			want{statefunv1.WorkflowStatus_PHASE_FAILED, transferv1.Transfer_STAGE_REJECTED, "insufficient funds"}},
		{&transferv1.StartRequest{TransferId: "no-source", FromAccount: "zoe", ToAccount: "alice", AmountCents: 100},
			want{statefunv1.WorkflowStatus_PHASE_FAILED, transferv1.Transfer_STAGE_REJECTED, "account zoe is not open"}},
		{&transferv1.StartRequest{TransferId: "no-destination", FromAccount: "alice", ToAccount: "nobody", AmountCents: 1000},
			want{statefunv1.WorkflowStatus_PHASE_FAILED, transferv1.Transfer_STAGE_REFUNDED, "account nobody is not open; open it first; 1000 cents refunded to alice"}},
		{&transferv1.StartRequest{TransferId: "flaky", FromAccount: "alice", ToAccount: "carol", AmountCents: 700},
			want{statefunv1.WorkflowStatus_PHASE_COMPLETED, transferv1.Transfer_STAGE_COMPLETED, ""}},
		{&transferv1.StartRequest{TransferId: "down", FromAccount: "alice", ToAccount: "dave", AmountCents: 300},
			want{statefunv1.WorkflowStatus_PHASE_FAILED, transferv1.Transfer_STAGE_REFUNDED, "the deposit into dave was refused: account dave is frozen; 300 cents refunded to alice"}},
		{&transferv1.StartRequest{TransferId: "delayed", FromAccount: "bob", ToAccount: "alice", AmountCents: 50, Delay: durationpb.New(100 * time.Millisecond)},
			want{statefunv1.WorkflowStatus_PHASE_COMPLETED, transferv1.Transfer_STAGE_COMPLETED, ""}},
		{&transferv1.StartRequest{TransferId: "cancelled", FromAccount: "bob", ToAccount: "alice", AmountCents: 4000, Delay: durationpb.New(time.Hour)},
			want{statefunv1.WorkflowStatus_PHASE_FAILED, transferv1.Transfer_STAGE_CANCELLED, "cancelled during its delay"}},
	}
	for _, c := range cases {
		if _, err := transfers.Start(ctx, c.req); err != nil {
			t.Fatalf("start %s: %v", c.req.GetTransferId(), err)
		}
	}
	if _, err := transfers.Cancel(ctx, &transferv1.CancelRequest{TransferId: "cancelled"}); err != nil {
		t.Fatalf("cancel: %v", err)
	}

	// What the transfers that completed moved, by account.
	moved := map[string]int64{}
	for _, c := range cases {
		got := waitEnded(t, transfers, c.req.GetTransferId())
		tr, st := got.GetTransfer(), got.GetStatus()
		if st.GetPhase() != c.want.phase || tr.GetStage() != c.want.stage || !strings.Contains(tr.GetReason(), c.want.reason) {
			t.Errorf("transfer %s ended %v, stage %v, reason %q; want %v, %v, a reason with %q",
				c.req.GetTransferId(), st.GetPhase(), tr.GetStage(), tr.GetReason(), c.want.phase, c.want.stage, c.want.reason)
		}
		if tr.GetStage() == transferv1.Transfer_STAGE_COMPLETED {
			moved[tr.GetFromAccount()] -= tr.GetAmountCents()
			moved[tr.GetToAccount()] += tr.GetAmountCents()
		}
	}

	var total, totalOpening int64
	for id, cents := range opening {
		b, err := bank.GetBalance(ctx, &bankv1.GetBalanceRequest{AccountId: id})
		if err != nil {
			t.Fatal(err)
		}
		if want := cents + moved[id]; b.GetBalanceCents() != want {
			t.Errorf("%s has %d cents, want %d (%d opening, %+d moved by completed transfers)", id, b.GetBalanceCents(), want, cents, moved[id])
		}
		total += b.GetBalanceCents()
		totalOpening += cents
	}
	if total != totalOpening {
		t.Errorf("the accounts hold %d cents in all, want the %d they opened with", total, totalOpening)
	}

	// The deposit step's attempts carry one idempotency key, the step's:
	// had an attempt's deposit been made, the next would get its answer.
	for id, attempts := range map[string]int{"carol": 3, "dave": 1} {
		keys := accounts.depositKeys(id)
		if len(keys) != attempts || keys[0] == "" {
			t.Errorf("deposits into %s carried keys %q; want %d attempts, each with a key", id, keys, attempts)
			continue
		}
		for _, k := range keys[1:] {
			if k != keys[0] {
				t.Errorf("deposits into %s carried keys %q; want the same key on every attempt", id, keys)
			}
		}
	}
	// alice took two refunds and bob's delayed transfer, each under a key
	// of its own: a key names one step of one transfer.
	keys := accounts.depositKeys("alice")
	distinct := map[string]bool{}
	for _, k := range keys {
		distinct[k] = k != ""
	}
	if len(keys) != 3 || len(distinct) != 3 || !distinct[keys[0]] || !distinct[keys[1]] || !distinct[keys[2]] {
		t.Errorf("deposits into alice carried keys %q; want three deposits, each with a key of its own", keys)
	}

	_, err = transfers.Start(ctx, cases[0].req)
	if status.Code(err) != codes.AlreadyExists {
		t.Errorf("starting transfer ok again: %v, want ALREADY_EXISTS", err)
	}
	_, err = transfers.Cancel(ctx, &transferv1.CancelRequest{TransferId: "ok"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("cancelling a completed transfer: %v, want FAILED_PRECONDITION", err)
	}
	_, err = transfers.Get(ctx, &transferv1.GetRequest{TransferId: "never-started"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Get of a transfer never started: %v, want NOT_FOUND", err)
	}
}
