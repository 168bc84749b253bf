package postgres

import (
	"context"
	"fmt"

	"github.com/statefun-go/statefun/runtime/store"
)

var _ store.History = (*Store)(nil)

// ReadHistory implements store.History with one query that reads the
// page's rows through the events' primary key.
func (s *Store) ReadHistory(ctx context.Context, ref store.Ref, afterSeq int64, limit int) ([]store.HistoryEvent, error) {
	if limit < 1 {
		return nil, fmt.Errorf("read the history of %q: limit %d; ask for at least one event", ref, limit)
	}
	if s.closed.Load() {
		return nil, errClosed()
	}
	rows, err := s.pool.Query(ctx, s.sql.readHistory, ref.Type, []byte(ref.ID), afterSeq, limit)
	if err != nil {
		return nil, s.wrap(err, "read the history of %q", ref)
	}
	defer rows.Close()
	var page []store.HistoryEvent
	for rows.Next() {
		e := store.HistoryEvent{Event: store.Event{Entity: ref}}
		if err := rows.Scan(&e.Seq, &e.EventType, &e.Payload, &e.StoredAt); err != nil {
			return nil, s.wrap(err, "read the history of %q", ref)
		}
		page = append(page, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "read the history of %q", ref)
	}
	return page, nil
}
