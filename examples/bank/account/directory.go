package account

import (
	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// Directory builds the rows of the account directory view from the
// accounts' events: one AccountSummary per account, its balance kept as
// the account's own is.
type Directory struct{}

var _ bankv1.AccountDirectoryUpdater = Directory{}

// OnAccountOpened starts the account's row.
func (Directory) OnAccountOpened(ctx *statefun.ViewUpdateContext, row *bankv1.AccountSummary, e *bankv1.AccountOpened) (*bankv1.AccountSummary, error) {
	row.AccountId = ctx.EntityID()
	row.OwnerId = e.GetOwnerId()
	row.OwnerName = e.GetOwnerName()
	row.BalanceCents = e.GetInitialDepositCents()
	row.OpenedAt = e.GetAt()
	row.LastActivityAt = e.GetAt()
	return row, nil
}

// OnFundsDeposited adds the deposit to the row's balance.
func (Directory) OnFundsDeposited(_ *statefun.ViewUpdateContext, row *bankv1.AccountSummary, e *bankv1.FundsDeposited) (*bankv1.AccountSummary, error) {
	row.BalanceCents += e.GetAmountCents()
	row.LastActivityAt = e.GetAt()
	return row, nil
}

// OnFundsWithdrawn takes the withdrawal off the row's balance.
func (Directory) OnFundsWithdrawn(_ *statefun.ViewUpdateContext, row *bankv1.AccountSummary, e *bankv1.FundsWithdrawn) (*bankv1.AccountSummary, error) {
	row.BalanceCents -= e.GetAmountCents()
	row.LastActivityAt = e.GetAt()
	return row, nil
}

// OnAccountClosed marks the row closed, its balance paid out.
func (Directory) OnAccountClosed(_ *statefun.ViewUpdateContext, row *bankv1.AccountSummary, e *bankv1.AccountClosed) (*bankv1.AccountSummary, error) {
	row.BalanceCents = 0
	row.Closed = true
	row.LastActivityAt = e.GetAt()
	return row, nil
}
