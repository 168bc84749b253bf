package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
)

// keyHashSize is the length of an outcome's primary key.
const keyHashSize = 16

// outcomeKeyHash returns the primary key of the outcome of key on ref:
// the first 16 bytes of SHA-256 over int4(len(type)) ‖ type ‖
// int4(len(id)) ‖ id ‖ key, as migrations/0003_outcomes.sql spells it
// in SQL.
func outcomeKeyHash(ref store.Ref, key string) [keyHashSize]byte {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(ref.Type)))
	h.Write(n[:])
	h.Write([]byte(ref.Type))
	binary.BigEndian.PutUint32(n[:], uint32(len(ref.ID)))
	h.Write(n[:])
	h.Write([]byte(ref.ID))
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return [keyHashSize]byte(h.Sum(sum[:0]))
}

// LoadOutcome implements store.Store. Expiry is judged on the database
// server's clock.
func (s *Store) LoadOutcome(ctx context.Context, ref store.Ref, key string) (store.Outcome, bool, error) {
	if s.closed.Load() {
		return store.Outcome{}, false, errClosed()
	}
	hash := outcomeKeyHash(ref, key)
	o := store.Outcome{Entity: ref, Key: key}
	var code int64
	var message []byte
	err := s.pool.QueryRow(ctx, s.sql.loadOutcome, hash[:], ref.Type, []byte(ref.ID), []byte(key)).Scan(&code, &message, &o.Reply, &o.Expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Outcome{}, false, nil
	case err != nil:
		return store.Outcome{}, false, s.wrap(err, "load the outcome of %q for key %.40q", ref, key)
	}
	o.Code, o.Message = uint32(code), string(message)
	return o, true, nil
}

// ExpireOutcomes implements store.Store: one DELETE of at most limit
// rows, the oldest first.
func (s *Store) ExpireOutcomes(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("postgres: expire outcomes: limit %d; ask for at least one", limit)
	}
	if s.closed.Load() {
		return 0, errClosed()
	}
	tag, err := s.pool.Exec(ctx, s.sql.expireOutcomes, before, limit)
	if err != nil {
		return 0, s.wrap(err, "expire outcomes")
	}
	return int(tag.RowsAffected()), nil
}
