//! The SQL text of the event store, with the schema name filled in once per
//! store. Every statement's parameters are listed beside it; the values are
//! bound in one place each (`append.rs`, `read.rs`).

/// Bits of a global position that hold the event's index within its
/// transaction; the bits above hold the transaction id.
pub(crate) const INDEX_BITS: u32 = 20;

/// SQL text with the schema name filled in, built once per store.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) append: String,
    pub(crate) append_alone: String,
    pub(crate) read: String,
    pub(crate) read_all_prefix: String,
    pub(crate) read_all_events: String,
    pub(crate) await_horizon: String,
    pub(crate) append_batch: String,
    pub(crate) tombstone: String,
}

impl Statements {
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        // A stream read leaves out the stream id: the caller knows it from
        // `ord`. Metadata comes as plain columns, so it costs no JSON. The
        // binary payload comes last: it is NULL, and not looked at, when
        // the JSON one is set (migration 0005).
        // The order is `RowDecoder`'s: it reads columns by index.
        let event_columns = "e.position, e.event_id, e.version, e.event_type, e.schema_version, \
                             e.payload::text AS payload, e.command_id, e.correlation_id, e.causation_id, \
                             e.decided_at, e.user_metadata::text AS user_metadata, e.payload_bin";
        Statements {
            // An append in a transaction of its own, as one plain statement:
            // the same steps as the `append()` function (claim the command
            // id, advance or lock every head in stream-id order, check the
            // expected versions, insert the events), without the cost of
            // running a PL/pgSQL function. The claim is a plain INSERT (no
            // ON CONFLICT: a speculative insertion costs an extra WAL record
            // and a second index probe on every append, to serve only
            // re-sends): a command id claimed before fails the statement
            // with a unique violation on `commands_pkey` before anything is
            // written (a twin still in flight is waited for first), and the
            // store asks `append()`, which answers with the stored receipt.
            // Every step after the claim reads from `claim`. A head is advanced
            // before its expected version is checked (the version it had is
            // the advanced one minus the count); a mismatch raises in the
            // final SELECT, which rolls the whole statement back before the
            // events are inserted (an unreferenced data-modifying WITH runs
            // after the main query).
            // Pure version checks take the head's row lock too (an UPDATE
            // by zero), which is stronger than the function's FOR SHARE.
            // Positions start at index 0: the statement is its transaction.
            // The leading comment names the statement for tools that watch
            // the wire or `pg_stat_activity` (the chaos proxy does).
            // Before the claim, the statement takes a transaction-level
            // advisory lock per stream (keyed by a hash of schema and stream
            // id, in key order, so two appends never wait on each other in a
            // cycle). The claim is what gives the transaction its id, the
            // high bits of its positions; taking it only once every stream
            // is held means two such appends to one stream take their ids in
            // the order they write it, so the later one's positions are
            // above the earlier one's and the trigger of migration 0006 (a
            // write below a stream's last writer is refused) never fires
            // between them. Without it, appends to one stream expecting
            // `Any` took their ids before queueing for its head, and under
            // contention most were refused and retried. Only streams written
            // under `Any` or `StreamExists` are locked so: under an exact
            // expectation (or `NoStream`), an append that would write below
            // a younger writer fails its version check anyway, so the lock
            // would buy nothing and cost every append. Appends through the
            // `append()` function take no advisory lock; the trigger still
            // guards them.
            // Parameters (`append.rs`, `bind_append`): `$1` command id,
            // `$2`–`$5` correlation id, causation id, decision time, user
            // metadata, `$6`–`$9` stream ids, expected-version kinds and
            // versions, event counts, `$10`–`$16` per event its stream index,
            // offset, id, type, schema version, JSON payload and binary
            // payload (one of the two arrays is empty: `unnest` pads it with
            // NULLs).
            append_alone: format!(
                "/* eventcore append */ WITH held AS ( \
                   SELECT count(pg_advisory_xact_lock(o.k)) AS n \
                   FROM (SELECT DISTINCT hashtextextended('{schema}.' || x.s, 0) AS k \
                         FROM unnest($6::text[], $7::int2[], $9::int4[]) AS x(s, kind, n) \
                         WHERE x.n > 0 AND x.kind IN (0, 2) ORDER BY 1) o), \
                 claim AS ( \
                   INSERT INTO {s}.commands (command_id, xid, first_index, event_count) \
                   SELECT $1, pg_current_xact_id()::text::int8, 0, cardinality($12::uuid[]) FROM held \
                   RETURNING xid), \
                 req AS ( \
                   SELECT * FROM unnest($6::text[], $7::int2[], $8::int8[], $9::int4[]) \
                     WITH ORDINALITY AS r(stream_id, kind, expected, n, i)), \
                 head AS ( \
                   INSERT INTO {s}.streams AS h (stream_id, version) \
                   SELECT r.stream_id, r.n FROM claim, req r ORDER BY r.stream_id COLLATE \"C\" \
                   ON CONFLICT (stream_id) DO UPDATE SET version = h.version + excluded.version \
                   RETURNING h.stream_id, h.version), \
                 before AS ( \
                   SELECT r.i, r.stream_id, r.kind, r.expected, h.version - r.n AS v \
                   FROM req r JOIN head h ON h.stream_id = r.stream_id), \
                 written AS ( \
                   INSERT INTO {s}.events (position, version, decided_at, event_id, command_id, correlation_id, \
                     causation_id, schema_version, stream_id, event_type, payload, payload_bin, user_metadata) \
                   SELECT (c.xid << {INDEX_BITS}) + u.k - 1, b.v + u.o, $4, u.event_id, $1, $2, $3, \
                     u.schema_version, b.stream_id, u.event_type, u.payload::jsonb, u.payload_bin, $5 \
                   FROM claim c, \
                     unnest($10::int4[], $11::int4[], $12::uuid[], $13::text[], $14::int4[], $15::text[], \
                       $16::bytea[]) \
                       WITH ORDINALITY AS u(s, o, event_id, event_type, schema_version, payload, payload_bin, k) \
                     JOIN before b ON b.i = u.s) \
                 SELECT false AS deduplicated, c.xid, 0 AS first_index, \
                   (SELECT array_agg(b.v ORDER BY b.i) FROM before b) AS heads, \
                   NULL::text[] AS stream_ids, NULL::int8[] AS first_versions, NULL::int4[] AS counts, \
                   (SELECT {s}.version_conflict(b.i::int4, b.stream_id, b.v) FROM before b \
                     WHERE NOT (b.kind = 0 OR (b.kind = 1 AND b.v = 0) OR (b.kind = 2 AND b.v > 0) \
                                OR (b.kind = 3 AND b.v = b.expected)) \
                     ORDER BY b.i LIMIT 1) AS conflict \
                 FROM claim c"
            ),
            // The same parameters as `append_alone`, and `$17` the lock
            // order; the call puts them in the function's argument order.
            append: format!(
                "SELECT deduplicated, xid, first_index, heads, stream_ids, first_versions, counts \
                 FROM {s}.append($1, $2, $3, $4, $5, $6, $17, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            read: format!(
                // No ORDER BY outside: the rows are grouped by `ord` on the
                // client, and each stream's rows are checked to come in
                // version order (see `read_inner`), so the server is spared
                // a sort of everything it returns.
                // The head comes from a lateral subquery, not a plain join: a
                // plain join lets a generic plan hash-join every stream head;
                // a lateral subquery with a LIMIT is not flattened, so it stays
                // one key lookup per requested stream.
                // The third column is the head's tombstone (migration 0008),
                // the fourth the versions retention removed (migration 0009).
                "SELECT r.ord::int4 AS ord, coalesce(h.version, 0) AS head, h.deleted_at_version, \
                   coalesce(h.removed_through, 0) AS removed_through, {event_columns} \
                 FROM unnest($1::text[], $2::int8[]) WITH ORDINALITY AS r(stream_id, after, ord) \
                 LEFT JOIN LATERAL (SELECT y.version, y.deleted_at_version, y.removed_through FROM {s}.streams y WHERE y.stream_id = r.stream_id LIMIT 1) h ON true \
                 LEFT JOIN LATERAL (SELECT * FROM {s}.events x \
                    WHERE x.stream_id = r.stream_id AND x.version > r.after \
                    ORDER BY x.version LIMIT $3) e ON true"
            ),
            // The horizon and the events come from one statement, hence one
            // snapshot: every transaction below the snapshot's xmin has
            // finished and its events (if committed) are visible to it.
            // The ranges retention removed (migration 0009) that end in the
            // page come from the same statement, as a JSON array in a row of
            // their own (no event; the client takes the array from whichever
            // row has it), and only when there are any, which is almost
            // never: carried on every event row, a page of 500 events behind
            // 500 ranges sent 500 copies (29 ms instead of 4 ms), and a window
            // function marking the first row slowed every read_all. This
            // shape costs a 500-event read_all nothing measurable (0.9 to
            // 1.2 ms, as before migration 0009; docs/benchmarks.md).
            // `read_all` completes the ranges' WHERE clause with the filter's
            // stream conditions, then the events'.
            read_all_prefix: format!(
                "WITH h AS MATERIALIZED (SELECT x.horizon, \
                   (SELECT max(m.position) FROM {s}.events m) AS newest, \
                   (SELECT jsonb_agg(jsonb_build_array(g.stream_id, g.first_version, g.last_version, \
                       g.first_position, g.last_position, g.reason, g.removed_at) ORDER BY g.last_position)::text \
                    FROM (SELECT * FROM {s}.removed_ranges d \
                      WHERE d.last_position > $1 AND d.last_position < x.horizon"
            ),
            read_all_events: format!(
                " ORDER BY d.last_position LIMIT $2) g) AS removed \
                 FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8 << {INDEX_BITS} AS horizon) x) \
                 SELECT h.horizon, h.newest, h.removed, NULL AS stream_id, NULL AS position, NULL AS event_id, \
                   NULL AS version, NULL AS event_type, NULL AS schema_version, NULL AS payload, NULL AS command_id, \
                   NULL AS correlation_id, NULL AS causation_id, NULL AS decided_at, NULL AS user_metadata, \
                   NULL AS payload_bin \
                 FROM h WHERE h.removed IS NOT NULL \
                 UNION ALL \
                 SELECT h.horizon, h.newest, NULL, e.stream_id, {event_columns} \
                 FROM h LEFT JOIN LATERAL (SELECT * FROM {s}.events e \
                    WHERE e.position > $1 AND e.position < h.horizon"
            ),
            await_horizon: format!("SELECT {s}.await_horizon($1, $2)"),
            // Group commit (`batch.rs`): `$1`–`$5` the command ids and
            // metadata of the requests, `$6`/`$7` each request's stream and
            // event count, `$8`–`$18` the columns of every request in order
            // (`AppendColumns::bind`).
            append_batch: format!(
                "SELECT o_ord, o_state, o_message, o_detail, o_deduplicated AS deduplicated, o_xid AS xid, \
                 o_first_index AS first_index, o_heads AS heads, o_stream_ids AS stream_ids, \
                 o_first_versions AS first_versions, o_counts AS counts \
                 FROM {s}.append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18)"
            ),
            // Ends streams (migration 0008), run in an append's transaction
            // right after its events are written, so the heads are this
            // transaction's and locked: `$1` the ids of the streams the
            // append tombstones. A stream ended before never gets here: the
            // append that wrote it was refused (EV005).
            tombstone: format!("UPDATE {s}.streams SET deleted_at_version = version WHERE stream_id = ANY($1::text[])"),
        }
    }

    /// The `read_all` statement for one filter shape; parameters are
    /// `$1` after, `$2` limit (of events, and of removed ranges), then the
    /// filter's own in order.
    pub(crate) fn read_all(&self, streams: bool, prefix: bool, types: bool) -> String {
        let mut sql = self.read_all_prefix.clone();
        // The removed ranges pass the filter's stream conditions (an event
        // type says nothing about a range), with the same parameters.
        let mut next = 3;
        if streams {
            sql.push_str(&format!(" AND d.stream_id = ANY(${next}::text[])"));
            next += 1;
        }
        if prefix {
            sql.push_str(&format!(" AND starts_with(d.stream_id, ${next}::text)"));
        }
        sql.push_str(&self.read_all_events);
        let mut next = 3;
        if streams {
            sql.push_str(&format!(" AND e.stream_id = ANY(${next}::text[])"));
            next += 1;
        }
        if prefix {
            sql.push_str(&format!(" AND starts_with(e.stream_id, ${next}::text)"));
            next += 1;
        }
        if types {
            sql.push_str(&format!(" AND e.event_type = ANY(${next}::text[])"));
        }
        // As in stream reads, no ORDER BY outside the lateral: the client
        // checks the order (`in_position_order`).
        sql.push_str(" ORDER BY e.position LIMIT $2) e ON true");
        sql
    }
}
