package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/statefun-go/statefun/runtime/store"
)

// fencedCode is the SQLSTATE fenced_unless raises (migrations/0004):
// a fenced write found that its writer lost a lease it named.
const fencedCode = "SF412"

var _ store.Cluster = (*Store)(nil)

// InitShards implements store.Cluster: one round trip, one implicit
// transaction. A count already recorded wins, also over an InitShards
// running at the same time: the second insert of the config row waits for
// the first and then leaves it alone.
func (s *Store) InitShards(ctx context.Context, n int) (int, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	if n < 1 {
		return 0, fmt.Errorf("postgres: init shards: shard count %d: use at least 1", n)
	}
	var recorded int
	batch := &pgx.Batch{}
	batch.Queue(s.sql.recordShardCount, n)
	batch.Queue(s.sql.createShardLeases)
	batch.Queue(s.sql.shardCount).QueryRow(func(row pgx.Row) error { return row.Scan(&recorded) })
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return 0, s.wrap(err, "init %d shards", n)
	}
	return recorded, nil
}

// Secret implements store.Cluster: one round trip. The insert and the
// select are two statements, so that the select's snapshot sees the row of
// a racing node whose insert this one waited for.
func (s *Store) Secret(ctx context.Context, candidate []byte) ([]byte, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if len(candidate) < 32 {
		return nil, fmt.Errorf("postgres: cluster secret: a candidate of %d bytes is too short; use 32 random bytes", len(candidate))
	}
	var recorded []byte
	batch := &pgx.Batch{}
	batch.Queue(s.sql.recordSecret, candidate)
	batch.Queue(s.sql.clusterSecret).QueryRow(func(row pgx.Row) error { return row.Scan(&recorded) })
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, s.wrap(err, "cluster secret")
	}
	return recorded, nil
}

// Heartbeat implements store.Cluster, in one statement.
func (s *Store) Heartbeat(ctx context.Context, node store.Node, ttl time.Duration) ([]store.Lease, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if err := checkNode(node.ID); err != nil {
		return nil, fmt.Errorf("postgres: heartbeat: %w", err)
	}
	micros, err := ttlMicros(ttl)
	if err != nil {
		return nil, fmt.Errorf("postgres: heartbeat of node %q: %w", node.ID, err)
	}
	var startedAt *time.Time
	if !node.StartedAt.IsZero() {
		startedAt = &node.StartedAt
	}
	rows, err := s.leasePool.Query(ctx, s.sql.heartbeat, node.ID, node.Address, startedAt, micros)
	leases, err := collectLeases(rows, err)
	if err != nil {
		return nil, s.wrap(err, "heartbeat of node %q", node.ID)
	}
	return leases, nil
}

// Nodes implements store.Cluster.
func (s *Store) Nodes(ctx context.Context) ([]store.Node, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	rows, err := s.leasePool.Query(ctx, s.sql.clusterNodes)
	if err != nil {
		return nil, s.wrap(err, "read the cluster's nodes")
	}
	nodes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Node, error) {
		var n store.Node
		var now time.Time
		err := row.Scan(&n.ID, &n.Address, &n.StartedAt, &n.Heartbeat, &now)
		n.Age = now.Sub(n.Heartbeat)
		return n, err
	})
	if err != nil {
		return nil, s.wrap(err, "read the cluster's nodes")
	}
	return nodes, nil
}

// Acquire implements store.Cluster, in one statement.
func (s *Store) Acquire(ctx context.Context, node string, shards []int, ttl time.Duration) ([]store.Lease, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if err := checkNode(node); err != nil {
		return nil, fmt.Errorf("postgres: acquire leases: %w", err)
	}
	micros, err := ttlMicros(ttl)
	if err != nil {
		return nil, fmt.Errorf("postgres: acquire leases for node %q: %w", node, err)
	}
	if len(shards) == 0 {
		return nil, nil
	}
	rows, err := s.leasePool.Query(ctx, s.sql.acquireLeases, node, shards, micros)
	leases, err := collectLeases(rows, err)
	if err != nil {
		return nil, s.wrap(err, "acquire leases of %d shards for node %q", len(shards), node)
	}
	return leases, nil
}

// Release implements store.Cluster. The epochs stay; the next Acquire of
// each shard raises it.
func (s *Store) Release(ctx context.Context, node string, shards []int) error {
	if s.closed.Load() {
		return errClosed()
	}
	if len(shards) == 0 {
		return nil
	}
	if _, err := s.leasePool.Exec(ctx, s.sql.releaseLeases, node, shards); err != nil {
		return s.wrap(err, "release leases of %d shards held by node %q", len(shards), node)
	}
	return nil
}

// Leases implements store.Cluster.
func (s *Store) Leases(ctx context.Context) ([]store.Lease, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	rows, err := s.leasePool.Query(ctx, s.sql.shardLeases)
	leases, err := collectLeases(rows, err)
	if err != nil {
		return nil, s.wrap(err, "read the shard leases")
	}
	return leases, nil
}

// Leave implements store.Cluster: one statement, so the node's row and
// its leases go together.
func (s *Store) Leave(ctx context.Context, node string) error {
	if s.closed.Load() {
		return errClosed()
	}
	if _, err := s.leasePool.Exec(ctx, s.sql.leaveCluster, node); err != nil {
		return s.wrap(err, "remove node %q from the cluster", node)
	}
	return nil
}

// SaveConsumerPositionFenced implements store.Cluster: the fence check and
// the write travel as one pipeline, one implicit transaction.
func (s *Store) SaveConsumerPositionFenced(ctx context.Context, consumer, entityType string, pos store.Position, fence *store.Fence) error {
	if s.closed.Load() {
		return errClosed()
	}
	if _, _, err := parsePosition(pos); err != nil {
		return fmt.Errorf("postgres: save the position of consumer %q in the feed of %q: %w", consumer, entityType, err)
	}
	return s.fencedWrite(ctx, fence, fmt.Sprintf("save the position of consumer %q in the feed of %q", consumer, entityType),
		func(b *pgx.Batch) { b.Queue(s.sql.saveConsumerPosition, consumer, entityType, string(pos)) })
}

// fencedWrite runs one statement after the check of fence, in one
// pipeline: one round trip and one implicit transaction, so the statement
// is written only if fence holds. A nil fence leaves the statement alone.
func (s *Store) fencedWrite(ctx context.Context, fence *store.Fence, doing string, queue func(*pgx.Batch)) error {
	batch := &pgx.Batch{}
	if fence != nil {
		if err := checkNode(fence.Node); err != nil {
			return fmt.Errorf("postgres: %s: fence: %w", doing, err)
		}
		queueFence(batch, s.sql, fence)
	}
	queue(batch)
	err := s.pool.SendBatch(ctx, batch).Close()
	if fenced := asFenced(err, fence); fenced != nil {
		return fenced
	}
	if err != nil {
		return s.wrap(err, "%s", doing)
	}
	return nil
}

// queueFence queues check-fence: it aborts the transaction (SF412) unless
// fence.Node holds every lease fence names at its epoch, and holds those
// lease rows FOR SHARE until the transaction ends (see the package doc).
func queueFence(batch *pgx.Batch, sql *statements, fence *store.Fence) {
	shards := make([]int, len(fence.Shards))
	epochs := make([]int64, len(fence.Shards))
	for i, se := range fence.Shards {
		shards[i], epochs[i] = se.Shard, se.Epoch
	}
	batch.Queue(sql.checkFence, fence.Node, shards, epochs)
}

// asFenced returns the *store.FencedError of a write that failed its
// fence, nil for any other outcome. The lost shards come from the error's
// DETAIL, which fenced_unless fills with them as an array literal; should
// that ever be unreadable, every shard of the fence is named, since the
// writer then cannot tell which leases it still holds.
func asFenced(err error, fence *store.Fence) *store.FencedError {
	var pgErr *pgconn.PgError
	if fence == nil || !errors.As(err, &pgErr) || pgErr.Code != fencedCode {
		return nil
	}
	if shards, ok := parseShards(pgErr.Detail); ok {
		return &store.FencedError{Shards: shards}
	}
	var all []int
	for _, se := range fence.Shards {
		if !slices.Contains(all, se.Shard) {
			all = append(all, se.Shard)
		}
	}
	return &store.FencedError{Shards: all}
}

// parseShards reads a non-empty array literal of integers, "{1,3}".
func parseShards(literal string) ([]int, bool) {
	body, hasPrefix := strings.CutPrefix(literal, "{")
	body, hasSuffix := strings.CutSuffix(body, "}")
	if !hasPrefix || !hasSuffix || body == "" {
		return nil, false
	}
	var shards []int
	for field := range strings.SplitSeq(body, ",") {
		n, err := strconv.Atoi(field)
		if err != nil {
			return nil, false
		}
		shards = append(shards, n)
	}
	return shards, true
}

// collectLeases reads rows of (shard, owner, epoch, expires, now()), in
// shard order. Remaining is computed against the now() of the same
// statement, so it is the database's view, whatever the local clock says.
func collectLeases(rows pgx.Rows, err error) ([]store.Lease, error) {
	if err != nil {
		return nil, err
	}
	leases, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Lease, error) {
		var l store.Lease
		var owner *string
		var expires *time.Time
		var now time.Time
		if err := row.Scan(&l.Shard, &owner, &l.Epoch, &expires, &now); err != nil {
			return l, err
		}
		if owner != nil {
			l.Owner = *owner
		}
		if expires != nil {
			l.Expires = *expires
		}
		l.Remaining = l.Expires.Sub(now)
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(leases, func(a, b store.Lease) int { return a.Shard - b.Shard })
	return leases, nil
}

func checkNode(id string) error {
	if id == "" {
		return errors.New("the node ID is empty; name the node (its advertised address)")
	}
	return nil
}

// ttlMicros turns a lease's time to live into the microseconds the
// statements take (Postgres keeps times to the microsecond), rounding up
// so that no positive ttl becomes zero.
func ttlMicros(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("lease time to live %v: use a positive duration", ttl)
	}
	return (ttl + time.Microsecond - 1).Microseconds(), nil
}
