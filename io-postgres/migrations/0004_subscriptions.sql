-- EventCore subscriptions, schema version 4: checkpoints, leases and dead
-- letters. Applied by `PostgresStore::migrate` with every other migration,
-- `search_path` set to the store's schema. The notify trigger is not here:
-- it costs every append, so only `migrate_subscriptions` installs it.
--
-- Written to adopt what an earlier release created with its own migrator
-- (`migrate_subscriptions`, tracked in `subscription_migrations`): every
-- statement is a no-op where its object already exists.

-- Where subscriptions and projections resume. `fence` is the lease token of
-- the current holder: `claim` raises it, and every checkpoint write (and
-- every projection commit) must carry it, so a stale holder is rejected.
CREATE TABLE IF NOT EXISTS subscription_checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    fence bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One active instance per subscription across processes. `token` grows on
-- every change of holder; `expires_at` is on the database clock.
CREATE TABLE IF NOT EXISTS subscription_leases (
    name text PRIMARY KEY,
    holder text,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);

-- Poison events parked so that their subscription could continue.
CREATE TABLE IF NOT EXISTS subscription_dead_letters (
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
