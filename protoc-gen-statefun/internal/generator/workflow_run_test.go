package generator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/testdata/workflow"
)

// These tests run the code generated for testdata/workflow: a transfer
// workflow whose steps call an account entity of the same package, hosted
// by the runtime and called through the generated clients, and driven step
// by step through the generated testkit.

type accounts struct{}

func (accounts) Deposit(ctx *workflow.AccountContext, state *workflow.Account, req *workflow.DepositRequest) (*workflow.Account, error) {
	next := &workflow.Account{Balance: state.GetBalance() + req.GetAmount()}
	ctx.SetState(next)
	return next, nil
}

func (accounts) Withdraw(ctx *workflow.AccountContext, state *workflow.Account, req *workflow.WithdrawRequest) (*workflow.Account, error) {
	if state.GetBalance() < req.GetAmount() {
		return nil, status.Errorf(codes.FailedPrecondition, "balance %d does not cover %d", state.GetBalance(), req.GetAmount())
	}
	next := &workflow.Account{Balance: state.GetBalance() - req.GetAmount()}
	ctx.SetState(next)
	return next, nil
}

func (accounts) GetAccount(_ *workflow.AccountReadContext, state *workflow.Account, _ *workflow.GetAccountRequest) (*workflow.Account, error) {
	return proto.Clone(state).(*workflow.Account), nil
}

type transfers struct{}

var _ workflow.TransferHandler = transfers{}

func (transfers) Start(ctx *workflow.TransferContext, state *workflow.Transfer, req *workflow.StartTransferRequest) (*workflow.TransferStarted, error) {
	if req.GetAmount() <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "amount %d is not positive", req.GetAmount())
	}
	state.From, state.To, state.Amount, state.NeedsApproval = req.GetFrom(), req.GetTo(), req.GetAmount(), req.GetNeedsApproval()
	return &workflow.TransferStarted{TransferId: ctx.WorkflowID()}, nil
}

func (transfers) Approve(ctx *workflow.TransferContext, state *workflow.Transfer, req *workflow.ApproveRequest) (*workflow.Transfer, error) {
	if st := ctx.Status(); st.GetPhase() != statefunv1.WorkflowStatus_PHASE_WAITING || st.GetStep() != workflow.TransferStepDeposit.String() {
		return nil, status.Errorf(codes.FailedPrecondition, "transfer %s does not await approval: %v at step %s", ctx.WorkflowID(), st.GetPhase(), st.GetStep())
	}
	state.Approver = req.GetApprover()
	return proto.Clone(state).(*workflow.Transfer), nil
}

func (transfers) Cancel(ctx *workflow.TransferContext, state *workflow.Transfer, _ *workflow.CancelRequest) (*workflow.Transfer, error) {
	switch {
	case state.GetDeposited():
		return nil, status.Error(codes.FailedPrecondition, "the transfer is done")
	case state.GetWithdrawn():
		ctx.GoTo(workflow.TransferStepRefund)
	default:
		ctx.End()
	}
	return proto.Clone(state).(*workflow.Transfer), nil
}

func (transfers) Get(ctx *workflow.TransferReadContext, state *workflow.Transfer, _ *workflow.GetTransferRequest) (*workflow.TransferView, error) {
	return &workflow.TransferView{Transfer: proto.Clone(state).(*workflow.Transfer), Status: ctx.Status()}, nil
}

func (transfers) Withdraw(ctx *workflow.TransferStepContext, state *workflow.Transfer) (statefun.Transition, error) {
	_, err := workflow.NewAccountEntityClient(ctx.Conn()).Withdraw(ctx.Context(), &workflow.WithdrawRequest{AccountId: state.GetFrom(), Amount: state.GetAmount()})
	switch {
	case status.Code(err) == codes.FailedPrecondition:
		return ctx.Fail(status.Convert(err).Message()), nil
	case err != nil:
		return statefun.Transition{}, err
	}
	state.Withdrawn = true
	if state.GetNeedsApproval() {
		return ctx.GoTo(workflow.TransferStepAwaitApproval), nil
	}
	return ctx.GoTo(workflow.TransferStepDeposit), nil
}

func (transfers) AwaitApproval(ctx *workflow.TransferStepContext, _ *workflow.Transfer) (statefun.Transition, error) {
	return ctx.WaitForSignal(workflow.TransferStepDeposit, time.Hour, workflow.TransferStepRefund), nil
}

func (transfers) Deposit(ctx *workflow.TransferStepContext, state *workflow.Transfer) (statefun.Transition, error) {
	if _, err := workflow.NewAccountEntityClient(ctx.Conn()).Deposit(ctx.Context(), &workflow.DepositRequest{AccountId: state.GetTo(), Amount: state.GetAmount()}); err != nil {
		return statefun.Transition{}, err
	}
	state.Deposited = true
	return ctx.End(), nil
}

func (transfers) Refund(ctx *workflow.TransferStepContext, state *workflow.Transfer) (statefun.Transition, error) {
	if _, err := workflow.NewAccountEntityClient(ctx.Conn()).Deposit(ctx.Context(), &workflow.DepositRequest{AccountId: state.GetFrom(), Amount: state.GetAmount()}); err != nil {
		return statefun.Transition{}, err
	}
	state.Refunded = true
	return ctx.Fail("refunded to " + state.GetFrom()), nil
}

// history lists a workflow's step runs as step#attempt:outcome.
func history(st *statefunv1.WorkflowStatus) string {
	var out []string
	for _, r := range st.GetHistory() {
		out = append(out, fmt.Sprintf("%s#%d:%s", r.GetStep(), r.GetAttempt(), r.GetOutcome()))
	}
	return fmt.Sprint(out)
}

// TestGeneratedWorkflowServes hosts the generated workflow and entity in
// an in-memory runtime and runs a transfer through the generated clients:
// its steps call the entity, wait for the approval signal, and end.
func TestGeneratedWorkflowServes(t *testing.T) {
	t.Parallel()
	rt, err := statefun.New([]*statefun.Entity{workflow.NewAccount(accounts{}), workflow.NewTransfer(transfers{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acc := workflow.NewAccountEntityClient(rt.ClientConn())
	tc := workflow.NewTransferWorkflowClient(rt.ClientConn())
	balance := func(id string) int64 {
		t.Helper()
		a, err := acc.GetAccount(ctx, &workflow.GetAccountRequest{AccountId: id})
		if err != nil {
			t.Fatalf("GetAccount %s: %v", id, err)
		}
		return a.GetBalance()
	}
	// waitFor polls the transfer until it is in phase, for at most 10 s.
	waitFor := func(phase statefunv1.WorkflowStatus_Phase) *workflow.TransferView {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := tc.Get(ctx, &workflow.GetTransferRequest{TransferId: "t1"})
			if err == nil && v.GetStatus().GetPhase() == phase {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("transfer t1 not %v within 10s: %v, err %v", phase, v, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if _, err := acc.Deposit(ctx, &workflow.DepositRequest{AccountId: "alice", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Start(ctx, &workflow.StartTransferRequest{From: "alice", To: "bob", Amount: 30}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Start without a key: %v, want InvalidArgument", err)
	}
	if _, err := tc.Approve(ctx, &workflow.ApproveRequest{TransferId: "t1", Approver: "carol"}); status.Code(err) != codes.NotFound {
		t.Errorf("Approve before Start: %v, want NotFound", err)
	}
	started, err := tc.Start(ctx, &workflow.StartTransferRequest{TransferId: "t1", From: "alice", To: "bob", Amount: 30, NeedsApproval: true})
	if err != nil || started.GetTransferId() != "t1" {
		t.Fatalf("Start: %v, %v", started, err)
	}
	if _, err := tc.Start(ctx, &workflow.StartTransferRequest{TransferId: "t1", From: "alice", To: "bob", Amount: 30}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second Start: %v, want AlreadyExists", err)
	}

	v := waitFor(statefunv1.WorkflowStatus_PHASE_WAITING)
	if st := v.GetStatus(); st.GetStep() != workflow.TransferStepDeposit.String() || st.GetWakeAt() == nil {
		t.Errorf("waiting: status %v, want the deposit step after a wait with a timeout", st)
	}
	if a, b := balance("alice"), balance("bob"); a != 70 || b != 0 {
		t.Errorf("awaiting approval: alice %d, bob %d; want 70, 0", a, b)
	}

	approved, err := tc.Approve(ctx, &workflow.ApproveRequest{TransferId: "t1", Approver: "carol"})
	if err != nil || approved.GetApprover() != "carol" {
		t.Fatalf("Approve: %v, %v", approved, err)
	}
	v = waitFor(statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if a, b := balance("alice"), balance("bob"); a != 70 || b != 30 {
		t.Errorf("done: alice %d, bob %d; want 70, 30", a, b)
	}
	if tr := v.GetTransfer(); !tr.GetWithdrawn() || !tr.GetDeposited() || tr.GetRefunded() || tr.GetApprover() != "carol" {
		t.Errorf("done: state %v", tr)
	}
	if got, want := history(v.GetStatus()), "[withdraw#1:OUTCOME_DONE await_approval#1:OUTCOME_DONE Approve#0:OUTCOME_SIGNALLED deposit#1:OUTCOME_DONE]"; got != want {
		t.Errorf("history %s, want %s", got, want)
	}
	if _, err := tc.Cancel(ctx, &workflow.CancelRequest{TransferId: "t1"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Cancel after the end: %v, want FailedPrecondition", err)
	}
}

// TestGeneratedWorkflowTestKitFailsOver drives the transfer through the
// generated testkit: the deposit keeps failing, is tried as often as its
// retry policy says, with one idempotency key, and the failover step
// refunds.
func TestGeneratedWorkflowTestKitFailsOver(t *testing.T) {
	t.Parallel()
	kit := workflow.NewTransferTestKit(t, transfers{})
	kit.OnCall(workflow.AccountService_Withdraw_FullMethodName, func(proto.Message) (proto.Message, error) {
		return &workflow.Account{Balance: 70}, nil
	})
	kit.OnCall(workflow.AccountService_Deposit_FullMethodName, func(req proto.Message) (proto.Message, error) {
		if req.(*workflow.DepositRequest).GetAccountId() == "bob" {
			return nil, status.Error(codes.Unavailable, "bob's bank is down")
		}
		return &workflow.Account{Balance: 100}, nil
	})

	kit.Start(&workflow.StartTransferRequest{TransferId: "t1", From: "alice", To: "bob", Amount: 30}).
		WantReply(&workflow.TransferStarted{TransferId: "t1"})
	kit.Start(&workflow.StartTransferRequest{TransferId: "t1", From: "alice", To: "bob", Amount: 30}).WantCode(codes.AlreadyExists)

	first := kit.RunStep()
	if first.Step != workflow.TransferStepWithdraw.String() || first.Err != nil || first.Status.GetStep() != workflow.TransferStepDeposit.String() {
		t.Fatalf("first step: %+v", first)
	}
	st := kit.Run(20)
	if st.GetPhase() != statefunv1.WorkflowStatus_PHASE_FAILED || st.GetLastError() != "refunded to alice" {
		t.Errorf("status %v, want failed as refunded", st)
	}
	want := "[withdraw#1:OUTCOME_DONE deposit#1:OUTCOME_FAILED deposit#2:OUTCOME_FAILED deposit#3:OUTCOME_FAILED deposit#4:OUTCOME_FAILED deposit#5:OUTCOME_FAILED refund#1:OUTCOME_DONE]"
	if got := history(st); got != want {
		t.Errorf("history %s, want %s", got, want)
	}
	if s := kit.State(); !s.GetWithdrawn() || s.GetDeposited() || !s.GetRefunded() {
		t.Errorf("state %v, want withdrawn and refunded", s)
	}
	keys := map[string]bool{}
	deposits := 0
	for _, c := range kit.Calls() {
		if c.Method == workflow.AccountService_Deposit_FullMethodName && c.Request.(*workflow.DepositRequest).GetAccountId() == "bob" {
			deposits++
			keys[c.IdempotencyKey] = true
		}
	}
	if deposits != 5 || len(keys) != 1 {
		t.Errorf("%d deposits to bob with %d idempotency keys, want 5 with one", deposits, len(keys))
	}

	view := kit.Get(&workflow.GetTransferRequest{TransferId: "t1"})
	view.WantCode(codes.OK)
	if view.Reply().GetStatus().GetPhase() != statefunv1.WorkflowStatus_PHASE_FAILED {
		t.Errorf("Get: %v", view.Reply())
	}
}

// TestGeneratedWorkflowTestKitWaitTimesOut: a transfer awaiting approval
// that times out goes to the onTimeout step the generated WaitForSignal
// was given.
func TestGeneratedWorkflowTestKitWaitTimesOut(t *testing.T) {
	t.Parallel()
	kit := workflow.NewTransferTestKit(t, transfers{})
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	kit.SetNow(now)
	kit.OnCall(workflow.AccountService_Withdraw_FullMethodName, func(proto.Message) (proto.Message, error) { return &workflow.Account{}, nil })
	kit.OnCall(workflow.AccountService_Deposit_FullMethodName, func(proto.Message) (proto.Message, error) { return &workflow.Account{}, nil })
	kit.Start(&workflow.StartTransferRequest{TransferId: "t2", From: "alice", To: "bob", Amount: 5, NeedsApproval: true}).WantCode(codes.OK)

	st := kit.Run(10)
	if st.GetPhase() != statefunv1.WorkflowStatus_PHASE_WAITING || st.GetStep() != workflow.TransferStepDeposit.String() || !st.GetWakeAt().AsTime().Equal(now.Add(time.Hour)) {
		t.Fatalf("status %v, want waiting an hour to deposit", st)
	}
	kit.ExpireWait()
	st = kit.Run(10)
	if st.GetPhase() != statefunv1.WorkflowStatus_PHASE_FAILED || !kit.State().GetRefunded() {
		t.Errorf("after the wait timed out: %v, state %v; want refunded", st, kit.State())
	}
	kit.Approve(&workflow.ApproveRequest{TransferId: "t2", Approver: "carol"}).WantCode(codes.FailedPrecondition)
}
