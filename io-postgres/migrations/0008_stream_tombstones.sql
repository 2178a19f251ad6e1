-- EventCore event store, schema version 8: stream tombstones.
--
-- An append may end a stream (`StreamAppend::tombstone`): in the append's
-- own transaction, after its events are written, the stream's head records
-- the version of its last event in `deleted_at_version`. From then on a
-- write that advances that head, by any path (`append()`, `append_batch()`,
-- the single-statement append and whatever comes later), is refused by the
-- trigger of migration 0006, extended here, with SQLSTATE EV005: DETAIL is
-- `"<deleted_at_version> <stream id>"`, which the store reports as
-- `StoreError::StreamDeleted`. Nothing is written. A pure version check (a
-- head locked or advanced by zero) is not refused, and the events stay
-- readable: removing them is the retention job's, later.
--
-- A tombstone is final: the trigger also refuses to clear or move
-- `deleted_at_version` once it is set. Adding a nullable column rewrites
-- nothing; heads written before read as open.
ALTER TABLE streams ADD COLUMN deleted_at_version bigint;

CREATE OR REPLACE FUNCTION keep_stream_positions_rising() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_xid bigint;
BEGIN
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
