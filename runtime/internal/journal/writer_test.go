package journal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// overlapStore fails the test if two batches in flight touch one entity,
// and takes a random while per commit so that batches overlap.
type overlapStore struct {
	store.Store
	t        *testing.T
	mu       sync.Mutex
	inFlight map[store.Ref]bool
	maxBatch atomic.Int64
	overlap  atomic.Int64 // batches that ran concurrently with another
	running  atomic.Int64
	// first holds the first batch until a second is in flight (or a
	// second has passed), so that batches overlap however the scheduler
	// runs the test: on a busy machine the writer could otherwise take
	// every commit in a few batches written one after another.
	first sync.Once
}

func (s *overlapStore) Commit(ctx context.Context, b *store.Batch) error {
	refs := map[store.Ref]bool{}
	for _, e := range b.Events {
		refs[e.Entity] = true
	}
	s.mu.Lock()
	for r := range refs {
		if s.inFlight[r] {
			s.t.Errorf("entity %v is in two batches in flight", r)
		}
		s.inFlight[r] = true
	}
	s.mu.Unlock()
	if s.running.Add(1) > 1 {
		s.overlap.Add(1)
	}
	s.first.Do(func() {
		for deadline := time.Now().Add(time.Second); s.running.Load() < 2 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
	})
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	err := s.Store.Commit(ctx, b)
	s.running.Add(-1)
	s.mu.Lock()
	for r := range refs {
		delete(s.inFlight, r)
	}
	s.mu.Unlock()
	if n := int64(b.Len()); n > s.maxBatch.Load() {
		s.maxBatch.Store(n)
	}
	return err
}

// TestConcurrentBatchesKeepEntityOrder runs several batches in flight at
// once and checks that each entity's history is still written in order,
// gap-free, and never in two batches at once.
func TestConcurrentBatchesKeepEntityOrder(t *testing.T) {
	st := &overlapStore{Store: memory.New(), t: t, inFlight: map[store.Ref]bool{}}
	w := New(st, Options{Concurrency: 4})
	const entities, perEntity = 20, 50
	var wg sync.WaitGroup
	for e := range entities {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := store.Ref{Type: "t", ID: fmt.Sprint(e)}
			var broken atomic.Bool
			var last *Commit
			for seq := int64(1); seq <= perEntity; seq++ {
				if err := w.Admit(context.Background()); err != nil {
					t.Error(err)
					return
				}
				c := &Commit{Events: []store.Event{{Entity: ref, Seq: seq, EventType: "E"}}, Abandoned: &broken}
				w.Enqueue(c)
				last = c
			}
			if err := last.Wait(context.Background()); err != nil {
				t.Errorf("entity %v: %v", ref, err)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for e := range entities {
		n := int64(0)
		_ = st.ReadEvents(context.Background(), store.Ref{Type: "t", ID: fmt.Sprint(e)}, 0, func(ev store.Event) error {
			n++
			if ev.Seq != n {
				return fmt.Errorf("seq %d at position %d", ev.Seq, n)
			}
			return nil
		})
		if n != perEntity {
			t.Errorf("entity %d: %d events stored, want %d", e, n, perEntity)
		}
	}
	if st.overlap.Load() == 0 {
		t.Error("no two batches were ever in flight together; the test proves nothing")
	}
}

// TestFailureAbandonsLaterCommits: once a commit of an entity fails, its
// later commits are never written, so the stored history has no gap.
func TestFailureAbandonsLaterCommits(t *testing.T) {
	fail := &failingStore{Store: memory.New(), failSeq: 2}
	w := New(fail, Options{Concurrency: 2})
	ref := store.Ref{Type: "t", ID: "x"}
	var broken atomic.Bool
	var commits []*Commit
	for seq := int64(1); seq <= 4; seq++ {
		if err := w.Admit(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := &Commit{Events: []store.Event{{Entity: ref, Seq: seq, EventType: "E"}}, Abandoned: &broken}
		commits = append(commits, c)
		w.Enqueue(c)
		if seq == 1 {
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range commits[1:] {
		if err := c.Wait(context.Background()); err == nil {
			t.Error("a commit at or after the failed one succeeded")
		}
	}
	if !errors.Is(commits[3].Err(), ErrAbandoned) && !errors.Is(commits[3].Err(), errDisk) {
		t.Errorf("later commit error %v", commits[3].Err())
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = fail.ReadEvents(context.Background(), ref, 0, func(store.Event) error { n++; return nil })
	if n != 1 {
		t.Errorf("stored %d events, want 1 (only the one before the failure)", n)
	}
}

var errDisk = errors.New("disk on fire")

type failingStore struct {
	store.Store
	failSeq int64
}

func (s *failingStore) Commit(ctx context.Context, b *store.Batch) error {
	for _, e := range b.Events {
		if e.Seq == s.failSeq {
			return errDisk
		}
	}
	return s.Store.Commit(ctx, b)
}

func TestAdmitWaitsThenFailsBusy(t *testing.T) {
	gate := make(chan struct{})
	w := New(&gatedStore{Store: memory.New(), gate: gate}, Options{MaxPending: 1})
	if err := w.Admit(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Enqueue(&Commit{Events: []store.Event{{Entity: store.Ref{Type: "t", ID: "a"}, Seq: 1, EventType: "E"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Admit(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("Admit over the bound: %v, want ErrBusy", err)
	}
	close(gate)
	if err := w.Admit(context.Background()); err != nil {
		t.Errorf("Admit after the store caught up: %v", err)
	}
	w.Release()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Admit(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Admit after Close: %v, want ErrClosed", err)
	}
}

type gatedStore struct {
	store.Store
	gate chan struct{}
}

func (s *gatedStore) Commit(ctx context.Context, b *store.Batch) error {
	<-s.gate
	return s.Store.Commit(ctx, b)
}

// TestAdmitIsBoundedWithoutDeadline: a caller with no deadline still
// gives up after AdmitTimeout, and a canceled caller is told so, not
// "busy". Fails without Admit's own timer.
func TestAdmitIsBoundedWithoutDeadline(t *testing.T) {
	gate := make(chan struct{})
	w := New(&gatedStore{Store: memory.New(), gate: gate}, Options{MaxPending: 1, AdmitTimeout: 50 * time.Millisecond})
	defer closeWithin(t, w, gate)
	if err := w.Admit(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Enqueue(&Commit{Events: []store.Event{{Entity: store.Ref{Type: "t", ID: "a"}, Seq: 1, EventType: "E"}}})
	done := make(chan error, 1)
	go func() { done <- w.Admit(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrBusy) {
			t.Errorf("Admit without a deadline: %v, want ErrBusy", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Admit without a deadline waited past 5s with a 50ms admission timeout")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Admit(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrBusy) {
		t.Errorf("Admit canceled: %v, want context.Canceled", err)
	}
}

// TestReleaseWakesClose: Close waits for admitted commands; one that ends
// without a commit must let Close finish at once, not at its deadline.
// Fails without the Broadcast in Release.
func TestReleaseWakesClose(t *testing.T) {
	w := New(memory.New(), Options{})
	if err := w.Admit(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		closed <- w.Close(ctx)
	}()
	time.Sleep(20 * time.Millisecond) // let the workers see the close
	w.Release()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v; a released admission must not hold it", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close still waiting 2s after the last admission was released")
	}
}

// closeWithin opens gate and closes w, failing the test if that takes
// more than 5s.
func closeWithin(t *testing.T, w *Writer, gate chan struct{}) {
	t.Helper()
	close(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// heldBatchStore checks, at the end of each Commit, that the batch still
// holds what it held at the start, and records every event it wrote.
type heldBatchStore struct {
	store.Store
	t       *testing.T
	mu      sync.Mutex
	written map[store.Ref][]int64
}

func (s *heldBatchStore) Commit(ctx context.Context, b *store.Batch) error {
	at := slices.Clone(b.Events)
	// Long enough for the other loops to take, build and send batches.
	time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
	if !slices.EqualFunc(at, b.Events, func(x, y store.Event) bool {
		return x.Entity == y.Entity && x.Seq == y.Seq && string(x.Payload) == string(y.Payload)
	}) {
		s.t.Error("a batch changed while its Commit ran: another loop reused its buffers")
	}
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	for _, e := range b.Events {
		if string(e.Payload) != fmt.Sprintf("%s/%d", e.Entity.ID, e.Seq) {
			s.t.Errorf("event %s/%d has the payload %q of another", e.Entity.ID, e.Seq, e.Payload)
		}
		s.written[e.Entity] = append(s.written[e.Entity], e.Seq)
	}
	s.mu.Unlock()
	return nil
}

// TestBatchBuffersAreNotReusedWhileInFlight: each writer loop builds its
// batches in buffers it keeps from one batch to the next. With several
// batches in flight (and under -race), no batch may change while the store
// writes it, every event must be written exactly once with its own
// payload, and each entity's in order. Callers that wait for some
// commits and not others vary the batches' lengths, so a reused buffer
// is shorter or longer than it was.
func TestBatchBuffersAreNotReusedWhileInFlight(t *testing.T) {
	st := &heldBatchStore{Store: memory.New(), t: t, written: map[store.Ref][]int64{}}
	w := New(st, Options{Concurrency: 4})
	const entities, perEntity = 16, 40
	var wg sync.WaitGroup
	for e := range entities {
		wg.Go(func() {
			ref := store.Ref{Type: "t", ID: fmt.Sprint(e)}
			var abandoned atomic.Bool
			for seq := int64(1); seq <= perEntity; seq++ {
				if err := w.Admit(context.Background()); err != nil {
					t.Error(err)
					return
				}
				c := &Commit{Abandoned: &abandoned}
				c.Events = c.EventsBuffer(1)
				c.Events = append(c.Events, store.Event{Entity: ref, Seq: seq, EventType: "e", Payload: fmt.Appendf(nil, "%s/%d", ref.ID, seq)})
				w.Enqueue(c)
				if seq%3 == 0 {
					// Wait for every third: batches stay short for
					// some entities while others pile up.
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := c.Wait(ctx)
					cancel()
					if err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for e := range entities {
		got := st.written[store.Ref{Type: "t", ID: fmt.Sprint(e)}]
		if len(got) != perEntity {
			t.Errorf("entity %d: %d events written, want %d", e, len(got), perEntity)
			continue
		}
		for i, seq := range got {
			if seq != int64(i+1) {
				t.Errorf("entity %d: event %d written as seq %d", e, i+1, seq)
				break
			}
		}
	}
}
