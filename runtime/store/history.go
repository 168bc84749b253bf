package store

import (
	"context"
	"time"
)

// History is implemented by stores that record when each event was
// stored (Postgres, embedded and memory): the console and the admin API
// read an entity's history through it, a page at a time, and a
// consumer's lag in time is the age of the oldest event it has yet to
// handle. It is optional: the runtime's own work never needs it.
type History interface {
	// ReadHistory returns up to limit events of ref whose Seq is greater
	// than afterSeq, in Seq order, each with the time its commit stored
	// it. limit must be at least 1.
	ReadHistory(ctx context.Context, ref Ref, afterSeq int64, limit int) ([]HistoryEvent, error)
}

// HistoryEvent is an event with the time it was stored: by the store's
// clock (for Postgres the database server's, when the committing
// transaction began), to the microsecond. It is the zero time for an
// event stored before the store recorded times (an embedded file
// written by an older binary).
type HistoryEvent struct {
	Event
	StoredAt time.Time
}
