-- EventCore: the grants of a least-privilege application role.
--
-- Run as the schema's owner (the role that ran `PostgresStore::migrate` and
-- `migrate_subscriptions`), after every migration, e.g.
--   psql -v schema=eventcore -v app_role=eventcore_app -f least_privilege.sql
-- or from Rust with `PostgresStore::grant_app_role("eventcore_app")`.
-- Idempotent. The application then connects as `app_role` with
-- `PostgresOptions::migrations(MigrationMode::Verify)`.
--
-- Every function of the store is SECURITY INVOKER: it runs with the
-- application role's own privileges, so the table grants below are all the
-- access it has. No sequence is used (positions come from transaction ids),
-- and NOTIFY, pg_sleep and the snapshot functions need no grant.

-- Name lookup only: no CREATE, so the role cannot add or change objects.
GRANT USAGE ON SCHEMA :"schema" TO :"app_role";

-- The log is append-only: reads, read_all and stored receipts SELECT,
-- appends INSERT. No UPDATE, DELETE or TRUNCATE (the owner's triggers refuse
-- them too, but for this role they are permission denied, SQLSTATE 42501).
GRANT SELECT, INSERT ON :"schema".events TO :"app_role";

-- Removed ranges (migration 0009): read_all reports what the retention job
-- removed, so SELECT only. The role cannot remove events itself: it has no
-- DELETE on events, no EXECUTE on remove_events(), no access to
-- events_archive (retention runs as the owner or a maintenance role).
GRANT SELECT ON :"schema".removed_ranges TO :"app_role";

-- Stream heads: reads SELECT them; appends create a missing head (INSERT),
-- advance written ones (UPDATE, INSERT .. ON CONFLICT DO UPDATE) and lock
-- checked-only ones (SELECT .. FOR SHARE, which needs UPDATE).
GRANT SELECT, INSERT, UPDATE ON :"schema".streams TO :"app_role";

-- Command-id claims (idempotent appends): INSERT claims an id, SELECT finds
-- the receipt of a re-sent one; group commit (append_batch) DELETEs the
-- claims of requests that failed their version check and UPDATEs a claim
-- that moves to a later request repeating its id.
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".commands TO :"app_role";

-- View snapshots: load (SELECT), save (upsert), discard and delete_view
-- (DELETE).
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".snapshots TO :"app_role";

-- Checkpoints: claim (upsert raising the fence), save and projection
-- commits (UPDATE). Rows are never deleted.
GRANT SELECT, INSERT, UPDATE ON :"schema".subscription_checkpoints TO :"app_role";

-- Leases: acquire (upsert), renew and release (UPDATE). Rows are never
-- deleted.
GRANT SELECT, INSERT, UPDATE ON :"schema".subscription_leases TO :"app_role";

-- Dead letters: park (INSERT), list (SELECT), remove after a replay (DELETE),
-- record an operator's replay request and a replay that failed again
-- (UPDATE of replay_requested_at_ns and the cause columns).
GRANT SELECT, INSERT, UPDATE, DELETE ON :"schema".subscription_dead_letters TO :"app_role";

-- Crypto-shredding keys (eventcore-shred's PgKeyStore), if its tables
-- exist (PgKeyStore::migrate creates them): fetch keys (SELECT), create a
-- subject's key (INSERT), forget a subject (DELETE its key, INSERT it into
-- shred_forgotten). No UPDATE: a key never changes and a forgotten subject
-- is never un-forgotten. A DO block cannot see psql's variables, so the two
-- names reach it through settings, reset afterwards.
SET eventcore.grant_schema = :"schema";
SET eventcore.grant_role = :"app_role";
DO $$
DECLARE
    s text := current_setting('eventcore.grant_schema');
    r text := current_setting('eventcore.grant_role');
BEGIN
    IF to_regclass(format('%I.shred_keys', s)) IS NOT NULL THEN
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON %I.shred_keys TO %I', s, r);
    END IF;
    IF to_regclass(format('%I.shred_forgotten', s)) IS NOT NULL THEN
        EXECUTE format('GRANT SELECT, INSERT ON %I.shred_forgotten TO %I', s, r);
    END IF;
END
$$;
RESET eventcore.grant_schema;
RESET eventcore.grant_role;

-- The applied migrations, read by MigrationMode::Verify.
GRANT SELECT ON :"schema"._sqlx_migrations TO :"app_role";

-- Functions are executable by PUBLIC by default; only the ones the store
-- calls are granted back. The trigger functions (reject_event_change,
-- notify_events_committed) need no EXECUTE to fire.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA :"schema" FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    :"schema".append,
    :"schema".append_batch,
    :"schema".stored_receipt,
    :"schema".version_conflict,
    :"schema".await_horizon
    TO :"app_role";
