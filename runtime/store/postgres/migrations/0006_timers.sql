-- Pending timers (store.Timers): calls that commands scheduled for later.
-- Commit writes them in the batch's own transaction; the holder of a
-- timer's shard fires it when due, then deletes it (finish-timers) or moves
-- it later (retry-timers), each only if id still names this scheduling:
-- a timer scheduled again under its name while it was being delivered
-- stays.
--
-- Nothing about a pending timer is kept in a server's memory: the due ones
-- are found through timers_due, walked in due order. The shard is checked
-- on the index entry, so a node skips other nodes' due timers without
-- reading their rows; those are few, since each owner fires its own.
CREATE TABLE {{schema}}.timers (
    entity_type text NOT NULL,
    entity_id bytea NOT NULL,
    name text NOT NULL,
    id bigint NOT NULL,
    shard integer NOT NULL,
    due timestamptz NOT NULL,
    call bytea NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_type, entity_id, name)
);

CREATE INDEX timers_due ON {{schema}}.timers (due, shard);
