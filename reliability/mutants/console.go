package main

// Console: the state at a version, and the pages' escaping.
var consoleMutants = []mutant{
	{
		name: "console: the state at a version replays past it",
		file: "runtime/inspect.go",
		old:  `		if seq > 0 && e.Seq > seq {`,
		new:  `		if seq > 0 && e.Seq > seq && false {`,
		pkg:  "./runtime/", run: "TestInspectStateAtEachSeq",
	},
	{
		name: "console: a snapshot taken after the version asked for is replayed from",
		file: "runtime/inspect.go",
		old:  `	if found && (seq == 0 || snap.Seq <= seq) {`,
		new:  `	if found {`,
		pkg:  "./runtime/", run: "TestInspectStateAtEachSeq",
	},
	{
		name: "console: pages are rendered without HTML escaping",
		file: "runtime/internal/console/console.go",
		old:  `	"html/template"`,
		new:  `	template "text/template"`,
		pkg:  "./runtime/internal/console/", run: "TestHostileIDsAndStatesAreEscaped",
	},
	{
		name: "console: served on the public ports of a server that checks access",
		file: "runtime/server.go",
		old:  `	if consoleOn && c.adminListen == "" && rt.sec.guarded() {`,
		new:  `	if consoleOn && c.adminListen == "" && rt.sec.guarded() && false {`,
		pkg:  "./examples/bank/", run: "TestAccessEndToEnd",
	},
	{
		name: "console: a workflow's own state shows as the bytes its record keeps",
		file: "runtime/inspect.go",
		old:  `	runner := in.rt.workflows.get(typ)`,
		new:  `	var runner workflowRunner`,
		pkg:  "./runtime/", run: "TestInspectWorkflow",
	},
}

func init() { mutants = append(mutants, consoleMutants...) }
