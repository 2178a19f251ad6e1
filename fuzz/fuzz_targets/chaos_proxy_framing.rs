//! The chaos proxy's PostgreSQL protocol framing.
//!
//! The input is a byte stream as a socket would deliver it, after a
//! one-byte header: bits 0-1 pick the framer's size limit, the rest seeds
//! how the stream is cut into reads. Checked, besides "never panics":
//!
//! - the messages cut from arbitrary reads are exactly those cut from the
//!   whole stream at once by a plain re-statement of the framing rule here
//!   (tag byte, big-endian length that counts itself, 4 ≤ length ≤ limit);
//! - a bad length is an error, at the same message whatever the reads;
//! - the cut messages and what is still buffered add up to the input;
//! - following every message as a client message (a `Sync` or a `Query`
//!   opens a request group) and every `Z` as the end of a reply (it closes
//!   one) keeps the count of open groups exact.

#![no_main]

use eventcore_chaos::proxy::fuzzing::{Connection, Framer};
use libfuzzer_sys::fuzz_target;

/// How the whole stream frames: the messages, and whether it ends on a
/// bad length.
fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, bool) {
    let mut messages = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < 5 {
            return (messages, false);
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len < 4 || len > max {
            return (messages, true);
        }
        if rest.len() < len + 1 {
            return (messages, false);
        }
        let (message, tail) = rest.split_at(len + 1);
        messages.push(message);
        rest = tail;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&header, stream)) = data.split_first() else {
        return;
    };
    let max = [16, 64, 1 << 10, 1 << 20][usize::from(header & 3)];
    let mut cut_seed = u32::from(header >> 2) | 1;
    let (expected, bad_length) = reference(stream, max);

    let mut framer = Framer::new(max);
    let mut connection = Connection::default();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    'feed: while fed < stream.len() {
        // A pseudo-random read size in 1..=32 (xorshift).
        cut_seed ^= cut_seed << 13;
        cut_seed ^= cut_seed >> 17;
        cut_seed ^= cut_seed << 5;
        let size = (cut_seed % 32) as usize + 1;
        let end = (fed + size).min(stream.len());
        framer.push(&stream[fed..end]);
        fed = end;
        loop {
            match framer.next_message() {
                Ok(Some(message)) => {
                    assert!(message.len() >= 5, "a message shorter than its header");
                    let open = connection.open_groups();
                    connection.client_message(&message);
                    if message[0] == b'S' || message[0] == b'Q' {
                        assert_eq!(connection.open_groups(), open + 1, "a Sync or Query opens a group");
                    }
                    // Both directions go through one tracker here: a server
                    // `Z` ends the reply due, as the proxy does.
                    if message[0] == b'Z' {
                        let open = connection.open_groups();
                        let _ = connection.holding();
                        connection.reply_done();
                        assert_eq!(connection.open_groups(), open.saturating_sub(1));
                    }
                    got.push(message);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(failed, bad_length, "a bad length must fail, and only that");
    assert_eq!(got.len(), expected.len());
    for (ours, theirs) in got.iter().zip(&expected) {
        assert_eq!(ours.as_slice(), *theirs);
    }
    if !failed {
        let cut: usize = got.iter().map(Vec::len).sum();
        assert_eq!(cut + framer.buffered(), stream.len(), "bytes lost or made up");
    }
});
