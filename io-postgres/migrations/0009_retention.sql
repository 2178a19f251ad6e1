-- EventCore event store, schema version 9: retention, the one sanctioned
-- way to physically remove events.
--
-- The log stays append-only for every path but one: the function
-- `remove_events` below, which a maintenance job (`PostgresStore::
-- apply_retention`, `eventcore retention run`) calls as the schema owner
-- or a maintenance role granted DELETE on `events`. It removes a prefix of
-- each stream it is given, records what it removed in `removed_ranges` and
-- the stream head's `removed_through`, and (optionally) copies the events
-- to `events_archive` first, all in the caller's transaction.
--
-- The mechanism: `remove_events` turns on the transaction-local setting
-- `eventcore.retention` for the length of its own work, and the
-- immutability trigger of migration 0001 lets a DELETE through only while
-- it is on. UPDATE and TRUNCATE stay refused always (SQLSTATE EV003). The
-- setting is no privilege: the least-privilege application role has no
-- DELETE on `events` (nor EXECUTE on `remove_events`), so it cannot remove
-- anything whatever it sets; the setting keeps the owner's own sessions
-- from removing events by any other path (a stray DELETE is refused).
--
-- Positions and versions never change: the events that stay keep theirs,
-- a stream's head keeps its version (a tombstoned stream removed whole
-- stays tombstoned and refuses appends), and readers are told what is gone
-- (`removed_through` on stream reads, `removed_ranges` on read_all).

-- Versions up to this were removed; 0 when none were. A constant default
-- rewrites nothing.
ALTER TABLE streams ADD COLUMN removed_through bigint NOT NULL DEFAULT 0;

-- One row per stream and removal: the stream's versions first_version ..
-- last_version, which had positions first_position .. last_position. Ranges
-- are disjoint sets of events, so their last positions are unique: the key
-- serves read_all, which reports the ranges ending in the page it answers.
CREATE TABLE removed_ranges (
    last_position bigint PRIMARY KEY,
    first_position bigint NOT NULL,
    stream_id text NOT NULL,
    first_version bigint NOT NULL,
    last_version bigint NOT NULL,
    reason text NOT NULL CHECK (reason IN ('max_age', 'max_count', 'tombstoned')),
    removed_at bigint NOT NULL,
    CHECK (first_version >= 1 AND last_version >= first_version),
    CHECK (first_position <= last_position)
);

-- Removed events, copied as they were, with when and why they were
-- removed. Written in the same transaction as the delete, so an event is
-- either still in `events` or here (when archiving was asked for).
CREATE TABLE events_archive (
    position bigint PRIMARY KEY,
    version bigint NOT NULL,
    decided_at bigint NOT NULL,
    event_id uuid NOT NULL,
    command_id uuid NOT NULL,
    correlation_id uuid,
    causation_id uuid,
    schema_version integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    stream_id text NOT NULL,
    event_type text NOT NULL,
    payload jsonb,
    user_metadata jsonb,
    payload_bin bytea,
    removed_at bigint NOT NULL,
    reason text NOT NULL
);

CREATE OR REPLACE FUNCTION reject_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('eventcore.retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'events are immutable: % on %.events is not allowed', TG_OP, TG_TABLE_SCHEMA
        USING ERRCODE = 'EV003',
              HINT = 'Events are removed only by the retention job (remove_events).';
END;
$$;

-- The head trigger of migrations 0006 and 0008, extended: `removed_through`
-- is written only by `remove_events` (the setting is on), only rises and
-- never passes the head.
CREATE OR REPLACE FUNCTION keep_stream_positions_rising() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_xid bigint;
BEGIN
    IF (TG_OP = 'INSERT' AND NEW.removed_through <> 0)
       OR (TG_OP = 'UPDATE' AND NEW.removed_through IS DISTINCT FROM OLD.removed_through) THEN
        IF current_setting('eventcore.retention', true) IS DISTINCT FROM 'on' THEN
            RAISE EXCEPTION 'the removed versions of stream % are written only by the retention job', NEW.stream_id
                USING ERRCODE = 'EV003';
        END IF;
        IF TG_OP = 'INSERT' OR NEW.removed_through < OLD.removed_through OR NEW.removed_through > NEW.version THEN
            RAISE EXCEPTION 'stream %: removed_through may only rise up to the head (% -> %, head %)', NEW.stream_id, OLD.removed_through, NEW.removed_through, NEW.version
                USING ERRCODE = 'EV003';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.deleted_at_version IS NOT NULL THEN
        IF NEW.deleted_at_version IS DISTINCT FROM OLD.deleted_at_version THEN
            RAISE EXCEPTION 'stream % was deleted by a tombstone at version %; the tombstone cannot be changed', NEW.stream_id, OLD.deleted_at_version
                USING ERRCODE = 'EV005', DETAIL = OLD.deleted_at_version::text || ' ' || NEW.stream_id;
        END IF;
        IF NEW.version <> OLD.version THEN
            RAISE EXCEPTION 'stream % was deleted by a tombstone at version %; it takes no more events', NEW.stream_id, OLD.deleted_at_version
                USING ERRCODE = 'EV005', DETAIL = OLD.deleted_at_version::text || ' ' || NEW.stream_id,
                      HINT = 'Nothing was written; a deleted stream stays deleted.';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.version = OLD.version THEN
            RETURN NEW;
        END IF;
    ELSIF NEW.version = 0 THEN
        RETURN NEW;
    END IF;
    v_xid := pg_current_xact_id()::text::bigint;
    IF TG_OP = 'UPDATE' AND OLD.last_xid > v_xid THEN
        RAISE EXCEPTION 'stream % was last written by transaction %, younger than this one (%): its new events would take global positions below the events before them', NEW.stream_id, OLD.last_xid, v_xid
            USING ERRCODE = '40001', HINT = 'Nothing was written; retry in a new transaction.';
    END IF;
    NEW.last_xid := v_xid;
    RETURN NEW;
END;
$$;

-- Removes, for each given stream, its events after its current
-- removed_through up to p_through (in stream-id order, each head locked
-- first, so two runs never interleave on one stream: the second finds the
-- versions gone and skips them). Returns one row per range removed.
-- SECURITY INVOKER: the caller needs DELETE on `events` (and INSERT on
-- `events_archive` to archive).
CREATE FUNCTION remove_events(
    p_stream_ids text[],
    p_through bigint[],
    p_reasons text[],
    p_removed_at bigint,
    p_archive boolean)
RETURNS TABLE (o_stream_id text, o_first_version bigint, o_last_version bigint,
               o_first_position bigint, o_last_position bigint, o_reason text, o_count bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
    v_from bigint;
    v_head bigint;
BEGIN
    PERFORM set_config('eventcore.retention', 'on', true);
    FOR r IN SELECT x.sid, x.through, x.why
               FROM unnest(p_stream_ids, p_through, p_reasons) AS x(sid, through, why)
              ORDER BY x.sid COLLATE "C" LOOP
        SELECT s.removed_through, s.version INTO v_from, v_head
          FROM streams s WHERE s.stream_id = r.sid FOR UPDATE;
        IF NOT FOUND OR r.through <= v_from THEN
            CONTINUE;
        END IF;
        IF r.through > v_head THEN
            RAISE EXCEPTION 'stream % has no version % to remove through (head %)', r.sid, r.through, v_head
                USING ERRCODE = '22023';
        END IF;
        IF p_archive THEN
            INSERT INTO events_archive (position, version, decided_at, event_id, command_id, correlation_id,
                causation_id, schema_version, recorded_at, stream_id, event_type, payload, user_metadata,
                payload_bin, removed_at, reason)
            SELECT e.position, e.version, e.decided_at, e.event_id, e.command_id, e.correlation_id,
                e.causation_id, e.schema_version, e.recorded_at, e.stream_id, e.event_type, e.payload,
                e.user_metadata, e.payload_bin, p_removed_at, r.why
              FROM events e
             WHERE e.stream_id = r.sid AND e.version > v_from AND e.version <= r.through;
        END IF;
        WITH gone AS (
            DELETE FROM events e
             WHERE e.stream_id = r.sid AND e.version > v_from AND e.version <= r.through
            RETURNING e.position)
        SELECT min(g.position), max(g.position), count(*) INTO o_first_position, o_last_position, o_count
          FROM gone g;
        UPDATE streams SET removed_through = r.through WHERE stream_id = r.sid;
        IF o_count > 0 THEN
            INSERT INTO removed_ranges (last_position, first_position, stream_id, first_version, last_version,
                reason, removed_at)
            VALUES (o_last_position, o_first_position, r.sid, v_from + 1, r.through, r.why, p_removed_at);
        END IF;
        o_stream_id := r.sid;
        o_first_version := v_from + 1;
        o_last_version := r.through;
        o_reason := r.why;
        RETURN NEXT;
    END LOOP;
    -- Off again, so that nothing later in the caller's transaction can
    -- delete events.
    PERFORM set_config('eventcore.retention', 'off', true);
END;
$$;
