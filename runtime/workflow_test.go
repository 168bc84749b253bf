package statefun_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	statefunv1 "github.com/statefun-go/statefun/gen/statefun/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/memory"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// These tests build a workflow by hand (generated code does the same, with
// types): its state is a Struct, its steps are closures, and the test
// calls StartWorkflow, SignalWorkflow and ReadWorkflow on its host as the
// generated service glue would.

type errandState = *structpb.Struct

type step = statefun.WorkflowStep[errandState]

// errand returns a workflow "errand" made of steps, and where the host it
// is bound to will be.
func errand(steps ...step) (*statefun.Entity, *atomic.Pointer[statefun.WorkflowHost[errandState]]) {
	var host atomic.Pointer[statefun.WorkflowHost[errandState]]
	e := statefun.NewWorkflow(statefun.WorkflowConfig[errandState]{
		Type:     "errand",
		Service:  &grpc.ServiceDesc{ServiceName: "test.Errand", HandlerType: (*any)(nil)},
		NewState: func() errandState { return &structpb.Struct{Fields: map[string]*structpb.Value{}} },
		Steps:    steps,
		NewService: func(h *statefun.WorkflowHost[errandState]) any {
			host.Store(h)
			return struct{}{}
		},
	})
	return e, &host
}

func startErrand(t *testing.T, h *statefun.WorkflowHost[errandState], id string) {
	t.Helper()
	_, err := statefun.StartWorkflow(context.Background(), h, id, "Start", func(c *statefun.WorkflowContext, s errandState) (*structpb.Struct, error) {
		s.Fields["started"] = structpb.NewBoolValue(true)
		return &structpb.Struct{}, nil
	})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
}

func errandStatus(h *statefun.WorkflowHost[errandState], id string) (*statefunv1.WorkflowStatus, errandState, error) {
	var st *statefunv1.WorkflowStatus
	s, err := statefun.ReadWorkflow(context.Background(), h, id, func(c *statefun.WorkflowReadContext, s errandState) (*structpb.Struct, error) {
		st = c.Status()
		return s, nil
	})
	return st, s, err
}

// waitPhase polls the workflow until it is in phase, for at most 10 s.
func waitPhase(t *testing.T, h *statefun.WorkflowHost[errandState], id string, phase statefunv1.WorkflowStatus_Phase) (*statefunv1.WorkflowStatus, errandState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, s, err := errandStatus(h, id)
		if err == nil && st.GetPhase() == phase {
			return st, s
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow %s not %v within 10s: status %v, err %v", id, phase, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cartItems(t *testing.T, rt *statefun.Runtime, id string) map[string]int32 {
	t.Helper()
	got, err := cart.NewShoppingCartEntityClient(rt.ClientConn()).GetCart(context.Background(), &cart.GetCartRequest{CartId: id})
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]int32{}
	for _, it := range got.GetItems() {
		items[it.GetSku()] += it.GetQuantity()
	}
	return items
}

func historySteps(st *statefunv1.WorkflowStatus) []string {
	var out []string
	for _, r := range st.GetHistory() {
		out = append(out, fmt.Sprintf("%s#%d:%s", r.GetStep(), r.GetAttempt(), r.GetOutcome()))
	}
	return out
}

func TestWorkflowRunsItsStepsInOrderAndKeepsTheirHistory(t *testing.T) {
	e, host := errand(
		step{Name: "add", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			_, err := cart.NewShoppingCartEntityClient(c.Conn()).AddItem(c.Context(), &cart.AddItemRequest{CartId: "c-" + c.WorkflowID(), Sku: "apple", Quantity: 1})
			if err != nil {
				return statefun.Transition{}, err
			}
			s.Fields["added"] = structpb.NewBoolValue(true)
			return c.Sleep(30*time.Millisecond, "finish"), nil
		}},
		step{Name: "finish", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			s.Fields["finished"] = structpb.NewBoolValue(true)
			return c.End(), nil
		}},
	)
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{}), e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	startErrand(t, host.Load(), "w1")
	st, s := waitPhase(t, host.Load(), "w1", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if got := historySteps(st); fmt.Sprint(got) != "[add#1:OUTCOME_DONE finish#1:OUTCOME_DONE]" {
		t.Errorf("history = %v", got)
	}
	for _, f := range []string{"started", "added", "finished"} {
		if !s.Fields[f].GetBoolValue() {
			t.Errorf("state lacks %s: %v", f, s)
		}
	}
	h := st.GetHistory()
	if gap := h[1].GetStartedAt().AsTime().Sub(h[0].GetStartedAt().AsTime()); gap < 30*time.Millisecond {
		t.Errorf("finish started %v after add started; add sleeps 30ms", gap)
	}
	if got := cartItems(t, rt, "c-w1"); got["apple"] != 1 {
		t.Errorf("cart = %v, want one apple", got)
	}
	// Started once: a second start is refused, and says why.
	_, err = statefun.StartWorkflow(context.Background(), host.Load(), "w1", "Start", func(*statefun.WorkflowContext, errandState) (*structpb.Struct, error) {
		return &structpb.Struct{}, nil
	})
	wantCode(t, err, codes.AlreadyExists)
	_, err = statefun.SignalWorkflow(context.Background(), host.Load(), "w1", "Poke", func(*statefun.WorkflowContext, errandState) (*structpb.Struct, error) {
		return &structpb.Struct{}, nil
	})
	wantCode(t, err, codes.FailedPrecondition)
	_, _, err = errandStatus(host.Load(), "never")
	wantCode(t, err, codes.NotFound)
	var stats statefun.WorkflowStats
	for _, ws := range rt.Stats().Workflows {
		if ws.WorkflowType == "errand" {
			stats = ws
		}
	}
	if stats.Started != 1 || stats.StepsDone != 2 || stats.Completed != 1 {
		t.Errorf("stats = %+v", stats)
	}
	m := statefun.WorkflowMetricsForTest(rt)
	if m["statefun_workflows_started_total{errand}"] != 1 || m["statefun_workflow_steps_total{done,errand}"] != 2 ||
		m["statefun_workflows_ended_total{completed,errand}"] != 1 {
		t.Errorf("metrics = %v", m)
	}
}

// A repeated attempt repeats its calls with the same idempotency key: the
// entity answers the repeat without running it again.
func TestWorkflowRetryDoesNotRepeatACallsEffect(t *testing.T) {
	var attempts atomic.Int32
	e, host := errand(
		step{Name: "add", Retry: statefun.RetryPolicy{InitialBackoff: time.Millisecond},
			Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
				_, err := cart.NewShoppingCartEntityClient(c.Conn()).AddItem(c.Context(), &cart.AddItemRequest{CartId: "c-" + c.WorkflowID(), Sku: "pear", Quantity: 1})
				if err != nil {
					return statefun.Transition{}, err
				}
				if attempts.Add(1) < 3 {
					// The call went through, then the step failed: as if
					// the node had died after the call.
					return statefun.Transition{}, errors.New("lost the reply")
				}
				return c.End(), nil
			}},
	)
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{}), e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	startErrand(t, host.Load(), "w2")
	st, _ := waitPhase(t, host.Load(), "w2", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if got := historySteps(st); fmt.Sprint(got) != "[add#1:OUTCOME_FAILED add#2:OUTCOME_FAILED add#3:OUTCOME_DONE]" {
		t.Errorf("history = %v", got)
	}
	if got := cartItems(t, rt, "c-w2"); got["pear"] != 1 {
		t.Errorf("cart = %v after three attempts: the call's effect was repeated", got)
	}
}

func TestWorkflowFailsOverOnceAttemptsAreUsedUp(t *testing.T) {
	e, host := errand(
		step{Name: "deposit", Retry: statefun.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, Failover: "refund"},
			Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
				return statefun.Transition{}, fmt.Errorf("bank down (attempt %d)", c.Attempt())
			}},
		step{Name: "refund", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			s.Fields["refunded"] = structpb.NewBoolValue(true)
			return c.Fail("deposit failed; refunded"), nil
		}},
	)
	rt, err := statefun.New([]*statefun.Entity{e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	startErrand(t, host.Load(), "w3")
	st, s := waitPhase(t, host.Load(), "w3", statefunv1.WorkflowStatus_PHASE_FAILED)
	want := "[deposit#1:OUTCOME_FAILED deposit#2:OUTCOME_FAILED deposit#3:OUTCOME_FAILED refund#1:OUTCOME_DONE]"
	if got := historySteps(st); fmt.Sprint(got) != want {
		t.Errorf("history = %v, want %v", got, want)
	}
	if !s.Fields["refunded"].GetBoolValue() || st.GetLastError() != "deposit failed; refunded" {
		t.Errorf("state %v, last error %q", s, st.GetLastError())
	}
	if e := st.GetHistory()[2].GetError(); e != "bank down (attempt 3)" {
		t.Errorf("third attempt's error = %q", e)
	}
}

func TestWorkflowWaitsForASignalOrItsTimeout(t *testing.T) {
	e, host := errand(
		step{Name: "ask", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			if c.WorkflowID() == "patient" {
				return c.Pause("answer"), nil
			}
			return c.WaitForSignal("answer", 50*time.Millisecond, "give_up"), nil
		}},
		step{Name: "answer", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			if s.Fields["answer"].GetStringValue() != "yes" {
				return statefun.Transition{}, fmt.Errorf("answer step ran without the signal's answer: %v", s)
			}
			return c.End(), nil
		}},
		step{Name: "give_up", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			return c.Fail("nobody answered"), nil
		}},
	)
	rt, err := statefun.New([]*statefun.Entity{e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	h := host.Load()
	startErrand(t, h, "patient")
	startErrand(t, h, "impatient")
	waitPhase(t, h, "patient", statefunv1.WorkflowStatus_PHASE_WAITING)
	st, _ := waitPhase(t, h, "impatient", statefunv1.WorkflowStatus_PHASE_FAILED)
	if st.GetLastError() != "nobody answered" {
		t.Errorf("impatient: %v", st)
	}
	_, err = statefun.SignalWorkflow(context.Background(), h, "patient", "Answer", func(c *statefun.WorkflowContext, s errandState) (*structpb.Struct, error) {
		s.Fields["answer"] = structpb.NewStringValue("yes")
		return &structpb.Struct{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ = waitPhase(t, h, "patient", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if got := historySteps(st); fmt.Sprint(got) != "[ask#1:OUTCOME_DONE Answer#0:OUTCOME_SIGNALLED answer#1:OUTCOME_DONE]" {
		t.Errorf("history = %v", got)
	}
}

// A signal that changes the state while a step runs makes the step run
// again on the new state: the outcome of the run on the old state is not
// stored over the signal's change.
func TestWorkflowStepRunsAgainWhenASignalChangesTheState(t *testing.T) {
	release := make(chan struct{})
	var runs atomic.Int32
	var seen sync.Map
	e, host := errand(
		step{Name: "work", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			n := runs.Add(1)
			seen.Store(n, s.Fields["note"].GetStringValue())
			if n == 1 {
				select {
				case <-release:
				case <-c.Context().Done():
					return statefun.Transition{}, c.Context().Err()
				}
			}
			s.Fields["worked"] = structpb.NewNumberValue(float64(n))
			return c.End(), nil
		}},
	)
	rt, err := statefun.New([]*statefun.Entity{e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRuntime(t, rt) })
	h := host.Load()
	startErrand(t, h, "w5")
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_, err = statefun.SignalWorkflow(context.Background(), h, "w5", "Note", func(c *statefun.WorkflowContext, s errandState) (*structpb.Struct, error) {
		s.Fields["note"] = structpb.NewStringValue("from the signal")
		return &structpb.Struct{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	_, s := waitPhase(t, h, "w5", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if s.Fields["note"].GetStringValue() != "from the signal" || s.Fields["worked"].GetNumberValue() != 2 {
		t.Errorf("state = %v: the signal's change was lost, or the step did not run again on it", s)
	}
	if v, _ := seen.Load(int32(2)); v != "from the signal" {
		t.Errorf("second run saw note %q", v)
	}
}

// A workflow resumes after a restart at the step it was at, without
// running the steps it finished before.
func TestWorkflowResumesAfterRestartWithoutRepeatingFinishedSteps(t *testing.T) {
	dir := t.TempDir()
	var firsts, seconds atomic.Int32
	steps := []step{
		{Name: "first", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			firsts.Add(1)
			return c.Sleep(300*time.Millisecond, "second"), nil
		}},
		{Name: "second", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			seconds.Add(1)
			return c.End(), nil
		}},
	}
	open := func() (*statefun.WorkflowHost[errandState], func()) {
		st, err := embedded.Open(filepath.Join(dir, "statefun.db"))
		if err != nil {
			t.Fatal(err)
		}
		e, host := errand(steps...)
		rt, err := statefun.New([]*statefun.Entity{e}, statefun.WithStore(st))
		if err != nil {
			t.Fatal(err)
		}
		return host.Load(), func() {
			closeRuntime(t, rt)
			_ = st.Close()
		}
	}
	h, stop := open()
	startErrand(t, h, "w6")
	st, _ := waitPhase(t, h, "w6", statefunv1.WorkflowStatus_PHASE_RUNNING)
	for deadline := time.Now().Add(10 * time.Second); st.GetStep() != "second" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		st, _, _ = errandStatus(h, "w6")
	}
	if st.GetStep() != "second" {
		t.Fatalf("workflow not at its second step: %v", st)
	}
	stop()
	h, stop = open()
	t.Cleanup(stop)
	waitPhase(t, h, "w6", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if firsts.Load() != 1 || seconds.Load() != 1 {
		t.Errorf("first ran %d times, second %d; want once each", firsts.Load(), seconds.Load())
	}
}

// In a cluster a workflow's steps run where its shard is served, and a
// workflow whose node leaves goes on at the shard's next owner: every
// workflow ends, and no step's call takes effect twice.
func TestClusterWorkflowsMoveWithTheirShards(t *testing.T) {
	t.Parallel()
	st := memory.New()
	steps := []step{
		{Name: "add", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			_, err := cart.NewShoppingCartEntityClient(c.Conn()).AddItem(c.Context(), &cart.AddItemRequest{CartId: "c-" + c.WorkflowID(), Sku: "fig", Quantity: 1})
			if err != nil {
				return statefun.Transition{}, err
			}
			return c.Sleep(200*time.Millisecond, "finish"), nil
		}},
		{Name: "finish", Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
			_, err := cart.NewShoppingCartEntityClient(c.Conn()).AddItem(c.Context(), &cart.AddItemRequest{CartId: "c-" + c.WorkflowID(), Sku: "date", Quantity: 1})
			if err != nil {
				return statefun.Transition{}, err
			}
			return c.End(), nil
		}},
	}
	node := func() (*clusterNode, *statefun.WorkflowHost[errandState]) {
		e, host := errand(steps...)
		n := startNodeHosting(t, st, 5*time.Second, []*statefun.Entity{cart.NewShoppingCart(cartEntity{}), e})
		return n, host.Load()
	}
	a, ha := node()
	b, hb := node()
	eventually(t, "the shards to spread", func() bool { return held(a) == 32 && held(b) == 32 })
	const n = 20
	for i := range n {
		// These starts call the hosts directly, not through a server,
		// so they cannot be forwarded: each goes to the node that owns
		// the workflow's shard.
		id := fmt.Sprint("cw", i)
		_, err := statefun.StartWorkflow(testContext(t), ha, id, "Start", func(*statefun.WorkflowContext, errandState) (*structpb.Struct, error) {
			return &structpb.Struct{}, nil
		})
		if status.Code(err) == codes.Internal {
			startErrand(t, hb, id)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	b.stop(t)
	for i := range n {
		id := fmt.Sprint("cw", i)
		st, _ := waitPhase(t, ha, id, statefunv1.WorkflowStatus_PHASE_COMPLETED)
		if got := historySteps(st); fmt.Sprint(got) != "[add#1:OUTCOME_DONE finish#1:OUTCOME_DONE]" {
			t.Errorf("%s: history = %v", id, got)
		}
		got, err := a.carts.GetCart(testContext(t), &cart.GetCartRequest{CartId: "c-" + id})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetItems()) != 2 || got.GetItems()[0].GetQuantity() != 1 || got.GetItems()[1].GetQuantity() != 1 {
			t.Errorf("%s: cart = %v, want one fig and one date", id, got.GetItems())
		}
	}
}

// A step that a graceful shutdown cuts short runs again as soon as the
// workflow is served again, not when its watchdog would fire (after the
// step's timeout and a grace of 10 s).
func TestWorkflowStepCutByAShutdownRunsAgainAtOnce(t *testing.T) {
	dir := t.TempDir()
	var runs atomic.Int32
	running := make(chan struct{}, 1)
	steps := []step{{Name: "slow", Timeout: 20 * time.Second, Run: func(c *statefun.StepContext, s errandState) (statefun.Transition, error) {
		if runs.Add(1) == 1 {
			running <- struct{}{}
			<-c.Context().Done() // cut by the shutdown
			return statefun.Transition{}, c.Context().Err()
		}
		return c.End(), nil
	}}}
	open := func() (*statefun.WorkflowHost[errandState], func()) {
		st, err := embedded.Open(filepath.Join(dir, "statefun.db"))
		if err != nil {
			t.Fatal(err)
		}
		e, host := errand(steps...)
		rt, err := statefun.New([]*statefun.Entity{e}, statefun.WithStore(st))
		if err != nil {
			t.Fatal(err)
		}
		return host.Load(), func() {
			closeRuntime(t, rt)
			_ = st.Close()
		}
	}
	h, stop := open()
	startErrand(t, h, "w7")
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the step did not start")
	}
	stop()
	start := time.Now()
	h, stop = open()
	t.Cleanup(stop)
	st, _ := waitPhase(t, h, "w7", statefunv1.WorkflowStatus_PHASE_COMPLETED)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the cut step ran again %v after the restart", took)
	}
	if runs.Load() != 2 || len(st.GetHistory()) != 1 {
		t.Errorf("the step ran %d times, history %v; want 2 runs, one stored outcome", runs.Load(), historySteps(st))
	}
}
