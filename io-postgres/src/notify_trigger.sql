-- Wake subscribers: after every statement that inserts events, notify
-- channel `eventcore_events` with "<schema>:<highest position inserted>".
-- PostgreSQL delivers notifications at commit, and drops them on rollback.
CREATE OR REPLACE FUNCTION notify_events_committed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_max bigint;
BEGIN
    SELECT max(i.position) INTO v_max FROM inserted i;
    IF v_max IS NOT NULL THEN
        PERFORM pg_notify('eventcore_events', TG_TABLE_SCHEMA || ':' || v_max);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER events_notify_subscribers
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_committed();
