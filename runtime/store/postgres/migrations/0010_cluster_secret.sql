-- The secret the nodes of a cluster sign the calls they forward to each
-- other with (store.Cluster.Secret): a node acts on a forwarded call's
-- caller identity only when the call carries a token signed with it. The
-- first node to start records 32 random bytes; one is always true, so the
-- table holds a single row.
CREATE TABLE {{schema}}.cluster_secret (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    secret bytea NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
