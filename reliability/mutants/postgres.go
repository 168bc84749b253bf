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
	{
		name: "postgres: finishing timers may read the whole timers table (15)",
		file: "runtime/store/postgres/queries.sql",
		old:  `SELECT {{schema}}.finish_timers($1::text[], $2::bytea[], $3::text[], $4::bigint[]);`,
		new: `DELETE FROM {{schema}}.timers AS t
USING unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[]) AS d (entity_type, entity_id, name, id)
WHERE t.entity_type = d.entity_type AND t.entity_id = d.entity_id AND t.name = d.name AND t.id = d.id;`,
		pkg: "./runtime/store/postgres/", run: "TestTimerChangesProbeThePrimaryKey",
	},
}

func init() { mutants = append(mutants, postgresPlanMutants...) }
