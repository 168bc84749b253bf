package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/statefun-go/statefun/runtime/store"
)

// ReadFeed implements store.Store. It returns only events below the
// transaction-ID horizon (see the package doc), so an event can reach a
// reader some time after its Commit returned: as long as an older
// transaction on the database is still running.
//
// The feed of a key-value type is its entity_values rows, each at the
// place (tx_id, feed_pos) of the transaction that wrote its current value
// (migration 0009): the same order and horizon as events, so the one
// query returns both, merged.
func (s *Store) ReadFeed(ctx context.Context, entityType string, after store.Position, limit int, fn func(store.FeedEvent) error) error {
	if s.closed.Load() {
		return errClosed()
	}
	if limit < 1 {
		return fmt.Errorf("postgres: read the feed of %q: limit %d; ask for at least one event", entityType, limit)
	}
	txID, feedPos, err := parsePosition(after)
	if err != nil {
		return fmt.Errorf("postgres: read the feed of %q: %w", entityType, err)
	}
	rows, err := s.pool.Query(ctx, s.sql.readFeed, entityType, txID, feedPos, limit)
	if err != nil {
		return s.wrap(err, "read the feed of %q", entityType)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.FeedEvent
		var id []byte
		var eventType pgtype.Text // NULL for a value
		if err := rows.Scan(&txID, &feedPos, &id, &e.Seq, &eventType, &e.Payload); err != nil {
			return s.wrap(err, "read the feed of %q", entityType)
		}
		e.Entity = store.Ref{Type: entityType, ID: string(id)}
		e.EventType = store.ValueEventType
		if eventType.Valid {
			e.EventType = eventType.String
		}
		e.Position = encodePosition(txID, feedPos)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap(err, "read the feed of %q", entityType)
	}
	return nil
}

// FeedHead implements store.Store. It returns the horizon itself, (xmin,
// 0), rather than the newest event below it: both put before them
// exactly the events of transactions below xmin, all of which have ended,
// and this one costs no index lookup. It is no later than "now": events of transactions still
// running, and events committed past the horizon while an older
// transaction runs, are all after it, so a consumer starting there may
// read a few events that committed just before it started, and never
// misses one committed after.
func (s *Store) FeedHead(ctx context.Context, entityType string) (store.Position, error) {
	if s.closed.Load() {
		return "", errClosed()
	}
	var horizon uint64
	if err := s.pool.QueryRow(ctx, s.sql.feedHorizon).Scan(&horizon); err != nil {
		return "", s.wrap(err, "read the feed head of %q", entityType)
	}
	return encodePosition(horizon, 0), nil
}

// LoadConsumerPosition implements store.Store.
func (s *Store) LoadConsumerPosition(ctx context.Context, consumer, entityType string) (store.Position, bool, error) {
	if s.closed.Load() {
		return "", false, errClosed()
	}
	var pos string
	err := s.pool.QueryRow(ctx, s.sql.loadConsumerPosition, consumer, entityType).Scan(&pos)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, s.wrap(err, "read the position of consumer %q in the feed of %q", consumer, entityType)
	}
	return store.Position(pos), true, nil
}

// SaveConsumerPosition implements store.Store.
func (s *Store) SaveConsumerPosition(ctx context.Context, consumer, entityType string, pos store.Position) error {
	if s.closed.Load() {
		return errClosed()
	}
	if _, _, err := parsePosition(pos); err != nil {
		return fmt.Errorf("postgres: save the position of consumer %q in the feed of %q: %w", consumer, entityType, err)
	}
	if _, err := s.pool.Exec(ctx, s.sql.saveConsumerPosition, consumer, entityType, string(pos)); err != nil {
		return s.wrap(err, "save the position of consumer %q in the feed of %q", consumer, entityType)
	}
	return nil
}

// A Position is tx_id and feed_pos in fixed-width hex: 32 digits that
// sort as the positions follow each other. The zero Position stands for
// (0, 0), before every event.
const halfDigits = 16

func encodePosition(txID uint64, feedPos int64) store.Position {
	return store.Position(fmt.Sprintf("%0*x%0*x", halfDigits, txID, halfDigits, uint64(feedPos)))
}

func parsePosition(pos store.Position) (txID uint64, feedPos int64, err error) {
	if pos == "" {
		return 0, 0, nil
	}
	if len(pos) != 2*halfDigits || strings.Trim(string(pos), "0123456789abcdef") != "" {
		return 0, 0, badPosition(pos)
	}
	txID, _ = strconv.ParseUint(string(pos[:halfDigits]), 16, 64)
	feedPos, err = strconv.ParseInt(string(pos[halfDigits:]), 16, 64)
	if err != nil { // out of range
		return 0, 0, badPosition(pos)
	}
	return txID, feedPos, nil
}

func badPosition(pos store.Position) error {
	return fmt.Errorf("position %q was not made by a postgres store; resume from a Position that ReadFeed or FeedHead returned", pos)
}
