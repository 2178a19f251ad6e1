//! The trace of a run: one line per scheduler step, hashed as it is
//! written. Two runs of one seed must produce the same hash; the lines are
//! kept only when asked for (replaying one seed), so sweeps stay fast.

use eventcore::Time;
use std::fmt::{self, Write as _};

/// FNV-1a, 64-bit: tiny, stable across platforms and Rust versions (unlike
/// `std`'s `DefaultHasher`, whose algorithm is unspecified).
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A run's trace.
///
/// ```
/// use eventcore::Time;
/// use eventcore_sim::trace::Trace;
/// let mut a = Trace::new(false);
/// let mut b = Trace::new(true);
/// a.line(Time::ZERO, format_args!("hello {}", 1));
/// b.line(Time::ZERO, format_args!("hello {}", 1));
/// assert_eq!(a.hash(), b.hash());
/// assert_eq!(b.lines().len(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct Trace {
    hash: Fnv,
    keep: bool,
    lines: Vec<String>,
    count: u64,
    buffer: String,
    origin: Option<Time>,
}

impl Trace {
    /// An empty trace; `keep` retains the lines for printing.
    pub fn new(keep: bool) -> Self {
        Trace {
            hash: Fnv::new(),
            keep,
            lines: Vec::new(),
            count: 0,
            buffer: String::new(),
            origin: None,
        }
    }

    /// Appends one line stamped with the simulated time (shown relative to
    /// the first line).
    pub fn line(&mut self, now: Time, args: fmt::Arguments<'_>) {
        let origin = *self.origin.get_or_insert(now);
        let since = now.saturating_duration_since(origin);
        self.buffer.clear();
        // Writing to a String cannot fail.
        let _ = write!(
            self.buffer,
            "{:>5}.{:06} {}",
            since.as_secs(),
            since.subsec_micros(),
            args
        );
        self.hash.write(self.buffer.as_bytes());
        self.hash.write(b"\n");
        self.count += 1;
        if self.keep {
            self.lines.push(self.buffer.clone());
        }
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hash.0
    }

    /// Lines written.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The kept lines (empty unless `keep`).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}
