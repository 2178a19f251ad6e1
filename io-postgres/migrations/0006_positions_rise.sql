-- EventCore event store, schema version 6: positions rise along every stream.
--
-- A global position is `(xid << 20) | index`, and a transaction's id is
-- taken when it first writes, not when it commits. A transaction that took
-- its id early (the append's claim of its command id, or a caller's
-- transaction around `append_in` that wrote something first) and then
-- waited for a stream's head lock could write that stream after a younger
-- transaction had: its events would take positions below the events before
-- them, and a reader in global order would meet version 6 of the stream
-- before version 5. An expected-version check does not catch this when the
-- expectation is `Any` or `StreamExists`.
--
-- Every stream head now remembers the transaction that last wrote it
-- (`last_xid`), and a write by an older transaction fails with a
-- serialization failure (SQLSTATE 40001): nothing is written, and the store
-- reports it as transient, so the executor re-reads and retries in a new
-- transaction, whose id is younger than every transaction that had
-- committed to the stream. A trigger enforces it on every path that writes a
-- head (`append()`, `append_batch()`, the single-statement append and
-- whatever comes later), so no path can forget it. A pure version check
-- (a head locked or advanced by zero) writes no event and is not checked.
--
-- Heads written before this migration have no `last_xid`; their next write
-- sets it. Adding a nullable column rewrites nothing.
ALTER TABLE streams ADD COLUMN last_xid bigint;

CREATE FUNCTION keep_stream_positions_rising() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_xid bigint;
BEGIN
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

CREATE TRIGGER stream_positions_rise
    BEFORE INSERT OR UPDATE ON streams
    FOR EACH ROW EXECUTE FUNCTION keep_stream_positions_rising();
