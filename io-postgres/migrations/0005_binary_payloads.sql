-- EventCore event store, schema version 5: binary payloads.
--
-- An event's payload is JSON (`payload jsonb`, as before) or, for a store
-- whose codec is MessagePack (`PostgresOptions::codec`), MessagePack bytes
-- in `payload_bin bytea`; exactly one of the two is set, so every row says
-- which codec its payload is in, and a store switched from one codec to the
-- other reads everything written before. Existing rows keep their JSON.
-- Adding the check reads the table once; nothing is rewritten.
ALTER TABLE events
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN payload_bin bytea,
    ADD CONSTRAINT events_one_payload CHECK ((payload IS NULL) <> (payload_bin IS NULL));

-- append() and append_batch() take the binary payloads as one more array,
-- p_payloads_bin, aligned with p_payloads by event. An append's payloads are
-- all in its store's codec, so the client sends one of the two arrays full
-- and the other empty: unnest() pads the shorter array with NULLs, and the
-- JSON path costs one empty array more than before. Otherwise the functions
-- are those of migrations 0001 and 0002 (see there), replaced: a new
-- argument list is a new function, so the old ones are dropped first (and
-- with them their EXECUTE grants: run the least-privilege grants again
-- after migrating, as after every migration).
DROP FUNCTION append(uuid, uuid, uuid, bigint, jsonb, text[], integer[], smallint[], bigint[], integer[], integer[],
                     integer[], uuid[], text[], integer[], text[]);
DROP FUNCTION append_batch(uuid[], uuid[], uuid[], bigint[], jsonb[], integer[], integer[], text[], smallint[],
                           bigint[], integer[], integer[], integer[], uuid[], text[], integer[], text[]);

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
    p_payloads text[],
    p_payloads_bin bytea[]
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
                        schema_version, stream_id, event_type, payload, payload_bin, user_metadata)
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
           u.payload_bin,
           p_user_metadata
      FROM unnest(p_event_stream, p_event_offset, p_event_ids, p_event_types, p_schema_versions, p_payloads,
                  p_payloads_bin)
           WITH ORDINALITY AS u(s, o, event_id, event_type, schema_version, payload, payload_bin, k);

    deduplicated := false;
    xid := v_xid;
    first_index := v_first;
    heads := v_heads;
    RETURN NEXT;
END;
$$;

CREATE FUNCTION append_batch(
    p_command_ids uuid[],
    p_correlation_ids uuid[],
    p_causation_ids uuid[],
    p_decided_at bigint[],
    p_user_metadata jsonb[],
    p_stream_counts integer[],
    p_event_counts integer[],
    p_streams text[],
    p_expected_kind smallint[],
    p_expected_version bigint[],
    p_counts integer[],
    p_event_stream integer[],
    p_event_offset integer[],
    p_event_ids uuid[],
    p_event_types text[],
    p_schema_versions integer[],
    p_payloads text[],
    p_payloads_bin bytea[]
) RETURNS TABLE (
    o_ord integer,
    o_state text,
    o_message text,
    o_detail text,
    o_deduplicated boolean,
    o_xid bigint,
    o_first_index integer,
    o_heads bigint[],
    o_stream_ids text[],
    o_first_versions bigint[],
    o_counts integer[]
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_n integer := coalesce(cardinality(p_command_ids), 0);
    v_xid bigint := pg_current_xact_id()::text::bigint;
    v_base bigint := v_xid << 20;
    v_total integer := coalesce(cardinality(p_event_ids), 0);
    v_first integer;
    -- Per request: where its streams and events start in the flat arrays,
    -- whether it was claimed here, and what became of it.
    v_stream_start integer[] := array_fill(0, ARRAY[v_n]);
    v_event_start integer[] := array_fill(0, ARRAY[v_n]);
    v_claimed uuid[];
    v_passed boolean[] := array_fill(false, ARRAY[v_n]);
    v_settled boolean[] := array_fill(false, ARRAY[v_n]);
    v_released uuid[] := '{}';
    v_repeats boolean;
    -- Working copies of the locked heads (stream id, version), and whether
    -- the batch changed them.
    v_names text[];
    v_versions bigint[];
    v_original bigint[];
    -- Per event: whether it is written, its version.
    v_write boolean[] := array_fill(false, ARRAY[v_total]);
    v_event_version bigint[] := array_fill(0::bigint, ARRAY[v_total]);
    v_event_request integer[] := array_fill(0, ARRAY[v_total]);
    v_heads bigint[];
    v_conflict text;
    v_head bigint;
    v_kind smallint;
    v_slot integer;
    v_s integer := 0;
    v_e integer := 0;
    i integer;
    j integer;
    k integer;
BEGIN
    IF v_n = 0 THEN
        RETURN;
    END IF;
    v_first := coalesce(nullif(current_setting('eventcore.appended_in_transaction', true), '')::integer, 0);
    IF v_first + v_total > 1048576 THEN
        RAISE EXCEPTION 'more than 1048576 events in one transaction' USING ERRCODE = 'EV002';
    END IF;
    FOR i IN 1 .. v_n LOOP
        v_stream_start[i] := v_s;
        v_event_start[i] := v_e;
        FOR k IN v_e + 1 .. v_e + p_event_counts[i] LOOP
            v_event_request[k] := i;
        END LOOP;
        v_s := v_s + p_stream_counts[i];
        v_e := v_e + p_event_counts[i];
    END LOOP;

    -- (1) Claims. Each request's events take the positions right after the
    -- events of the requests before it, whether those commit or not (gaps
    -- are allowed), so a claim row is written once, with its final values.
    -- A command id repeated within the batch is claimed for its first
    -- occurrence.
    WITH claimed AS (
        INSERT INTO commands (command_id, xid, first_index, event_count)
        SELECT u.c, v_xid, v_first + v_event_start[u.k], p_event_counts[u.k]
          FROM (SELECT DISTINCT ON (x.c) x.c, x.k
                  FROM unnest(p_command_ids) WITH ORDINALITY AS x(c, k)
                 ORDER BY x.c, x.k) u
         ORDER BY u.c
        ON CONFLICT (command_id) DO NOTHING
        RETURNING command_id
    )
    SELECT coalesce(array_agg(command_id), '{}') INTO v_claimed FROM claimed;
    v_repeats := cardinality(v_claimed) < v_n
                 AND (SELECT count(DISTINCT c) FROM unnest(p_command_ids) AS c) < v_n;
    PERFORM set_config('eventcore.appended_in_transaction', (v_first + v_total)::text, true);

    -- (2) Heads of the requests that will be checked, locked in one order.
    INSERT INTO streams (stream_id, version)
    SELECT DISTINCT s, 0 FROM unnest(p_streams) AS s
     WHERE NOT EXISTS (SELECT 1 FROM streams h WHERE h.stream_id = s)
     ORDER BY 1
    ON CONFLICT (stream_id) DO NOTHING;
    SELECT coalesce(array_agg(l.stream_id ORDER BY l.stream_id COLLATE "C"), '{}'),
           coalesce(array_agg(l.version ORDER BY l.stream_id COLLATE "C"), '{}')
      INTO v_names, v_versions
      FROM (SELECT h.stream_id, h.version
              FROM streams h
             WHERE h.stream_id = ANY (p_streams)
             ORDER BY h.stream_id COLLATE "C"
               FOR UPDATE) l;
    v_original := v_versions;

    -- (3) Check in request order.
    FOR i IN 1 .. v_n LOOP
        o_ord := i;
        o_state := NULL;
        o_message := NULL;
        o_detail := NULL;
        o_deduplicated := NULL;
        o_xid := NULL;
        o_first_index := NULL;
        o_heads := NULL;
        o_stream_ids := NULL;
        o_first_versions := NULL;
        o_counts := NULL;
        IF NOT (p_command_ids[i] = ANY (v_claimed)) THEN
            -- Claimed before this batch (or by an earlier request of it that
            -- committed): answered with the stored receipt, below.
            CONTINUE;
        END IF;
        v_conflict := NULL;
        v_heads := array_fill(0::bigint, ARRAY[p_stream_counts[i]]);
        FOR j IN 1 .. p_stream_counts[i] LOOP
            v_slot := array_position(v_names, p_streams[v_stream_start[i] + j]);
            v_head := coalesce(v_versions[v_slot], 0);
            v_heads[j] := v_head;
            v_kind := p_expected_kind[v_stream_start[i] + j];
            IF v_conflict IS NULL AND (
                   (v_kind = 1 AND v_head <> 0)
                OR (v_kind = 2 AND v_head = 0)
                OR (v_kind = 3 AND v_head <> p_expected_version[v_stream_start[i] + j])) THEN
                v_conflict := j::text || ' ' || v_head::text;
            END IF;
        END LOOP;
        IF v_conflict IS NOT NULL THEN
            v_settled[i] := true;
            o_state := 'EV001';
            o_message := 'version conflict on stream ' || p_streams[v_stream_start[i] + split_part(v_conflict, ' ', 1)::integer];
            o_detail := v_conflict;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- Passed: its claim is no longer up for grabs by a later duplicate.
        v_claimed := array_remove(v_claimed, p_command_ids[i]);
        v_passed[i] := true;
        v_settled[i] := true;
        FOR j IN 1 .. p_stream_counts[i] LOOP
            IF p_counts[v_stream_start[i] + j] > 0 THEN
                v_slot := array_position(v_names, p_streams[v_stream_start[i] + j]);
                v_versions[v_slot] := v_versions[v_slot] + p_counts[v_stream_start[i] + j];
            END IF;
        END LOOP;
        FOR k IN v_event_start[i] + 1 .. v_event_start[i] + p_event_counts[i] LOOP
            v_write[k] := true;
            v_event_version[k] := v_heads[p_event_stream[k]] + p_event_offset[k];
        END LOOP;
        o_deduplicated := false;
        o_xid := v_xid;
        o_first_index := v_first + v_event_start[i];
        o_heads := v_heads;
        RETURN NEXT;
    END LOOP;

    -- (4) Write. Claims of ids none of whose requests passed are released;
    -- a claim whose first request failed but a later duplicate passed is
    -- moved to the one that passed.
    SELECT coalesce(array_agg(DISTINCT c), '{}') INTO v_released
      FROM unnest(v_claimed) AS c;
    IF cardinality(v_released) > 0 THEN
        DELETE FROM commands c WHERE c.command_id = ANY (v_released);
    END IF;
    FOR i IN 1 .. CASE WHEN v_repeats THEN v_n ELSE 0 END LOOP
        IF v_passed[i] AND EXISTS (
               SELECT 1 FROM unnest(p_command_ids[1 : i - 1]) WITH ORDINALITY AS x(c, k)
                WHERE x.c = p_command_ids[i] AND NOT v_passed[x.k]) THEN
            UPDATE commands c
               SET first_index = v_first + v_event_start[i], event_count = p_event_counts[i]
             WHERE c.command_id = p_command_ids[i];
        END IF;
    END LOOP;
    UPDATE streams h SET version = u.v
      FROM unnest(v_names, v_versions, v_original) AS u(s, v, o)
     WHERE h.stream_id = u.s AND u.v <> u.o;
    INSERT INTO events (position, version, decided_at, event_id, command_id, correlation_id, causation_id,
                        schema_version, stream_id, event_type, payload, payload_bin, user_metadata)
    SELECT v_base + v_first + u.k - 1,
           v_event_version[u.k],
           p_decided_at[v_event_request[u.k]],
           u.event_id,
           p_command_ids[v_event_request[u.k]],
           p_correlation_ids[v_event_request[u.k]],
           p_causation_ids[v_event_request[u.k]],
           u.schema_version,
           p_streams[v_stream_start[v_event_request[u.k]] + u.s],
           u.event_type,
           u.payload::jsonb,
           u.payload_bin,
           p_user_metadata[v_event_request[u.k]]
      FROM unnest(p_event_stream, p_event_ids, p_event_types, p_schema_versions, p_payloads, p_payloads_bin)
           WITH ORDINALITY AS u(s, event_id, event_type, schema_version, payload, payload_bin, k)
     WHERE v_write[u.k];

    -- Requests answered from a stored receipt: claimed before this batch,
    -- or repeating the id of an earlier request of this batch that passed.
    FOR i IN 1 .. v_n LOOP
        CONTINUE WHEN v_settled[i];
        RETURN QUERY
        SELECT i, NULL::text, NULL::text, NULL::text, true, d.xid, d.first_index, NULL::bigint[],
               d.stream_ids, d.first_versions, d.counts
          FROM stored_receipt(p_command_ids[i]) d;
        IF NOT FOUND THEN
            -- Not claimed here and not stored: its twin elsewhere rolled
            -- back after this batch tried to claim. The client sends it again
            -- on its own.
            RETURN QUERY
            SELECT i, 'EV004'::text, 'command id ' || p_command_ids[i] || ' was neither claimed nor stored',
                   NULL::text, NULL::boolean, NULL::bigint, NULL::integer, NULL::bigint[],
                   NULL::text[], NULL::bigint[], NULL::integer[];
        END IF;
    END LOOP;
END;
$$;
