package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// dbCounters is a database's row of pg_stat_database.
type dbCounters struct {
	xactCommit, xactRollback                                     int64
	tupInserted, tupUpdated, tupDeleted, tupFetched, tupReturned int64
	blksHit, blksRead                                            int64
}

func (a dbCounters) minus(b dbCounters) dbCounters {
	return dbCounters{
		xactCommit: a.xactCommit - b.xactCommit, xactRollback: a.xactRollback - b.xactRollback,
		tupInserted: a.tupInserted - b.tupInserted, tupUpdated: a.tupUpdated - b.tupUpdated,
		tupDeleted: a.tupDeleted - b.tupDeleted, tupFetched: a.tupFetched - b.tupFetched,
		tupReturned: a.tupReturned - b.tupReturned, blksHit: a.blksHit - b.blksHit, blksRead: a.blksRead - b.blksRead,
	}
}

// readDBCounters reads a database's counters as the statistics system has
// them now. Backends report their counters in the background, at most once
// a second, and an idle backend up to 10 s late, so this is exact only
// when no backend of the database is alive (see settledDBCounters).
func readDBCounters(ctx context.Context, conn *pgx.Conn, db string) (dbCounters, error) {
	var c dbCounters
	// Each query is its own transaction, so no cached statistics snapshot
	// survives from the previous read.
	err := conn.QueryRow(ctx, `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,
		tup_fetched, tup_returned, blks_hit, blks_read FROM pg_stat_database WHERE datname = $1`, db).Scan(
		&c.xactCommit, &c.xactRollback, &c.tupInserted, &c.tupUpdated, &c.tupDeleted,
		&c.tupFetched, &c.tupReturned, &c.blksHit, &c.blksRead)
	if err != nil {
		return c, fmt.Errorf("read pg_stat_database of %s: %w", db, err)
	}
	return c, nil
}

// settledDBCounters waits until no backend serves db (a backend flushes
// its counters when it exits), then reads the counters until two reads
// agree.
func settledDBCounters(ctx context.Context, conn *pgx.Conn, db string) (dbCounters, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db).Scan(&n); err != nil {
			return dbCounters{}, fmt.Errorf("count the backends of %s: %w", db, err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return dbCounters{}, fmt.Errorf("%d backends of %s still alive 30s after its server stopped", n, db)
		}
		time.Sleep(50 * time.Millisecond)
	}
	prev, err := readDBCounters(ctx, conn, db)
	if err != nil {
		return prev, err
	}
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		next, err := readDBCounters(ctx, conn, db)
		if err != nil || next == prev {
			return next, err
		}
		prev = next
	}
	return prev, nil
}

// postgresInfo returns the server's version and the settings that bear on
// write throughput.
func postgresInfo(ctx context.Context, conn *pgx.Conn) (string, map[string]string) {
	var version string
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&version)
	settings := map[string]string{}
	rows, err := conn.Query(ctx, `SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings
		WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method', 'commit_delay',
		'full_page_writes', 'max_connections', 'autovacuum', 'wal_level')`)
	if err == nil {
		for rows.Next() {
			var k, v string
			if rows.Scan(&k, &v) == nil {
				settings[k] = v
			}
		}
		rows.Close()
	}
	return "PostgreSQL " + version, settings
}
