package reliability

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// TestViewCrashUnderLoad kills the bank server with SIGKILL while clients
// deposit into and withdraw from its accounts faster than its account
// directory view follows them, so that the view's updater dies with rows
// written past the position it saved and events read but not yet applied,
// and restarts it on the same store each time. It checks INVARIANTS.md's
// invariant 17 through the kills: no read of the view shows an account's
// row older than one shown before, in the same run or across a restart;
// every row a read showed is a state its account really went through; and
// once the last run's view has caught up, every account has its one row,
// equal to the account's state and, in the store, at the seq of its last
// stored event: no row lost, none behind, no event counted twice.
//
// An account's balance tells how many events made it (viewOps), so a row
// read over gRPC says how far it is, and a row that counted an event twice
// is told from one that is simply ahead.
func TestViewCrashUnderLoad(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		schema := newSchema(t, "viewcrash")
		flags := []string{"--database-url", databaseURL(), "--database-schema", schema}
		viewCrashUnderLoad(t, "postgres", flags, func(t *testing.T) store.Store { return openPostgres(t, schema) })
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		viewCrashUnderLoad(t, "embedded", []string{"--data-dir", dir}, func(t *testing.T) store.Store {
			// The server is stopped: the file lock is free.
			st, err := embedded.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		})
	})
}

const (
	// viewCrashRounds is how many times each store's server is killed.
	viewCrashRounds = 5
	// viewCrashAccounts, more than the updater handles at once (16), one
	// client each: the commands outrun the view.
	viewCrashAccounts = 40
	viewCrashOwners   = 5
	// viewUnit: a deposit of 1+k*viewUnit cents (k >= 0) or a withdrawal
	// of k*viewUnit-1 (k >= 1) each raise the balance modulo viewUnit by
	// one, so an account opened with a multiple of viewUnit holds, modulo
	// viewUnit, the number of deposits and withdrawals applied to it
	// (viewOps): whichever were stored, acknowledged or not.
	viewUnit    = 1_000_000
	viewOpening = 100 * viewUnit
)

// viewOps is the number of deposits and withdrawals a balance reflects.
func viewOps(balance int64) int64 { return balance % viewUnit }

// viewAccount is one account and what its client was told.
type viewAccount struct {
	id, owner string
	// Written by the account's load client only; read between rounds,
	// once it stopped.
	sent    int             // deposits and withdrawals sent, answered or not
	acked   map[int64]int64 // viewOps -> balance, of acknowledged replies
	newest  int64           // the highest viewOps acknowledged
	balance int64           // the last balance acknowledged: picks withdrawals
	replies map[codes.Code]int
	nAcked  int // deposits and withdrawals acknowledged
}

// load sends deposits and withdrawals to the account, one at a time,
// until ctx ends, calling acked after each acknowledged one.
func (a *viewAccount) load(ctx context.Context, t *testing.T, accounts bankv1.AccountServiceClient, rng *rand.Rand, acked func()) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var (
			res *bankv1.Balance
			err error
		)
		a.sent++
		if a.balance >= 10*viewUnit && rng.IntN(2) == 0 {
			k := int64(1 + rng.IntN(5))
			res, err = accounts.Withdraw(cctx, &bankv1.WithdrawRequest{AccountId: a.id, AmountCents: k*viewUnit - 1})
		} else {
			k := int64(rng.IntN(7))
			res, err = accounts.Deposit(cctx, &bankv1.DepositRequest{AccountId: a.id, AmountCents: 1 + k*viewUnit})
		}
		cancel()
		a.replies[status.Code(err)]++
		switch status.Code(err) {
		case codes.OK:
			a.ack(t, res.GetBalanceCents())
			a.nAcked++
			acked()
			continue
		case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
			// The kill, or the server starting or overloaded.
		case codes.FailedPrecondition:
			// A withdrawal larger than the balance: a commit whose reply
			// the kill lost made the balance the client knows stale.
		default:
			t.Errorf("%s: %v", a.id, err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (a *viewAccount) ack(t *testing.T, balance int64) {
	ops := viewOps(balance)
	if b, ok := a.acked[ops]; ok && b != balance {
		t.Errorf("%s: two replies after %d operations: balances %d and %d", a.id, ops, b, balance)
	}
	a.acked[ops] = balance
	a.newest = max(a.newest, ops)
	a.balance = balance
}

// viewReads is what the view showed: every row read, and the newest of
// each account, which no later read may be older than.
type viewReads struct {
	owners   map[string]string          // account -> owner
	byOwner  []string                   // the owners, each once
	seen     map[string]map[int64]int64 // account -> viewOps -> balance
	newest   map[string]int64
	reads    int // queries answered
	backward int // rows older than one shown before
	errors   int // reported by fail
}

// maxViewErrors is how many wrong rows a test reports one by one: a
// broken updater gets thousands wrong.
const maxViewErrors = 20

func (r *viewReads) fail(t *testing.T, format string, args ...any) {
	t.Helper()
	if r.errors++; r.errors <= maxViewErrors {
		t.Errorf(format, args...)
	}
}

// viewPass is one read of the whole view, by each query: account ->
// balance.
type viewPass struct {
	byOwner, low map[string]int64
}

// read runs every query of the view once (each owner's accounts, and the
// accounts below the highest balance) and records the rows, checking that
// none is older than one read before. It stops at the first failed query.
func (r *viewReads) read(ctx context.Context, t *testing.T, directory *bankv1.AccountDirectoryViewClient, when string) (viewPass, error) {
	pass := viewPass{byOwner: map[string]int64{}, low: map[string]int64{}}
	for _, owner := range r.byOwner {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		page, err := directory.AccountsByOwner(cctx, &bankv1.AccountsByOwnerRequest{OwnerId: owner, PageSize: viewCrashAccounts})
		cancel()
		if err != nil {
			return pass, err
		}
		if page.GetNextPageToken() != "" {
			t.Errorf("%s: AccountsByOwner(%s) has more than one page of %d", when, owner, viewCrashAccounts)
		}
		r.record(t, page.GetAccounts(), "AccountsByOwner("+owner+")", when, pass.byOwner)
		r.checkNoneVanished(t, "AccountsByOwner("+owner+")", when, owner, pass.byOwner)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rows []*bankv1.AccountSummary
	for row, err := range directory.LowBalances(cctx, &bankv1.LowBalancesRequest{BelowCents: math.MaxInt64}) {
		if err != nil {
			return pass, err
		}
		rows = append(rows, row)
	}
	if !slices.IsSortedFunc(rows, func(a, b *bankv1.AccountSummary) int { return cmp.Compare(a.GetBalanceCents(), b.GetBalanceCents()) }) {
		t.Errorf("%s: LowBalances answered out of balance order", when)
	}
	r.record(t, rows, "LowBalances", when, pass.low)
	r.checkNoneVanished(t, "LowBalances", when, "", pass.low)
	return pass, nil
}

// checkNoneVanished checks that query answered every row of owner's
// accounts (of all accounts, for owner "") that a read showed before:
// the view deletes no row.
func (r *viewReads) checkNoneVanished(t *testing.T, query, when, owner string, got map[string]int64) {
	for id, o := range r.owners {
		if _, shown := r.newest[id]; shown && (owner == "" || o == owner) {
			if _, ok := got[id]; !ok {
				r.fail(t, "%s: %s has no row of %s, which it showed before", when, query, id)
			}
		}
	}
}

// readNow reads the view, again until the server answers (10 s at most).
func (r *viewReads) readNow(t *testing.T, srv *server, directory *bankv1.AccountDirectoryViewClient, when string) viewPass {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pass, err := r.read(t.Context(), t, directory, when)
		if err == nil {
			return pass
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the view did not answer within 10 s: %v\n%s", when, err, srv.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// record checks and records the rows one query answered, and adds them
// to got.
func (r *viewReads) record(t *testing.T, rows []*bankv1.AccountSummary, query, when string, got map[string]int64) {
	r.reads++
	once := map[string]bool{}
	for _, row := range rows {
		id, balance := row.GetAccountId(), row.GetBalanceCents()
		owner, ok := r.owners[id]
		switch {
		case !ok:
			r.fail(t, "%s: %s answered a row of %s, an account no client opened", when, query, id)
			continue
		case row.GetOwnerId() != owner:
			r.fail(t, "%s: %s answered %s with owner %q, want %q", when, query, id, row.GetOwnerId(), owner)
		case once[id]:
			r.fail(t, "%s: %s answered two rows of %s", when, query, id)
		}
		once[id] = true
		got[id] = balance
		if balance < 0 {
			// No account goes below zero: a withdrawal counted twice.
			r.fail(t, "%s: %s showed %s with the balance %d, below zero", when, query, id, balance)
			continue
		}
		ops := viewOps(balance)
		if prev, ok := r.newest[id]; ok && ops < prev {
			r.backward++
			r.fail(t, "%s: %s showed %s after %d operations (balance %d), having shown it after %d: the row moved back",
				when, query, id, ops, balance, prev)
		}
		r.newest[id] = max(r.newest[id], ops)
		if r.seen[id] == nil {
			r.seen[id] = map[int64]int64{}
		}
		if b, ok := r.seen[id][ops]; ok && b != balance {
			r.fail(t, "%s: %s showed %s after %d operations with the balance %d, and before with %d: one of them counts an event twice",
				when, query, id, ops, balance, b)
		}
		r.seen[id][ops] = balance
	}
}

// behind is how many operations acknowledged to the clients the view's
// newest rows do not show yet.
func (r *viewReads) behind(accounts []*viewAccount) int64 {
	var n int64
	for _, a := range accounts {
		n += max(0, a.newest-r.newest[a.id])
	}
	return n
}

func viewCrashUnderLoad(t *testing.T, name string, flags []string, open func(*testing.T) store.Store) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	accounts := make([]*viewAccount, viewCrashAccounts)
	reads := &viewReads{owners: map[string]string{}, seen: map[string]map[int64]int64{}, newest: map[string]int64{}}
	for i := range accounts {
		a := &viewAccount{id: fmt.Sprintf("va-%02d", i), owner: fmt.Sprintf("owner-%d", i%viewCrashOwners), acked: map[int64]int64{}, replies: map[codes.Code]int{}}
		accounts[i] = a
		reads.owners[a.id] = a.owner
		if !slices.Contains(reads.byOwner, a.owner) {
			reads.byOwner = append(reads.byOwner, a.owner)
		}
	}
	// The server keeps its addresses: on Postgres the gRPC address names
	// the node, which then takes its shards' leases back at once instead
	// of waiting for the killed node's to expire.
	cfg := serverConfig{example: "bank", flags: flags, grpcAddr: stableAddr(t), httpAddr: stableAddr(t)}
	var lags []string
	for round := range viewCrashRounds {
		srv := startServer(t, cfg)
		bank := bankv1.NewAccountServiceClient(srv.conn)
		directory := bankv1.NewAccountDirectoryViewClient(srv.conn)
		if round == 0 {
			for _, a := range accounts {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				res, err := bank.Open(ctx, &bankv1.OpenRequest{AccountId: a.id, OwnerId: a.owner, OwnerName: "Owner " + a.owner, InitialDepositCents: viewOpening})
				cancel()
				if err != nil {
					t.Fatalf("open %s: %v\n%s", a.id, err, srv.log)
				}
				a.ack(t, res.GetBalanceCents())
			}
		} else {
			// Right after the restart the view holds what the killed
			// updater stored, and what the new one applied since: it
			// must not be older than what the last run showed.
			reads.readNow(t, srv, directory, fmt.Sprintf("round %d, after the restart", round))
		}

		ctx, stop := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		running := make(chan struct{})
		var once sync.Once
		for _, a := range accounts {
			arng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
			wg.Go(func() { a.load(ctx, t, bank, arng, func() { once.Do(func() { close(running) }) }) })
		}
		when := fmt.Sprintf("round %d, under load", round)
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := reads.read(ctx, t, directory, when); err != nil {
					// The kill; or the server is busy: read again.
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		})
		// From the first acknowledged operation, long enough for the view
		// to fall behind, and for the updater to have saved its position
		// a few times (every 200 ms).
		select {
		case <-running:
		case <-time.After(30 * time.Second):
			srv.kill()
			stop()
			waitGroup(t, &wg, 20*time.Second, "the clients to stop")
			t.Fatalf("round %d: no operation acknowledged within 30 s of the start\n%s", round, srv.log)
		}
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		srv.kill()
		stop()
		waitGroup(t, &wg, 20*time.Second, "the clients to stop after the kill")
		// How far the view was behind at the kill, by the last read
		// before it: the updater had that many events to go.
		lags = append(lags, fmt.Sprint(reads.behind(accounts)))
		srv.checkNoRaces(t)
		count("crashes injected (kill -9)", 1)
	}

	// The last run: the view catches up with the accounts.
	srv := startServer(t, cfg)
	bank := bankv1.NewAccountServiceClient(srv.conn)
	directory := bankv1.NewAccountDirectoryViewClient(srv.conn)
	reads.readNow(t, srv, directory, "after the last restart")
	served := map[string]int64{}
	for _, a := range accounts {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		res, err := bank.GetBalance(ctx, &bankv1.GetBalanceRequest{AccountId: a.id})
		cancel()
		if err != nil {
			t.Fatalf("balance of %s: %v\n%s", a.id, err, srv.log)
		}
		served[a.id] = res.GetBalanceCents()
		if ops := viewOps(res.GetBalanceCents()); ops < a.newest {
			t.Errorf("%s holds %d operations, %d were acknowledged: an acknowledged event was lost", a.id, ops, a.newest)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pass := reads.readNow(t, srv, directory, "after the last restart")
		var wrong []string
		for _, a := range accounts {
			want := served[a.id]
			for query, rows := range map[string]map[string]int64{"AccountsByOwner": pass.byOwner, "LowBalances": pass.low} {
				switch got, ok := rows[a.id]; {
				case !ok:
					wrong = append(wrong, fmt.Sprintf("%s: no row in %s", a.id, query))
				case got != want:
					wrong = append(wrong, fmt.Sprintf("%s: %s shows the balance %d after %d operations, the account holds %d after %d", a.id, query, got, viewOps(got), want, viewOps(want)))
				}
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			// The store tells more: go on to compare with it.
			t.Errorf("30 s after the last restart, the view is wrong for %d accounts: %s\n%s", len(wrong), strings.Join(wrong, "; "), srv.log)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM after the view caught up: %v\n%s", err, srv.log)
	}
	srv.checkNoRaces(t)

	// The store: each account's history, folded, against what the
	// clients were told, what the view showed, and the view's stored row.
	st := open(t)
	ctx := t.Context()
	versions, err := st.ViewVersions(ctx, bankv1.AccountDirectoryViewName)
	if err != nil {
		t.Fatalf("read the view's versions: %v", err)
	}
	if len(versions) != 1 || versions[0].Def.Version != 1 || versions[0].Def.EntityType != bankv1.AccountEntityType || !versions[0].Ready {
		t.Fatalf("the store holds the view's versions %+v; want version 1 of %s, ready", versions, bankv1.AccountEntityType)
	}
	ids := make([]string, len(accounts))
	for i, a := range accounts {
		ids[i] = a.id
	}
	rows, err := st.LoadViewRows(ctx, versions[0].Def, ids)
	if err != nil {
		t.Fatalf("load the view's rows: %v", err)
	}
	var events, acked, shown int
	for _, a := range accounts {
		balances, last := foldAccount(t, st, a.id)
		events += len(balances)
		if n := int64(len(balances)) - 1; n > int64(a.sent) {
			t.Errorf("%s: %d deposits and withdrawals stored, %d sent", a.id, n, a.sent)
		}
		if final := balances[len(balances)-1]; final != served[a.id] {
			t.Errorf("%s: the restarted server served the balance %d, its stored events make %d", a.id, served[a.id], final)
		}
		for _, ops := range slices.Sorted(maps.Keys(a.acked)) {
			if b := a.acked[ops]; ops < 0 || ops >= int64(len(balances)) || balances[ops] != b {
				t.Errorf("%s: a reply gave the balance %d after %d operations, which is not in the stored history", a.id, b, ops)
				break
			}
		}
		// One error per account: a broken updater gets most rows wrong.
		var wrong []string
		for _, ops := range slices.Sorted(maps.Keys(reads.seen[a.id])) {
			shown++
			switch b := reads.seen[a.id][ops]; {
			case ops >= int64(len(balances)):
				wrong = append(wrong, fmt.Sprintf("the balance %d after %d operations, of which %d are stored", b, ops, len(balances)-1))
			case balances[ops] != b:
				wrong = append(wrong, fmt.Sprintf("the balance %d after %d operations, where the stored history has %d", b, ops, balances[ops]))
			}
		}
		if len(wrong) > 0 {
			t.Errorf("%s: the view showed %d rows of %d that are no state of the account, the first: %s", a.id, len(wrong), len(reads.seen[a.id]), strings.Join(wrong[:min(3, len(wrong))], "; "))
		}
		row, ok := rows[a.id]
		if !ok || row.Row == nil {
			t.Errorf("%s: no row in the store's view", a.id)
			continue
		}
		var summary bankv1.AccountSummary
		if err := proto.Unmarshal(row.Row, &summary); err != nil {
			t.Errorf("%s: the view's row does not decode: %v", a.id, err)
			continue
		}
		if row.Seq != last || summary.GetBalanceCents() != balances[len(balances)-1] || summary.GetAccountId() != a.id || summary.GetOwnerId() != a.owner {
			t.Errorf("%s: the stored row is at seq %d with the balance %d (account %q, owner %q); the account's last event is seq %d, its balance %d",
				a.id, row.Seq, summary.GetBalanceCents(), summary.GetAccountId(), summary.GetOwnerId(), last, balances[len(balances)-1])
		}
	}
	if reads.errors > maxViewErrors {
		t.Errorf("... and %d more wrong rows read", reads.errors-maxViewErrors)
	}
	codeCounts := map[codes.Code]int{}
	for _, a := range accounts {
		acked += a.nAcked
		for c, n := range a.replies {
			codeCounts[c] += n
		}
	}
	if acked == 0 || reads.reads == 0 {
		t.Fatalf("%d operations acknowledged, %d view queries answered: the load never ran", acked, reads.reads)
	}
	t.Logf("%s: %d kill -9, %d events stored, %d operations acknowledged (%v); %d view queries showed %d distinct rows; at each kill, the view was behind the acknowledged operations by %s events",
		name, viewCrashRounds, events, acked, codeCounts, reads.reads, shown, strings.Join(lags, ", "))
	count("view queries answered through kills", reads.reads)
	count("view rows moved back", reads.backward)
	note("viewcrash/%s: %d kill -9, %d events, %d view queries; at each kill the view was behind by %s events; every row read was a state its account went through, none moved back, all caught up",
		name, viewCrashRounds, events, reads.reads, strings.Join(lags, ", "))
}

// foldAccount reads an account's stored events and returns its balance
// after each (balances[i] after i deposits and withdrawals: the opening
// is balances[0]) and the seq of its last event. It checks the premise of
// viewOps: each event raises the balance modulo viewUnit by one.
func foldAccount(t *testing.T, st store.Store, id string) (balances []int64, last int64) {
	t.Helper()
	var balance int64
	err := st.ReadEvents(t.Context(), store.Ref{Type: bankv1.AccountEntityType, ID: id}, 0, func(e store.Event) error {
		var m proto.Message
		switch e.EventType {
		case "AccountOpened":
			m = &bankv1.AccountOpened{}
		case "FundsDeposited":
			m = &bankv1.FundsDeposited{}
		case "FundsWithdrawn":
			m = &bankv1.FundsWithdrawn{}
		default:
			return fmt.Errorf("event %d is a %s, which the test does not expect", e.Seq, e.EventType)
		}
		if err := proto.Unmarshal(e.Payload, m); err != nil {
			return fmt.Errorf("event %d (%s): %w", e.Seq, e.EventType, err)
		}
		switch m := m.(type) {
		case *bankv1.AccountOpened:
			balance = m.GetInitialDepositCents()
		case *bankv1.FundsDeposited:
			balance += m.GetAmountCents()
		case *bankv1.FundsWithdrawn:
			balance -= m.GetAmountCents()
		}
		if e.Seq != last+1 || viewOps(balance) != e.Seq-1 {
			return fmt.Errorf("event %d (after %d) leaves the balance %d: not %d operations", e.Seq, last, balance, e.Seq-1)
		}
		balances = append(balances, balance)
		last = e.Seq
		return nil
	})
	if err != nil {
		t.Fatalf("%s: read its stored events: %v", id, err)
	}
	if len(balances) == 0 {
		t.Fatalf("%s: no stored events, yet it was opened", id)
	}
	return balances, last
}
