package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/statefun-go/statefun/runtime/store"
)

// SQLSTATEs that Commit reads as "the history is not what the batch
// expected". conflictCode is raised by conflict_unless (migrations/).
const (
	conflictCode       = "SF409"
	uniqueViolation    = "23505"
	deadlockDetected   = "40P01"
	serializationError = "40001"
)

// Commit implements store.Store.
//
// The common case is one round trip: the statements travel as one
// pipeline and run as one implicit transaction (see the package doc).
// When the transaction fails on the fence of invariant 6, one more query
// finds which entities' stored history differs from what the batch
// expected. A batch with a lease Fence starts with its check, which names
// the lost shards itself: a *store.FencedError costs no second query.
//
// An error that wraps store.ErrOutcomeUnknown means the batch may have
// reached the server and committed: the connection broke, or ctx ended,
// after the batch was sent (see outcomeUnknown). Any other error, a
// *store.ConflictError included, means nothing was written.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if s.closed.Load() {
		return errClosed()
	}
	if b.Len() == 0 {
		return nil
	}
	if b.Fence != nil {
		if err := checkNode(b.Fence.Node); err != nil {
			return fmt.Errorf("postgres: commit %s: fence: %w", describeBatch(b), err)
		}
	}
	plan := planCommit(b)
	if !plan.consistent {
		// The batch contradicts itself (a gap or a repeat within one
		// entity, a seq or version below 1): no stored history can
		// match it, so there is nothing to try; only the names to find.
		return s.conflict(ctx, b, &plan, nil)
	}
	// Acquired apart from sending, so that a failure to connect is known
	// to have sent nothing.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.wrap(err, "commit %s", describeBatch(b))
	}
	plan.newEventTypes = s.eventTypes.unregistered(b.Events)
	err = conn.SendBatch(ctx, plan.commitStatements(b, s.sql)).Close()
	conn.Release()
	switch {
	case err == nil:
		s.eventTypes.registered(plan.newEventTypes)
		return nil
	case outcomeUnknown(err):
		return fmt.Errorf("postgres: commit %s: %w: %w; reload its entities to learn what was stored", describeBatch(b), store.ErrOutcomeUnknown, err)
	}
	if fenced := asFenced(err, b.Fence); fenced != nil {
		// The fence is checked first, so the batch's other checks never
		// ran: whether it also conflicts is unknown, and moot.
		return fenced
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case conflictCode, uniqueViolation, deadlockDetected, serializationError:
			return s.conflict(ctx, b, &plan, err)
		}
	}
	return s.wrap(err, "commit %s", describeBatch(b))
}

// outcomeUnknown reports whether a commit that failed with err may
// nevertheless have committed.
//
// An error from the server (an ERROR) aborted the implicit transaction:
// nothing was written. FATAL and PANIC end the session, and one can
// arrive after the commit (a backend terminated while it waits for a
// synchronous standby has committed locally): unknown. An error while
// preparing or encoding the statements came before any of them was sent
// (the pipeline is dropped without the Sync that would commit it), and
// pgconn marks the errors that happened before anything was written as
// safe to retry. Anything else (a broken connection, or ctx ending while
// the batch was in flight) may have come after the server committed.
func outcomeUnknown(err error) bool {
	var preprocessing pgx.ErrPreprocessingBatch
	if errors.As(err, &preprocessing) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch cmp.Or(pgErr.SeverityUnlocalized, pgErr.Severity) {
		case "FATAL", "PANIC":
			return true
		}
		return false
	}
	return !pgconn.SafeToRetry(err)
}

func describeBatch(b *store.Batch) string {
	if len(b.Timers) > 0 {
		return fmt.Sprintf("%d events, %d values, %d outcomes and %d timer changes", len(b.Events), len(b.Values), len(b.Outcomes), len(b.Timers))
	}
	return fmt.Sprintf("%d events, %d values and %d outcomes", len(b.Events), len(b.Values), len(b.Outcomes))
}

// conflict returns the *store.ConflictError of a batch that wrote
// nothing, naming the entities whose stored history differs from what the
// batch expected. cause is the error of the failed commit, nil when the
// batch was not sent.
func (s *Store) conflict(ctx context.Context, b *store.Batch, plan *commitPlan, cause error) error {
	refs, err := s.conflicting(ctx, plan)
	if err != nil {
		if cause == nil {
			return s.wrap(err, "commit %s: find the conflicting entities", describeBatch(b))
		}
		// The fence did fail, so the batch is refused either way; without
		// names, every entity of it must reload.
		refs = nil
	}
	if len(refs) > 0 {
		return &store.ConflictError{Entities: refs}
	}
	var pgErr *pgconn.PgError
	if errors.As(cause, &pgErr) && (pgErr.Code == deadlockDetected || pgErr.Code == serializationError) {
		// Two writers collided, but nothing stored contradicts this
		// batch (yet): a plain, retryable failure, not proof of a stale
		// writer.
		return s.wrap(cause, "commit %s", describeBatch(b))
	}
	// The fence failed, but by the time of the follow-up read the stored
	// history matched again (the entity's predecessor event committed in
	// between). The failure still proves a second writer; which entity it
	// touched is unknown, so every entity of the batch must reload.
	return &store.ConflictError{Entities: plan.refs()}
}

// conflicting reads the stored head of every entity of the batch, and
// whether its outcome keys are answered, in one round trip, and returns
// those that do not match what the batch expected.
func (s *Store) conflicting(ctx context.Context, plan *commitPlan) ([]store.Ref, error) {
	var refs []store.Ref
	named := map[store.Ref]bool{}
	name := func(ref store.Ref) {
		if !named[ref] {
			named[ref] = true
			refs = append(refs, ref)
		}
	}
	batch := &pgx.Batch{}
	if len(plan.events) > 0 {
		types, ids := refColumns(plan.events, func(r eventRun) store.Ref { return r.ref })
		batch.Queue(s.sql.eventHeads, types, ids)
	}
	if len(plan.values) > 0 {
		types, ids := refColumns(plan.values, func(r valueRun) store.Ref { return r.ref })
		batch.Queue(s.sql.valueVersions, types, ids)
	}
	if len(plan.outcomes) > 0 {
		hashes := make([][]byte, len(plan.outcomes))
		for i := range plan.outcomes {
			hashes[i] = plan.outcomes[i].hash[:]
		}
		batch.Queue(s.sql.answeredOutcomes, hashes)
	}
	results := s.pool.SendBatch(ctx, batch)
	defer results.Close()
	if len(plan.events) > 0 {
		rows, err := results.Query()
		if err != nil {
			return nil, err
		}
		heads, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, err
		}
		if len(heads) != len(plan.events) {
			return nil, fmt.Errorf("read %d event heads for %d entities", len(heads), len(plan.events))
		}
		for i, run := range plan.events {
			if !run.consistent || run.first != heads[i]+1 {
				name(run.ref)
			}
		}
	}
	if len(plan.values) > 0 {
		rows, err := results.Query()
		if err != nil {
			return nil, err
		}
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, err
		}
		if len(versions) != len(plan.values) {
			return nil, fmt.Errorf("read %d value versions for %d entities", len(versions), len(plan.values))
		}
		for i, run := range plan.values {
			if !run.consistent || run.expected != versions[i] {
				name(run.ref)
			}
		}
	}
	if len(plan.outcomes) > 0 {
		rows, err := results.Query()
		if err != nil {
			return nil, err
		}
		answered, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil {
			return nil, err
		}
		if len(answered) != len(plan.outcomes) {
			return nil, fmt.Errorf("read %d answered keys for %d outcomes", len(answered), len(plan.outcomes))
		}
		for i, o := range plan.outcomes {
			if !o.consistent || answered[i] {
				name(o.ref)
			}
		}
	}
	return refs, results.Close()
}

// commitPlan is a batch summarised per entity: what it expects of the
// stored history, and whether it is consistent in itself.
type commitPlan struct {
	events     []eventRun // in order of first appearance in the batch
	values     []valueRun
	outcomes   []outcomeKey // in batch order
	consistent bool
	// newEventTypes are the batch's (entity type, event type) pairs that
	// the store has not registered yet, sorted.
	newEventTypes []eventType
}

// eventRun is the events of one entity in a batch.
type eventRun struct {
	ref         store.Ref
	first, last int64
	// consistent: the seqs start at 1 or later and follow each other.
	consistent bool
}

// valueRun is the values of one entity in a batch. Only the last is
// stored; the first says which version the batch was written against.
type valueRun struct {
	ref      store.Ref
	expected int64 // the stored version the batch needs: first version - 1
	last     store.Value
	// consistent: the versions start at 1 or later and follow each other.
	consistent bool
}

// outcomeKey is an outcome of a batch, by its primary key.
type outcomeKey struct {
	ref  store.Ref
	hash [keyHashSize]byte
	// consistent: no earlier outcome of the batch has the same key.
	consistent bool
}

func planCommit(b *store.Batch) commitPlan {
	plan := commitPlan{consistent: true}
	eventIndex := map[store.Ref]int{}
	for _, e := range b.Events {
		i, seen := eventIndex[e.Entity]
		if !seen {
			eventIndex[e.Entity] = len(plan.events)
			plan.events = append(plan.events, eventRun{ref: e.Entity, first: e.Seq, last: e.Seq, consistent: e.Seq >= 1})
			continue
		}
		run := &plan.events[i]
		run.consistent = run.consistent && e.Seq == run.last+1
		run.last = e.Seq
	}
	valueIndex := map[store.Ref]int{}
	for _, v := range b.Values {
		i, seen := valueIndex[v.Entity]
		if !seen {
			valueIndex[v.Entity] = len(plan.values)
			plan.values = append(plan.values, valueRun{ref: v.Entity, expected: v.Version - 1, last: v, consistent: v.Version >= 1})
			continue
		}
		run := &plan.values[i]
		run.consistent = run.consistent && v.Version == run.last.Version+1
		run.last = v
	}
	if len(b.Outcomes) > 0 {
		plan.outcomes = make([]outcomeKey, len(b.Outcomes))
		seen := make(map[[keyHashSize]byte]bool, len(b.Outcomes))
		for i, o := range b.Outcomes {
			hash := outcomeKeyHash(o.Entity, o.Key)
			plan.outcomes[i] = outcomeKey{ref: o.Entity, hash: hash, consistent: !seen[hash]}
			plan.consistent = plan.consistent && !seen[hash]
			seen[hash] = true
		}
	}
	for _, r := range plan.events {
		plan.consistent = plan.consistent && r.consistent
	}
	for _, r := range plan.values {
		plan.consistent = plan.consistent && r.consistent
	}
	return plan
}

// refs returns every entity of the batch.
func (p *commitPlan) refs() []store.Ref {
	refs := make([]store.Ref, 0, len(p.events)+len(p.values))
	for _, r := range p.events {
		refs = append(refs, r.ref)
	}
	for _, r := range p.values {
		refs = append(refs, r.ref)
	}
	for _, o := range p.outcomes {
		if !slices.Contains(refs, o.ref) {
			refs = append(refs, o.ref)
		}
	}
	return refs
}

// commitStatements queues the commit: each statement takes its rows as
// arrays, so its size and plan do not depend on the batch's size.
func (p *commitPlan) commitStatements(b *store.Batch, sql *statements) *pgx.Batch {
	batch := &pgx.Batch{}

	// The fence first: it takes the lease rows FOR SHARE before anything
	// is written, and a writer that lost a lease learns it without the
	// other statements running.
	if b.Fence != nil {
		queueFence(batch, sql, b.Fence)
	}

	if len(b.Events) > 0 {
		// Sorted by key: concurrent commits then wait for each other's
		// index entries in one order and cannot deadlock.
		events := slices.Clone(b.Events)
		slices.SortFunc(events, func(x, y store.Event) int {
			return cmp.Or(cmp.Compare(x.Entity.Type, y.Entity.Type), cmp.Compare(x.Entity.ID, y.Entity.ID), cmp.Compare(x.Seq, y.Seq))
		})
		types, ids := refColumns(events, func(e store.Event) store.Ref { return e.Entity })
		seqs := make([]int64, len(events))
		eventTypes := make([]string, len(events))
		payloads := make([][]byte, len(events))
		// The first event of each entity must follow its stored history
		// unless it is seq 1; the rest follow it in the batch (planCommit
		// checked that), and the primary key keeps any seq from being
		// stored twice.
		followsStored := make([]bool, len(events))
		for i, e := range events {
			seqs[i], eventTypes[i], payloads[i] = e.Seq, e.EventType, notNull(e.Payload)
			followsStored[i] = e.Seq > 1 && (i == 0 || events[i-1].Entity != e.Entity)
		}
		batch.Queue(sql.insertEvents, types, ids, seqs, eventTypes, payloads, followsStored)
	}

	if len(p.values) > 0 {
		// Sorted too: with the plan Postgres picks for a batch-sized
		// input (an index lookup per row, in input order), row locks
		// follow the same order. Should another plan ever reorder them,
		// a deadlock is still reported as a conflict or a plain error.
		values := slices.Clone(p.values)
		slices.SortFunc(values, func(x, y valueRun) int {
			return cmp.Or(cmp.Compare(x.ref.Type, y.ref.Type), cmp.Compare(x.ref.ID, y.ref.ID))
		})
		types, ids := refColumns(values, func(r valueRun) store.Ref { return r.ref })
		expected := make([]int64, len(values))
		versions := make([]int64, len(values))
		payloads := make([][]byte, len(values))
		for i, r := range values {
			expected[i], versions[i], payloads[i] = r.expected, r.last.Version, notNull(r.last.Payload)
		}
		batch.Queue(sql.writeValues, types, ids, expected, versions, payloads)
	}

	if len(b.Outcomes) > 0 {
		// Sorted by primary key, for the same reason as the events.
		order := make([]int, len(b.Outcomes))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(x, y int) int { return bytes.Compare(p.outcomes[x].hash[:], p.outcomes[y].hash[:]) })
		n := len(order)
		expires, codes := make([]time.Time, n), make([]int64, n)
		hashes, types, ids := make([][]byte, n), make([]string, n), make([][]byte, n)
		keys, messages, replies := make([][]byte, n), make([][]byte, n), make([][]byte, n)
		for i, j := range order {
			o := &b.Outcomes[j]
			expires[i], codes[i] = o.Expires, int64(o.Code)
			hashes[i], types[i], ids[i] = p.outcomes[j].hash[:], o.Entity.Type, []byte(o.Entity.ID)
			keys[i], messages[i], replies[i] = notNull([]byte(o.Key)), notNull([]byte(o.Message)), notNull(o.Reply)
		}
		batch.Queue(sql.insertOutcomes, expires, codes, hashes, types, ids, keys, messages, replies)
	}
	queueTimerChanges(batch, sql, b.Timers)
	// Last: see register-event-types in queries.sql.
	if len(p.newEventTypes) > 0 {
		entityTypes := make([]string, len(p.newEventTypes))
		eventTypes := make([]string, len(p.newEventTypes))
		for i, t := range p.newEventTypes {
			entityTypes[i], eventTypes[i] = t.entityType, t.eventType
		}
		batch.Queue(sql.registerEventTypes, entityTypes, eventTypes)
	}
	return batch
}

// refColumns splits the entities of rows into the type and ID arrays the
// statements take.
func refColumns[T any](rows []T, ref func(T) store.Ref) (types []string, ids [][]byte) {
	types = make([]string, len(rows))
	ids = make([][]byte, len(rows))
	for i, row := range rows {
		r := ref(row)
		types[i], ids[i] = r.Type, []byte(r.ID)
	}
	return types, ids
}
