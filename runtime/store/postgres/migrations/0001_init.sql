-- The journal, key-value state and snapshots. {{schema}} is replaced by the
-- quoted schema name before this runs; nothing else is substituted.
--
-- Entity IDs are bytea, not text: a store.Ref ID is any Go string, and
-- Postgres text can hold neither NUL bytes nor invalid UTF-8. bytea keeps
-- every ID byte for byte, with no escaping to get wrong, and compares
-- bytewise, independent of the database's collation. Type names stay text:
-- they are identifiers from the proto annotations, and readable in psql.
-- To look at an ID by hand: convert_from(entity_id, 'UTF8').

-- The primary key is the fence (DESIGN invariant 6): a second writer of
-- the same entity fails on it with unique_violation instead of adding a
-- second history. There is deliberately no global position column: a
-- BIGSERIAL read with "pos > $last" skips events that commit late, so it
-- must never become a subscription cursor (invariant 10).
CREATE TABLE {{schema}}.events (
    entity_type text NOT NULL,
    entity_id bytea NOT NULL,
    seq bigint NOT NULL CHECK (seq > 0),
    event_type text NOT NULL,
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, entity_id, seq)
);

-- The state of key-value entities, one row per entity. Named
-- entity_values because VALUES is a reserved word.
CREATE TABLE {{schema}}.entity_values (
    entity_type text NOT NULL,
    entity_id bytea NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, entity_id)
);

-- Only the newest snapshot of each entity is kept: snapshots are an
-- optimisation (invariant 7), and older ones would never be read.
CREATE TABLE {{schema}}.snapshots (
    entity_type text NOT NULL,
    entity_id bytea NOT NULL,
    seq bigint NOT NULL,
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, entity_id)
);

-- conflict_unless aborts the transaction with SQLSTATE SF409 when a commit
-- finds history that is not what its batch expected. A distinct code lets
-- the store tell a fenced writer from any other failure, and raising it
-- inside the commit's transaction is what keeps the commit all or nothing
-- in one round trip.
CREATE FUNCTION {{schema}}.conflict_unless(ok boolean, records text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'statefun: % of the batch do not follow the stored history', records
            USING ERRCODE = 'SF409',
                  HINT = 'another writer changed these entities; reload them';
    END IF;
END
$$;
