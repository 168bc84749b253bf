-- Outcomes of commands that carried an idempotency key (store.Outcome):
-- the answer a retry with the same key gets instead of running the
-- command again. Commit writes them in the transaction of the batch that
-- answered them.
--
-- The primary key is a digest, not (entity_type, entity_id, key): a
-- btree entry holds at most about 2700 bytes, and entity IDs of up to
-- 2048 bytes, keys of up to 256 and a type name would come close to that
-- or past it, failing the commit of whichever entity was unlucky. The
-- digest keeps every index entry at 16 bytes, whatever the entity, and
-- makes the index a fraction of the size. It is the first 16 bytes of
--
--   sha256(int4send(octet_length(convert_to(entity_type, 'UTF8'))) || convert_to(entity_type, 'UTF8')
--       || int4send(length(entity_id)) || entity_id || key)
--
-- (the lengths keep every split of the same bytes into type, ID and key
-- apart). The store computes it, and LoadOutcome still compares the
-- entity and key columns, so even a collision, at odds of about 2^-65
-- with 2^32 keys kept, would make a key conflict but never return
-- another key's answer. The entity and key stay in the row so that an
-- outcome can be read, and found by entity, in psql.
--
-- The primary key is the fence on keys: a second writer answering a key
-- already answered finds the row, and Commit refuses its batch unless the
-- row has expired. expires is read on the database server's clock (now()),
-- so every node agrees on it.
--
-- Fixed-width columns come first: that leaves no alignment padding in
-- the row. key, message and reply are bytea because a Go string may hold
-- NUL bytes, which text cannot; code is a uint32, hence bigint.
CREATE TABLE {{schema}}.outcomes (
    expires timestamptz NOT NULL,
    code bigint NOT NULL CHECK (code BETWEEN 0 AND 4294967295),
    key_hash bytea PRIMARY KEY,
    entity_type text NOT NULL,
    entity_id bytea NOT NULL,
    key bytea NOT NULL,
    message bytea NOT NULL,
    reply bytea NOT NULL
);

-- ExpireOutcomes deletes in chunks from the oldest expiry.
CREATE INDEX outcomes_expires ON {{schema}}.outcomes (expires);
