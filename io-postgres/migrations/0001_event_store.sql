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
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 0)
);

CREATE TABLE events (
    position bigint PRIMARY KEY,
    event_id uuid NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL CHECK (version >= 1),
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    command_id uuid NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
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

-- Appends atomically to several streams; one call is one round trip.
--
-- Arguments are parallel arrays: per stream (request order) its id, the
-- expected-version kind (0 any, 1 no stream, 2 stream exists, 3 exact), the
-- exact version and its event count; per event (request order) its stream
-- (1-based index into the stream arrays), id, type, schema version and JSON
-- text.
--
-- Steps: (1) claim the command id (a concurrent append with the same id waits
-- here for the first to finish, then finds its receipt); (2) lock every
-- stream head in one fixed order, advancing written heads (UPDATE) and
-- share-locking checked ones, creating missing heads; (3) check every
-- expected version, raising EV001 with "index actual" in DETAIL on the first
-- mismatch in request order (which rolls back everything); (4) insert the
-- events. Every statement finds its rows by key: the cost does not grow with
-- the number of streams or events stored.
CREATE FUNCTION append(
    p_command_id uuid,
    p_metadata jsonb,
    p_streams text[],
    p_expected_kind smallint[],
    p_expected_version bigint[],
    p_counts integer[],
    p_event_stream integer[],
    p_event_ids uuid[],
    p_event_types text[],
    p_schema_versions integer[],
    p_payloads text[]
) RETURNS TABLE (
    deduplicated boolean,
    xid bigint,
    first_index integer,
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
    -- caller's transaction already appended.
    SELECT coalesce(max(e.position) - v_base + 1, 0)::integer INTO v_first
      FROM events e
     WHERE e.position >= v_base AND e.position < v_base + 1048576;
    IF v_first + v_total > 1048576 THEN
        RAISE EXCEPTION 'more than 1048576 events in one transaction' USING ERRCODE = 'EV002';
    END IF;

    INSERT INTO commands (command_id, xid, first_index, event_count)
    VALUES (p_command_id, v_xid, v_first, v_total)
    ON CONFLICT (command_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY
        SELECT true, c.xid, c.first_index, g.stream_ids, g.first_versions, g.counts
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
        RETURN;
    END IF;

    -- Lock every head in one global order. A written stream's head is
    -- advanced right away (UPDATE takes the row lock, and a conflict below
    -- rolls it back); a checked-only stream is locked FOR SHARE. A missing
    -- head is created, at its final version when written, else at 0.
    FOR i IN SELECT o.i FROM unnest(p_streams) WITH ORDINALITY AS o(s, i) ORDER BY o.s COLLATE "C" LOOP
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

    INSERT INTO events (position, event_id, stream_id, version, event_type, schema_version, payload, metadata, command_id)
    SELECT v_base + v_first + u.k - 1,
           u.event_id,
           p_streams[u.s],
           v_heads[u.s] + row_number() OVER (PARTITION BY u.s ORDER BY u.k),
           u.event_type,
           u.schema_version,
           u.payload::jsonb,
           p_metadata,
           p_command_id
      FROM unnest(p_event_stream, p_event_ids, p_event_types, p_schema_versions, p_payloads)
           WITH ORDINALITY AS u(s, event_id, event_type, schema_version, payload, k);

    RETURN QUERY
    SELECT false, v_xid, v_first,
           array_agg(p_streams[o.i] ORDER BY o.i),
           array_agg(v_heads[o.i] + 1 ORDER BY o.i),
           array_agg(p_counts[o.i] ORDER BY o.i)
      FROM generate_subscripts(p_streams, 1) AS o(i)
     WHERE p_counts[o.i] > 0;
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
