// Command transfer serves the bank's accounts and the transfer workflow
// that moves money between them, in one binary: run it with no flags for
// the embedded store in ./statefun-data, or with --database-url for
// Postgres.
package main

import (
	"github.com/statefun-go/statefun/examples/bank/account"
	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	transferv1 "github.com/statefun-go/statefun/examples/transfer/gen/transfer/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func main() {
	statefun.Main(bankv1.NewAccount(account.Account{}), transferv1.NewTransfer(Transfer{}), bankv1.NewAccountDirectory(account.Directory{}))
}
