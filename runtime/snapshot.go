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
	store store.Store
	log   *slog.Logger
	queue chan store.Snapshot
	wg    sync.WaitGroup
}

func newSnapshotter(st store.Store, log *slog.Logger) *snapshotter {
	s := &snapshotter{store: st, log: log, queue: make(chan store.Snapshot, 1024)}
	s.wg.Add(1)
	go s.run()
	return s
}

// offer queues a snapshot whose events are durable; it never blocks.
func (s *snapshotter) offer(snap store.Snapshot) {
	select {
	case s.queue <- snap:
	default:
	}
}

func (s *snapshotter) run() {
	defer s.wg.Done()
	for snap := range s.queue {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.store.SaveSnapshot(ctx, snap); err != nil {
			s.log.Warn("snapshot not saved", "entity", snap.Entity.Type, "id", snap.Entity.ID, "seq", snap.Seq, "error", err)
		}
		cancel()
	}
}

// close saves the snapshots still queued and stops.
func (s *snapshotter) close() {
	close(s.queue)
	s.wg.Wait()
}
