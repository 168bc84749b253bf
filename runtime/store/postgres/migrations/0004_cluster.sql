-- The cluster (store.Cluster): several statefun nodes on one database.
-- Entities map to a fixed number of shards; a node serves a shard only
-- while it holds the shard's lease, and every write for a shard checks the
-- lease's epoch in its own transaction (see the package doc, "Cluster").
-- Every time in these tables is the database server's clock (now()), so
-- that nodes never compare their own clocks with each other's.

-- The shard count, recorded once by the first node to start: changing it
-- would move entities between shards under their owners. one is always
-- true, so the primary key admits a single row.
CREATE TABLE {{schema}}.cluster_config (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    shards int NOT NULL CHECK (shards > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The members. id is the node's advertised address, so a restarted node
-- finds its own row (and started_at says when it first joined); heartbeat
-- is renewed with the node's leases.
CREATE TABLE {{schema}}.cluster_nodes (
    id text PRIMARY KEY,
    address text NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL
);

-- One row per shard, created by InitShards. owner is NULL while no node
-- holds the lease (never held, or released); expires is NULL only for a
-- lease never held. epoch grows by one with every Acquire and never goes
-- back, so (owner, epoch) names one tenure: a write fenced with it is
-- refused once the lease has moved on, even back to the same node.
CREATE TABLE {{schema}}.shard_leases (
    shard int PRIMARY KEY CHECK (shard >= 0),
    owner text,
    epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires timestamptz
);

-- fenced_unless aborts the transaction with SQLSTATE SF412 when a fenced
-- write finds that its writer lost some of the leases it named. lost, the
-- shards concerned, travels in the error's DETAIL as an array literal
-- ({1,3}), so that the store names them without a second query. A
-- distinct code keeps a fenced writer apart from a conflict (SF409) and
-- every other failure.
CREATE FUNCTION {{schema}}.fenced_unless(lost bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(lost) > 0 THEN
        RAISE EXCEPTION 'statefun: the writer no longer holds the lease of shards %', lost
            USING ERRCODE = 'SF412',
                  DETAIL = lost::text,
                  HINT = 'another node owns these shards now; stop serving them';
    END IF;
END
$$;
