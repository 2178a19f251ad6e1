-- EventCore event store, schema version 2: group commit.
--
-- append_batch() runs several independent appends in one call (one round
-- trip) and one transaction (one WAL flush), each in its own subtransaction,
-- so that one append's conflict or error rolls back only that append. It
-- answers one row per append, in request order: the receipt columns of
-- append() when it committed, or the SQLSTATE, message and detail of the
-- error that rolled it back.
--
-- Arguments: per append its command id, metadata columns, number of streams
-- and number of events; then the per-stream and per-event arrays of
-- append(), every append's entries concatenated in request order (lock
-- orders and event stream indexes are 1-based within their own append).
--
-- Before any append runs, every existing stream head the batch touches is
-- locked in the same order append() uses (stream id, "C" collation), so a
-- batch holds its heads in one global order, like a single append does, and
-- cannot deadlock with other batches or single appends on existing streams.
CREATE FUNCTION append_batch(
    p_command_ids uuid[],
    p_correlation_ids uuid[],
    p_causation_ids uuid[],
    p_decided_at bigint[],
    p_user_metadata jsonb[],
    p_stream_counts integer[],
    p_event_counts integer[],
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
    v_s integer := 0;
    v_e integer := 0;
    v_ns integer;
    v_ne integer;
    r record;
    i integer;
BEGIN
    PERFORM 1
       FROM streams h
      WHERE h.stream_id = ANY (p_streams)
      ORDER BY h.stream_id COLLATE "C"
        FOR UPDATE;

    FOR i IN 1 .. coalesce(cardinality(p_command_ids), 0) LOOP
        v_ns := p_stream_counts[i];
        v_ne := p_event_counts[i];
        o_ord := i;
        BEGIN
            SELECT * INTO r
              FROM append(p_command_ids[i], p_correlation_ids[i], p_causation_ids[i],
                          p_decided_at[i], p_user_metadata[i],
                          p_streams[v_s + 1 : v_s + v_ns],
                          p_lock_order[v_s + 1 : v_s + v_ns],
                          p_expected_kind[v_s + 1 : v_s + v_ns],
                          p_expected_version[v_s + 1 : v_s + v_ns],
                          p_counts[v_s + 1 : v_s + v_ns],
                          p_event_stream[v_e + 1 : v_e + v_ne],
                          p_event_offset[v_e + 1 : v_e + v_ne],
                          p_event_ids[v_e + 1 : v_e + v_ne],
                          p_event_types[v_e + 1 : v_e + v_ne],
                          p_schema_versions[v_e + 1 : v_e + v_ne],
                          p_payloads[v_e + 1 : v_e + v_ne]);
            o_state := NULL;
            o_message := NULL;
            o_detail := NULL;
            o_deduplicated := r.deduplicated;
            o_xid := r.xid;
            o_first_index := r.first_index;
            o_heads := r.heads;
            o_stream_ids := r.stream_ids;
            o_first_versions := r.first_versions;
            o_counts := r.counts;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS o_state = RETURNED_SQLSTATE,
                                    o_message = MESSAGE_TEXT,
                                    o_detail = PG_EXCEPTION_DETAIL;
            o_deduplicated := NULL;
            o_xid := NULL;
            o_first_index := NULL;
            o_heads := NULL;
            o_stream_ids := NULL;
            o_first_versions := NULL;
            o_counts := NULL;
        END;
        RETURN NEXT;
        v_s := v_s + v_ns;
        v_e := v_e + v_ne;
    END LOOP;
END;
$$;
