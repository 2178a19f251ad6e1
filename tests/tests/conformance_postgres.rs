//! The store conformance suite against PostgreSQL: the same cases as the
//! in-memory store, unchanged, each in its own freshly created schema; once
//! with each payload codec (JSON in `jsonb`, MessagePack in `bytea`); the
//! personal-data group with a `PgKeyStore` in each schema.
//!
//! Needs `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! without a reachable database each case prints a skip notice and passes,
//! unless `CI=true`, where it fails.

eventcore_tests::conformance_suite!(eventcore_tests::postgres_factory!());
eventcore_tests::retention_suite!(eventcore_tests::postgres_factory!());
eventcore_tests::personal_data_suite!(eventcore_tests::postgres_factory!());

/// The same cases on a store keeping payloads in MessagePack (`bytea`),
/// given them in MessagePack as an executor over it encodes them.
mod messagepack {
    eventcore_tests::conformance_suite!(eventcore_tests::Encoded(
        eventcore_tests::postgres_factory!().with_codec(eventcore::Codec::MessagePack)
    ));
    eventcore_tests::retention_suite!(eventcore_tests::Encoded(
        eventcore_tests::postgres_factory!().with_codec(eventcore::Codec::MessagePack)
    ));
    // An executor encodes in the store's codec itself: no `Encoded` needed.
    eventcore_tests::personal_data_suite!(
        eventcore_tests::postgres_factory!().with_codec(eventcore::Codec::MessagePack)
    );
}
