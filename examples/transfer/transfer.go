package main

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	transferv1 "github.com/statefun-go/statefun/examples/transfer/gen/transfer/v1"
	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// Transfer implements the transfer workflow. Start records the transfer;
// the steps move the money, each with one call to the bank's accounts made
// with the step's context, which carries the step's idempotency key: the
// runtime runs an attempt again after a failure or a crash, and the
// account then answers as it did the first time instead of moving the
// money again.
type Transfer struct{}

var _ transferv1.TransferHandler = Transfer{}

// Start checks the request and records the transfer. The first step,
// withdraw, runs once Start's change is durable, at once or after the
// request's delay.
func (Transfer) Start(ctx *transferv1.TransferContext, t *transferv1.Transfer, req *transferv1.StartRequest) (*transferv1.StartResponse, error) {
	switch {
	case req.GetFromAccount() == "" || req.GetToAccount() == "":
		return nil, status.Error(codes.InvalidArgument, "from_account and to_account are required")
	case req.GetFromAccount() == req.GetToAccount():
		return nil, status.Errorf(codes.InvalidArgument, "from_account and to_account are both %q; a transfer moves money between two accounts", req.GetFromAccount())
	case req.GetAmountCents() <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "amount_cents must be positive, got %d", req.GetAmountCents())
	}
	delay := req.GetDelay().AsDuration()
	if req.GetDelay() != nil && (req.GetDelay().CheckValid() != nil || delay < 0) {
		return nil, status.Errorf(codes.InvalidArgument, "delay must be zero or more, got %v", req.GetDelay())
	}
	t.FromAccount = req.GetFromAccount()
	t.ToAccount = req.GetToAccount()
	t.AmountCents = req.GetAmountCents()
	t.Stage = transferv1.Transfer_STAGE_PENDING
	if delay > 0 {
		// Waiting for a signal rather than sleeping: no step runs while the
		// workflow waits, so a Cancel that finds it waiting is sure to come
		// before the withdrawal. Without a signal, the wait times out into
		// the withdrawal.
		ctx.WaitForSignal(transferv1.TransferStepWithdraw, delay, transferv1.TransferStepWithdraw)
	}
	return &transferv1.StartResponse{Transfer: t}, nil
}

// Cancel ends a transfer that still waits for its delay. Once the wait is
// over, the withdraw step may be running, its call to the account on the
// way: cancelling then could lose the money, so Cancel refuses.
func (Transfer) Cancel(ctx *transferv1.TransferContext, t *transferv1.Transfer, _ *transferv1.CancelRequest) (*transferv1.CancelResponse, error) {
	if st := ctx.Status(); st.GetPhase() != statefunv1.WorkflowStatus_PHASE_WAITING {
		return nil, status.Errorf(codes.FailedPrecondition, "transfer %s is past its delay and moving money (step %s); it can no longer be cancelled", ctx.WorkflowID(), st.GetStep())
	}
	t.Stage = transferv1.Transfer_STAGE_CANCELLED
	t.Reason = "cancelled during its delay; nothing moved"
	ctx.Fail(t.Reason)
	return &transferv1.CancelResponse{Transfer: t}, nil
}

// Get returns the transfer and its progress.
func (Transfer) Get(ctx *transferv1.TransferReadContext, t *transferv1.Transfer, _ *transferv1.GetRequest) (*transferv1.GetResponse, error) {
	return &transferv1.GetResponse{Transfer: t, Status: ctx.Status()}, nil
}

// Withdraw takes the amount from the source account. A refusal fails the
// transfer: the account changed nothing. Any other error is returned, and
// the attempt retried, with the same idempotency key: if the withdrawal
// was made (its reply lost, or this process killed before the step's
// outcome was stored), the retry gets its answer and moves nothing.
func (Transfer) Withdraw(ctx *transferv1.TransferStepContext, t *transferv1.Transfer) (statefun.Transition, error) {
	_, err := bankv1.NewAccountEntityClient(ctx.Conn()).Withdraw(ctx.Context(), &bankv1.WithdrawRequest{
		AccountId:   t.GetFromAccount(),
		AmountCents: t.GetAmountCents(),
	})
	if refused(err) {
		t.Stage = transferv1.Transfer_STAGE_REJECTED
		t.Reason = fmt.Sprintf("the withdrawal from %s was refused: %s", t.GetFromAccount(), status.Convert(err).Message())
		return ctx.Fail(t.Reason), nil
	}
	if err != nil {
		return statefun.Transition{}, err
	}
	t.Stage = transferv1.Transfer_STAGE_WITHDRAWN
	return ctx.GoTo(transferv1.TransferStepDeposit), nil
}

// Deposit puts the amount into the destination account. A refusal goes
// straight to refund: trying again would get the same answer. Other
// errors are retried, three attempts in all, then the runtime fails over
// to refund.
func (Transfer) Deposit(ctx *transferv1.TransferStepContext, t *transferv1.Transfer) (statefun.Transition, error) {
	_, err := bankv1.NewAccountEntityClient(ctx.Conn()).Deposit(ctx.Context(), &bankv1.DepositRequest{
		AccountId:   t.GetToAccount(),
		AmountCents: t.GetAmountCents(),
	})
	if refused(err) {
		t.Reason = fmt.Sprintf("the deposit into %s was refused: %s", t.GetToAccount(), status.Convert(err).Message())
		return ctx.GoTo(transferv1.TransferStepRefund), nil
	}
	if err != nil {
		return statefun.Transition{}, err
	}
	t.Stage = transferv1.Transfer_STAGE_COMPLETED
	return ctx.End(), nil
}

// Refund puts the amount back into the source account, retried until it
// succeeds (the step's policy has no limit), and fails the transfer.
func (Transfer) Refund(ctx *transferv1.TransferStepContext, t *transferv1.Transfer) (statefun.Transition, error) {
	_, err := bankv1.NewAccountEntityClient(ctx.Conn()).Deposit(ctx.Context(), &bankv1.DepositRequest{
		AccountId:   t.GetFromAccount(),
		AmountCents: t.GetAmountCents(),
	})
	if err != nil {
		return statefun.Transition{}, err
	}
	t.Reason += fmt.Sprintf("; %d cents refunded to %s", t.GetAmountCents(), t.GetFromAccount())
	t.Stage = transferv1.Transfer_STAGE_REFUNDED
	return ctx.Fail(t.Reason), nil
}

// refused reports whether err is an account's refusal (bank.v1's codes for
// a request its state does not allow): a decision, not a failure. The
// account changed nothing, and the same call gets the same answer, which
// the account stores under the call's idempotency key.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	return false
}
