-- Every statement the store runs, each under a "-- name:" line. {{schema}}
-- is replaced by the quoted schema name when a store is opened.

-- name: lock-migrations
-- Serialises migrations of one schema across processes; released when
-- the migrating transaction ends, so a crash cannot leave it held.
SELECT pg_advisory_xact_lock($1);

-- name: schema-exists
SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1);

-- name: create-schema
CREATE SCHEMA {{schema}};

-- name: migrations-table-exists
SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_migrations');

-- name: create-migrations-table
CREATE TABLE {{schema}}.schema_migrations (
    version int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied-migrations
SELECT version FROM {{schema}}.schema_migrations ORDER BY version;

-- name: record-migration
INSERT INTO {{schema}}.schema_migrations (version) VALUES ($1);

-- name: insert-events
-- One statement for the whole batch, which also keeps it from leaving a
-- gap (invariant 6). $6 marks the first event of each entity whose batch
-- starts past seq 1: its predecessor must be stored, or conflict_unless
-- aborts the transaction (SF409). Together with the primary key (no seq
-- stored twice) this is exactly "the first seq is the stored max + 1",
-- without reading max(seq). Checking here rather than in a statement of
-- its own saves that statement's work, and the probe reads the index
-- pages the row's insert then writes.
--
-- The probe is a scalar subquery inside a CASE on purpose: there the
-- planner must run it per row, as one primary-key probe, and only for the
-- marked rows. As a WHERE [NOT] EXISTS it may become an anti-join that
-- scans the whole events table, which made commits to a long-lived entity
-- slower with every event stored; and even inside the CASE an EXISTS may
-- be planned as a hashed subplan, which reads the whole table into a hash
-- on every commit (the planner chooses it when the table has no
-- statistics, as on a database without autovacuum: 30 ms per commit at
-- 20,000 events). A scalar subquery is never hashed; the primary key
-- makes it return at most one row. conflict_unless runs only when the
-- probe finds nothing, and raises; "IS NULL" just makes its void a
-- boolean.
--
-- The rows arrive sorted by key, so concurrent commits take index locks
-- in one order and cannot deadlock. feed_pos is the row's place in that
-- order (WITH ORDINALITY), which puts each entity's events of the batch
-- in seq order in the feed: feed order is (tx_id, feed_pos), and this is
-- the only statement that inserts events in the commit's transaction, so
-- the place orders all of that transaction's events. (The sequence
-- events_feed_pos, the column's default, serves older binaries; numbers
-- from it and places never meet in one transaction.) tx_id takes its
-- default, the transaction's ID.
INSERT INTO {{schema}}.events (entity_type, entity_id, seq, event_type, payload, feed_pos)
SELECT e.entity_type, e.entity_id, e.seq, e.event_type, e.payload, e.n
FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::text[], $5::bytea[], $6::boolean[])
    WITH ORDINALITY AS e (entity_type, entity_id, seq, event_type, payload, follows_stored, n)
WHERE CASE
    WHEN NOT e.follows_stored THEN true
    WHEN (
        SELECT true FROM {{schema}}.events AS p
        WHERE p.entity_type = e.entity_type AND p.entity_id = e.entity_id AND p.seq = e.seq - 1
    ) THEN true
    ELSE {{schema}}.conflict_unless(false, 'events') IS NULL
END
ORDER BY e.n;

-- name: register-event-types
-- The event types of the batch's events that this store has not
-- registered since it was opened (store.Store.EventTypes). It comes last
-- in the pipeline, so that a transaction holding a registry row's lock
-- waits for nothing but later rows of its own statement; the rows arrive
-- sorted, so concurrent commits lock them in one order. ON CONFLICT DO
-- NOTHING: another process (or a racing commit of this one) registering
-- the same pair is not a conflict.
INSERT INTO {{schema}}.event_types (entity_type, event_type)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING;

-- name: event-types
SELECT entity_type, event_type FROM {{schema}}.event_types
ORDER BY entity_type, event_type;

-- name: write-values
-- One row per entity: the last version of the batch, applied only where
-- the stored version is the one before the batch's first (0: no row yet).
-- An UPDATE that waited for a concurrent writer rechecks the version
-- against the row that writer left; an INSERT racing another INSERT fails
-- on the primary key. Any row not written aborts the transaction. Every
-- row written moves to this transaction's place in the feed (see below).
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bytea[])
        WITH ORDINALITY AS i (entity_type, entity_id, expected_version, version, payload, n)
),
updated AS (
    UPDATE {{schema}}.entity_values AS v
    SET version = i.version, payload = i.payload, written_at = now(),
        -- The place in the feed of the row's type (migration 0009): the
        -- transaction's ID, and the row's place in the input, as in
        -- insert-events: this is the only statement that writes values
        -- in the commit's transaction, so the place orders them all, and
        -- costs no sequence. A batch's values are of distinct entities:
        -- their order among themselves does not matter. (Events of the
        -- same transaction are numbered from 1 too, but in the feeds of
        -- other types: no type has both events and values.)
        tx_id = pg_current_xact_id(), feed_pos = i.n
    FROM input AS i
    WHERE i.expected_version > 0
        AND v.entity_type = i.entity_type AND v.entity_id = i.entity_id
        AND v.version = i.expected_version
    RETURNING 1
),
inserted AS (
    INSERT INTO {{schema}}.entity_values (entity_type, entity_id, version, payload, tx_id, feed_pos)
    SELECT entity_type, entity_id, version, payload, pg_current_xact_id(), n
    FROM input WHERE expected_version = 0
    RETURNING 1
)
SELECT {{schema}}.conflict_unless(
    (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted) = cardinality($1::text[]),
    'values'
);

-- name: event-heads
-- The stored max seq of each entity, in argument order: the follow-up
-- that names the entities of a failed commit.
SELECT coalesce((
    SELECT max(e.seq) FROM {{schema}}.events AS e
    WHERE e.entity_type = r.entity_type AND e.entity_id = r.entity_id
), 0)
FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS r (entity_type, entity_id, n)
ORDER BY r.n;

-- name: value-versions
SELECT coalesce((
    SELECT v.version FROM {{schema}}.entity_values AS v
    WHERE v.entity_type = r.entity_type AND v.entity_id = r.entity_id
), 0)
FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS r (entity_type, entity_id, n)
ORDER BY r.n;

-- name: read-events
SELECT seq, event_type, payload FROM {{schema}}.events
WHERE entity_type = $1 AND entity_id = $2 AND seq > $3
ORDER BY seq;

-- name: read-history
-- A page of an entity's history with the time each event was stored
-- (store.History): written_at is now() of the committing transaction,
-- so every event of one commit has the same time. The primary key
-- (entity_type, entity_id, seq) serves the range and the order.
SELECT seq, event_type, payload, written_at FROM {{schema}}.events
WHERE entity_type = $1 AND entity_id = $2 AND seq > $3
ORDER BY seq
LIMIT $4;

-- name: latest-snapshot
SELECT seq, payload FROM {{schema}}.snapshots
WHERE entity_type = $1 AND entity_id = $2;

-- name: save-snapshot
-- A late writer's older snapshot must not replace a newer one.
INSERT INTO {{schema}}.snapshots AS s (entity_type, entity_id, seq, payload)
VALUES ($1, $2, $3, $4)
ON CONFLICT (entity_type, entity_id) DO UPDATE
SET seq = excluded.seq, payload = excluded.payload, written_at = now()
WHERE s.seq < excluded.seq;

-- name: delete-snapshots
DELETE FROM {{schema}}.snapshots WHERE entity_type = $1;

-- name: load-value
SELECT version, payload FROM {{schema}}.entity_values
WHERE entity_type = $1 AND entity_id = $2;

-- name: read-feed
-- The events of a type after the position ($2, $3), in feed order, up to
-- the horizon: only transactions older than every transaction still
-- running. Any transaction that could yet commit an event is at or past
-- the horizon, so nothing this returns can be followed by an event that
-- belongs before it. The horizon is read once, from the snapshot the
-- rows come from.
--
-- The values of a key-value type (migration 0009) are merged in, under
-- the same conditions: the query does not know which kind the type is.
-- Each half walks its own index (events_feed, entity_values_feed) in
-- feed order and stops after $4 rows, and the planner merges the two
-- ordered streams (a Merge Append) and stops at $4: for an event-sourced
-- type the values half finds no row of the type at its first index probe.
-- A value row's seq is its version, its event type NULL (the store
-- names it). The horizon is one value for both halves: both subqueries
-- read pg_current_snapshot() of the statement's one snapshot.
(
    SELECT tx_id, feed_pos, entity_id, seq, event_type, payload
    FROM {{schema}}.events
    WHERE entity_type = $1
        AND (tx_id, feed_pos) > ($2::xid8, $3::bigint)
        AND tx_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
    ORDER BY tx_id, feed_pos
    LIMIT $4
)
UNION ALL
(
    SELECT tx_id, feed_pos, entity_id, version, NULL, payload
    FROM {{schema}}.entity_values
    WHERE entity_type = $1
        AND (tx_id, feed_pos) > ($2::xid8, $3::bigint)
        AND tx_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
    ORDER BY tx_id, feed_pos
    LIMIT $4
)
ORDER BY tx_id, feed_pos
LIMIT $4;

-- name: feed-horizon
-- The oldest transaction still running (or the next to start): every
-- event below it is committed, every later commit is at or past it.
SELECT pg_snapshot_xmin(pg_current_snapshot());

-- name: load-consumer-position
SELECT position FROM {{schema}}.consumer_positions
WHERE consumer = $1 AND entity_type = $2;

-- name: save-consumer-position
INSERT INTO {{schema}}.consumer_positions (consumer, entity_type, position)
VALUES ($1, $2, $3)
ON CONFLICT (consumer, entity_type) DO UPDATE
SET position = excluded.position, updated_at = now();

-- name: insert-outcomes
-- The batch's outcomes, sorted by key_hash so that concurrent commits
-- take index locks in one order. A stored outcome with the same key is
-- replaced only if it has expired; one that has not aborts the
-- transaction (SF409): the key is answered already, by another writer,
-- and the batch is refused. An INSERT racing another for a new key waits
-- for it and, if it commits, finds its row live. The CASE makes sure
-- conflict_unless runs only for a live row, and raises; "IS NULL" just
-- makes its void a boolean. Refusing from inside the statement spares
-- the RETURNING and the count of the rows written that would otherwise
-- tell a refused key from a written one.
INSERT INTO {{schema}}.outcomes AS o (expires, code, key_hash, entity_type, entity_id, key, message, reply)
SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::bytea[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[])
ON CONFLICT (key_hash) DO UPDATE
SET expires = excluded.expires, code = excluded.code,
    entity_type = excluded.entity_type, entity_id = excluded.entity_id, key = excluded.key,
    message = excluded.message, reply = excluded.reply
WHERE CASE
    WHEN o.expires < now() THEN true
    ELSE {{schema}}.conflict_unless(false, 'outcomes') IS NULL
END;

-- name: answered-outcomes
-- Whether each key is answered (stored and not expired), in argument
-- order: the follow-up that names the entities of a failed commit.
SELECT EXISTS (
    SELECT FROM {{schema}}.outcomes AS o
    WHERE o.key_hash = r.key_hash AND o.expires >= now()
)
FROM unnest($1::bytea[]) WITH ORDINALITY AS r (key_hash, n)
ORDER BY r.n;

-- name: load-outcome
-- key_hash finds the row; the other columns make sure it is this key's.
SELECT code, message, reply, expires FROM {{schema}}.outcomes
WHERE key_hash = $1 AND entity_type = $2 AND entity_id = $3 AND key = $4
    AND expires >= now();

-- name: expire-outcomes
-- One chunk, oldest first, found through the expires index and deleted by
-- row address (a TID scan). SKIP LOCKED lets expirers on several nodes
-- take different rows, and passes over a row a commit is replacing; the
-- outer test of expires is a second guard for the same.
DELETE FROM {{schema}}.outcomes
WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM {{schema}}.outcomes
        WHERE expires < $1
        ORDER BY expires
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    AND expires < $1;

-- name: record-shard-count
-- The first InitShards records its count; a later one, or one racing it,
-- waits for the first to commit and leaves its row alone.
INSERT INTO {{schema}}.cluster_config (shards) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: create-shard-leases
-- One lease row per recorded shard, whoever recorded the count. Runs
-- after record-shard-count, in a statement of its own: its snapshot sees
-- the row a racing InitShards committed while this one waited.
INSERT INTO {{schema}}.shard_leases (shard)
SELECT generate_series(0, shards - 1) FROM {{schema}}.cluster_config
ON CONFLICT (shard) DO NOTHING;

-- name: record-cluster-secret
-- The first node to start records its candidate; the others, racing it or
-- later, keep the recorded one.
INSERT INTO {{schema}}.cluster_secret (secret) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: cluster-secret
SELECT secret FROM {{schema}}.cluster_secret;

-- name: shard-count
SELECT shards FROM {{schema}}.cluster_config;

-- name: heartbeat
-- Registers or refreshes the node, and extends the leases it holds, in one
-- statement. started_at is kept from the first heartbeat of the node ID.
-- Lease rows are locked in shard order before they are updated, as by
-- every statement that locks them (see the package doc, "Cluster"), so
-- that a heartbeat and a commit of the same node cannot deadlock.
WITH member AS (
    INSERT INTO {{schema}}.cluster_nodes AS n (id, address, started_at, heartbeat)
    VALUES ($1, $2, coalesce($3::timestamptz, now()), now())
    ON CONFLICT (id) DO UPDATE SET address = excluded.address, heartbeat = excluded.heartbeat
),
held AS (
    SELECT shard FROM {{schema}}.shard_leases
    WHERE owner = $1
    ORDER BY shard
    FOR NO KEY UPDATE
)
UPDATE {{schema}}.shard_leases AS l
SET expires = now() + $4::bigint * interval '1 microsecond'
FROM held AS h
WHERE l.shard = h.shard AND l.owner = $1
RETURNING l.shard, l.owner, l.epoch, l.expires, now();

-- name: cluster-nodes
SELECT id, address, started_at, heartbeat, now() FROM {{schema}}.cluster_nodes ORDER BY id;

-- name: acquire-leases
-- Takes the named leases that are free, expired or already $1's, each with
-- a new epoch. The lock waits for commits in flight that checked the old
-- epoch (they hold the row FOR SHARE) and for a racing Acquire, and then
-- rechecks the condition on the row as they left it: of two nodes asking
-- for one free lease, the second finds it taken.
WITH takeable AS (
    SELECT shard FROM {{schema}}.shard_leases
    WHERE shard = ANY($2::bigint[]) AND (owner IS NULL OR owner = $1 OR expires < now())
    ORDER BY shard
    FOR NO KEY UPDATE
)
UPDATE {{schema}}.shard_leases AS l
SET owner = $1, epoch = l.epoch + 1, expires = now() + $3::bigint * interval '1 microsecond'
FROM takeable AS t
WHERE l.shard = t.shard
RETURNING l.shard, l.owner, l.epoch, l.expires, now();

-- name: release-leases
-- The epoch stays: the next Acquire raises it.
WITH held AS (
    SELECT shard FROM {{schema}}.shard_leases
    WHERE owner = $1 AND shard = ANY($2::bigint[])
    ORDER BY shard
    FOR NO KEY UPDATE
)
UPDATE {{schema}}.shard_leases AS l
SET owner = NULL, expires = now()
FROM held AS h
WHERE l.shard = h.shard AND l.owner = $1;

-- name: leave-cluster
-- The node's leases stay: it hands its shards off with Release once the
-- other nodes have seen it leave (store.Cluster.Leave).
DELETE FROM {{schema}}.cluster_nodes WHERE id = $1;

-- name: shard-leases
SELECT shard, owner, epoch, expires, now() FROM {{schema}}.shard_leases ORDER BY shard;

-- name: check-fence
-- The first statement of a fenced write: $1 must hold every lease named in
-- $2 at the epoch in $3, or the transaction aborts (SF412) naming those it
-- lost. FOR SHARE is the point: it waits for an Acquire in flight and
-- then reads the row as that left it, and it keeps any Acquire of these
-- rows waiting until the write's transaction has ended. A plain read
-- would see the epoch of its snapshot while a takeover commits beside it.
-- Rows are locked in shard order, like every other locker of leases.
WITH fence AS (
    SELECT * FROM unnest($2::bigint[], $3::bigint[]) AS f (shard, epoch)
),
held AS (
    SELECT shard, owner, epoch FROM {{schema}}.shard_leases
    WHERE shard = ANY($2::bigint[])
    ORDER BY shard
    FOR SHARE
)
SELECT {{schema}}.fenced_unless(coalesce(
    array_agg(DISTINCT f.shard ORDER BY f.shard)
        FILTER (WHERE h.shard IS NULL OR h.owner IS DISTINCT FROM $1::text OR h.epoch <> f.epoch),
    '{}'
))
FROM fence AS f LEFT JOIN held AS h ON h.shard = f.shard;

-- name: schedule-timers
-- The batch's last change to each timer that schedules it, sorted by key
-- (like the events, so that concurrent commits lock in one order). A
-- timer scheduled again replaces the pending one, attempts and all.
INSERT INTO {{schema}}.timers AS t (entity_type, entity_id, name, id, shard, due, call)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[], $5::integer[], $6::timestamptz[], $7::bytea[])
ON CONFLICT (entity_type, entity_id, name) DO UPDATE
SET id = excluded.id, shard = excluded.shard, due = excluded.due, call = excluded.call, attempts = 0;

-- name: cancel-timers
-- The batch's last change to each timer that cancels it; one primary-key
-- delete per timer (migration 0007 says why).
SELECT {{schema}}.cancel_timers($1::text[], $2::bytea[], $3::text[]);

-- name: due-timers
-- Walks timers_due from the earliest; a NULL $1 means every shard.
SELECT entity_type, entity_id, name, id, shard, due, call, attempts
FROM {{schema}}.timers
WHERE due <= $2 AND ($1::integer[] IS NULL OR shard = ANY($1::integer[]))
ORDER BY due
LIMIT $3;

-- name: next-timer-due
SELECT min(due) FROM {{schema}}.timers
WHERE $1::integer[] IS NULL OR shard = ANY($1::integer[]);

-- name: finish-timers
SELECT {{schema}}.finish_timers($1::text[], $2::bytea[], $3::text[], $4::bigint[]);

-- name: retry-timers
SELECT {{schema}}.retry_timers($1::text[], $2::bytea[], $3::text[], $4::bigint[], $5::timestamptz[]);

-- name: entity-timers
SELECT name, id, shard, due, call, attempts
FROM {{schema}}.timers
WHERE entity_type = $1 AND entity_id = $2
ORDER BY name;

-- name: lock-view
-- Serialises EnsureView and DropView of one view version across nodes:
-- the second of two nodes creating a version at once finds it created.
SELECT pg_advisory_xact_lock($1);

-- name: view-version
SELECT entity_type, columns FROM {{schema}}.view_versions
WHERE name = $1 AND version = $2;

-- name: insert-view-version
INSERT INTO {{schema}}.view_versions (name, version, entity_type, columns, table_name)
VALUES ($1, $2, $3, $4, $5);

-- name: view-versions
SELECT version, entity_type, columns, ready FROM {{schema}}.view_versions
WHERE name = $1
ORDER BY version;

-- name: mark-view-ready
UPDATE {{schema}}.view_versions SET ready = true
WHERE name = $1 AND version = $2;

-- name: delete-view-version
DELETE FROM {{schema}}.view_versions
WHERE name = $1 AND version = $2
RETURNING table_name;
