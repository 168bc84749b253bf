// Command bank serves the event-sourced bank account entity: run it with no
// flags for the embedded store in ./statefun-data, or with --database-url
// for Postgres.
package main

import (
	"github.com/statefun-go/statefun/examples/bank/account"
	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func main() {
	statefun.Main(bankv1.NewAccount(account.Account{}), bankv1.NewAccountDirectory(account.Directory{}))
}
