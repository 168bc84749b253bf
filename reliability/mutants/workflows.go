package main

// Workflows (INVARIANTS.md, invariant 16).
var workflowMutants = []mutant{
	{
		name: "workflows: a step's calls carry no idempotency key (16)",
		file: "runtime/workflow.go",
		old:  `base: sctx, ctx: metadata.AppendToOutgoingContext(sctx, IdempotencyKeyHeader, key),`,
		new:  `base: sctx, ctx: sctx,`,
		pkg:  "./runtime/", run: "TestWorkflowRetryDoesNotRepeatACallsEffect",
	},
	{
		name: "workflows: a step's outcome overwrites a signal's change (16)",
		file: "runtime/workflow.go",
		old: `	if cur.GetGeneration() != rec.GetGeneration() {
		return true
	}`,
		new: `	if cur.GetGeneration() != rec.GetGeneration() && false {
		return true
	}`,
		pkg: "./runtime/", run: "TestWorkflowStepRunsAgainWhenASignalChangesTheState",
	},
	{
		name: "workflows: an outcome is stored without the timer of what follows (16)",
		file: "runtime/workflow.go",
		old: `	c.Emit(eventType, event)
	h.follow(c, id, after, now)`,
		new: `	c.Emit(eventType, event)`,
		pkg: "./runtime/", run: "TestWorkflowRunsItsStepsInOrderAndKeepsTheirHistory",
	},
	{
		name: "workflows: a step cut by a shutdown waits for its watchdog (16)",
		file: "runtime/workflow.go",
		old:  `				c.ScheduleCall(workflowTimer, h.now(), h.runStepCall(id, cur.GetVisit(), st.GetAttempt()))`,
		new:  `				_ = c`,
		pkg:  "./runtime/", run: "TestWorkflowStepCutByAShutdownRunsAgainAtOnce",
	},
	{
		name: "workflows: the failover step is never taken (16)",
		file: "runtime/workflow.go",
		old:  `	case most == 0 || int(cs.GetAttempt()) < most:`,
		new:  `	case most == 0 || int(cs.GetAttempt()) < most || true:`,
		pkg:  "./runtime/", run: "TestWorkflowFailsOverOnceAttemptsAreUsedUp",
	},
	{
		name: "workflows: a workflow may be started twice (16)",
		file: "runtime/workflow.go",
		old:  `		if ph := rec.GetStatus().GetPhase(); ph != statefunv1.WorkflowStatus_PHASE_UNSPECIFIED {`,
		new:  `		if ph := rec.GetStatus().GetPhase(); false {`,
		pkg:  "./runtime/", run: "TestWorkflowRunsItsStepsInOrderAndKeepsTheirHistory",
	},
}

func init() { mutants = append(mutants, workflowMutants...) }
