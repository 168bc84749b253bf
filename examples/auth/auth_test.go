package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func TestUserRules(t *testing.T) {
	tk := authv1.NewUserTestKit(t, User{})
	tk.Login(&authv1.LoginRequest{UserId: "ada", Password: "whatever"}).WantCode(codes.NotFound)
	tk.Register(&authv1.RegisterRequest{UserId: "ada", Password: "short"}).WantCode(codes.InvalidArgument)
	tk.Register(&authv1.RegisterRequest{UserId: "ada", Password: "correct horse"}).WantCode(codes.OK)
	tk.Register(&authv1.RegisterRequest{UserId: "ada", Password: "correct horse"}).WantCode(codes.AlreadyExists)

	res := tk.Login(&authv1.LoginRequest{UserId: "ada", Password: "wrong password"})
	res.WantCode(codes.OK)
	if res.Reply().GetAuthenticated() {
		t.Fatal("a wrong password authenticated")
	}
	if evs := res.Events(); len(evs) != 1 {
		t.Fatalf("a failed login must be recorded as one LoginFailed event, got %v", evs)
	} else if _, ok := evs[0].(*authv1.LoginFailed); !ok {
		t.Fatalf("event %T, want LoginFailed", evs[0])
	}
	ok := tk.Login(&authv1.LoginRequest{UserId: "ada", Password: "correct horse"})
	if !ok.Reply().GetAuthenticated() {
		t.Fatal("the right password did not authenticate")
	}
	tk.GetUser(&authv1.GetUserRequest{UserId: "ada"}).WantCode(codes.OK)
	if v := tk.GetUser(&authv1.GetUserRequest{UserId: "ada"}).Reply(); v.GetFailedLogins() != 1 || v.GetLastLogin() == nil {
		t.Errorf("view = %v, want 1 failed login and a last login", v)
	}

	locked := tk.Lock(&authv1.LockRequest{UserId: "ada", Reason: "test"}).Events()
	if len(locked) != 1 || locked[0].(*authv1.UserLocked).GetReason() != "test" || locked[0].(*authv1.UserLocked).GetAt() == nil {
		t.Errorf("Lock emitted %v, want one UserLocked with the reason and a time", locked)
	}
	tk.Lock(&authv1.LockRequest{UserId: "ada", Reason: "again"}).WantEvents()
	tk.Login(&authv1.LoginRequest{UserId: "ada", Password: "correct horse"}).WantCode(codes.PermissionDenied)
}

// TestDetectorLocksAfterTooManyFailures runs the User entity, the
// anomaly detector and the locked users view together in process.
func TestDetectorLocksAfterTooManyFailures(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	rt, err := statefun.New([]*statefun.Entity{authv1.NewUser(User{})},
		statefun.WithConsumers(authv1.NewAnomalyDetector(NewAnomalyDetector(3, time.Minute))),
		statefun.WithViews(authv1.NewLockedUsers(LockedUsers{})))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	users := authv1.NewUserEntityClient(rt.ClientConn())
	for _, id := range []string{"ada", "bob"} {
		if _, err := users.Register(ctx, &authv1.RegisterRequest{UserId: id, Password: "correct horse"}); err != nil {
			t.Fatal(err)
		}
	}
	login := func(id, pw string) (*authv1.LoginResponse, error) {
		return users.Login(ctx, &authv1.LoginRequest{UserId: id, Password: pw})
	}
	// Bob fails twice, succeeds, fails twice: never three in a row.
	for _, pw := range []string{"x", "x", "correct horse", "x", "x"} {
		if _, err := login("bob", pw); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := login("ada", "guess"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := login("ada", "correct horse")
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ada was not locked after 3 failed logins (last login: %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	view, err := users.GetUser(ctx, &authv1.GetUserRequest{UserId: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if !view.GetLocked() || view.GetLockedReason() != "3 failed logins within 1m0s" {
		t.Errorf("ada = %v", view)
	}
	if res, err := login("bob", "correct horse"); err != nil || !res.GetAuthenticated() {
		t.Errorf("bob must not be locked: %v %v", res, err)
	}

	// The view lists ada, locked since the test started, and no one locked
	// after now.
	lockedSince := func(since time.Time) []string {
		page, err := authv1.NewLockedUsersViewClient(rt.ClientConn()).LockedSince(ctx, &authv1.LockedSinceRequest{Since: timestamppb.New(since)})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, u := range page.GetUsers() {
			ids = append(ids, u.GetUserId()+": "+u.GetReason())
		}
		return ids
	}
	deadline = time.Now().Add(5 * time.Second)
	for fmt.Sprint(lockedSince(start)) != "[ada: 3 failed logins within 1m0s]" {
		if time.Now().After(deadline) {
			t.Fatalf("users locked since the start: %v, want ada alone", lockedSince(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := lockedSince(time.Now().Add(time.Minute)); len(got) != 0 {
		t.Errorf("users locked since a minute from now: %v, want none", got)
	}
}

func TestDetectorCountsARepeatOnce(t *testing.T) {
	d := NewAnomalyDetector(2, time.Minute)
	now := time.Now()
	if d.count("ada", 1, now) {
		t.Fatal("locked after one failure")
	}
	if d.count("ada", 1, now) {
		t.Fatal("a redelivered event was counted twice")
	}
	if !d.count("ada", 2, now.Add(time.Second)) {
		t.Fatal("not locked after two failures")
	}
	if d.count("bob", 1, now) || d.count("bob", 2, now.Add(2*time.Minute)) {
		t.Fatal("failures outside the window were counted together")
	}
}
