package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	transferv1 "github.com/statefun-go/statefun/examples/transfer/gen/transfer/v1"
	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
)

// TestTransfersSurviveKills runs examples/transfer (bank accounts and a
// transfer workflow: withdraw, deposit, refund when the deposit keeps
// failing) under 1,000 concurrent transfers between 50 accounts on
// Postgres, and kills the server with SIGKILL several times while they
// run. After the last restart (INVARIANTS.md, invariant 16):
//
//   - every start that was acknowledged has its workflow (none lost);
//   - every transfer ends: completed, rejected at the withdrawal, or
//     refunded after its deposit failed;
//   - money is conserved, and each account's balance is exactly what the
//     ended transfers say it must be: a withdrawal, deposit or refund
//     applied twice (a step repeated without its idempotency key) would
//     break it;
//   - each account's statement has one transaction per effect, not more;
//   - the account directory view, updated all along and killed with the
//     rest (invariant 17), ends with one row per account holding the
//     account's balance: no row lost, none left at an older event's.
//
// Starts are retried across the kills with the transfer's ID as their
// idempotency key, as a client that must not lose or double a transfer
// does.
func TestTransfersSurviveKills(t *testing.T) {
	t.Parallel()
	requireDatabase(t)
	schema := newSchema(t, "transfer")
	flags := []string{"--database-url", databaseURL(), "--database-schema", schema}
	const (
		accounts   = 50
		transfers  = 1000
		opening    = 10_000
		kills      = 3
		missing    = "acct-missing" // never opened: deposits into it fail
		workers    = 32
		maxAmount  = 3_000
		settleTime = 3 * time.Minute
	)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	to := &redirect{}
	srv := startServer(t, serverConfig{example: "transfer", flags: flags})
	to.set(srv.conn)
	bank := bankv1.NewAccountServiceClient(to)
	flows := transferv1.NewTransferServiceClient(to)
	ctx := t.Context()

	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("acct-%02d", i)
		req := &bankv1.OpenRequest{AccountId: ids[i], OwnerId: "owner-" + ids[i], OwnerName: "Owner " + ids[i], InitialDepositCents: opening}
		if _, err := bank.Open(keyed(ctx, "open-"+ids[i]), req); err != nil {
			t.Fatalf("open %s: %v", ids[i], err)
		}
	}

	// The plan: 1,000 transfers; about one in twenty goes to the missing
	// account, and some ask for more than their source will hold.
	type plan struct {
		id       string
		from, to string
		amount   int64
	}
	plans := make([]plan, transfers)
	for i := range plans {
		from := rng.IntN(accounts)
		dst := (from + 1 + rng.IntN(accounts-1)) % accounts
		p := plan{id: fmt.Sprintf("tr-%04d", i), from: ids[from], to: ids[dst], amount: int64(1 + rng.IntN(maxAmount))}
		if rng.IntN(20) == 0 {
			p.to = missing
		}
		plans[i] = p
	}

	// Workers start the transfers, retrying each start until it is
	// acknowledged, across kills and restarts.
	var mu sync.Mutex
	acked := map[string]bool{}
	next := make(chan plan, transfers)
	for _, p := range plans {
		next <- p
	}
	close(next)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range next {
				req := &transferv1.StartRequest{TransferId: p.id, FromAccount: p.from, ToAccount: p.to, AmountCents: p.amount}
				for {
					cctx, cancel := context.WithTimeout(keyed(ctx, "start-"+p.id), 5*time.Second)
					_, err := flows.Start(cctx, req)
					cancel()
					if err == nil {
						mu.Lock()
						acked[p.id] = true
						mu.Unlock()
						break
					}
					if ctx.Err() != nil {
						return
					}
					if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.Canceled && c != codes.Aborted && c != codes.ResourceExhausted {
						t.Errorf("start %s: %v", p.id, err)
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}

	ackedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	for k := range kills {
		// Kill at a random moment, once the restarted server has taken
		// starts (while any are left): kills land among starts and among
		// running steps. A restarted server is a new node of its one-node
		// cluster: it serves once the killed node's leases lapse.
		before := ackedNow()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		for wait := time.Now().Add(10 * time.Second); ackedNow() < min(before+50, transfers) && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
		srv.kill()
		srv.checkNoRaces(t)
		count("crashes injected (kill -9)", 1)
		mu.Lock()
		t.Logf("kill %d: %d starts acknowledged so far", k+1, len(acked))
		mu.Unlock()
		srv = startServer(t, serverConfig{example: "transfer", flags: flags})
		to.set(srv.conn)
	}
	waitGroup(t, &wg, 2*time.Minute, "every start to be acknowledged")
	if len(acked) != transfers {
		t.Fatalf("%d of %d starts acknowledged", len(acked), transfers)
	}

	// Every transfer ends.
	views := map[string]*transferv1.GetResponse{}
	deadline := time.Now().Add(settleTime)
	for _, p := range plans {
		for {
			v, err := flows.Get(ctx, &transferv1.GetRequest{TransferId: p.id})
			if status.Code(err) == codes.NotFound {
				t.Fatalf("transfer %s was acknowledged, and is lost: %v", p.id, err)
			}
			ph := v.GetStatus().GetPhase()
			if err == nil && (ph == statefunv1.WorkflowStatus_PHASE_COMPLETED || ph == statefunv1.WorkflowStatus_PHASE_FAILED) {
				views[p.id] = v
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("transfer %s did not end within %v of the last restart: %v, %v", p.id, settleTime, v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// What each account must hold, and how many transactions its
	// statement must show, given how each transfer ended.
	want := map[string]int64{}
	txns := map[string]int{}
	for _, id := range ids {
		want[id] = opening
		txns[id] = 1 // the opening
	}
	stages := map[transferv1.Transfer_Stage]int{}
	for _, p := range plans {
		tr := views[p.id].GetTransfer()
		stages[tr.GetStage()]++
		switch tr.GetStage() {
		case transferv1.Transfer_STAGE_COMPLETED:
			want[p.from] -= p.amount
			want[p.to] += p.amount
			txns[p.from]++
			txns[p.to]++
		case transferv1.Transfer_STAGE_REFUNDED:
			if p.to != missing {
				t.Errorf("transfer %s to an open account was refunded: %s", p.id, tr.GetReason())
			}
			txns[p.from] += 2 // the withdrawal and its refund
		case transferv1.Transfer_STAGE_REJECTED:
		default:
			t.Errorf("transfer %s ended at stage %v (%s)", p.id, tr.GetStage(), views[p.id].GetStatus())
		}
	}
	var total int64
	for _, id := range ids {
		st, err := bank.GetStatement(ctx, &bankv1.GetStatementRequest{AccountId: id, OwnerId: "owner-" + id})
		if err != nil {
			t.Fatal(err)
		}
		total += st.GetBalanceCents()
		if st.GetBalanceCents() != want[id] {
			t.Errorf("%s holds %d, its transfers say %d: an effect was applied twice or lost", id, st.GetBalanceCents(), want[id])
		}
		if n := len(st.GetTransactions()); n != txns[id] {
			t.Errorf("%s has %d transactions, its transfers say %d", id, n, txns[id])
		}
	}
	if total != accounts*opening {
		t.Errorf("money not conserved: the accounts hold %d, they were opened with %d", total, accounts*opening)
	}
	checkDirectory(ctx, t, bankv1.NewAccountDirectoryViewClient(to), ids, want)
	if stages[transferv1.Transfer_STAGE_COMPLETED] == 0 || stages[transferv1.Transfer_STAGE_REFUNDED] == 0 {
		t.Errorf("the run did not exercise both paths: %v", stages)
	}
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, srv.log)
	}
	srv.checkNoRaces(t)
	t.Logf("%d transfers, %d kills: %v", transfers, kills, stages)
	count("transfers acknowledged", len(acked))
	note("transfers: %d kill -9, %d transfers between %d accounts: completed %d, rejected %d, refunded %d; money conserved",
		kills, transfers, accounts, stages[transferv1.Transfer_STAGE_COMPLETED], stages[transferv1.Transfer_STAGE_REJECTED], stages[transferv1.Transfer_STAGE_REFUNDED])
}

// checkDirectory waits until the account directory view holds, for each
// account, the balance its transfers say, as its one row.
func checkDirectory(ctx context.Context, t *testing.T, directory *bankv1.AccountDirectoryViewClient, ids []string, want map[string]int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var wrong []string
		for _, id := range ids {
			var rows []*bankv1.AccountSummary
			for a, err := range directory.AccountsByOwnerAll(ctx, &bankv1.AccountsByOwnerRequest{OwnerId: "owner-" + id}) {
				if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, a)
			}
			if len(rows) != 1 || rows[0].GetAccountId() != id || rows[0].GetBalanceCents() != want[id] {
				wrong = append(wrong, fmt.Sprintf("%s: %v, want one row of %d", id, rows, want[id]))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the account directory, 30 s after the last transfer, is wrong for %d accounts: %v", len(wrong), wrong)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// keyed returns ctx with an idempotency key.
func keyed(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, statefun.IdempotencyKeyHeader, key)
}

// waitGroup waits for wg for at most d.
func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal(errors.New("timed out waiting for " + what))
	}
}
