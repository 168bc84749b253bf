package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	transferv1 "github.com/statefun-go/statefun/examples/transfer/gen/transfer/v1"
	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
)

// The unit tests run the workflow in the generated testkit: the test runs
// each step with RunStep, and fake accounts (OnCall) answer the steps'
// calls. No runtime, no store, no clock but the testkit's.

const (
	withdrawMethod = bankv1.AccountService_Withdraw_FullMethodName
	depositMethod  = bankv1.AccountService_Deposit_FullMethodName
)

// bank fakes the account calls of a testkit: it records every call and
// answers with the next of an account's scripted errors, or with success
// once they are used up.
type bank struct {
	withdrawals []*bankv1.WithdrawRequest
	deposits    []*bankv1.DepositRequest
	// fail holds, by method and account, the errors its next calls get.
	fail map[string][]error
}

func newBank(kit *transferv1.TransferTestKit) *bank {
	b := &bank{fail: map[string][]error{}}
	kit.OnCall(withdrawMethod, func(req proto.Message) (proto.Message, error) {
		r := req.(*bankv1.WithdrawRequest)
		b.withdrawals = append(b.withdrawals, r)
		return b.answer(withdrawMethod, r.GetAccountId())
	})
	kit.OnCall(depositMethod, func(req proto.Message) (proto.Message, error) {
		r := req.(*bankv1.DepositRequest)
		b.deposits = append(b.deposits, r)
		return b.answer(depositMethod, r.GetAccountId())
	})
	return b
}

// failNext makes the next calls of method on account fail with errs, in
// order.
func (b *bank) failNext(method, account string, errs ...error) {
	b.fail[method+" "+account] = append(b.fail[method+" "+account], errs...)
}

func (b *bank) answer(method, account string) (proto.Message, error) {
	key := method + " " + account
	if errs := b.fail[key]; len(errs) > 0 {
		b.fail[key] = errs[1:]
		return nil, errs[0]
	}
	return &bankv1.Balance{}, nil
}

func start(t *testing.T, kit *transferv1.TransferTestKit, req *transferv1.StartRequest) {
	t.Helper()
	kit.Start(req).WantCode(codes.OK)
}

func aliceToBob(cents int64) *transferv1.StartRequest {
	return &transferv1.StartRequest{TransferId: "t1", FromAccount: "alice", ToAccount: "bob", AmountCents: cents}
}

// wantAt fails the test unless the workflow is in phase at step (and, when
// attempt is not 0, at that attempt).
func wantAt(t *testing.T, st *statefunv1.WorkflowStatus, phase statefunv1.WorkflowStatus_Phase, step string, attempt uint32) {
	t.Helper()
	if st.GetPhase() != phase || st.GetStep() != step || (attempt != 0 && st.GetAttempt() != attempt) {
		t.Fatalf("workflow is %v at step %q attempt %d (last error %q); want %v at %q attempt %d",
			st.GetPhase(), st.GetStep(), st.GetAttempt(), st.GetLastError(), phase, step, attempt)
	}
}

// history lists the workflow's step runs as step#attempt:outcome->next.
func history(st *statefunv1.WorkflowStatus) string {
	var runs []string
	for _, r := range st.GetHistory() {
		outcome := strings.TrimPrefix(r.GetOutcome().String(), "OUTCOME_")
		runs = append(runs, fmt.Sprintf("%s#%d:%s->%s", r.GetStep(), r.GetAttempt(), outcome, r.GetNext()))
	}
	return strings.Join(runs, " ")
}

func TestTransferMovesTheMoney(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	kit.Start(aliceToBob(2500)).WantReply(&transferv1.StartResponse{Transfer: &transferv1.Transfer{
		FromAccount: "alice", ToAccount: "bob", AmountCents: 2500, Stage: transferv1.Transfer_STAGE_PENDING,
	}})
	wantAt(t, kit.Status(), statefunv1.WorkflowStatus_PHASE_RUNNING, "withdraw", 1)

	if res := kit.RunStep(); res.Err != nil {
		t.Fatalf("withdraw: %v", res.Err)
	}
	wantAt(t, kit.Status(), statefunv1.WorkflowStatus_PHASE_RUNNING, "deposit", 1)
	if got := kit.State().GetStage(); got != transferv1.Transfer_STAGE_WITHDRAWN {
		t.Errorf("stage after withdraw = %v, want WITHDRAWN", got)
	}
	if len(b.withdrawals) != 1 || !proto.Equal(b.withdrawals[0], &bankv1.WithdrawRequest{AccountId: "alice", AmountCents: 2500}) {
		t.Errorf("withdrawals = %v, want 2500 cents from alice", b.withdrawals)
	}

	if res := kit.RunStep(); res.Err != nil {
		t.Fatalf("deposit: %v", res.Err)
	}
	wantAt(t, kit.Status(), statefunv1.WorkflowStatus_PHASE_COMPLETED, "deposit", 0)
	if len(b.deposits) != 1 || !proto.Equal(b.deposits[0], &bankv1.DepositRequest{AccountId: "bob", AmountCents: 2500}) {
		t.Errorf("deposits = %v, want 2500 cents into bob", b.deposits)
	}

	got := kit.Get(&transferv1.GetRequest{TransferId: "t1"})
	got.WantCode(codes.OK)
	if tr := got.Reply().GetTransfer(); tr.GetStage() != transferv1.Transfer_STAGE_COMPLETED || tr.GetReason() != "" {
		t.Errorf("Get's transfer = %v, want COMPLETED without a reason", tr)
	}
	if h := history(got.Reply().GetStatus()); h != "withdraw#1:DONE->deposit deposit#1:DONE->" {
		t.Errorf("Get's history = %s", h)
	}
}

func TestInsufficientFundsMovesNothing(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	b.failNext(withdrawMethod, "alice", status.Error(codes.FailedPrecondition, "insufficient funds: the balance is 100 cents, the withdrawal 2500 cents"))
	start(t, kit, aliceToBob(2500))

	st := kit.Run(10)
	wantAt(t, st, statefunv1.WorkflowStatus_PHASE_FAILED, "withdraw", 0)
	if !strings.Contains(st.GetLastError(), "insufficient funds") {
		t.Errorf("last error = %q, want the account's refusal", st.GetLastError())
	}
	if s := kit.State(); s.GetStage() != transferv1.Transfer_STAGE_REJECTED || !strings.Contains(s.GetReason(), "withdrawal from alice was refused") {
		t.Errorf("state = %v, want REJECTED with the refusal as its reason", s)
	}
	if len(b.withdrawals) != 1 || len(b.deposits) != 0 {
		t.Errorf("%d withdrawals and %d deposits; want the one refused withdrawal and no deposit", len(b.withdrawals), len(b.deposits))
	}
}

func TestWithdrawalFromAMissingAccountMovesNothing(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	b.failNext(withdrawMethod, "alice", status.Error(codes.NotFound, "account alice is not open; open it first"))
	start(t, kit, aliceToBob(2500))
	wantAt(t, kit.Run(10), statefunv1.WorkflowStatus_PHASE_FAILED, "withdraw", 0)
	if len(b.deposits) != 0 {
		t.Errorf("deposits = %v, want none", b.deposits)
	}
}

// TestWithdrawalRetriesUntilItIsAnswered: an error that is not a refusal
// (the account's store was down) says nothing about whether the money
// left; the step runs again, without limit, backing off.
func TestWithdrawalRetriesUntilItIsAnswered(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	kit.SetNow(now)
	var outage []error
	for range 12 {
		outage = append(outage, status.Error(codes.Unavailable, "the store is down"))
	}
	b.failNext(withdrawMethod, "alice", outage...)
	start(t, kit, aliceToBob(2500))

	for i := range outage {
		res := kit.RunStep()
		if res.Err == nil || res.Attempt != i+1 {
			t.Fatalf("attempt %d: %+v, want attempt %d failing", i+1, res, i+1)
		}
		wantAt(t, res.Status, statefunv1.WorkflowStatus_PHASE_RUNNING, "withdraw", uint32(i+2))
		// The backoff doubles from 100ms up to the workflow's max_backoff
		// of 10s, which it reaches after 8 attempts; the runtime waits
		// between half of it and all of it.
		wait := res.Status.GetWakeAt().AsTime().Sub(now)
		if wait <= 0 || wait > 10*time.Second || (i >= 8 && wait < 5*time.Second) {
			t.Errorf("after attempt %d the step waits %v; want a backoff of at most 10s, and at least 5s once at the cap", i+1, wait)
		}
	}
	wantAt(t, kit.Run(10), statefunv1.WorkflowStatus_PHASE_COMPLETED, "deposit", 0)
	if len(b.withdrawals) != len(outage)+1 || len(b.deposits) != 1 {
		t.Errorf("%d withdrawals and %d deposits; want %d and 1", len(b.withdrawals), len(b.deposits), len(outage)+1)
	}
}

// TestFailingDepositIsRetriedUntilTheAccountAnswers: an error that is not
// a refusal does not say whether the deposit was made, so the transfer
// neither refunds nor gives up: it retries, and completes once the account
// answers.
func TestFailingDepositIsRetriedUntilTheAccountAnswers(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	unavailable := status.Error(codes.Unavailable, "bob's bank is down")
	b.failNext(depositMethod, "bob", unavailable, unavailable, unavailable, unavailable)
	start(t, kit, aliceToBob(2500))
	kit.RunStep() // withdraw

	for attempt := 1; attempt <= 4; attempt++ {
		res := kit.RunStep()
		if res.Step != "deposit" || res.Attempt != attempt || status.Code(res.Err) != codes.Unavailable {
			t.Fatalf("run %d: step %q attempt %d err %v; want deposit attempt %d failing with UNAVAILABLE", attempt, res.Step, res.Attempt, res.Err, attempt)
		}
		if s := kit.State(); s.GetStage() != transferv1.Transfer_STAGE_WITHDRAWN {
			t.Errorf("stage after deposit attempt %d = %v, want WITHDRAWN: the money is out of alice's account", attempt, s.GetStage())
		}
	}
	res := kit.RunStep()
	if res.Err != nil {
		t.Fatalf("fifth deposit: %v", res.Err)
	}
	wantAt(t, res.Status, statefunv1.WorkflowStatus_PHASE_COMPLETED, "deposit", 0)
	if s := kit.State(); s.GetStage() != transferv1.Transfer_STAGE_COMPLETED {
		t.Errorf("stage = %v, want COMPLETED", s.GetStage())
	}
	if h := history(res.Status); h != "withdraw#1:DONE->deposit deposit#1:FAILED->deposit deposit#2:FAILED->deposit deposit#3:FAILED->deposit deposit#4:FAILED->deposit deposit#5:DONE->" {
		t.Errorf("history = %s", h)
	}
	if len(b.deposits) != 5 {
		t.Fatalf("deposits = %v, want five into bob and no refund", b.deposits)
	}
	// Every attempt carried the same key: had one been made, the next
	// would have got its answer instead of depositing again.
	var keys []string
	for _, c := range kit.Calls() {
		if c.Method == depositMethod {
			keys = append(keys, c.IdempotencyKey)
		}
	}
	if len(keys) != 5 || keys[0] == "" {
		t.Fatalf("deposit keys = %q", keys)
	}
	for _, k := range keys[1:] {
		if k != keys[0] {
			t.Errorf("deposit attempts carried keys %q; want one key", keys)
			break
		}
	}
}

// TestRefusedDepositIsRefundedAtOnce: an account that refuses the deposit
// would refuse it again; the transfer refunds without retrying.
func TestRefusedDepositIsRefundedAtOnce(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	b.failNext(depositMethod, "bob", status.Error(codes.NotFound, "account bob is not open; open it first"))
	start(t, kit, aliceToBob(2500))

	st := kit.Run(10)
	wantAt(t, st, statefunv1.WorkflowStatus_PHASE_FAILED, "refund", 0)
	if h := history(st); h != "withdraw#1:DONE->deposit deposit#1:DONE->refund refund#1:DONE->" {
		t.Errorf("history = %s", h)
	}
	want := "the deposit into bob was refused: account bob is not open; open it first; 2500 cents refunded to alice"
	if s := kit.State(); s.GetStage() != transferv1.Transfer_STAGE_REFUNDED || s.GetReason() != want {
		t.Errorf("state = %v\nwant REFUNDED, reason %q", s, want)
	}
	if len(b.deposits) != 2 || b.deposits[1].GetAccountId() != "alice" {
		t.Errorf("deposits = %v, want bob's refused one and alice's refund", b.deposits)
	}
}

// TestRefundRetriesWithoutLimit: the money must go back, however long the
// source account takes to take it.
func TestRefundRetriesWithoutLimit(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	b := newBank(kit)
	b.failNext(depositMethod, "bob", status.Error(codes.NotFound, "account bob is not open"))
	var outage []error
	for range 20 {
		outage = append(outage, status.Error(codes.Unavailable, "alice's store is down"))
	}
	b.failNext(depositMethod, "alice", outage...)
	start(t, kit, aliceToBob(2500))

	st := kit.Run(100)
	wantAt(t, st, statefunv1.WorkflowStatus_PHASE_FAILED, "refund", 0)
	if s := kit.State(); s.GetStage() != transferv1.Transfer_STAGE_REFUNDED {
		t.Errorf("stage = %v, want REFUNDED", s.GetStage())
	}
	if got := len(b.deposits); got != 1+len(outage)+1 {
		t.Errorf("%d deposits; want bob's, %d failed refunds and the one that worked", got, len(outage))
	}
}

func TestCancelDuringTheDelay(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	newBank(kit)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	kit.SetNow(now)
	req := aliceToBob(2500)
	req.Delay = durationpb.New(time.Hour)
	start(t, kit, req)
	st := kit.Status()
	wantAt(t, st, statefunv1.WorkflowStatus_PHASE_WAITING, "withdraw", 1)
	if got := st.GetWakeAt().AsTime(); !got.Equal(now.Add(time.Hour)) {
		t.Errorf("wake_at = %v, want the delay's end %v", got, now.Add(time.Hour))
	}

	res := kit.Cancel(&transferv1.CancelRequest{TransferId: "t1"})
	res.WantCode(codes.OK)
	if tr := res.Reply().GetTransfer(); tr.GetStage() != transferv1.Transfer_STAGE_CANCELLED {
		t.Errorf("Cancel's reply = %v, want CANCELLED", tr)
	}
	wantAt(t, kit.Status(), statefunv1.WorkflowStatus_PHASE_FAILED, "withdraw", 0)
	if got := kit.Status().GetLastError(); got != "cancelled during its delay; nothing moved" {
		t.Errorf("last error = %q", got)
	}
	// Ended: the runtime refuses further signals.
	kit.Cancel(&transferv1.CancelRequest{TransferId: "t1"}).WantCode(codes.FailedPrecondition)
}

// TestCancelOnceMovingIsRefused: without a delay the withdraw step is due
// at once, and may be running; a cancel could lose the money.
func TestCancelOnceMovingIsRefused(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	newBank(kit)
	start(t, kit, aliceToBob(2500))
	res := kit.Cancel(&transferv1.CancelRequest{TransferId: "t1"})
	res.WantCode(codes.FailedPrecondition)
	if msg := status.Convert(res.Err()).Message(); !strings.Contains(msg, "can no longer be cancelled") {
		t.Errorf("refusal = %q", msg)
	}
	kit.RunStep()
	kit.Cancel(&transferv1.CancelRequest{TransferId: "t1"}).WantCode(codes.FailedPrecondition)
	wantAt(t, kit.Run(10), statefunv1.WorkflowStatus_PHASE_COMPLETED, "deposit", 0)
}

func TestStartRefusesBadTransfers(t *testing.T) {
	for name, req := range map[string]*transferv1.StartRequest{
		"no source":        {TransferId: "t1", ToAccount: "bob", AmountCents: 1},
		"no destination":   {TransferId: "t1", FromAccount: "alice", AmountCents: 1},
		"to itself":        {TransferId: "t1", FromAccount: "alice", ToAccount: "alice", AmountCents: 1},
		"zero":             {TransferId: "t1", FromAccount: "alice", ToAccount: "bob"},
		"negative":         {TransferId: "t1", FromAccount: "alice", ToAccount: "bob", AmountCents: -5},
		"negative delay":   {TransferId: "t1", FromAccount: "alice", ToAccount: "bob", AmountCents: 1, Delay: durationpb.New(-time.Second)},
		"unreadable delay": {TransferId: "t1", FromAccount: "alice", ToAccount: "bob", AmountCents: 1, Delay: &durationpb.Duration{Seconds: 1, Nanos: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			kit := transferv1.NewTransferTestKit(t, Transfer{})
			kit.Start(req).WantCode(codes.InvalidArgument)
			// Refused: the transfer was not started, so it can be started now.
			start(t, kit, aliceToBob(1))
		})
	}
}

func TestStartOnce(t *testing.T) {
	kit := transferv1.NewTransferTestKit(t, Transfer{})
	start(t, kit, aliceToBob(2500))
	kit.Start(aliceToBob(100)).WantCode(codes.AlreadyExists)
	if got := kit.State().GetAmountCents(); got != 2500 {
		t.Errorf("amount = %d after a second start, want the first start's 2500", got)
	}
}
