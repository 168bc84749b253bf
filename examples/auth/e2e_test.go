package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	"github.com/statefun-go/statefun/examples/internal/e2e"
)

// TestServerEndToEnd runs the real binary: three failed logins make the
// anomaly detector lock the user through the User entity, and the lock
// survives a restart.
func TestServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	ctx := context.Background()
	bin := e2e.Build(t, ".")
	dir := t.TempDir()
	nats := e2e.StartNATS(t)
	srv := e2e.Start(t, bin, "--data-dir", dir, "--nats-url", nats)
	users := authv1.NewUserServiceClient(srv.Conn)
	if _, err := users.Register(ctx, &authv1.RegisterRequest{UserId: "ada", Password: "correct horse"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := users.Login(ctx, &authv1.LoginRequest{UserId: "ada", Password: "guess"})
		if err != nil || res.GetAuthenticated() {
			t.Fatalf("wrong password: %v %v", res, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := users.Login(ctx, &authv1.LoginRequest{UserId: "ada", Password: "correct horse"})
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not locked: %v\n%s", err, srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Stop(t)

	srv = e2e.Start(t, bin, "--data-dir", dir, "--nats-url", nats)
	defer srv.Stop(t)
	code, body := srv.Post(t, "/auth.v1.UserService/GetUser", `{"user_id":"ada"}`)
	if code != 200 || !strings.Contains(body, `"locked":true`) {
		t.Fatalf("after restart: %d %s", code, body)
	}
}
