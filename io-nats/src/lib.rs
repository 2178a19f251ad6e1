//! EventCore to NATS JetStream.
//!
//! - [`relay`]: follows the global log as a subscription (checkpoint,
//!   lease, dead letters, status: everything a `Runner` has) and publishes
//!   each event to a JetStream stream **in global order, exactly once**:
//!   `Nats-Msg-Id` is the event id, every message expects its
//!   predecessor's stream sequence (`Nats-Expected-Last-Sequence`), and
//!   after a crash or a failure the relay resumes after the position the
//!   stream's last message carries. The checkpoint moves only past events
//!   the server acknowledged. [`RelayStatus`] says what it waits for.
//! - [`JetStreamProjection`]: reads such a stream back into a projection
//!   with exactly-once effects, the stream sequence committed with the
//!   projection's writes.
//! - [`SubjectFn`], [`default_subject`], [`escape_token`]: which subject an
//!   event goes to; [`headers_of`], [`recorded_from_parts`]: the headers.
//!
//! Guarantees, ordering, the duplicate window and failure behaviour:
//! `docs/relay.md`.

mod consume;
mod headers;
mod relay;
mod subject;

pub use consume::{ConsumeError, ConsumeSummary, JetStreamProjection};
pub use headers::{
    headers_of, position_of, recorded_from_parts, HeaderError, CAUSATION_ID, COMMAND_ID, CORRELATION_ID, EVENT_ID,
    EVENT_TYPE, GLOBAL_POSITION, SCHEMA_VERSION, STREAM_ID, STREAM_VERSION, TIMESTAMP, USER_METADATA,
};
pub use relay::{relay, JetStreamSink, RelayOptions, RelayStatus, Waiting};
pub use subject::{default_subject, escape_token, SubjectError, SubjectFn};
