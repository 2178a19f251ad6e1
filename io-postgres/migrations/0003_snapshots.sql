-- EventCore view snapshots, schema version 3. Applied by
-- `PostgresStore::migrate` with `search_path` set to the store's schema.
--
-- One row per (stream, view name, view version): the newest snapshot of that
-- view of that stream. Unlike `events`, rows are replaced (a newer snapshot
-- overwrites an older one) and deleted (`delete_view` after a fold changed),
-- so there are no immutability triggers here. Values are checked by the
-- reader, not by constraints: a row that does not parse is reported as
-- malformed and the view is folded from events instead.
CREATE TABLE snapshots (
    stream_id text NOT NULL,
    view text NOT NULL,
    -- A u32 in Rust; bigint holds every value.
    view_version bigint NOT NULL,
    -- The stream version the view is folded up to.
    stream_version bigint NOT NULL,
    -- The id of the event at stream_version: a reader checks the stream
    -- still holds it before trusting the snapshot.
    last_event_id uuid NOT NULL,
    payload jsonb NOT NULL,
    -- Nanoseconds since the Unix epoch (the driver's clock), exact.
    taken_at_ns bigint NOT NULL,
    PRIMARY KEY (stream_id, view, view_version)
);

-- `delete_view` drops every version of a view across all streams.
CREATE INDEX snapshots_by_view ON snapshots (view);
