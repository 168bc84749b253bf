-- The registry of event types (store.Store.EventTypes): every event type
-- ever committed for each entity type. The runtime reads it at startup and
-- refuses to serve an entity type whose stored events its binary could not
-- apply, without scanning the journal.
--
-- Commit inserts a batch's pairs in the batch's own transaction
-- (register-event-types in queries.sql), so no event is stored under a
-- type missing here (INVARIANTS.md, invariant 9). A store sends only the
-- pairs it has not registered since it was opened: a type's first commit
-- per process pays one more statement in its pipeline, later ones nothing.
-- Rows are never deleted.
CREATE TABLE {{schema}}.event_types (
    entity_type text NOT NULL,
    event_type text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_type, event_type)
);

-- Fill it once from the journal already stored: one scan of the whole
-- events table, in this migration's transaction (plan for it on a large
-- journal, as for 0002). It only reads events, which blocks no writer.
-- Binaries that predate this table, still committing during a rolling
-- upgrade, register nothing; the first commit of such a type by a newer
-- binary does.
INSERT INTO {{schema}}.event_types (entity_type, event_type, first_seen_at)
SELECT entity_type, event_type, min(written_at)
FROM {{schema}}.events
GROUP BY entity_type, event_type;
