-- Timer changes by primary key, one timer at a time. As one statement
-- joining the timers with the batch's arrays, a change could be planned
-- as a hash join that reads every pending timer: Postgres keeps the plan
-- of a prepared statement that it made while the table was small (and
-- without autovacuum never makes another), so firing and cancelling got
-- slower with every timer pending. A loop of primary-key statements has
-- no plan that reads the table.
CREATE FUNCTION {{schema}}.cancel_timers(types text[], ids bytea[], names text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(types, 1), 0) LOOP
        DELETE FROM {{schema}}.timers
        WHERE entity_type = types[i] AND entity_id = ids[i] AND name = names[i];
    END LOOP;
END
$$;

-- finish_timers deletes each timer only if it is still the scheduling
-- that was delivered (its id): one scheduled again meanwhile stays.
CREATE FUNCTION {{schema}}.finish_timers(types text[], ids bytea[], names text[], schedulings bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(types, 1), 0) LOOP
        DELETE FROM {{schema}}.timers
        WHERE entity_type = types[i] AND entity_id = ids[i] AND name = names[i] AND id = schedulings[i];
    END LOOP;
END
$$;

-- retry_timers moves each timer, if it is still the same scheduling, to
-- its next attempt.
CREATE FUNCTION {{schema}}.retry_timers(types text[], ids bytea[], names text[], schedulings bigint[], dues timestamptz[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(types, 1), 0) LOOP
        UPDATE {{schema}}.timers SET due = dues[i], attempts = attempts + 1
        WHERE entity_type = types[i] AND entity_id = ids[i] AND name = names[i] AND id = schedulings[i];
    END LOOP;
END
$$;
