package main

import (
	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// LockedUsers builds the rows of the locked users view: a row for each
// locked user, none for the others.
type LockedUsers struct{}

var _ authv1.LockedUsersUpdater = LockedUsers{}

// OnUserLocked makes the user's row.
func (LockedUsers) OnUserLocked(ctx *statefun.ViewUpdateContext, row *authv1.LockedUser, e *authv1.UserLocked) (*authv1.LockedUser, error) {
	row.UserId = ctx.EntityID()
	row.Reason = e.GetReason()
	row.LockedAt = e.GetAt()
	return row, nil
}

// The other events leave the row as it is: a user who is not locked has
// none.

func (LockedUsers) OnUserRegistered(_ *statefun.ViewUpdateContext, row *authv1.LockedUser, _ *authv1.UserRegistered) (*authv1.LockedUser, error) {
	return row, nil
}

func (LockedUsers) OnUserAuthenticated(_ *statefun.ViewUpdateContext, row *authv1.LockedUser, _ *authv1.UserAuthenticated) (*authv1.LockedUser, error) {
	return row, nil
}

func (LockedUsers) OnLoginFailed(_ *statefun.ViewUpdateContext, row *authv1.LockedUser, _ *authv1.LoginFailed) (*authv1.LockedUser, error) {
	return row, nil
}
