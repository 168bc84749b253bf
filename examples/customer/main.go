// Command customer serves the key-value customer entity and the customer
// directory, a view of its records: run it with no flags for the embedded
// store in ./statefun-data, or with --database-url for Postgres.
package main

import (
	customerv1 "github.com/statefun-go/statefun/examples/customer/gen/customer/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

func main() {
	statefun.Main(customerv1.NewCustomer(Customer{}), customerv1.NewCustomerDirectory())
}
