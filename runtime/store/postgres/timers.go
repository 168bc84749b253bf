package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
)

// queueTimerChanges adds a batch's timer changes to its commit: the last
// change to each (entity, name) wins, as if the changes ran in order.
func queueTimerChanges(batch *pgx.Batch, sql *statements, changes []store.TimerChange) {
	if len(changes) == 0 {
		return
	}
	type name struct {
		ref  store.Ref
		name string
	}
	last := make(map[name]int, len(changes))
	for i, c := range changes {
		last[name{c.Entity, c.Name}] = i
	}
	var scheduled, cancelled []store.TimerChange
	for i, c := range changes {
		switch {
		case last[name{c.Entity, c.Name}] != i:
		case c.Cancel:
			cancelled = append(cancelled, c)
		default:
			scheduled = append(scheduled, c)
		}
	}
	byKey := func(x, y store.TimerChange) int {
		return cmp.Or(cmp.Compare(x.Entity.Type, y.Entity.Type), cmp.Compare(x.Entity.ID, y.Entity.ID), cmp.Compare(x.Name, y.Name))
	}
	if len(cancelled) > 0 {
		slices.SortFunc(cancelled, byKey)
		types, ids := refColumns(cancelled, func(c store.TimerChange) store.Ref { return c.Entity })
		names := make([]string, len(cancelled))
		for i, c := range cancelled {
			names[i] = c.Name
		}
		batch.Queue(sql.cancelTimers, types, ids, names)
	}
	if len(scheduled) > 0 {
		slices.SortFunc(scheduled, byKey)
		n := len(scheduled)
		types, ids := refColumns(scheduled, func(c store.TimerChange) store.Ref { return c.Entity })
		names, timerIDs, shards := make([]string, n), make([]int64, n), make([]int32, n)
		dues, calls := make([]time.Time, n), make([][]byte, n)
		for i, c := range scheduled {
			names[i], timerIDs[i], shards[i], dues[i], calls[i] = c.Name, c.ID, int32(c.Shard), c.Due, notNull(c.Call)
		}
		batch.Queue(sql.scheduleTimers, types, ids, names, timerIDs, shards, dues, calls)
	}
}

// shardsArg is the shards argument of due-timers and next-timer-due: NULL
// for every shard.
func shardsArg(shards []int) []int32 {
	if shards == nil {
		return nil
	}
	arg := make([]int32, len(shards))
	for i, s := range shards {
		arg[i] = int32(s)
	}
	return arg
}

// DueTimers implements store.Timers.
func (s *Store) DueTimers(ctx context.Context, shards []int, before time.Time, limit int) ([]store.Timer, error) {
	if limit < 1 {
		return nil, fmt.Errorf("postgres: due timers: limit %d; ask for at least one", limit)
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	if shards != nil && len(shards) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.sql.dueTimers, shardsArg(shards), before, limit)
	if err != nil {
		return nil, s.wrap(err, "find due timers")
	}
	var due []store.Timer
	for rows.Next() {
		var t store.Timer
		var id []byte
		var shard, attempts int32
		if err := rows.Scan(&t.Entity.Type, &id, &t.Name, &t.ID, &shard, &t.Due, &t.Call, &attempts); err != nil {
			rows.Close()
			return nil, s.wrap(err, "find due timers")
		}
		t.Entity.ID, t.Shard, t.Attempts = string(id), int(shard), int(attempts)
		due = append(due, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "find due timers")
	}
	return due, nil
}

// NextTimerDue implements store.Timers.
func (s *Store) NextTimerDue(ctx context.Context, shards []int) (time.Time, bool, error) {
	if s.closed.Load() {
		return time.Time{}, false, errClosed()
	}
	if shards != nil && len(shards) == 0 {
		return time.Time{}, false, nil
	}
	var next *time.Time
	if err := s.pool.QueryRow(ctx, s.sql.nextTimerDue, shardsArg(shards)).Scan(&next); err != nil {
		return time.Time{}, false, s.wrap(err, "find the next timer due")
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return *next, true, nil
}

// FinishTimers implements store.Timers: one statement after the fence's check.
func (s *Store) FinishTimers(ctx context.Context, done []store.TimerKey, fence *store.Fence) error {
	if s.closed.Load() {
		return errClosed()
	}
	if len(done) == 0 {
		return nil
	}
	types, ids, names, timerIDs := timerKeyColumns(done, func(k store.TimerKey) store.TimerKey { return k })
	return s.fencedWrite(ctx, fence, fmt.Sprintf("finish %d timers", len(done)),
		func(b *pgx.Batch) { b.Queue(s.sql.finishTimers, types, ids, names, timerIDs) })
}

// RetryTimers implements store.Timers: one statement after the fence's check.
func (s *Store) RetryTimers(ctx context.Context, retries []store.TimerRetry, fence *store.Fence) error {
	if s.closed.Load() {
		return errClosed()
	}
	if len(retries) == 0 {
		return nil
	}
	types, ids, names, timerIDs := timerKeyColumns(retries, func(r store.TimerRetry) store.TimerKey { return r.TimerKey })
	dues := make([]time.Time, len(retries))
	for i, r := range retries {
		dues[i] = r.Due
	}
	return s.fencedWrite(ctx, fence, fmt.Sprintf("retry %d timers", len(retries)),
		func(b *pgx.Batch) { b.Queue(s.sql.retryTimers, types, ids, names, timerIDs, dues) })
}

func timerKeyColumns[T any](rows []T, key func(T) store.TimerKey) (types []string, ids [][]byte, names []string, timerIDs []int64) {
	n := len(rows)
	types, ids, names, timerIDs = make([]string, n), make([][]byte, n), make([]string, n), make([]int64, n)
	for i, row := range rows {
		k := key(row)
		types[i], ids[i], names[i], timerIDs[i] = k.Entity.Type, []byte(k.Entity.ID), k.Name, k.ID
	}
	return types, ids, names, timerIDs
}

// EntityTimers implements store.Timers.
func (s *Store) EntityTimers(ctx context.Context, ref store.Ref) ([]store.Timer, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	rows, err := s.pool.Query(ctx, s.sql.entityTimers, ref.Type, []byte(ref.ID))
	if err != nil {
		return nil, s.wrap(err, "read the timers of %q", ref)
	}
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Timer, error) {
		t := store.Timer{Entity: ref}
		var shard, attempts int32
		err := row.Scan(&t.Name, &t.ID, &shard, &t.Due, &t.Call, &attempts)
		t.Shard, t.Attempts = int(shard), int(attempts)
		return t, err
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, s.wrap(err, "read the timers of %q", ref)
	}
	return ts, nil
}
