//! The PostgreSQL store's parser of version-conflict details.
//!
//! `append()` raises SQLSTATE `EV001` with DETAIL `"<i> <actual>"`: the
//! 1-based index of the conflicting stream in the request and its actual
//! version. The input is text: its first line describes the request, one
//! character per stream entry (`a` Any, `n` NoStream, `e` StreamExists, a
//! digit d Exact(d)); the rest is the detail. Checked, besides "never
//! panics":
//!
//! - a conflict is only ever built for a stream of the request, with that
//!   entry's expectation and the version the detail states;
//! - the detail as the SQL writes it parses back to that stream and
//!   version, for every entry and version, and an index outside the
//!   request gives none.

#![no_main]

use eventcore::{
    AppendRequest, CommandId, EventMetadata, ExpectedVersion, StreamAppend, StreamId, StreamVersion, Time,
};
use eventcore_postgres::fuzzing::conflict;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (shape, detail) = text.split_once('\n').unwrap_or((&text, ""));
    let streams: Vec<StreamAppend> = shape
        .chars()
        .take(16)
        .enumerate()
        .map(|(i, kind)| StreamAppend {
            stream: StreamId::new(format!("stream-{i}")).expect("valid"),
            expected: match kind {
                'a' => ExpectedVersion::Any,
                'n' => ExpectedVersion::NoStream,
                'e' => ExpectedVersion::StreamExists,
                other => ExpectedVersion::Exact(StreamVersion::new(u64::from(other.to_digit(10).unwrap_or(1)))),
            },
            events: Vec::new(),
            tombstone: false,
        })
        .collect();
    let request = AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)),
        streams,
    };

    // Whatever the detail, a conflict names one of the request's entries.
    if let Some(found) = conflict(&request, detail) {
        let mut fields = detail.split(' ');
        let index: usize = fields.next().and_then(|f| f.parse().ok()).expect("an index was parsed");
        let actual: u64 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .expect("a version was parsed");
        let entry = &request.streams[index - 1];
        assert_eq!(found.stream, entry.stream);
        assert_eq!(found.expected, entry.expected);
        assert_eq!(found.actual, StreamVersion::new(actual));
    }

    // What the SQL writes (`i::text || ' ' || v_heads[i]::text`) parses
    // back, for any version (taken from the detail's bytes).
    let version = detail.bytes().fold(0u64, |v, b| v.rotate_left(7) ^ u64::from(b));
    for (i, entry) in request.streams.iter().enumerate() {
        for actual in [0, 1, version, u64::MAX >> 1] {
            let found = conflict(&request, &format!("{} {actual}", i + 1));
            assert_eq!(found.as_ref().map(|c| &c.stream), Some(&entry.stream));
            assert_eq!(
                found.map(|c| (c.expected, c.actual)),
                Some((entry.expected, StreamVersion::new(actual)))
            );
        }
    }
    for outside in [0, request.streams.len() + 1, usize::MAX] {
        assert!(conflict(&request, &format!("{outside} 3")).is_none(), "index {outside}");
    }
});
