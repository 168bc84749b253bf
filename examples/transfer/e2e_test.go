package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	bankv1 "github.com/statefun-go/statefun/examples/bank/gen/bank/v1"
	"github.com/statefun-go/statefun/examples/internal/e2e"
	transferv1 "github.com/statefun-go/statefun/examples/transfer/gen/transfer/v1"
	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	"github.com/statefun-go/statefun/internal/devtoken"
)

// TestServerEndToEnd builds the real server binary and runs it on the
// embedded store: transfers survive a clean restart (SIGTERM) and a crash
// (SIGKILL) in the middle of a batch of transfers, and every transfer ends
// with the money where it belongs.
func TestServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := e2e.Build(t, ".")
	t.Run("restart", func(t *testing.T) {
		checkRestart(t, bin, "--data-dir", t.TempDir())
	})
	t.Run("kill -9 during a batch", func(t *testing.T) {
		checkKill(t, bin, "--data-dir", t.TempDir())
	})
}

// checkRestart: a transfer that waits for its delay across a clean restart
// runs once the delay is over; one that waits longer can still be
// cancelled after the restart; one done before it is still done.
func checkRestart(t *testing.T, bin string, flags ...string) {
	ctx := t.Context()
	srv := startTransfer(t, bin, flags...)
	openAccounts(t, bankv1.NewAccountServiceClient(srv.Conn), map[string]int64{"alice": 10000, "bob": 0})
	transfers := transferv1.NewTransferServiceClient(srv.Conn)
	for _, req := range []*transferv1.StartRequest{
		{TransferId: "now", FromAccount: "alice", ToAccount: "bob", AmountCents: 1000},
		{TransferId: "soon", FromAccount: "alice", ToAccount: "bob", AmountCents: 200, Delay: durationpb.New(2 * time.Second)},
		{TransferId: "later", FromAccount: "alice", ToAccount: "bob", AmountCents: 30, Delay: durationpb.New(time.Hour)},
	} {
		if _, err := transfers.Start(ctx, req); err != nil {
			t.Fatalf("start %s: %v", req.GetTransferId(), err)
		}
	}
	waitAllEnded(t, transfers, []string{"now"}, 20*time.Second)
	srv.Stop(t)

	srv = startTransfer(t, bin, flags...)
	defer srv.Stop(t)
	transfers = transferv1.NewTransferServiceClient(srv.Conn)
	got := waitAllEnded(t, transfers, []string{"now", "soon"}, 20*time.Second)
	for id, res := range got {
		if res.GetTransfer().GetStage() != transferv1.Transfer_STAGE_COMPLETED {
			t.Errorf("transfer %s after the restart: %v, want completed", id, res)
		}
	}
	later, err := transfers.Get(ctx, &transferv1.GetRequest{TransferId: "later"})
	if err != nil || later.GetStatus().GetPhase() != statefunv1.WorkflowStatus_PHASE_WAITING {
		t.Fatalf("transfer later after the restart: %v, %v; want it waiting for its delay", later, err)
	}
	if _, err := transfers.Cancel(ctx, &transferv1.CancelRequest{TransferId: "later"}); err != nil {
		t.Fatalf("cancel later after the restart: %v", err)
	}
	checkBalances(t, bankv1.NewAccountServiceClient(srv.Conn), map[string]int64{"alice": 8800, "bob": 1200})
}

// checkKill starts a batch of transfers between a few accounts (some too
// large for their source, some into an account that does not exist),
// kills the server with SIGKILL while they run, restarts it, starts again
// each transfer whose start got no answer, and waits for every transfer to
// end: the accounts must hold exactly what the completed transfers say,
// and in all what they opened with.
func checkKill(t *testing.T, bin string, flags ...string) {
	ctx := t.Context()
	const (
		transferCount = 200
		killAfter     = 80 // acknowledged starts
		opening       = 20000
	)
	names := []string{"a1", "a2", "a3", "a4"}
	balances := map[string]int64{}
	for _, n := range names {
		balances[n] = opening
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var reqs []*transferv1.StartRequest
	for i := range transferCount {
		from := names[rng.IntN(len(names))]
		to := names[rng.IntN(len(names)-1)]
		if to == from {
			to = names[len(names)-1]
		}
		if rng.IntN(10) == 0 {
			to = "ghost" // never opened: the deposit is refused and refunded
		}
		reqs = append(reqs, &transferv1.StartRequest{
			TransferId: fmt.Sprintf("t%03d", i), FromAccount: from, ToAccount: to, AmountCents: 1 + rng.Int64N(opening/2),
		})
	}

	srv := startTransfer(t, bin, flags...)
	openAccounts(t, bankv1.NewAccountServiceClient(srv.Conn), balances)
	transfers := transferv1.NewTransferServiceClient(srv.Conn)
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		next  = make(chan *transferv1.StartRequest)
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range next {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := transfers.Start(cctx, req)
				cancel()
				if err == nil {
					mu.Lock()
					acked[req.GetTransferId()] = true
					n := len(acked)
					mu.Unlock()
					if n == killAfter {
						srv.Kill(t)
					}
				}
			}
		}()
	}
	for _, req := range reqs {
		next <- req
	}
	close(next)
	wg.Wait()
	srv.Kill(t)
	t.Logf("%d of %d starts acknowledged before the kill", len(acked), transferCount)
	if len(acked) < killAfter || len(acked) == transferCount {
		t.Fatalf("%d starts acknowledged; the kill should have come after %d and before all %d", len(acked), killAfter, transferCount)
	}

	srv2 := startTransfer(t, bin, flags...)
	defer srv2.Stop(t)
	transfers = transferv1.NewTransferServiceClient(srv2.Conn)
	ids := make([]string, 0, transferCount)
	unfinished := 0
	for _, req := range reqs {
		ids = append(ids, req.GetTransferId())
		if acked[req.GetTransferId()] {
			// An acknowledged start is stored: the transfer exists.
			res, err := transfers.Get(ctx, &transferv1.GetRequest{TransferId: req.GetTransferId()})
			if err != nil {
				t.Fatalf("transfer %s, whose start was acknowledged before the kill: %v", req.GetTransferId(), err)
			}
			if ph := res.GetStatus().GetPhase(); ph != statefunv1.WorkflowStatus_PHASE_COMPLETED && ph != statefunv1.WorkflowStatus_PHASE_FAILED {
				unfinished++
			}
			continue
		}
		// A start without an answer may or may not have been stored:
		// starting it again either starts it or says it exists.
		if _, err := transfers.Start(ctx, req); err != nil && status.Code(err) != codes.AlreadyExists {
			t.Fatalf("start %s again after the kill: %v", req.GetTransferId(), err)
		}
	}
	t.Logf("after the restart, %d of the acknowledged transfers had not ended yet", unfinished)

	// A step cut by the kill runs again once its watchdog fires, the
	// step's timeout and 10s after it started.
	ended := waitAllEnded(t, transfers, ids, 90*time.Second)
	stages := map[transferv1.Transfer_Stage]int{}
	for _, id := range ids {
		tr := ended[id].GetTransfer()
		stages[tr.GetStage()]++
		switch tr.GetStage() {
		case transferv1.Transfer_STAGE_COMPLETED:
			balances[tr.GetFromAccount()] -= tr.GetAmountCents()
			balances[tr.GetToAccount()] += tr.GetAmountCents()
		case transferv1.Transfer_STAGE_REJECTED, transferv1.Transfer_STAGE_REFUNDED:
		default:
			t.Errorf("transfer %s ended at stage %v: %v", id, tr.GetStage(), ended[id])
		}
		if tr.GetToAccount() == "ghost" && tr.GetStage() == transferv1.Transfer_STAGE_COMPLETED {
			t.Errorf("transfer %s completed into an account that was never opened", id)
		}
	}
	t.Logf("transfers by stage: %v", stages)
	if stages[transferv1.Transfer_STAGE_COMPLETED] == 0 || stages[transferv1.Transfer_STAGE_REFUNDED] == 0 || stages[transferv1.Transfer_STAGE_REJECTED] == 0 {
		t.Errorf("transfers by stage: %v; the batch should have completed, refunded and rejected ones", stages)
	}
	checkBalances(t, bankv1.NewAccountServiceClient(srv2.Conn), balances)
}

func openAccounts(t *testing.T, bank bankv1.AccountServiceClient, balances map[string]int64) {
	t.Helper()
	for id, cents := range balances {
		if _, err := bank.Open(t.Context(), &bankv1.OpenRequest{AccountId: id, OwnerId: id, OwnerName: id, InitialDepositCents: cents}); err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
	}
}

// checkBalances checks each account's balance, and that the accounts hold
// in all what want does.
func checkBalances(t *testing.T, bank bankv1.AccountServiceClient, want map[string]int64) {
	t.Helper()
	var got, total int64
	for id, cents := range want {
		b, err := bank.GetBalance(t.Context(), &bankv1.GetBalanceRequest{AccountId: id})
		if err != nil {
			t.Fatalf("balance of %s: %v", id, err)
		}
		if b.GetBalanceCents() != cents {
			t.Errorf("%s holds %d cents, want %d", id, b.GetBalanceCents(), cents)
		}
		got += b.GetBalanceCents()
		total += cents
	}
	if got != total {
		t.Errorf("the accounts hold %d cents in all, want %d: money was made or lost", got, total)
	}
}

// waitAllEnded polls the transfers until each completed or failed, for at
// most timeout in all, and returns them.
func waitAllEnded(t *testing.T, transfers transferv1.TransferServiceClient, ids []string, timeout time.Duration) map[string]*transferv1.GetResponse {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ended := map[string]*transferv1.GetResponse{}
	for {
		var running []string
		for _, id := range ids {
			if ended[id] != nil {
				continue
			}
			res, err := transfers.Get(t.Context(), &transferv1.GetRequest{TransferId: id})
			if err != nil {
				t.Fatalf("Get %s: %v", id, err)
			}
			switch res.GetStatus().GetPhase() {
			case statefunv1.WorkflowStatus_PHASE_COMPLETED, statefunv1.WorkflowStatus_PHASE_FAILED:
				ended[id] = res
			default:
				running = append(running, fmt.Sprintf("%s (step %s, attempt %d, %q)", id, res.GetStatus().GetStep(), res.GetStatus().GetAttempt(), res.GetStatus().GetLastError()))
			}
		}
		if len(running) == 0 {
			return ended
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transfers have not ended within %v: %s", len(running), timeout, strings.Join(running, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startTransfer starts the transfer server trusting the test's token
// issuer: it hosts the bank account, whose access rules need tokens. The
// connection's calls carry tokens every rule allows: these tests are not
// about access (the bank example's are).
func startTransfer(t *testing.T, bin string, flags ...string) *e2e.Server {
	t.Helper()
	iss, err := devtoken.Open(t.TempDir(), "transfer-test", "bank")
	if err != nil {
		t.Fatal(err)
	}
	srv := e2e.Start(t, bin, append(iss.ServerFlags(), flags...)...)
	srv.Conn = srv.Dial(t, grpc.WithUnaryInterceptor(iss.Interceptor(devtoken.OwnerAndAdmin)))
	return srv
}
