// Package postgres is the production store.Store: entity history in
// PostgreSQL, through a pgx connection pool.
//
// # Schema
//
// Everything lives in one schema ("statefun" unless WithSchema says
// otherwise), created and upgraded by the embedded migrations (see
// migrations/), which record themselves in schema_migrations:
//
//	events              (entity_type, entity_id, seq) -> event_type, payload, tx_id, feed_pos
//	entity_values       (entity_type, entity_id)      -> version, payload
//	snapshots           (entity_type, entity_id)      -> seq, payload  (the newest only)
//	consumer_positions  (consumer, entity_type)       -> position
//	outcomes            (key_hash)                    -> entity_type, entity_id, key, expires, code, message, reply
//	                    index on expires
//	event_types         (entity_type, event_type)     -> first_seen_at
//	cluster_config      (one row)                     -> shards, created_at
//	cluster_nodes       (id)                          -> address, started_at, heartbeat
//	shard_leases        (shard)                       -> owner, epoch, expires
//	view_versions       (name, version)               -> entity_type, columns, table_name, ready
//	view_<name>_v<n>_…  (entity_id)                   -> seq, row, c0…cN (one table per view version, made by EnsureView; views.go)
//
// Entity IDs are bytea because an ID is any Go string and Postgres text
// cannot hold NUL bytes; type names are text. Payloads are the protobuf
// bytes, stored as they come.
//
// # Fencing
//
// The events primary key is the fence of invariant 6 (INVARIANTS.md): two writers
// of one entity cannot both store its event n. A commit also refuses to
// leave a gap: the first event of each entity in a batch must follow the
// entity's stored history, checked by the statement that inserts it. Values
// are fenced by version the same way: a write of version v succeeds only
// over version v-1. Outcomes are fenced by key: a batch may store the
// outcome of a key only if the key has none that is still live. A batch
// that breaks any of these rules writes nothing, and Commit returns a
// *store.ConflictError naming the entities concerned.
//
// # Idempotency keys
//
// The outcomes table keeps what a command with an idempotency key
// answered, written by the Commit of its batch. Its primary key is a
// 16-byte digest of (entity type, entity ID, key), not those columns
// themselves: a btree entry holds at most about 2700 bytes, which an
// ID of 2048 bytes, a key of 256 and a type name would crowd, and the
// digest keeps the index small whatever the IDs (migration 0003 gives
// the reasons and the digest in SQL). The columns themselves are kept in
// the row, and LoadOutcome compares them, so a digest collision could
// refuse a key but never return another key's answer.
//
// Expiry is judged on the database server's clock (now(), the start of
// the commit's transaction), so that every node agrees whether a key is
// still answered. An expired outcome is replaced by the next commit of
// its key, and deleted by ExpireOutcomes, a bounded chunk at a time
// through the index on expires.
//
// # One round trip per commit
//
// Commit sends its statements (one INSERT of all events from arrays,
// which also checks for gaps, one statement for all values, one for all
// outcomes, and one registering event types the store has not seen
// committed before) as a single pgx batch: one pipeline ending in one
// Sync. Without BEGIN, Postgres runs everything up
// to a Sync as one implicit transaction and rolls all of it back when any
// statement fails, so the batch is atomic without the round trips of
// BEGIN and COMMIT. Only a failed commit costs a second round trip, to
// find out which entities conflicted.
//
// # Feeds
//
// A consumer follows an entity type's feed and resumes after the last
// Position it was given (INVARIANTS.md, invariant 10). A number from a sequence,
// read with "pos > last", would skip events: transactions take sequence
// numbers in one order and commit in another, so a reader can pass a
// number whose transaction has not committed yet and never come back for
// it.
//
// Instead each event row records the ID of the transaction that wrote it
// (tx_id, an xid8) and a number that orders the events within that
// transaction (feed_pos, the event's place in the commit's INSERT).
// Feed order is (tx_id, feed_pos), and
// ReadFeed returns only events whose tx_id is below the xmin of its own
// snapshot, the transaction-ID horizon: the oldest transaction still
// running. Every transaction below the horizon has ended, and every
// transaction still to commit, or yet to start, has an ID at or above
// it, so no event can ever be added before a position ReadFeed has
// returned. A Position is (tx_id, feed_pos) in 32 hex digits.
//
// Each entity's events are in seq order in the feed. Within a commit,
// feed_pos is assigned in key order, which is seq order for each entity.
// A later commit of the entity checks that its predecessor event is
// stored, in the snapshot of the INSERT that writes it: that event's
// transaction had committed before the INSERT began, and so before this
// transaction took its ID (at its first insert), and the ID is higher.
//
// The price is latency, not correctness: an event reaches readers once
// every transaction that started writing before it has ended, anywhere on
// the database server (transaction IDs are shared by all its databases).
// That is normally a few milliseconds. A long-running writing transaction
// (a bulk load, a long migration, a session left idle in a transaction
// after a write, a forgotten prepared transaction) holds every consumer
// back until it ends, though it never makes one miss an event. Read-only
// transactions take no ID and hold nothing back. The oldest backend_xid
// in pg_stat_activity (or transaction in pg_prepared_xacts) names the
// culprit.
//
// FeedHead returns the horizon itself, (xmin, 0). Every event before it
// is from a transaction that ended before FeedHead was called; every
// event a transaction still running writes is after it. A consumer that
// starts there may so read some events that committed shortly before it
// started, past an older transaction, but never misses one.
//
// Migration 0002 adds the feed to an existing journal: it numbers the
// stored events in the order they were written (each entity's in seq
// order) under this migration's transaction ID, so they come before every
// later commit. It rewrites every events row in one transaction, holding
// a lock on the table meanwhile: plan for that on a large journal.
//
// # Cluster
//
// Store implements store.Cluster: nodes sharing the database coordinate
// through the last three tables, on the database server's clock (now()),
// so no node compares its clock with another's. InitShards records the
// shard count once and creates one lease row per shard. A lease is
// (owner, epoch, expires); Acquire takes a lease that is free, expired or
// already the caller's, and raises its epoch every time, so that
// (owner, epoch) names one tenure and a node restarted under the same ID
// fences its previous incarnation. Release and Leave clear the owner and
// keep the epoch; the next Acquire raises it, so epochs only grow.
// Heartbeat refreshes the node's row and extends its leases in one
// statement.
//
// A fenced write (a Batch or Snapshot with a Fence, or
// SaveConsumerPositionFenced) starts its transaction with check-fence
// (queries.sql), in the same pipeline as the write, so a commit still
// takes one round trip. The check reads the named lease rows FOR SHARE
// and aborts the transaction with SQLSTATE SF412 unless the fence's node
// holds each at the named epoch; the error's DETAIL lists the lost shards,
// and Commit returns them as a *store.FencedError. Nothing is written, and
// the batch's other checks never run: a batch both fenced and stale in
// its history reports only the fence (unless it contradicts itself, and
// is refused as a conflict without being sent).
//
// Why FOR SHARE: every change of a lease row (Acquire, Release, Leave,
// Heartbeat) is an UPDATE, whose row lock conflicts with a share lock.
// Take a fenced write W of node A at epoch e and an Acquire T by node B
// of the same shard. If W locks the row first, T waits until W's
// transaction has ended: W committed under epoch e before epoch e+1
// existed, and B, which loads entities only after T returned, sees W's
// writes. If T updates the row first, W's share lock waits for T's
// transaction; when T commits, Postgres rereads the row for W as T left
// it (READ COMMITTED rechecks a locked row against its newest version),
// so W sees epoch e+1 and owner B, and is refused. If T committed before
// W began, W's statement snapshot already shows the new epoch. So no
// write under epoch e can commit after epoch e+1 is visible. A plain
// SELECT would read the epoch of W's snapshot and let W commit beside a
// takeover that committed a moment earlier; that is what
// TestTakeoverWaitsForFencedCommit and TestCommitBehindTakeoverIsFenced
// pin down. Whether the lease has expired does not matter to the check:
// an expired lease not yet taken over still excludes every other writer
// (store.Fence).
//
// Every statement that locks lease rows locks them in shard order (the
// ORDER BY of a locking subquery), so that a commit spanning many shards
// and a heartbeat or Acquire over the same ones wait for each other
// instead of deadlocking. A heartbeat does wait for the node's commits in
// flight, and they for it; both are short. The price of the share lock is
// a lock record in the WAL per lease row per fenced commit (a MultiXact
// when several commits hold one row), small beside the events.
//
// # When a commit fails
//
// A Commit error that wraps store.ErrOutcomeUnknown means the batch may
// be stored: it had reached the server when the connection broke or the
// context ended, and the server goes on to commit a batch whose client
// has left (it sees the loss only when it answers). Every other error
// means nothing was written: the server refused the batch (its error
// rolled back the implicit transaction), or it was never sent (no
// connection could be had, or pgx failed before writing it).
//
// Database errors never carry the password of the URL: pgx redacts it
// and this package never formats the URL.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/statefun-go/statefun/runtime/store"
)

// DefaultSchema is the schema a store uses unless WithSchema names another.
const DefaultSchema = "statefun"

// defaultConnectTimeout bounds connecting when the URL sets no
// connect_timeout: with the database unreachable, callers must fail
// quickly (UNAVAILABLE, not a hang), not wait for TCP to give up.
const defaultConnectTimeout = 10 * time.Second

// Option configures Open, FromPool and Migrate.
type Option interface {
	apply(*config)
}

type config struct {
	schema    string
	noMigrate bool
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithSchema keeps the store's tables in the named schema instead of
// "statefun": for several deployments, or tests, sharing a database. The
// name must be an unquoted-style identifier (letters, digits, underscores;
// not starting with a digit or "pg_") of at most 63 bytes.
func WithSchema(name string) Option {
	return optionFunc(func(c *config) { c.schema = name })
}

// WithoutMigrate makes Open and FromPool use the schema as they find it,
// for deployments that migrate separately (Migrate) with a role the
// server does not have. By default they apply pending migrations.
func WithoutMigrate() Option {
	return optionFunc(func(c *config) { c.noMigrate = true })
}

func newConfig(opts []Option) (config, error) {
	cfg := config{schema: DefaultSchema}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := validSchemaName(cfg.schema); err != nil {
		return config{}, err
	}
	return cfg, nil
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validSchemaName accepts only names that need no escaping to read: the
// name is quoted anyway, but one that is easy to type in psql is worth
// more than the freedom to use punctuation.
func validSchemaName(name string) error {
	switch {
	case !identifier.MatchString(name):
		return fmt.Errorf("postgres: invalid schema name %q: use letters, digits and underscores, not starting with a digit", name)
	case len(name) > 63:
		return fmt.Errorf("postgres: invalid schema name %q: it has %d bytes; Postgres allows at most 63", name, len(name))
	case strings.HasPrefix(name, "pg_"):
		return fmt.Errorf("postgres: invalid schema name %q: names starting with pg_ are reserved for Postgres", name)
	}
	return nil
}

func quoteSchema(name string) string { return pgx.Identifier{name}.Sanitize() }

// Store is a store.Store in PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// leasePool runs the cluster's lease upkeep (heartbeats, acquiring
	// and releasing shards): a pool of its own, so that a heartbeat
	// never queues for a connection behind the requests of a busy node,
	// whose leases would otherwise lapse for want of one. It is pool
	// itself for a store made FromPool.
	leasePool *pgxpool.Pool
	ownsPool  bool
	schema    string
	sql       *statements
	closed    atomic.Bool
	// eventTypes are the pairs of the event type registry this store
	// knows to be registered.
	eventTypes eventTypeCache
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// string, as pgx accepts), applies pending migrations unless given
// WithoutMigrate, and returns the store. It fails when the database
// cannot be reached. Close closes the connection pool it creates.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	poolConfig, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse the database url: %w", err)
	}
	if poolConfig.ConnConfig.ConnectTimeout == 0 {
		poolConfig.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	leaseConfig := poolConfig.Copy()
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("postgres: create the connection pool: %w", err)
	}
	// Two connections: a heartbeat and an acquire or release can overlap.
	// One is kept open, so a heartbeat does not wait for a connection to
	// be made either.
	leaseConfig.MaxConns, leaseConfig.MinConns = 2, 1
	leasePool, err := pgxpool.NewWithConfig(ctx, leaseConfig)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: create the connection pool for leases: %w", err)
	}
	s, err := newStore(ctx, pool, true, cfg)
	if err != nil {
		pool.Close()
		leasePool.Close()
		return nil, err
	}
	s.leasePool = leasePool
	return s, nil
}

// FromPool returns a store that uses pool, which stays the caller's: Close
// leaves it open. Migrations are applied as by Open. Lease upkeep shares
// pool with everything else (Open gives it a pool of its own): in a
// cluster, size pool so that a heartbeat always finds a connection.
func FromPool(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return newStore(ctx, pool, false, cfg)
}

func newStore(ctx context.Context, pool *pgxpool.Pool, ownsPool bool, cfg config) (*Store, error) {
	s := &Store{
		pool:      pool,
		leasePool: pool,
		ownsPool:  ownsPool,
		schema:    cfg.schema,
		sql:       newStatements(quoteSchema(cfg.schema)),
	}
	// Ping first, so that an unreachable database reads as that rather
	// than as a failed migration.
	if err := pool.Ping(ctx); err != nil {
		return nil, connectError(err)
	}
	if !cfg.noMigrate {
		if err := s.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func connectError(err error) error {
	return fmt.Errorf("postgres: cannot connect to the database: %w; check the URL and that the server accepts connections", err)
}

// Close implements store.Store. Methods called afterwards return
// store.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ownsPool {
		s.pool.Close()
		if s.leasePool != s.pool {
			s.leasePool.Close()
		}
	}
	return nil
}

func errClosed() error { return fmt.Errorf("postgres: %w", store.ErrClosed) }

// ReadEvents implements store.Store. Rows stream from the server as fn
// consumes them, so a long history never sits in memory at once.
func (s *Store) ReadEvents(ctx context.Context, ref store.Ref, afterSeq int64, fn func(store.Event) error) error {
	if s.closed.Load() {
		return errClosed()
	}
	rows, err := s.pool.Query(ctx, s.sql.readEvents, ref.Type, []byte(ref.ID), afterSeq)
	if err != nil {
		return s.wrap(err, "read events of %q", ref)
	}
	// Stopping early drains the rest of the result, which keeps the
	// connection reusable; cancelling instead would cost a connection.
	defer rows.Close()
	for rows.Next() {
		e := store.Event{Entity: ref}
		if err := rows.Scan(&e.Seq, &e.EventType, &e.Payload); err != nil {
			return s.wrap(err, "read events of %q", ref)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap(err, "read events of %q", ref)
	}
	return nil
}

// LatestSnapshot implements store.Store.
func (s *Store) LatestSnapshot(ctx context.Context, ref store.Ref) (store.Snapshot, bool, error) {
	if s.closed.Load() {
		return store.Snapshot{}, false, errClosed()
	}
	snap := store.Snapshot{Entity: ref}
	err := s.pool.QueryRow(ctx, s.sql.latestSnapshot, ref.Type, []byte(ref.ID)).Scan(&snap.Seq, &snap.Payload)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Snapshot{}, false, nil
	case err != nil:
		return store.Snapshot{}, false, s.wrap(err, "read the snapshot of %q", ref)
	}
	return snap, true, nil
}

// SaveSnapshot implements store.Store.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if s.closed.Load() {
		return errClosed()
	}
	doing := fmt.Sprintf("save the snapshot of %q at seq %d", snap.Entity, snap.Seq)
	if snap.Fence != nil {
		return s.fencedWrite(ctx, snap.Fence, doing, func(b *pgx.Batch) {
			b.Queue(s.sql.saveSnapshot, snap.Entity.Type, []byte(snap.Entity.ID), snap.Seq, notNull(snap.Payload))
		})
	}
	if _, err := s.pool.Exec(ctx, s.sql.saveSnapshot, snap.Entity.Type, []byte(snap.Entity.ID), snap.Seq, notNull(snap.Payload)); err != nil {
		return s.wrap(err, "%s", doing)
	}
	return nil
}

// DeleteSnapshots implements store.Store.
func (s *Store) DeleteSnapshots(ctx context.Context, entityType string) error {
	if s.closed.Load() {
		return errClosed()
	}
	if _, err := s.pool.Exec(ctx, s.sql.deleteSnapshots, entityType); err != nil {
		return s.wrap(err, "delete the snapshots of %q", entityType)
	}
	return nil
}

// LoadValue implements store.Store.
func (s *Store) LoadValue(ctx context.Context, ref store.Ref) (store.Value, bool, error) {
	if s.closed.Load() {
		return store.Value{}, false, errClosed()
	}
	v := store.Value{Entity: ref}
	err := s.pool.QueryRow(ctx, s.sql.loadValue, ref.Type, []byte(ref.ID)).Scan(&v.Version, &v.Payload)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Value{}, false, nil
	case err != nil:
		return store.Value{}, false, s.wrap(err, "load the value of %q", ref)
	}
	return v, true, nil
}

// wrap adds what the store was doing to err, and a way out when the
// schema is missing its tables.
func (s *Store) wrap(err error, format string, args ...any) error {
	doing := fmt.Sprintf(format, args...)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3F000", "42P01", "42883": // invalid_schema_name, undefined_table, undefined_function
			return fmt.Errorf("postgres: %s: %w; schema %q is not migrated: run Migrate, or Open without WithoutMigrate", doing, err, s.schema)
		case "22021": // character_not_in_repertoire
			return fmt.Errorf("postgres: %s: %w; entity type, event type and consumer names must be UTF-8 without NUL bytes (IDs and payloads may hold any bytes)", doing, err)
		}
	}
	return fmt.Errorf("postgres: %s: %w", doing, err)
}

// notNull turns a nil payload into an empty one: pgx sends nil as NULL,
// and an empty event is still an event.
func notNull(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
