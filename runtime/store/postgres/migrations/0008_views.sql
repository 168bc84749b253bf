-- The catalog of views (store.Views): one row per version of a view, and
-- for each a table of its rows, which EnsureView creates (views.go): its
-- columns are the view's, so no migration can know them.
--
-- columns is the ViewDef's column list, [{"name", "kind", "repeated"}],
-- compared by EnsureView with the definition of a later call: a version
-- never changes its columns or source. table_name is the version's table
-- in this schema; UNIQUE, so that two names that map to one table (a
-- hash collision) fail instead of sharing it.
CREATE TABLE {{schema}}.view_versions (
    name text NOT NULL,
    version integer NOT NULL,
    entity_type text NOT NULL,
    columns jsonb NOT NULL,
    table_name text NOT NULL UNIQUE,
    ready boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
