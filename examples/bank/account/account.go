// Package account is the bank account entity's handler: the bank example
// serves it, and other examples (the transfer workflow) host it beside
// their own.
package account

import (
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// Account implements the bank account entity. Command handlers check the
// request against the state and emit events; the On methods apply events
// to the state, and are the only place the balance and the statement change.
type Account struct{}

var _ bankv1.AccountHandler = Account{}

// Open opens an account that is not open yet.
func (Account) Open(ctx *bankv1.AccountContext, account *bankv1.Account, req *bankv1.OpenRequest) (*bankv1.Balance, error) {
	if req.GetOwnerId() == "" {
		return nil, status.Error(codes.InvalidArgument, "owner_id is required")
	}
	if req.GetOwnerName() == "" {
		return nil, status.Error(codes.InvalidArgument, "owner_name is required")
	}
	if req.GetInitialDepositCents() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "initial_deposit_cents must be zero or more, got %d", req.GetInitialDepositCents())
	}
	if isOpen(account) {
		return nil, status.Errorf(codes.AlreadyExists, "account %s is already open", ctx.EntityID())
	}
	ctx.Emit(&bankv1.AccountOpened{
		OwnerId:             req.GetOwnerId(),
		OwnerName:           req.GetOwnerName(),
		InitialDepositCents: req.GetInitialDepositCents(),
		At:                  timestamppb.Now(),
	})
	return &bankv1.Balance{BalanceCents: req.GetInitialDepositCents()}, nil
}

// Deposit adds a positive amount to an open account.
func (Account) Deposit(ctx *bankv1.AccountContext, account *bankv1.Account, req *bankv1.DepositRequest) (*bankv1.Balance, error) {
	if err := checkAmount(req.GetAmountCents()); err != nil {
		return nil, err
	}
	if err := checkActive(ctx.EntityID(), account); err != nil {
		return nil, err
	}
	balance := account.GetBalanceCents()
	if req.GetAmountCents() > math.MaxInt64-balance {
		return nil, status.Errorf(codes.OutOfRange, "a deposit of %d cents would overflow the balance of %d cents", req.GetAmountCents(), balance)
	}
	ctx.Emit(&bankv1.FundsDeposited{AmountCents: req.GetAmountCents(), At: timestamppb.Now()})
	return &bankv1.Balance{BalanceCents: balance + req.GetAmountCents()}, nil
}

// Withdraw takes a positive amount, at most the balance, from an open
// account.
func (Account) Withdraw(ctx *bankv1.AccountContext, account *bankv1.Account, req *bankv1.WithdrawRequest) (*bankv1.Balance, error) {
	if err := checkAmount(req.GetAmountCents()); err != nil {
		return nil, err
	}
	if err := checkActive(ctx.EntityID(), account); err != nil {
		return nil, err
	}
	balance := account.GetBalanceCents()
	if req.GetAmountCents() > balance {
		return nil, status.Errorf(codes.FailedPrecondition, "insufficient funds: the balance is %d cents, the withdrawal %d cents", balance, req.GetAmountCents())
	}
	ctx.Emit(&bankv1.FundsWithdrawn{AmountCents: req.GetAmountCents(), At: timestamppb.Now()})
	return &bankv1.Balance{BalanceCents: balance - req.GetAmountCents()}, nil
}

// GetBalance returns the balance of an open account.
func (Account) GetBalance(ctx *bankv1.AccountReadContext, account *bankv1.Account, _ *bankv1.GetBalanceRequest) (*bankv1.Balance, error) {
	if err := checkOpen(ctx.EntityID(), account); err != nil {
		return nil, err
	}
	return &bankv1.Balance{BalanceCents: account.GetBalanceCents()}, nil
}

// GetStatement returns the history of an open account to its owner.
func (Account) GetStatement(ctx *bankv1.AccountReadContext, account *bankv1.Account, req *bankv1.GetStatementRequest) (*bankv1.Statement, error) {
	if err := checkOpen(ctx.EntityID(), account); err != nil {
		return nil, err
	}
	if req.GetOwnerId() != account.GetOwnerId() {
		return nil, status.Errorf(codes.PermissionDenied, "only the owner of account %s may read its statement", ctx.EntityID())
	}
	// The reply shares the transactions with the state; the runtime copies
	// it before the next command can change them.
	return &bankv1.Statement{
		OwnerName:    account.GetOwnerName(),
		BalanceCents: account.GetBalanceCents(),
		Transactions: account.GetTransactions(),
	}, nil
}

// Close closes an open account, paying its balance out. The access rule
// lets only administrators call it; the handler records which one, from
// the validated token the server established.
func (Account) Close(ctx *bankv1.AccountContext, account *bankv1.Account, req *bankv1.CloseRequest) (*bankv1.Balance, error) {
	if req.GetReason() == "" {
		return nil, status.Error(codes.InvalidArgument, "reason is required")
	}
	if err := checkActive(ctx.EntityID(), account); err != nil {
		return nil, err
	}
	ctx.Emit(&bankv1.AccountClosed{
		PaidOutCents: account.GetBalanceCents(),
		Reason:       req.GetReason(),
		ClosedBy:     closedBy(statefun.CallerOf(ctx.Context())),
		At:           timestamppb.Now(),
	})
	return &bankv1.Balance{BalanceCents: account.GetBalanceCents()}, nil
}

// closedBy names who closed an account: the administrator's user ID, or
// the service itself for a call it made (a test through the runtime's
// in-process connection).
func closedBy(caller statefun.Caller) string {
	if sub := caller.Claims().Subject(); sub != "" {
		return sub
	}
	return caller.String()
}

// OnAccountClosed pays the balance out and marks the account closed.
func (Account) OnAccountClosed(account *bankv1.Account, e *bankv1.AccountClosed) {
	record(account, bankv1.TransactionKind_TRANSACTION_KIND_CLOSING, e.GetPaidOutCents(), 0, e.GetAt())
	account.Transactions[len(account.Transactions)-1].Note = "closed by " + e.GetClosedBy() + ": " + e.GetReason()
	account.ClosedAt = e.GetAt()
}

// OnAccountOpened records the owner and the opening balance.
func (Account) OnAccountOpened(account *bankv1.Account, e *bankv1.AccountOpened) {
	account.OwnerId = e.GetOwnerId()
	account.OwnerName = e.GetOwnerName()
	account.OpenedAt = e.GetAt()
	record(account, bankv1.TransactionKind_TRANSACTION_KIND_OPENING, e.GetInitialDepositCents(), e.GetInitialDepositCents(), e.GetAt())
}

// OnFundsDeposited raises the balance.
func (Account) OnFundsDeposited(account *bankv1.Account, e *bankv1.FundsDeposited) {
	record(account, bankv1.TransactionKind_TRANSACTION_KIND_DEPOSIT, e.GetAmountCents(), account.GetBalanceCents()+e.GetAmountCents(), e.GetAt())
}

// OnFundsWithdrawn lowers the balance.
func (Account) OnFundsWithdrawn(account *bankv1.Account, e *bankv1.FundsWithdrawn) {
	record(account, bankv1.TransactionKind_TRANSACTION_KIND_WITHDRAWAL, e.GetAmountCents(), account.GetBalanceCents()-e.GetAmountCents(), e.GetAt())
}

// record sets the balance and appends the transaction that led to it to the
// statement.
func record(account *bankv1.Account, kind bankv1.TransactionKind, amount, balance int64, at *timestamppb.Timestamp) {
	account.BalanceCents = balance
	account.Transactions = append(account.Transactions, &bankv1.Transaction{
		Kind:         kind,
		AmountCents:  amount,
		BalanceCents: balance,
		At:           at,
	})
}

func isOpen(account *bankv1.Account) bool {
	return account.GetOpenedAt() != nil
}

func checkOpen(id string, account *bankv1.Account) error {
	if !isOpen(account) {
		return status.Errorf(codes.NotFound, "account %s is not open; open it first", id)
	}
	return nil
}

// checkActive: the account is open and not closed.
func checkActive(id string, account *bankv1.Account) error {
	if err := checkOpen(id, account); err != nil {
		return err
	}
	if account.GetClosedAt() != nil {
		return status.Errorf(codes.FailedPrecondition, "account %s is closed", id)
	}
	return nil
}

func checkAmount(cents int64) error {
	if cents <= 0 {
		return status.Errorf(codes.InvalidArgument, "amount_cents must be positive, got %d", cents)
	}
	return nil
}
