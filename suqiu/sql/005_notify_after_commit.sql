-- Writers wake the relay after their commit, not inside it.
--
-- A transaction that NOTIFYs takes one lock for the whole database at commit and holds it
-- through its WAL flush, so every writer's commit waited for the flushes of the commits before
-- it: measured at 100 commands/s, waits of 20-600 ms on that lock whenever the disk was slow
-- to flush (log_lock_waits). Callers now pass channel NULL and notify in a transaction of its
-- own that does not wait for the flush (suqiu.store.events.WAKE_RELAY). Callers from before
-- this migration still pass the channel and still get the notification.
CREATE OR REPLACE FUNCTION append_commands(
    c_command_id text[], c_case_id text[], c_request_hash bytea[], c_result jsonb[],
    c_source_system text[], c_source_ref text[], e_first integer[], e_last integer[],
    e_seq integer[], e_event_id uuid[], e_event_type text[], e_occurred_at timestamptz[],
    e_recorded_at timestamptz[], e_data bytea[], e_hash bytea[], channel text
) RETURNS TABLE (refused_index integer, refused_by text)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    lo integer;
    hi integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(c_command_id, 1), 0) LOOP
        lo := e_first[i];
        hi := e_last[i];
        BEGIN
            INSERT INTO commands (command_id, case_id, request_hash, result)
            VALUES (c_command_id[i], c_case_id[i], c_request_hash[i], c_result[i]);
            IF c_source_system[i] IS NOT NULL THEN
                INSERT INTO source_refs (source_system, source_ref, case_id, command_id)
                VALUES (c_source_system[i], c_source_ref[i], c_case_id[i], c_command_id[i]);
            END IF;
            WITH stored AS (
                INSERT INTO events (case_id, seq, event_id, event_type, command_id, occurred_at, recorded_at,
                                    data, hash)
                SELECT c_case_id[i], u.seq, u.event_id, u.event_type, c_command_id[i], u.occurred_at,
                       u.recorded_at, u.data, u.hash
                  FROM unnest(e_seq[lo:hi], e_event_id[lo:hi], e_event_type[lo:hi], e_occurred_at[lo:hi],
                              e_recorded_at[lo:hi], e_data[lo:hi], e_hash[lo:hi])
                       AS u(seq, event_id, event_type, occurred_at, recorded_at, data, hash)
                 ORDER BY u.seq
                RETURNING position
            )
            INSERT INTO outbox (position) SELECT position FROM stored;
        EXCEPTION WHEN unique_violation THEN
            refused_index := i;
            GET STACKED DIAGNOSTICS refused_by = CONSTRAINT_NAME;
            RETURN NEXT;
        END;
    END LOOP;
    IF channel IS NOT NULL THEN  -- a caller from before this migration: it expects the notification here
        PERFORM pg_notify(channel, current_schema());
    END IF;
    RETURN;
END
$$;
