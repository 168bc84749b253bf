package main

// Timers (INVARIANTS.md, invariant 15).
var timerMutants = []mutant{
	{
		name: "timers: a timer the store refuses is staged anyway (15)",
		file: "runtime/timers.go",
		old: `		if err := checkTimerName(op.name); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if op.cancel {
			changes = append(`,
		new: `		if op.cancel {
			changes = append(`,
		pkg: "./runtime/", run: "TestTimerOfFailedCommandIsNotScheduled",
	},
	{
		name: "timers: a cancel is not stored (15)",
		file: "runtime/store/memory/memory.go",
		old: `		if c.Cancel {
			delete(s.timers, k)
			continue
		}`,
		new: `		if c.Cancel {
			continue
		}`,
		pkg: "./runtime/", run: "TestTimerReplacedAndCancelled",
	},
	{
		name: "timers: finishing a delivery deletes the timer that replaced it (15)",
		file: "runtime/store/memory/timers.go",
		old:  `		if t, ok := s.timers[tr]; ok && t.ID == k.ID {`,
		new:  `		if _, ok := s.timers[tr]; ok {`,
		pkg:  "./runtime/store/memory/", run: "TestConformance",
	},
	{
		name: "timers: a timer fires before it is due (15)",
		file: "runtime/store/postgres/queries.sql",
		old:  `WHERE due <= $2 AND ($1::integer[] IS NULL OR shard = ANY($1::integer[]))`,
		new:  `WHERE ($1::integer[] IS NULL OR shard = ANY($1::integer[]))`,
		pkg:  "./runtime/store/postgres/", run: "TestConformance",
	},
	{
		name: "timers: every node fires every shard's timers (15)",
		file: "runtime/timers.go",
		old:  `		if epoch, ok := cn.node.Serving(shard); ok {`,
		new:  `		if epoch, ok := cn.node.Serving(shard); ok || true {`,
		pkg:  "./runtime/", run: "TestTimersFireOnTheirOwnerInACluster",
	},
}

func init() { mutants = append(mutants, timerMutants...) }

func init() {
	mutants = append(mutants, mutant{
		name: "timers: a delivery forwarded to its target's owner no longer says it is a timer's (15)",
		file: "runtime/cluster.go",
		old:  `		md.Set(timerHeader, fired[0])`,
		new:  `		_ = fired`,
		pkg:  "./runtime/", run: "TestTimersFireOnTheirOwnerInACluster",
	})
}

func init() {
	mutants = append(mutants, mutant{
		name: "timers: a timer's delivery starts a new trace (tracing)",
		file: "runtime/host.go",
		old: `			tc = traceContext(cc.ctx)
		}
		changes, err := timerChanges(`,
		new: `			_ = cc.ctx
		}
		changes, err := timerChanges(`,
		pkg: "./runtime/", run: "TestTraceTimerContinuesTrace",
	})
}

// A timer's first delivery does not look its idempotency key up; the
// store's refusal of a second answer to a key is what keeps a delivery
// that committed before a crash from being applied again.
func init() {
	mutants = append(mutants, mutant{
		name: "timers: every delivery skips the key lookup, so a repeat never finishes (13, 14)",
		file: "runtime/timers.go",
		old:  `	if tm.Attempts == 0 {`,
		new:  `	if true {`,
		pkg:  "./runtime/", run: "TestTimerDeliveredBeforeACrashIsNotAppliedAgain",
	}, mutant{
		name: "timers: the memory store accepts a second answer to a key, and a redelivered timer applies twice",
		file: "runtime/store/memory/memory.go",
		old:  `if (live || answered[k]) && `,
		new:  `if (live && false || answered[k]) && `,
		pkg:  "./runtime/", run: "TestTimerDeliveredBeforeACrashIsNotAppliedAgain",
	})
}
