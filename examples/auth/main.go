// Command auth serves the User entity and runs the anomaly detector that
// locks users after too many failed logins.
package main

import (
	"time"

	authv1 "github.com/statefun-go/statefun/examples/auth/gen/auth/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func main() {
	statefun.Main(
		authv1.NewUser(User{}),
		authv1.NewAnomalyDetector(NewAnomalyDetector(3, 5*time.Minute)),
		authv1.NewLockedUsers(LockedUsers{}),
		// Login outcomes to NATS, for the lockout service: the server
		// needs --nats-url.
		authv1.NewLoginEvents(),
	)
}
