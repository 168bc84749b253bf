package main

// Views (INVARIANTS.md, invariant 17).
var viewMutants = []mutant{
	{
		name: "views: an event already applied is applied again (17)",
		file: "runtime/view.go",
		old:  `	if exists && cur.Seq >= ec.seq {`,
		new:  `	if exists && cur.Seq >= ec.seq && false {`,
		pkg:  "./runtime/", run: "TestViewRepeatedEventsChangeNothing",
	},
	{
		name: "views: a version being built answers instead of the last complete one (17)",
		file: "runtime/view.go",
		old: `	if h.ready || len(h.complete) == 0 {
		return own, true
	}`,
		new: `	if true {
		return own, true
	}`,
		pkg: "./runtime/", run: "TestViewNewVersionIsBuiltWhileTheOldOneAnswers",
	},
	{
		name: "views: a query only an unfinished version can answer is answered from it (17)",
		file: "runtime/view.go",
		old:  `	return store.ViewDef{}, status.Errorf(codes.Unavailable, "view %q version %d is being built`,
		new: `	if true {
		return own, nil
	}
	return store.ViewDef{}, status.Errorf(codes.Unavailable, "view %q version %d is being built`,
		pkg: "./runtime/", run: "TestViewQueryOnlyAnUnfinishedVersionCanAnswerIsRefused",
	},
	{
		name: "views: a version created again resumes where a dropped one stopped (17)",
		file: "runtime/view.go",
		old:  `	if !slices.ContainsFunc(before, func(v store.ViewVersion) bool { return v.Def.Version == def.Version }) {`,
		new:  `	if false && !slices.ContainsFunc(before, func(v store.ViewVersion) bool { return v.Def.Version == def.Version }) {`,
		pkg:  "./runtime/", run: "TestViewVersionCreatedAgainIsBuiltFromTheStart",
	},
	{
		name: "views: a LIMIT over one answer is cut silently",
		file: "runtime/view.go",
		old:  `	if !paged && limit > maxViewPage {`,
		new:  `	if false {`,
		pkg:  "./runtime/", run: "TestViewLimitOverOneAnswerIsRefused",
	},
	{
		name: "views: a version that caught up never answers (17)",
		file: "runtime/consumer.go",
		old: `			if idle {
				r.caughtUp()
			}`,
		new: `			if idle && false {
				r.caughtUp()
			}`,
		pkg: "./runtime/", run: "TestViewNewVersionIsBuiltWhileTheOldOneAnswers",
	},
	{
		// Only a kill shows it: the events past the saved position are
		// still applied while the server runs. The test kills a server
		// it builds with go build, which sees the mutation through
		// GOFLAGS (mutant.try).
		name: "views: the updater's saved position passes events not yet applied (10, 17)",
		file: "runtime/consumer.go",
		old:  `	for n < len(r.pending) && r.pending[n].done {`,
		new:  `	for n < len(r.pending) {`,
		pkg:  "./reliability/", run: "TestViewCrashUnderLoad",
	},
	{
		name: "views: the memory store replaces a row by an older one (17)",
		file: "runtime/store/internal/viewmatch/table.go",
		old:  `	return !ok || r.Seq > e.seq`,
		new:  `	return true || !ok || r.Seq > e.seq`,
		pkg:  "./runtime/store/memory/", run: "TestConformance/ViewRowsKeepTheNewestSeq",
	},
	{
		name: "views: Postgres replaces a row by an older one (17)",
		file: "runtime/store/postgres/views.go",
		old:  `		" WHERE excluded.seq > t.seq"`,
		new:  `		""`,
		pkg:  "./runtime/store/postgres/", run: "TestConformance/ViewRowsKeepTheNewestSeq",
	},
	{
		name: "views: a batch refused for one row fails every row in it",
		file: "runtime/view.go",
		old:  `		if err != nil && len(batch) > 1 {`,
		new:  `		if err != nil && len(batch) > 1 && false {`,
		pkg:  "./runtime/", run: "TestViewBadRowFailsAlone",
	},
}

func init() { mutants = append(mutants, viewMutants...) }
