-- EventCore subscriptions, schema version 100 (numbered from 100 so that it
-- never collides with the event store's own migrations). Applied by
-- `eventcore_postgres::migrate_subscriptions`, tracked in
-- `subscription_migrations`, with `search_path` set to the store's schema.

-- Where subscriptions and projections resume. `fence` is the lease token of
-- the current holder: `claim` raises it, and every checkpoint write (and
-- every projection commit) must carry it, so a stale holder is rejected.
CREATE TABLE subscription_checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    fence bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One active instance per subscription across processes. `token` grows on
-- every change of holder; `expires_at` is on the database clock.
CREATE TABLE subscription_leases (
    name text PRIMARY KEY,
    holder text,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);

-- Poison events parked so that their subscription could continue.
CREATE TABLE subscription_dead_letters (
    subscription text NOT NULL,
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    payload text NOT NULL,
    metadata jsonb NOT NULL,
    cause_kind text NOT NULL,
    cause_message text NOT NULL,
    cause_found integer,
    cause_supported integer,
    parked_at_ns bigint NOT NULL,
    PRIMARY KEY (subscription, position)
);

-- Wake subscribers: after every statement that inserts events, notify
-- channel `eventcore_events` with "<schema>:<highest position inserted>".
-- PostgreSQL delivers notifications at commit, and drops them on rollback.
CREATE FUNCTION notify_events_committed() RETURNS trigger
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

CREATE TRIGGER events_notify_subscribers
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_committed();
