package main

// Eventing: publishers and subscriptions (INVARIANTS.md, invariant 18).
var eventingMutants = []mutant{
	{
		name: "eventing: a publisher moves past an event the broker did not store (18)",
		file: "runtime/eventing_run.go",
		old:  `	if err := p.batch.publish(ctx, msg); err != nil {`,
		new:  `	if err := p.batch.publish(ctx, msg); err != nil && false {`,
		pkg:  "./runtime/", run: "TestPublisherWaitsOutABrokerOutage",
	},
	{
		name: "eventing: a publisher publishes events it was not asked to (18)",
		file: "runtime/eventing_run.go",
		old:  `	return len(p.cfg.Events) == 0 || slices.Contains(p.cfg.Events, eventType)`,
		new:  `	return true`,
		pkg:  "./runtime/", run: "TestPublisherPublishesOnlyItsEvents|TestPublisherPublishesEventsInOrderPerEntity",
	},
	{
		name: "eventing: a redelivered message is applied again (18)",
		file: "runtime/eventing_run.go",
		old:  `	if d.ID != "" {`,
		new:  `	if d.ID != "" && false {`,
		pkg:  "./runtime/", run: "TestSubscriptionCallsOnceForARedeliveredMessage",
	},
	{
		name: "eventing: a message of another event type is decoded as the method's request (18)",
		file: "runtime/eventing_run.go",
		old:  `	if t, ok := d.Headers["ce-type"]; ok && s.cfg.Type != "" && t != s.cfg.Type {`,
		new:  `	if t, ok := d.Headers["ce-type"]; ok && s.cfg.Type != "" && t != s.cfg.Type && false {`,
		pkg:  "./runtime/", run: "TestSubscriptionTurnsPublishedEventsIntoCommands",
	},
	{
		name: "eventing: a message that keeps failing blocks its key forever (18)",
		file: "runtime/eventing_run.go",
		old:  `	case d.Attempt >= s.cfg.MaxAttempts:`,
		new:  `	case d.Attempt >= s.cfg.MaxAttempts && false:`,
		pkg:  "./runtime/", run: "TestSubscriptionRetriesThenDeadLetters",
	},
	{
		name: "eventing: a call forwarded to its entity's owner loses the ce-subject its entity comes from (18)",
		file: "runtime/cluster.go",
		old:  `		md.Set(SubjectHeader, subject[0])`,
		new:  `		_ = subject`,
		pkg:  "./runtime/", run: "TestEventingInACluster",
	},
}

func init() { mutants = append(mutants, eventingMutants...) }
