-- EventCore event store, schema version 1.
--
-- Runs with `search_path` set to the store's own schema, so every name below
-- is created there; functions pin that schema with `SET search_path FROM
-- CURRENT` so they work from any session.
--
-- Global positions are `(xid8 << 20) | index`: the writing transaction's id
-- and the event's index within that transaction. Readers only return events
-- of transactions older than their snapshot's xmin (see ARCHITECTURE.md,
-- "PostgreSQL global order").

-- One row per stream: its version (0: no events yet; a pure version check
-- on a missing stream leaves a row at version 0 so that it can be locked).
--
-- Every append rewrites its heads' rows: free room on each page (fillfactor)
-- lets those updates stay on the page (HOT) without a new index entry.
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 0)
) WITH (fillfactor = 70);

-- One row per event. The metadata of the append that wrote it (the same for
-- all its events) is kept in plain columns rather than one JSON document, so
-- that reading it back costs no JSON at all; `user_metadata` is NULL when the
-- caller supplied no key/values, and `correlation_id` is NULL when it is the
-- command id (the default), which saves 16 bytes per event in the common
-- case. `decided_at` is the driver's clock in Unix nanoseconds (an unsigned
-- value stored bit for bit in a bigint).
CREATE TABLE events (
    position bigint PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 1),
    decided_at bigint NOT NULL,
    event_id uuid NOT NULL,
    command_id uuid NOT NULL,
    correlation_id uuid,
    causation_id uuid,
    schema_version integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    stream_id text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    user_metadata jsonb,
    UNIQUE (stream_id, version)
);

-- Idempotency: one row per committed append. The receipt is rebuilt from the
-- events at positions (xid << 20) + first_index .. + event_count.
CREATE TABLE commands (
    command_id uuid PRIMARY KEY,
    xid bigint NOT NULL,
    first_index integer NOT NULL,
    event_count integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Events are immutable: the database itself refuses to change them.
CREATE FUNCTION reject_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on %.events is not allowed', TG_OP, TG_TABLE_SCHEMA
        USING ERRCODE = 'EV003';
END;
$$;

CREATE TRIGGER events_are_immutable
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION reject_event_change();

CREATE TRIGGER events_are_not_truncated
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION reject_event_change();

-- The receipt of the append that claimed p_command_id: its transaction id,
-- the index of its first event in that transaction, and for each stream it
-- wrote (in position order) the stream id, first version and event count,
-- rebuilt from the events at its recorded positions. No row for an unknown
-- id. Shared by append(), append_batch() and the store's single-statement
-- append; STABLE, so it reads with its caller's snapshot.
CREATE FUNCTION stored_receipt(p_command_id uuid)
RETURNS TABLE (xid bigint, first_index integer, stream_ids text[], first_versions bigint[], counts integer[])
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT c.xid, c.first_index, g.stream_ids, g.first_versions, g.counts
      FROM commands c
      CROSS JOIN LATERAL (
          SELECT array_agg(s.stream_id ORDER BY s.first_position) AS stream_ids,
                 array_agg(s.first_version ORDER BY s.first_position) AS first_versions,
                 array_agg(s.n ORDER BY s.first_position) AS counts
            FROM (SELECT e.stream_id, min(e.position) AS first_position,
                         min(e.version) AS first_version, count(*)::integer AS n
                    FROM events e
                   WHERE e.position >= (c.xid << 20) + c.first_index
                     AND e.position < (c.xid << 20) + c.first_index + c.event_count
                   GROUP BY e.stream_id) s
      ) g
     WHERE c.command_id = p_command_id;
$$;

-- Raises the version conflict of the stream at 1-based request index
-- p_index, as append() does. The store's single-statement append (see
-- `Statements::append_alone` in store.rs) calls it for the first stream whose
-- expected version does not hold, which rolls the whole statement back.
CREATE FUNCTION version_conflict(p_index integer, p_stream text, p_actual bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'version conflict on stream %', p_stream
        USING ERRCODE = 'EV001', DETAIL = p_index::text || ' ' || p_actual::text;
END;
$$;

-- Appends atomically to several streams; one call is one round trip.
--
-- Arguments: the command id and the append's metadata; then parallel arrays
-- per stream (request order): its id, the expected-version kind (0 any, 1 no
-- stream, 2 stream exists, 3 exact), the exact version and its event count;
-- `p_lock_order`, the 1-based stream indexes sorted by stream id bytewise
-- (the order of the "C" collation: every caller locks heads in this one
-- global order; a caller passing another order risks only a deadlock, which
-- PostgreSQL detects and rolls back); then per event (request order) its
-- stream (1-based index), its 1-based offset among its stream's events, id,
-- type, schema version and JSON text. The caller computes the lock order and
-- the offsets because it has them for free, and the function then runs no
-- sort of its own.
--
-- Steps: (1) claim the command id (a concurrent append with the same id waits
-- here for the first to finish, then finds its receipt); (2) lock every
-- stream head in the global order, advancing written heads (UPDATE) and
-- share-locking checked ones, creating missing heads; (3) check every
-- expected version, raising EV001 with "index actual" in DETAIL on the first
-- mismatch in request order (which rolls back everything); (4) insert the
-- events. Every statement finds its rows by key: the cost does not grow with
-- the number of streams or events stored.
--
-- Answers one row: on a fresh append `heads` (each stream's version before
-- the append, request order); on a re-sent command id `deduplicated` and the
-- stored receipt (`stream_ids`, `first_versions`, `counts` of the written
-- streams in position order). Events take positions (xid << 20) + first_index
-- onwards in request order.
CREATE FUNCTION append(
    p_command_id uuid,
    p_correlation_id uuid,
    p_causation_id uuid,
    p_decided_at bigint,
    p_user_metadata jsonb,
    p_streams text[],
    p_lock_order integer[],
    p_expected_kind smallint[],
    p_expected_version bigint[],
    p_counts integer[],
    p_event_stream integer[],
    p_event_offset integer[],
    p_event_ids uuid[],
    p_event_types text[],
    p_schema_versions integer[],
    p_payloads text[]
) RETURNS TABLE (
    deduplicated boolean,
    xid bigint,
    first_index integer,
    heads bigint[],
    stream_ids text[],
    first_versions bigint[],
    counts integer[]
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_xid bigint := pg_current_xact_id()::text::bigint;
    v_base bigint := v_xid << 20;
    v_total integer := coalesce(cardinality(p_event_ids), 0);
    v_first integer;
    v_heads bigint[] := array_fill(0::bigint, ARRAY[cardinality(p_streams)]);
    v_head bigint;
    v_kind smallint;
    i integer;
BEGIN
    -- Index of the first event within this transaction: 0 unless the
    -- caller's transaction already appended. The count of events appended so
    -- far lives in a transaction-local setting (a rolled-back subtransaction
    -- rolls it back together with its events), which costs no query.
    v_first := coalesce(nullif(current_setting('eventcore.appended_in_transaction', true), '')::integer, 0);
    IF v_first + v_total > 1048576 THEN
        RAISE EXCEPTION 'more than 1048576 events in one transaction' USING ERRCODE = 'EV002';
    END IF;

    INSERT INTO commands (command_id, xid, first_index, event_count)
    VALUES (p_command_id, v_xid, v_first, v_total)
    ON CONFLICT (command_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT true, r.xid, r.first_index, NULL::bigint[], r.stream_ids, r.first_versions, r.counts
          FROM stored_receipt(p_command_id) r;
        RETURN;
    END IF;
    PERFORM set_config('eventcore.appended_in_transaction', (v_first + v_total)::text, true);

    -- Lock every head in the global order. A written stream's head is
    -- advanced right away (UPDATE takes the row lock, and a conflict below
    -- rolls it back); a checked-only stream is locked FOR SHARE. A missing
    -- head is created, at its final version when written, else at 0.
    FOREACH i IN ARRAY p_lock_order LOOP
        IF p_counts[i] > 0 THEN
            UPDATE streams h SET version = h.version + p_counts[i]
             WHERE h.stream_id = p_streams[i]
            RETURNING h.version - p_counts[i] INTO v_head;
            IF NOT FOUND THEN
                INSERT INTO streams (stream_id, version) VALUES (p_streams[i], p_counts[i])
                ON CONFLICT (stream_id) DO NOTHING;
                IF FOUND THEN
                    v_head := 0;
                ELSE
                    -- Created concurrently and committed meanwhile.
                    UPDATE streams h SET version = h.version + p_counts[i]
                     WHERE h.stream_id = p_streams[i]
                    RETURNING h.version - p_counts[i] INTO v_head;
                END IF;
            END IF;
        ELSE
            SELECT h.version INTO v_head FROM streams h WHERE h.stream_id = p_streams[i] FOR SHARE;
            IF NOT FOUND THEN
                INSERT INTO streams (stream_id, version) VALUES (p_streams[i], 0) ON CONFLICT (stream_id) DO NOTHING;
                SELECT h.version INTO v_head FROM streams h WHERE h.stream_id = p_streams[i] FOR SHARE;
            END IF;
        END IF;
        v_heads[i] := v_head;
    END LOOP;

    FOR i IN 1 .. cardinality(p_streams) LOOP
        v_kind := p_expected_kind[i];
        IF (v_kind = 1 AND v_heads[i] <> 0)
           OR (v_kind = 2 AND v_heads[i] = 0)
           OR (v_kind = 3 AND v_heads[i] <> p_expected_version[i]) THEN
            RAISE EXCEPTION 'version conflict on stream %', p_streams[i]
                USING ERRCODE = 'EV001', DETAIL = i::text || ' ' || v_heads[i]::text;
        END IF;
    END LOOP;

    INSERT INTO events (position, version, decided_at, event_id, command_id, correlation_id, causation_id,
                        schema_version, stream_id, event_type, payload, user_metadata)
    SELECT v_base + v_first + u.k - 1,
           v_heads[u.s] + u.o,
           p_decided_at,
           u.event_id,
           p_command_id,
           p_correlation_id,
           p_causation_id,
           u.schema_version,
           p_streams[u.s],
           u.event_type,
           u.payload::jsonb,
           p_user_metadata
      FROM unnest(p_event_stream, p_event_offset, p_event_ids, p_event_types, p_schema_versions, p_payloads)
           WITH ORDINALITY AS u(s, o, event_id, event_type, schema_version, payload, k);

    deduplicated := false;
    xid := v_xid;
    first_index := v_first;
    heads := v_heads;
    RETURN NEXT;
END;
$$;

-- Waits (at most p_max_wait_ms) until every transaction with an id up to
-- p_xid has finished, so that a reader that has already seen committed events
-- held back behind an in-flight transaction can return them. Returns whether
-- the horizon passed p_xid.
CREATE FUNCTION await_horizon(p_xid bigint, p_max_wait_ms integer) RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_deadline timestamptz := clock_timestamp() + make_interval(secs => p_max_wait_ms / 1000.0);
    v_xmin bigint;
BEGIN
    LOOP
        -- A full query takes a fresh snapshot on every iteration.
        SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint INTO v_xmin;
        IF v_xmin > p_xid THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= v_deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END;
$$;
