package memory

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// DueTimers implements store.Timers.
func (s *Store) DueTimers(_ context.Context, shards []int, before time.Time, limit int) ([]store.Timer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var due []store.Timer
	for _, t := range s.timers {
		if !t.Due.After(before) && (shards == nil || slices.Contains(shards, t.Shard)) {
			due = append(due, cloneTimer(t))
		}
	}
	slices.SortFunc(due, compareDue)
	if len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

// NextTimerDue implements store.Timers.
func (s *Store) NextTimerDue(_ context.Context, shards []int) (time.Time, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return time.Time{}, false, store.ErrClosed
	}
	var next time.Time
	found := false
	for _, t := range s.timers {
		if (shards == nil || slices.Contains(shards, t.Shard)) && (!found || t.Due.Before(next)) {
			next, found = t.Due, true
		}
	}
	return next, found, nil
}

// FinishTimers implements store.Timers.
func (s *Store) FinishTimers(_ context.Context, done []store.TimerKey, fence *store.Fence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if err := s.checkFence(fence); err != nil {
		return err
	}
	for _, k := range done {
		tr := timerRef{k.Entity, k.Name}
		if t, ok := s.timers[tr]; ok && t.ID == k.ID {
			delete(s.timers, tr)
		}
	}
	return nil
}

// RetryTimers implements store.Timers.
func (s *Store) RetryTimers(_ context.Context, retries []store.TimerRetry, fence *store.Fence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if err := s.checkFence(fence); err != nil {
		return err
	}
	for _, r := range retries {
		tr := timerRef{r.Entity, r.Name}
		if t, ok := s.timers[tr]; ok && t.ID == r.ID {
			t.Due = r.Due
			t.Attempts++
			s.timers[tr] = t
		}
	}
	return nil
}

// EntityTimers implements store.Timers.
func (s *Store) EntityTimers(_ context.Context, ref store.Ref) ([]store.Timer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var ts []store.Timer
	for k, t := range s.timers {
		if k.ref == ref {
			ts = append(ts, cloneTimer(t))
		}
	}
	slices.SortFunc(ts, func(a, b store.Timer) int { return cmp.Compare(a.Name, b.Name) })
	return ts, nil
}

func cloneTimer(t store.Timer) store.Timer {
	t.Call = slices.Clone(t.Call)
	return t
}

// compareDue orders timers by Due, then by entity and name, so that equal
// due times come back in one order every time.
func compareDue(a, b store.Timer) int {
	return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.Entity.Type, b.Entity.Type),
		cmp.Compare(a.Entity.ID, b.Entity.ID), cmp.Compare(a.Name, b.Name))
}
