// Command shoppingcart serves the shopping cart entity: run it with no flags
// for the embedded store in ./statefun-data, or with --database-url for
// Postgres.
package main

import (
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func main() {
	statefun.Main(cartv1.NewShoppingCart(Cart{}))
}
