-- Feeds (DESIGN invariant 10): each entity type's events in an order
-- consumers can follow without ever skipping one that commits late.
--
-- tx_id is the ID of the transaction that wrote the event. A reader
-- returns only events whose tx_id is below the xmin of its snapshot (the
-- oldest transaction still running), in (tx_id, feed_pos) order: every
-- transaction that could still add an event below a position it returns
-- has then finished. feed_pos orders the events of one transaction; a
-- sequence alone would not do, as its values are taken in one order and
-- committed in another. See the package doc.
--
-- Each connection takes values from the sequence 1000 at a time (CACHE),
-- so a commit rarely touches the shared sequence; feed_pos still grows
-- within every transaction, which is all the order needs, as tx_id comes
-- first. A closed connection leaves a gap, which costs nothing.
CREATE SEQUENCE {{schema}}.events_feed_pos AS bigint CACHE 1000;

-- A stable default: the existing rows all get this migration's
-- transaction ID, which is below that of every later commit.
ALTER TABLE {{schema}}.events
    ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN feed_pos bigint;

-- Number the existing events in the order they were written, as far as
-- written_at (the time its transaction began) tells. Two commits of one
-- entity can carry written_at out of seq order (the later one began
-- first), so each event sorts by the latest written_at of its entity's
-- history up to it: that keeps every history in seq order.
UPDATE {{schema}}.events AS e
SET feed_pos = o.pos
FROM (
    SELECT entity_type, entity_id, seq,
        row_number() OVER (ORDER BY written_upto, entity_type, entity_id, seq) AS pos
    FROM (
        SELECT entity_type, entity_id, seq,
            max(written_at) OVER (PARTITION BY entity_type, entity_id ORDER BY seq) AS written_upto
        FROM {{schema}}.events
    ) AS w
) AS o
WHERE e.entity_type = o.entity_type AND e.entity_id = o.entity_id AND e.seq = o.seq;

SELECT setval('{{schema}}.events_feed_pos', coalesce(max(feed_pos), 0) + 1, false)
FROM {{schema}}.events;

-- Commit sets feed_pos itself (insert-events in queries.sql); the default
-- serves anything else that inserts events, such as an older statefun
-- still running during a rolling upgrade.
ALTER TABLE {{schema}}.events
    ALTER COLUMN feed_pos SET DEFAULT nextval('{{schema}}.events_feed_pos'),
    ALTER COLUMN feed_pos SET NOT NULL;
ALTER SEQUENCE {{schema}}.events_feed_pos OWNED BY {{schema}}.events.feed_pos;

CREATE INDEX events_feed ON {{schema}}.events (entity_type, tx_id, feed_pos);

-- Where each consumer stopped reading each feed: a Position, opaque text
-- the store made.
CREATE TABLE {{schema}}.consumer_positions (
    consumer text NOT NULL,
    entity_type text NOT NULL,
    position text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, entity_type)
);
