-- EventCore event store, schema version 7: replay requests for dead letters.
--
-- An operator asks for a subscription's parked events to be replayed
-- (`eventcore dead-letters replay`, `DeadLetterStore::request_replay`); the
-- subscription's running runner, which alone has the handler, sees the
-- request, replays the letters and deletes those it handles. A letter that
-- fails again stays parked with its new cause and the request cleared.
--
-- `replay_requested_at_ns` is when the replay was asked for (unix
-- nanoseconds on the requester's clock, as `parked_at_ns` is on the parking
-- runner's); NULL when none is pending. Adding a nullable column rewrites
-- nothing; the partial index keeps the runners' periodic look for requests
-- to the requested rows.
ALTER TABLE subscription_dead_letters ADD COLUMN replay_requested_at_ns bigint;

CREATE INDEX subscription_dead_letters_replay_requested
    ON subscription_dead_letters (subscription, position)
    WHERE replay_requested_at_ns IS NOT NULL;
