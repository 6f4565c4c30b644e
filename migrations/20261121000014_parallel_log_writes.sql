-- Log writers run side by side, so the rows of one COPY can commit before those of a COPY
-- with smaller ids. Readers that resume "after id N" (the SSE stream's Last-Event-ID, the
-- orchestrator's live feed) must never step past an id whose write is still in flight.
--
-- A writer calls logs_begin_write(rows) before it copies: it reserves a block of `rows`
-- consecutive ids (the writer numbers its rows itself, so ids follow the order in which writes
-- reserve), and holds a shared advisory lock keyed by its floor, the last id allocated before
-- (every id it gets is larger), until its COPY has committed or its connection ends.
-- logs_settled_id() is the largest id up to which every write is settled (committed, or never
-- will be). It reads the sequence before the locks: a write that holds an id up to that value
-- had locked its floor before, so it is either still listed (its floor bounds the answer) or
-- has committed. A reader calls it in a statement of its own, then reads ids up to the answer
-- in a later statement, which sees every such commit.

CREATE FUNCTION logs_begin_write(rows bigint, OUT floor bigint, OUT first bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF rows < 1 THEN
        RAISE EXCEPTION 'logs_begin_write: rows must be at least 1, not %', rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Reservations take turns (until the end of this statement), so a block is consecutive.
    -- The two-key form keeps this lock apart from the floors' one-key locks.
    PERFORM pg_advisory_xact_lock(hashtext('logs'), 1);
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO floor FROM logs_id_seq;
    PERFORM pg_advisory_lock_shared(floor);
    first := nextval('logs_id_seq');
    IF rows > 1 THEN
        PERFORM setval('logs_id_seq', first + rows - 1);
    END IF;
END;
$$;

CREATE FUNCTION logs_settled_id() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    allocated bigint;
    in_flight bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO allocated FROM logs_id_seq;
    -- The one-bigint form of an advisory lock is shown as classid (high half), objid (low
    -- half), objsubid 1; only log writes take it in shared mode.
    SELECT min((l.classid::bigint << 32) | l.objid::bigint) INTO in_flight
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock' AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    RETURN least(allocated, coalesce(in_flight, allocated));
END;
$$;
