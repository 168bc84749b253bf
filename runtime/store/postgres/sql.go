package postgres

import (
	_ "embed"
	"fmt"
	"strings"
)

// schemaPlaceholder stands for the quoted schema name in queries.sql and
// the migrations. Only pgx.Identifier's quoting of a name that passed
// validSchemaName ever replaces it, so no caller text reaches the SQL.
const schemaPlaceholder = "{{schema}}"

//go:embed queries.sql
var queriesSQL string

// namedQueries is queries.sql split at its "-- name:" lines. A malformed
// file is a bug in this package, caught by any test, hence the panic.
var namedQueries = mustParseQueries(queriesSQL)

// statements holds every query the store runs, with its schema filled in.
// The text is fixed per store, so pgx prepares each statement once per
// connection and later commits send only Bind and Execute.
type statements struct {
	lockMigrations        string
	schemaExists          string
	createSchema          string
	migrationsTableExists string
	createMigrationsTable string
	appliedMigrations     string
	recordMigration       string

	insertEvents       string
	registerEventTypes string
	eventTypes         string
	writeValues        string
	eventHeads         string
	valueVersions      string

	insertOutcomes   string
	answeredOutcomes string
	loadOutcome      string
	expireOutcomes   string

	readEvents      string
	readHistory     string
	latestSnapshot  string
	saveSnapshot    string
	deleteSnapshots string
	loadValue       string

	readFeed             string
	feedHorizon          string
	loadConsumerPosition string
	saveConsumerPosition string

	recordShardCount  string
	createShardLeases string
	shardCount        string
	recordSecret      string
	clusterSecret     string
	heartbeat         string
	clusterNodes      string
	acquireLeases     string
	releaseLeases     string
	leaveCluster      string
	shardLeases       string
	checkFence        string

	scheduleTimers string
	cancelTimers   string
	dueTimers      string
	nextTimerDue   string
	finishTimers   string
	retryTimers    string
	entityTimers   string

	lockView          string
	viewVersion       string
	insertViewVersion string
	viewVersions      string
	markViewReady     string
	deleteViewVersion string
}

func newStatements(quotedSchema string) *statements {
	q := func(name string) string {
		sql, ok := namedQueries[name]
		if !ok {
			panic(fmt.Sprintf("postgres: queries.sql has no query named %q", name))
		}
		return strings.ReplaceAll(sql, schemaPlaceholder, quotedSchema)
	}
	return &statements{
		lockMigrations:        q("lock-migrations"),
		schemaExists:          q("schema-exists"),
		createSchema:          q("create-schema"),
		migrationsTableExists: q("migrations-table-exists"),
		createMigrationsTable: q("create-migrations-table"),
		appliedMigrations:     q("applied-migrations"),
		recordMigration:       q("record-migration"),

		insertEvents:       q("insert-events"),
		registerEventTypes: q("register-event-types"),
		eventTypes:         q("event-types"),
		writeValues:        q("write-values"),
		eventHeads:         q("event-heads"),
		valueVersions:      q("value-versions"),

		insertOutcomes:   q("insert-outcomes"),
		answeredOutcomes: q("answered-outcomes"),
		loadOutcome:      q("load-outcome"),
		expireOutcomes:   q("expire-outcomes"),

		readEvents:      q("read-events"),
		readHistory:     q("read-history"),
		latestSnapshot:  q("latest-snapshot"),
		saveSnapshot:    q("save-snapshot"),
		deleteSnapshots: q("delete-snapshots"),
		loadValue:       q("load-value"),

		readFeed:             q("read-feed"),
		feedHorizon:          q("feed-horizon"),
		loadConsumerPosition: q("load-consumer-position"),
		saveConsumerPosition: q("save-consumer-position"),

		recordShardCount:  q("record-shard-count"),
		createShardLeases: q("create-shard-leases"),
		shardCount:        q("shard-count"),
		recordSecret:      q("record-cluster-secret"),
		clusterSecret:     q("cluster-secret"),
		heartbeat:         q("heartbeat"),
		clusterNodes:      q("cluster-nodes"),
		acquireLeases:     q("acquire-leases"),
		releaseLeases:     q("release-leases"),
		leaveCluster:      q("leave-cluster"),
		shardLeases:       q("shard-leases"),
		checkFence:        q("check-fence"),

		scheduleTimers: q("schedule-timers"),
		cancelTimers:   q("cancel-timers"),
		dueTimers:      q("due-timers"),
		nextTimerDue:   q("next-timer-due"),
		finishTimers:   q("finish-timers"),
		retryTimers:    q("retry-timers"),
		entityTimers:   q("entity-timers"),

		lockView:          q("lock-view"),
		viewVersion:       q("view-version"),
		insertViewVersion: q("insert-view-version"),
		viewVersions:      q("view-versions"),
		markViewReady:     q("mark-view-ready"),
		deleteViewVersion: q("delete-view-version"),
	}
}

func mustParseQueries(src string) map[string]string {
	queries, err := parseQueries(src)
	if err != nil {
		panic("postgres: queries.sql: " + err.Error())
	}
	return queries
}

// parseQueries splits src at lines "-- name: <name>". Each query runs to
// the next such line; lines before the first name are the file's header.
func parseQueries(src string) (map[string]string, error) {
	const marker = "-- name:"
	queries := map[string]string{}
	var name string
	var body strings.Builder
	flush := func() error {
		if name == "" {
			return nil
		}
		sql := strings.TrimSuffix(strings.TrimSpace(body.String()), ";")
		if sql == "" {
			return fmt.Errorf("query %q is empty", name)
		}
		if _, dup := queries[name]; dup {
			return fmt.Errorf("query %q is defined twice", name)
		}
		queries[name] = sql
		return nil
	}
	for line := range strings.Lines(src) {
		if rest, ok := strings.CutPrefix(line, marker); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = strings.TrimSpace(rest)
			if name == "" {
				return nil, fmt.Errorf("%q line without a name", marker)
			}
			body.Reset()
			continue
		}
		body.WriteString(line)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return queries, nil
}
