// Command lockout is a service of its own, apart from the auth server: it
// reads the auth server's login events from NATS (the auth server publishes
// them to auth.logins), counts each user's failed logins since the last
// success in a LoginWatch entity, and locks the user through the auth
// server's gRPC API once they reach the limit. Run it with the NATS URL and
// the auth server's address:
//
//	AUTH_ADDRESS=127.0.0.1:8094 go run ./examples/auth/lockout --nats-url nats://127.0.0.1:4222 \
//	    --listen 127.0.0.1:8096 --http-listen 127.0.0.1:8097 --data-dir /tmp/lockout-data
package main

import (
	"cmp"
	"fmt"
	"log"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	lockoutv1 "github.com/statefun-go/statefun/examples/auth/gen/lockout/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// maxFailuresInARow is how many failed logins without a success lock a
// user, however far apart they are (the auth server's own detector locks
// after 3 within 5 minutes, and forgets on restart; this one does not).
const maxFailuresInARow = 3

func main() {
	addr := cmp.Or(os.Getenv("AUTH_ADDRESS"), "127.0.0.1:8094")
	// The auth server lets only the deployment's lockout service lock
	// users: its calls carry the service's name, signed with the secret
	// the deployment's services share.
	creds, err := statefun.ServiceCredentials("lockout", []byte(os.Getenv("STATEFUN_SERVICE_SECRET")))
	if err != nil {
		log.Fatalf("set STATEFUN_SERVICE_SECRET to the secret the auth server has (at least 32 bytes): %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds))
	if err != nil {
		log.Fatalf("AUTH_ADDRESS %q: %v", addr, err)
	}
	defer conn.Close()
	statefun.Main(lockoutv1.NewLoginWatch(Watch{Users: authv1.NewUserServiceClient(conn), MaxFailures: maxFailuresInARow}))
}

// Watch implements the LoginWatch entity.
type Watch struct {
	// Users is the auth server's UserService.
	Users authv1.UserServiceClient
	// MaxFailures failed logins in a row lock the user.
	MaxFailures int64
}

var _ lockoutv1.LoginWatchHandler = Watch{}

// OnLoginFailed counts the failure, and once the count reaches the limit
// asks the auth server to lock the user before the count is stored: if
// that call fails, nothing is stored and the message is delivered again,
// so the lock is retried until it holds (Lock of a locked user does
// nothing). A message delivered twice is counted once: the runtime makes
// its ID the command's idempotency key.
func (w Watch) OnLoginFailed(ctx *lockoutv1.LoginWatchContext, state *lockoutv1.LoginWatch, _ *authv1.LoginFailed) (*lockoutv1.LoginWatch, error) {
	next := &lockoutv1.LoginWatch{FailuresInARow: state.GetFailuresInARow() + 1, Failures: state.GetFailures() + 1, Locked: state.GetLocked()}
	if next.FailuresInARow >= w.MaxFailures && !next.Locked {
		_, err := w.Users.Lock(ctx.Context(), &authv1.LockRequest{
			UserId: ctx.EntityID(),
			Reason: fmt.Sprintf("lockout service: %d failed logins in a row", next.FailuresInARow),
		})
		if err != nil {
			return nil, fmt.Errorf("lock %s in the auth service: %w", ctx.EntityID(), err)
		}
		next.Locked = true
	}
	ctx.SetState(next)
	return next, nil
}

// OnUserAuthenticated starts the count again.
func (w Watch) OnUserAuthenticated(ctx *lockoutv1.LoginWatchContext, state *lockoutv1.LoginWatch, _ *authv1.UserAuthenticated) (*lockoutv1.LoginWatch, error) {
	next := &lockoutv1.LoginWatch{Failures: state.GetFailures(), Locked: state.GetLocked()}
	ctx.SetState(next)
	return next, nil
}

// GetLoginWatch returns the user's counts.
func (Watch) GetLoginWatch(_ *lockoutv1.LoginWatchReadContext, state *lockoutv1.LoginWatch, _ *lockoutv1.GetLoginWatchRequest) (*lockoutv1.LoginWatch, error) {
	return state, nil
}
