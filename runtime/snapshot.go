package statefun

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// snapshotter saves snapshots off the hot path, in its own goroutine. It
// drops snapshots when it falls behind: they only shorten recovery, and
// the next one comes snapshot_every events later.
type snapshotter struct {
	store store.Snapshots
	log   *slog.Logger
	queue chan store.Snapshot
	wg    sync.WaitGroup

	// mu orders offers against close: a commit that becomes durable
	// after a Close that timed out still offers its snapshot, which must
	// then be dropped, not sent on a closed channel.
	mu     sync.Mutex
	closed bool
	// abort cancels the write in progress when close runs out of time.
	base  context.Context
	abort context.CancelFunc
}

// snapshotTimeout bounds one snapshot write.
const snapshotTimeout = 10 * time.Second

func newSnapshotter(st store.Snapshots, log *slog.Logger) *snapshotter {
	s := &snapshotter{store: st, log: log, queue: make(chan store.Snapshot, 1024)}
	s.base, s.abort = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	return s
}

// offer queues a snapshot whose events are durable; it never blocks.
func (s *snapshotter) offer(snap store.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.queue <- snap:
	default:
	}
}

func (s *snapshotter) run() {
	defer s.wg.Done()
	for snap := range s.queue {
		if s.base.Err() != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(s.base, snapshotTimeout)
		if err := s.store.SaveSnapshot(ctx, snap); err != nil {
			s.log.Warn("snapshot not saved", "entity", snap.Entity.Type, "id", snap.Entity.ID, "seq", snap.Seq, "error", err)
		}
		cancel()
	}
	s.abort()
}

// close saves the snapshots still queued and stops, or gives up on them
// when ctx ends: they are only an optimisation.
func (s *snapshotter) close(ctx context.Context) {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// Give up on the queued snapshots: cancel the write in progress
		// and let the loop drop the rest.
		s.abort()
		<-done
	}
}
