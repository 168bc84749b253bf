package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	lockoutv1 "github.com/statefun-go/statefun/examples/auth/gen/lockout/v1"
	"github.com/statefun-go/statefun/examples/internal/e2e"
)

// TestLockoutAcrossProcesses runs the auth server and the lockout service
// as two processes joined by a NATS server: the auth server publishes its
// login events, the lockout service counts them per user and locks a user
// through the auth server's API after three failures in a row; a success
// in between starts the count again. Then the lockout service is killed
// (kill -9) and started again, and it goes on counting from where it was.
func TestLockoutAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two server binaries and a NATS server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nats := e2e.StartNATS(t)
	// The deployment's secret, which both servers read: the auth server
	// admits the lockout service's Lock calls by it.
	t.Setenv("STATEFUN_SERVICE_SECRET", "a-secret-of-the-test-deployment-0123456789")
	authBin, lockoutBin := e2e.Build(t, ".."), e2e.Build(t, ".")
	auth := e2e.Start(t, authBin, "--data-dir", t.TempDir(), "--nats-url", nats)
	defer auth.Stop(t)
	t.Setenv("AUTH_ADDRESS", auth.GRPCAddr)
	lockoutDir := t.TempDir()
	lockout := e2e.Start(t, lockoutBin, "--data-dir", lockoutDir, "--nats-url", nats)

	users := authv1.NewUserServiceClient(auth.Conn)
	// Only the lockout service may lock: a call from outside is refused.
	if _, err := users.Lock(ctx, &authv1.LockRequest{UserId: "grace"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Lock from outside: %v, want PermissionDenied", err)
	}
	login := func(user, password string) {
		t.Helper()
		if _, err := users.Login(ctx, &authv1.LoginRequest{UserId: user, Password: password}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"grace", "alan"} {
		if _, err := users.Register(ctx, &authv1.RegisterRequest{UserId: u, Password: "correct horse"}); err != nil {
			t.Fatal(err)
		}
	}
	// grace: two failures, a success, two failures: never three in a row.
	for _, pw := range []string{"guess", "guess", "correct horse", "guess", "guess"} {
		login("grace", pw)
	}
	// alan: two failures now, one after the lockout service restarts.
	login("alan", "guess")
	login("alan", "guess")

	waitWatch(t, ctx, lockout, "grace", &lockoutv1.LoginWatch{FailuresInARow: 2, Failures: 4})
	waitWatch(t, ctx, lockout, "alan", &lockoutv1.LoginWatch{FailuresInARow: 2, Failures: 2})

	lockout.Kill(t)
	lockout = e2e.Start(t, lockoutBin, "--data-dir", lockoutDir, "--nats-url", nats)
	defer lockout.Stop(t)
	login("alan", "guess")
	waitWatch(t, ctx, lockout, "alan", &lockoutv1.LoginWatch{FailuresInARow: 3, Failures: 3, Locked: true})
	u, err := users.GetUser(ctx, &authv1.GetUserRequest{UserId: "alan"})
	if err != nil {
		t.Fatal(err)
	}
	// The auth server's own detector (3 failures in 5 minutes) may have
	// locked alan first: either way he is locked, and the lockout
	// service's lock was confirmed by the auth server (Locked above).
	if !u.GetLocked() || !strings.Contains(u.GetLockedReason(), "failed logins") {
		t.Errorf("alan in the auth service: %v, want locked", u)
	}
	if g, err := users.GetUser(ctx, &authv1.GetUserRequest{UserId: "grace"}); err != nil || g.GetLocked() {
		t.Errorf("grace: %v %v, want not locked (never three failures in a row)", g, err)
	}
}

// waitWatch waits until the lockout service's LoginWatch of user is want.
func waitWatch(t *testing.T, ctx context.Context, srv *e2e.Server, user string, want *lockoutv1.LoginWatch) {
	t.Helper()
	watches := lockoutv1.NewLoginWatchServiceClient(srv.Conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := watches.GetLoginWatch(ctx, &lockoutv1.GetLoginWatchRequest{UserId: user})
		if err == nil && proto.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's login watch: %v (%v), want %v\n%s", user, got, err, want, srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
