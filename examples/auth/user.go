package main

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
)

// User implements the User entity: registration, password logins that are
// recorded as events, and locking.
type User struct{}

var _ authv1.UserHandler = User{}

// pbkdf2Iterations is deliberately modest for an example; production
// systems tune it (or use argon2id) to their hardware.
const pbkdf2Iterations = 20_000

func hashPassword(password string, salt []byte) ([]byte, error) {
	return pbkdf2.Key(sha256.New, password, salt, pbkdf2Iterations, 32)
}

// Register creates the user with a password of at least 8 characters.
func (User) Register(ctx *authv1.UserContext, user *authv1.User, req *authv1.RegisterRequest) (*emptypb.Empty, error) {
	if user.GetRegistered() {
		return nil, status.Errorf(codes.AlreadyExists, "user %s is already registered", ctx.EntityID())
	}
	if len(req.GetPassword()) < 8 {
		return nil, status.Error(codes.InvalidArgument, "password must have at least 8 characters")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, status.Errorf(codes.Internal, "generate salt: %v", err)
	}
	hash, err := hashPassword(req.GetPassword(), salt)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "hash password: %v", err)
	}
	ctx.Emit(&authv1.UserRegistered{PasswordSalt: salt, PasswordHash: hash})
	return &emptypb.Empty{}, nil
}

// Login checks the password. Success and failure are both events; a
// locked user is refused without a check.
func (User) Login(ctx *authv1.UserContext, user *authv1.User, req *authv1.LoginRequest) (*authv1.LoginResponse, error) {
	if !user.GetRegistered() {
		return nil, status.Errorf(codes.NotFound, "user %s is not registered", ctx.EntityID())
	}
	if user.GetLocked() {
		return nil, status.Errorf(codes.PermissionDenied, "user %s is locked: %s", ctx.EntityID(), user.GetLockedReason())
	}
	hash, err := hashPassword(req.GetPassword(), user.GetPasswordSalt())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "hash password: %v", err)
	}
	if subtle.ConstantTimeCompare(hash, user.GetPasswordHash()) != 1 {
		ctx.Emit(&authv1.LoginFailed{At: timestamppb.Now()})
		return &authv1.LoginResponse{Authenticated: false}, nil
	}
	ctx.Emit(&authv1.UserAuthenticated{At: timestamppb.Now()})
	return &authv1.LoginResponse{Authenticated: true}, nil
}

// Lock locks a registered user; locking a locked user changes nothing.
func (User) Lock(ctx *authv1.UserContext, user *authv1.User, req *authv1.LockRequest) (*emptypb.Empty, error) {
	if !user.GetRegistered() {
		return nil, status.Errorf(codes.NotFound, "user %s is not registered", ctx.EntityID())
	}
	if !user.GetLocked() {
		ctx.Emit(&authv1.UserLocked{Reason: req.GetReason(), At: timestamppb.Now()})
	}
	return &emptypb.Empty{}, nil
}

// GetUser returns the public view of the user.
func (User) GetUser(ctx *authv1.UserReadContext, user *authv1.User, _ *authv1.GetUserRequest) (*authv1.UserView, error) {
	if !user.GetRegistered() {
		return nil, status.Errorf(codes.NotFound, "user %s is not registered", ctx.EntityID())
	}
	return &authv1.UserView{
		Registered:   true,
		Locked:       user.GetLocked(),
		LockedReason: user.GetLockedReason(),
		FailedLogins: user.GetFailedLogins(),
		LastLogin:    user.GetLastLogin(),
	}, nil
}

// OnUserRegistered stores the password hash.
func (User) OnUserRegistered(user *authv1.User, e *authv1.UserRegistered) {
	user.Registered = true
	user.PasswordSalt = e.GetPasswordSalt()
	user.PasswordHash = e.GetPasswordHash()
}

// OnUserAuthenticated records the login.
func (User) OnUserAuthenticated(user *authv1.User, e *authv1.UserAuthenticated) {
	user.LastLogin = e.GetAt()
}

// OnLoginFailed counts the failure.
func (User) OnLoginFailed(user *authv1.User, _ *authv1.LoginFailed) {
	user.FailedLogins++
}

// OnUserLocked locks the user.
func (User) OnUserLocked(user *authv1.User, e *authv1.UserLocked) {
	user.Locked = true
	user.LockedReason = e.GetReason()
}
