// Command shoppingcart serves the shopping cart entity: run it with no flags
// for the embedded store in ./statefun-data, or with --database-url for
// Postgres. SHOPPINGCART_IDLE_TIMEOUT (a Go duration such as 30m) empties
// carts left unchanged that long before checkout; unset, carts never
// expire.
package main

import (
	"fmt"
	"os"
	"time"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// idleTimeoutEnv names the variable that sets Cart.IdleTimeout.
const idleTimeoutEnv = "SHOPPINGCART_IDLE_TIMEOUT"

func main() {
	idle, err := idleTimeout(os.Getenv(idleTimeoutEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoppingcart:", err)
		os.Exit(2)
	}
	statefun.Main(cartv1.NewShoppingCart(Cart{IdleTimeout: idle}))
}

func idleTimeout(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a positive Go duration such as 30m or 1h30m, or unset for carts that never expire", idleTimeoutEnv, v)
	}
	return d, nil
}
