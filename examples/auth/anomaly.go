package main

import (
	"fmt"
	"sync"
	"time"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
)

// AnomalyDetector locks a user after MaxFailures failed logins within
// Window. It reacts to the User entity's events, delivered at least once
// and in order per user, and calls the User entity to lock it.
//
// Its counts live in memory: after a restart it resumes from its stored
// feed position, so a window in progress starts over. That is the right
// trade for a short window; a longer one would keep its counts in an
// entity of its own.
type AnomalyDetector struct {
	MaxFailures int
	Window      time.Duration

	mu    sync.Mutex
	users map[string]*loginWindow
}

// loginWindow is one user's recent failures.
type loginWindow struct {
	failures []time.Time // within the window, oldest first
	lastSeq  int64       // the last event counted: deliveries may repeat
}

var _ authv1.AnomalyDetectorHandler = (*AnomalyDetector)(nil)

// NewAnomalyDetector returns a detector that locks after maxFailures failed
// logins within window.
func NewAnomalyDetector(maxFailures int, window time.Duration) *AnomalyDetector {
	return &AnomalyDetector{MaxFailures: maxFailures, Window: window, users: map[string]*loginWindow{}}
}

// OnLoginFailed counts the failure and locks the user when the window
// holds too many.
func (d *AnomalyDetector) OnLoginFailed(ctx *authv1.AnomalyDetectorContext, e *authv1.LoginFailed) error {
	lock := d.count(ctx.EntityID(), ctx.Seq(), e.GetAt().AsTime())
	if !lock {
		return nil
	}
	users := authv1.NewUserEntityClient(ctx.ClientConn())
	_, err := users.Lock(ctx.Context(), &authv1.LockRequest{
		UserId: ctx.EntityID(),
		Reason: fmt.Sprintf("%d failed logins within %s", d.MaxFailures, d.Window),
	})
	// An error makes the runtime deliver this event again, and the
	// repeat is not counted twice: the lock is retried until it holds.
	return err
}

// OnUserAuthenticated clears the user's failures: the owner got in.
func (d *AnomalyDetector) OnUserAuthenticated(ctx *authv1.AnomalyDetectorContext, _ *authv1.UserAuthenticated) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.window(ctx.EntityID())
	if ctx.Seq() > w.lastSeq {
		w.failures = w.failures[:0]
		w.lastSeq = ctx.Seq()
	}
	return nil
}

// count adds a failure at seq and reports whether the user must be locked.
func (d *AnomalyDetector) count(user string, seq int64, at time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.window(user)
	if seq > w.lastSeq {
		w.lastSeq = seq
		w.failures = append(w.failures, at)
	}
	cutoff := at.Add(-d.Window)
	for len(w.failures) > 0 && w.failures[0].Before(cutoff) {
		w.failures = w.failures[1:]
	}
	return len(w.failures) >= d.MaxFailures
}

func (d *AnomalyDetector) window(user string) *loginWindow {
	w, ok := d.users[user]
	if !ok {
		w = &loginWindow{}
		d.users[user] = w
	}
	return w
}
