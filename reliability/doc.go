// Package reliability is statefun's fault-injection suite. Its tests build
// the real server binary (examples/shoppingcart), drive it with concurrent
// clients and break what is around it: kill -9 at random moments, cut or
// stall the network to Postgres, run a cluster of several servers and kill,
// restart, cut off or join one of them, SIGTERM under load, hostile input. After each fault they read the stored history
// directly through the store packages and check the guarantees of
// INVARIANTS.md's failure table: every acknowledged command stored once, in
// order, histories without gaps, and in-memory state equal to the fold of
// the stored events. Through the kills and the database faults, two more
// clients retry every failed command until it is acknowledged, one with
// an idempotency key (every command must end stored exactly once) and one
// without (the suite reports how many commands its retries stored twice).
//
// The package holds no product code: only the TCP proxy the outage tests
// put between a server and Postgres, and the tests. RELIABILITY.md records
// what the suite tries and the figures of its last run; `make reliability`
// runs it and prints those figures.
package reliability
