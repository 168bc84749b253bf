package main

// mutants are the deliberate defects make mutants applies. Each names the
// invariant (INVARIANTS.md) its mutation breaks. Keep the old text short
// and unique; when the code it names moves, update it here.
var mutants = []mutant{
	{
		name: "gate: replies leave before their commit (2)",
		file: "runtime/host.go",
		old: `		wait := inst.last
		inst.mu.Unlock()
		if werr := h.rt.waitDurable(ctx, wait); werr != nil {`,
		new: `		wait := inst.last
		inst.mu.Unlock()
		if err == nil {
			return reply, nil
		}
		if werr := h.rt.waitDurable(ctx, wait); werr != nil {`,
		pkg: "./runtime/", run: "TestOutputGate$|TestKeyValueGateAndFencing",
	},
	{
		name: "gate: handler errors leave before their commit (2)",
		file: "runtime/host.go",
		old: `		wait := inst.last
		inst.mu.Unlock()
		if werr := h.rt.waitDurable(ctx, wait); werr != nil {`,
		new: `		wait := inst.last
		inst.mu.Unlock()
		if err != nil {
			return zero, err
		}
		if werr := h.rt.waitDurable(ctx, wait); werr != nil {`,
		pkg: "./runtime/", run: "TestOutputGateHoldsHandlerErrors",
	},
	{
		name: "gate: read errors leave before their commit (2)",
		file: "runtime/host.go",
		old: `		if err == nil {
			reply = proto.Clone(reply).(R)
		}`,
		new: `		if err != nil {
			inst.mu.RUnlock()
			return zero, err
		}
		reply = proto.Clone(reply).(R)`,
		pkg: "./runtime/", run: "TestOutputGateHoldsReadErrors",
	},
	{
		name: "reset: failed commit leaves later commits live (3)",
		file: "runtime/internal/journal/writer.go",
		old:  `			if c.Abandoned != nil && c.Abandoned.Load() {`,
		new:  `			if false {`,
		pkg:  "./runtime/", run: "TestFailedCommitResetsEntity",
	},
	{
		name: "reset: successor loads before in-flight commits land (3)",
		file: "runtime/instance.go",
		old:  `			if barrier != nil {`,
		new:  `			if false {`,
		pkg:  "./runtime/", run: "TestPanicResetKeepsInFlightCommits",
	},
	{
		name: "reset: a panic aborts healthy queued commits (3)",
		file: "runtime/instance.go",
		old:  `	inst.barrier.Store(inst.last)`,
		new:  `	inst.barrier.Store(inst.last); inst.abandoned.Store(true)`,
		pkg:  "./runtime/", run: "TestPanicResetKeepsQueuedCommits",
	},
	{
		name: "reset: a read that panicked keeps its state (3)",
		file: "runtime/host.go",
		old: `		if err != nil && errors.Is(err, errPanic) {
			h.logPanic(ctx, id, err)
			h.resetAfterPanic(id, inst, err)`,
		new: `		if err != nil && errors.Is(err, errPanic) {
			h.logPanic(ctx, id, err)`,
		pkg: "./runtime/", run: "TestReadPanicResets",
	},
	{
		name: "atomic: a batch's events are written one at a time (4)",
		file: "runtime/internal/journal/writer.go",
		old:  `		err := w.store.Commit(ctx, batch)`,
		new: `		var err error
		for i := range batch.Events {
			if err = w.store.Commit(ctx, &store.Batch{Events: batch.Events[i : i+1]}); err != nil {
				break
			}
		}
		if err == nil && len(batch.Values) > 0 {
			err = w.store.Commit(ctx, &store.Batch{Values: batch.Values})
		}`,
		pkg: "./runtime/", run: "TestMultiEventCommandIsAtomic",
	},
	{
		name: "group commit: one command per batch (5)",
		file: "runtime/internal/journal/writer.go",
		old: `		batch = append(batch, c)
		records += c.records()`,
		new: `		batch = append(batch, c)
		records += c.records()
		if len(batch) == 1 {
			kept = append(kept, w.queue[i+1:]...)
			break
		}`,
		pkg: "./runtime/", run: "TestGroupCommit",
	},
	{
		name: "memory: an entity with a change in flight is evicted (8)",
		file: "runtime/instance.go",
		old:  `	if !inst.usable() || !inst.durable() {`,
		new:  `	if !inst.usable() {`,
		pkg:  "./runtime/", run: "TestPassivation",
	},
	{
		name: "memory: eviction takes a random entity, not the LRU (8)",
		file: "runtime/instance.go",
		old:  `		if ok && (best == nil || used < best.lastUsed) {`,
		new:  `		if ok && best == nil {`,
		pkg:  "./runtime/", run: "TestEvictionIsLeastRecentlyUsed",
	},
	{
		name: "memory: a reset instance leaves the cache uncounted (8)",
		file: "runtime/instance.go",
		old: `			old.phase.Store(int32(phaseRetired))
			h.remove(st, id, old)`,
		new: `			old.phase.Store(int32(phaseRetired))
			delete(st.instances, id)`,
		pkg: "./runtime/", run: "TestCacheCountSurvivesFailedCommits",
	},
	{
		name: "shutdown: a commit landing after a timed-out Close (11)",
		file: "runtime/snapshot.go",
		old: `	if s.closed {
		return
	}`,
		new: ``,
		pkg: "./runtime/", run: "TestCloseTimeoutThenCommit",
	},
	{
		name: "shutdown: Release does not wake a closing writer (11)",
		file: "runtime/internal/journal/writer.go",
		old: `	// A closing writer's workers wait for the last admission to end.
	w.ready.Broadcast()`,
		new: ``,
		pkg: "./runtime/internal/journal/", run: "TestReleaseWakesClose",
	},
	{
		name: "bounded waits: admission waits as long as the caller (13)",
		file: "runtime/internal/journal/writer.go",
		old:  `			t := time.NewTimer(w.opts.AdmitTimeout)`,
		new:  `			t := time.NewTimer(time.Hour)`,
		pkg:  "./runtime/internal/journal/", run: "TestAdmitIsBoundedWithoutDeadline",
	},
	{
		name: "bounded waits: a canceled admission is called busy (13)",
		file: "runtime/internal/journal/writer.go",
		old: `			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}`,
		new: ``,
		pkg: "./runtime/", run: "TestAdmissionCanceledIsCanceled",
	},
	{
		name: "handlers: a nil reply is an empty OK",
		file: "runtime/host.go",
		old:  `	if err == nil && (any(reply) == nil || !reply.ProtoReflect().IsValid()) {`,
		new:  `	if err == nil && any(reply) == nil {`,
		pkg:  "./runtime/", run: "TestNilReplyIsInternal",
	},
	{
		name: "operators: failed commits are not logged",
		file: "runtime/instance.go",
		old:  `		h.rt.logReset(h.cfg.Type, id, "a commit failed", err)`,
		new:  ``,
		pkg:  "./runtime/", run: "TestResetsAreLogged",
	},
}

// Idempotency keys (INVARIANTS.md, invariant 12).
var idempotencyMutants = []mutant{
	{
		name: "idempotency: a retry after a restart runs the command again (12)",
		file: "runtime/host.go",
		old: `			if a != nil {
				return replay[R](ctx, key, a)
			}
		}
		inst.mu.Lock()`,
		new: `			_ = a
		}
		inst.mu.Lock()`,
		pkg: "./runtime/", run: "TestIdempotentRetryAfterRestart",
	},
	{
		name: "idempotency: a retry on the same instance runs the command again (12)",
		file: "runtime/host.go",
		old:  `			a := inst.recall(key)`,
		new:  `			var a *answer`,
		pkg:  "./runtime/", run: "TestIdempotentRetryReturnsTheFirstReply|TestIdempotentConcurrentRetries",
	},
	{
		name: "idempotency: refusals are not recorded (12)",
		file: "runtime/idempotency.go",
		old: `	if err != nil {
		st := status.Convert(err)`,
		new: `	if err != nil && false {
		st := status.Convert(err)`,
		pkg: "./runtime/", run: "TestIdempotentRetryReturnsTheFirstError",
	},
	{
		name: "idempotency: an unknown outcome is reported as not stored (12)",
		file: "runtime/host.go",
		old: `	case errors.Is(err, store.ErrOutcomeUnknown):
		return unknownOutcome(err)`,
		new: ``,
		pkg: "./runtime/", run: "TestUnknownOutcomeIsReported",
	},
}

func init() { mutants = append(mutants, idempotencyMutants...) }

// Consumers and sent calls (INVARIANTS.md, invariants 2, 10 and 13).
var consumerMutants = []mutant{
	{
		name: "consumers: a commit does not wake its consumers (10)",
		file: "runtime/consumers.go",
		old: `	for _, r := range *s.runners.Load() {
		if !r.dispatchesCalls {
			r.notify()
		}
	}`,
		new: `	for range *s.runners.Load() {
	}`,
		pkg: "./runtime/", run: "TestConsumerWokenByCommitNotByPoll",
	},
	{
		name: "sent calls: a redelivered call runs twice (12)",
		file: "runtime/consumers.go",
		old:  `	ctx := metadata.AppendToOutgoingContext(ec.ctx, IdempotencyKeyHeader, sentCallKey(entityType, ec.entityID, ec.seq))`,
		new:  `	ctx := metadata.AppendToOutgoingContext(ec.ctx)`,
		pkg:  "./runtime/", run: "TestRedeliveredCallRunsOnce",
	},
	{
		name: "bounded waits: a consumer's last save has no deadline (13)",
		file: "runtime/consumer.go",
		old: `	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.savePosition(ctx, pos); err != nil {`,
		new: `	if err := r.savePosition(ctx, pos); err != nil {`,
		pkg: "./runtime/", run: "TestCloseDoesNotWaitForAHungPositionSave",
	},
}

func init() { mutants = append(mutants, consumerMutants...) }

var storageMutants = []mutant{
	{
		name: "stable names: events stored under their proto names (9)",
		file: "runtime/host.go",
		old:  `commit.Events = append(commit.Events, store.Event{Entity: ref, Seq: seq, EventType: e.typ, Payload: payload})`,
		new:  `commit.Events = append(commit.Events, store.Event{Entity: ref, Seq: seq, EventType: string(proto.MessageName(e.msg)), Payload: payload})`,
		pkg:  "./runtime/", run: "TestStableNamesOnDisk",
	},
	{
		name: "stable names: commits do not register their event types (9)",
		file: "runtime/store/memory/memory.go",
		old:  `		s.registerEventType(e.Entity.Type, e.EventType)`,
		new:  ``,
		pkg:  "./runtime/", run: "TestStartupRefusesUnknownStoredEvents$",
	},
	{
		name: "recovery: a snapshot's events are replayed again (7)",
		file: "runtime/host.go",
		old:  `				inst.seq, inst.snapshotSeq = snap.Seq, snap.Seq`,
		new:  `				inst.snapshotSeq = snap.Seq`,
		pkg:  "./runtime/", run: "TestRecoveryFromSnapshots",
	},
}

func init() { mutants = append(mutants, storageMutants...) }

// The cluster (INVARIANTS.md, invariant 14).
var clusterMutants = []mutant{
	{
		name: "cluster: commits carry no lease epoch (14)",
		file: "runtime/internal/journal/writer.go",
		old:  `		batch.Fence = w.fence(buf, live)`,
		new:  `		batch.Fence = nil`,
		pkg:  "./runtime/", run: "TestClusterStaleNodeCannotWrite",
	},
	{
		name: "cluster: a call for another node's shard runs here (14)",
		file: "runtime/cluster.go",
		old:  `		epoch, serving := cn.node.Serving(shard)`,
		new:  `		epoch, serving := cn.node.Serving(shard); serving = true`,
		pkg:  "./runtime/", run: "TestClusterServesEveryEntityOnce",
	},
	{
		name: "cluster: a consumer runs on every node (14)",
		file: "runtime/consumers.go",
		old: `		epoch, ok := node.Serving(shard)
		if !ok {`,
		new: `		epoch, ok := node.Serving(shard)
		ok = true
		if !ok {`,
		pkg: "./runtime/", run: "TestClusterConsumersRunOnce",
	},
	{
		name: "cluster: heartbeats queue for a connection behind requests (14)",
		file: "runtime/store/postgres/cluster.go",
		old:  `	rows, err := s.leasePool.Query(ctx, s.sql.heartbeat, node.ID, node.Address, startedAt, micros)`,
		new:  `	rows, err := s.pool.Query(ctx, s.sql.heartbeat, node.ID, node.Address, startedAt, micros)`,
		pkg:  "./runtime/store/postgres/", run: "TestHeartbeatDoesNotQueueBehindRequests",
	},
}

func init() { mutants = append(mutants, clusterMutants...) }

// The Postgres store's fences that its statements keep themselves: the
// check, inside the events INSERT, that each entity's first event of a
// batch follows its stored history (invariant 6), and the refusal,
// inside the outcomes INSERT, of a key whose outcome is still live
// (invariant 12).
var postgresMutants = []mutant{
	{
		name: "fencing: postgres inserts events without the gap check (6)",
		file: "runtime/store/postgres/queries.sql",
		old:  `    WHEN NOT e.follows_stored THEN true`,
		new:  `    WHEN true THEN true`,
		pkg:  "./runtime/store/postgres/", run: "TestConformance/GapConflicts|TestGapCheckCoversEveryEntity",
	},
	{
		name: "fencing: postgres checks only the batch's first entity for a gap (6)",
		file: "runtime/store/postgres/commit.go",
		old:  `followsStored[i] = e.Seq > 1 && (i == 0 || events[i-1].Entity != e.Entity)`,
		new:  `followsStored[i] = e.Seq > 1 && i == 0`,
		pkg:  "./runtime/store/postgres/", run: "TestConformance/GapConflicts|TestGapCheckCoversEveryEntity",
	},
	{
		name: "idempotency: postgres keeps a live outcome and commits the batch (12)",
		file: "runtime/store/postgres/queries.sql",
		old:  `    ELSE {{schema}}.conflict_unless(false, 'outcomes') IS NULL`,
		new:  `    ELSE false`,
		pkg:  "./runtime/store/postgres/", run: "TestConformance/UnexpiredOutcomeKeyConflicts",
	},
}

func init() { mutants = append(mutants, postgresMutants...) }
