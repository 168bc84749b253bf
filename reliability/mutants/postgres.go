package main

// The Postgres store's plans: a check that reads a whole table works, so
// only a plan test sees it go wrong.
var postgresPlanMutants = []mutant{
	{
		name: "postgres: the gap check may read the whole events table (6)",
		file: "runtime/store/postgres/queries.sql",
		old: `    WHEN (
        SELECT true FROM {{schema}}.events AS p`,
		new: `    WHEN EXISTS (
        SELECT FROM {{schema}}.events AS p`,
		pkg: "./runtime/store/postgres/", run: "TestEventInsertProbesThePrimaryKey",
	},
}

func init() { mutants = append(mutants, postgresPlanMutants...) }
