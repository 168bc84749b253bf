-- Feeds of key-value entity types (store.Feed): each entity's latest
-- value, at the place of the commit that wrote it, ordered like the
-- events of 0002_feed.sql, so that ReadFeed merges the two and one
-- Position serves both.
--
-- tx_id is the ID of the transaction that wrote the row's current value,
-- feed_pos orders it within that transaction. Commit sets both on every
-- write (write-values in queries.sql), so a rewrite moves the entity to
-- the place of its new commit: the feed is compacted, one row per entity,
-- and the horizon of invariant 10 applies to it as to the events. The
-- numbers need only be distinct within a transaction, as tx_id comes
-- first: Commit numbers its values 1, 2..., and the defaults below take
-- them from the events' sequence.
--
-- A stable default, as for the events: the existing rows all get this
-- migration's transaction ID, below that of every later commit, so a
-- view built later finds every value stored before it. Their feed_pos
-- is taken row by row. The defaults also serve an older statefun still
-- inserting values during a rolling upgrade.
ALTER TABLE {{schema}}.entity_values
    ADD COLUMN tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN feed_pos bigint NOT NULL DEFAULT nextval('{{schema}}.events_feed_pos');

-- An older statefun's UPDATE of a value sets neither column, and would
-- leave the row at its old place, behind readers that passed it: they
-- would never see the new value. The trigger moves such a row as
-- write-values does. Its WHEN is checked without calling the function,
-- and is false for write-values' own updates (they set tx_id to their
-- transaction's ID, which the row, written by an earlier one, cannot
-- hold), so they pay nothing for it.
CREATE FUNCTION {{schema}}.entity_values_move_in_feed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx_id := pg_current_xact_id();
    NEW.feed_pos := nextval('{{schema}}.events_feed_pos');
    RETURN NEW;
END
$$;
CREATE TRIGGER entity_values_move_in_feed
    BEFORE UPDATE ON {{schema}}.entity_values
    FOR EACH ROW
    WHEN (OLD.tx_id = NEW.tx_id AND OLD.feed_pos = NEW.feed_pos)
    EXECUTE FUNCTION {{schema}}.entity_values_move_in_feed();

CREATE INDEX entity_values_feed ON {{schema}}.entity_values (entity_type, tx_id, feed_pos);
