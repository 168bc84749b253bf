package main

// Security: access rules and callers (INVARIANTS.md, invariant 19).
var securityMutants = []mutant{
	{
		name: "security: the method's access rules are not checked (19)",
		file: "runtime/security.go",
		old:  `	if p := s.policies[method]; p != nil && caller.kind != callerInternal {`,
		new:  `	if p := s.policies[method]; p != nil && caller.kind != callerInternal && false {`,
		pkg:  "./examples/bank/", run: "TestAccessEndToEnd",
	},
	{
		name: "security: a forwarded call is minted as the service's own, whoever called (19)",
		file: "runtime/security.go",
		old:  `	switch c := CallerOf(ctx); c.kind {`,
		new:  `	switch c := (Caller{kind: callerInternal}); c.kind {`,
		pkg:  "./runtime/", run: "TestForwardedCallKeepsItsCaller",
	},
	{
		name: "security: statefun's internal headers are accepted from outside (19)",
		file: "runtime/security.go",
		old:  `		if len(md.Get(h)) > 0 {`,
		new:  `		if len(md.Get(h)) > 0 && false {`,
		pkg:  "./runtime/", run: "TestInternalHeadersNeedAnInternalToken",
	},
	{
		name: "security: an in-process call acts for the caller of its context (19)",
		file: "runtime/conn.go",
		old:  `	ctx = context.WithValue(ctx, callerKey{}, Caller{kind: callerInternal})`,
		new:  `	_ = callerKey{}`,
		pkg:  "./runtime/", run: "TestInProcessCallsAreInternal",
	},
	{
		name: "security: a cached token is admitted after its exp (19)",
		file: "runtime/tokencache.go",
		old:  `	if expired := !now.Before(e.until); expired {`,
		new:  `	if expired := !now.Before(e.until); expired && false {`,
		pkg:  "./runtime/", run: "TestTokenCacheEndsAtExpiry",
	},
	{
		name: "security: anyone may call the runtime's own services (the workflow runner) (19)",
		file: "runtime/security.go",
		old:  `	if strings.HasPrefix(method, internalServicePrefix) && caller.kind != callerInternal {`,
		new:  `	if strings.HasPrefix(method, internalServicePrefix) && caller.kind != callerInternal && false {`,
		pkg:  "./runtime/", run: "TestRuntimeServicesAreInternalOnly",
	},
	{
		name: "security: forwarded calls are charged to the nodes' connection (19)",
		file: "runtime/security.go",
		old:  `	if hasInternal && !forwarded && !s.allowConn(ctx) {`,
		new:  `	if hasInternal && !s.allowConn(ctx) {`,
		pkg:  "./runtime/", run: "TestForwardedCallsSkipRateLimits",
	},
	{
		name: "security: a service call naming this service passes as its own (19)",
		file: "runtime/security.go",
		old:  `		case fwd && a.Service == s.name:`,
		new:  `		case a.Service == s.name:`,
		pkg:  "./runtime/", run: "TestServiceCallNamingThisServiceIsRefused",
	},
	{
		name: "security: a handler called in process passes its caller's headers on to the services it calls (19)",
		file: "runtime/conn.go",
		old:  `	ctx = metadata.NewOutgoingContext(ctx, metadata.MD{})`,
		new:  `	_ = metadata.MD{}`,
		pkg:  "./runtime/", run: "TestInProcessCallsAreInternal",
	},
}

func init() { mutants = append(mutants, securityMutants...) }
