//! One sample of the soak: the process's resident memory next to what every
//! bounded structure holds, taken every second; and the CSV they are
//! written to.

use super::consumers::Consumers;
use super::workload::{Executors, Shared, Totals};
use eventcore_postgres::PostgresStore;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

/// The process's memory as `/proc/self/status` reports it.
///
/// ```
/// let status = eventcore_chaos::soak::ProcStatus { rss_kib: 2048, hwm_kib: 4096 };
/// assert!(status.rss_kib <= status.hwm_kib);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// `VmRSS`: resident now, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident, in KiB.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status`; `None` where there
/// is no such file (not Linux).
///
/// ```
/// if let Some(status) = eventcore_chaos::soak::read_proc_status() {
///     assert!(status.rss_kib > 0 && status.rss_kib <= status.hwm_kib);
/// }
/// ```
pub fn read_proc_status() -> Option<ProcStatus> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_proc_status(&text)
}

fn parse_proc_status(text: &str) -> Option<ProcStatus> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(ProcStatus {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// What one executor holds.
///
/// ```
/// let e = eventcore_chaos::soak::ExecutorSample::default();
/// assert!(e.stream_events <= e.stream_capacity && e.view_bytes <= e.view_capacity);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutorSample {
    /// Streams in the stream cache.
    pub stream_streams: usize,
    /// Events in the stream cache.
    pub stream_events: usize,
    /// The stream cache's bound (events, and streams).
    pub stream_capacity: usize,
    /// Entries in the view cache.
    pub view_entries: usize,
    /// Approximate bytes in the view cache.
    pub view_bytes: usize,
    /// The view cache's bound in bytes.
    pub view_capacity: usize,
    /// View cache evictions so far.
    pub view_evictions: u64,
    /// Snapshots written so far.
    pub snapshots_written: u64,
    /// Snapshots loaded on a cache miss so far.
    pub snapshots_loaded: u64,
    /// Appends waiting in its `BatchingStore`, if it batches.
    pub batching_queued: Option<usize>,
    /// Its clients: the most appends that can wait in its queue.
    pub clients: usize,
}

/// What one subscription or projection holds.
///
/// ```
/// let c = eventcore_chaos::soak::ConsumerSample::default();
/// assert!(c.buffered <= c.limit);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerSample {
    /// Events fetched and not yet handled, now.
    pub buffered: usize,
    /// The most ever buffered.
    pub max_buffered: usize,
    /// Its buffer limit.
    pub limit: usize,
    /// The highest position handled.
    pub handled_through: u64,
    /// Events handled so far.
    pub events: u64,
    /// Restarts after an error so far.
    pub restarts: u64,
}

/// One sample.
///
/// ```
/// let s = eventcore_chaos::soak::Sample::default();
/// assert_eq!(s.rss_kib, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_secs: f64,
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// `VmHWM` in KiB.
    pub hwm_kib: u64,
    /// Tasks alive on the runtime.
    pub tasks: usize,
    /// Connections in the store's pool, and how many are idle.
    pub pool: (u32, usize),
    /// The clients' counters.
    pub totals: Totals,
    /// Every executor.
    pub executors: Vec<ExecutorSample>,
    /// Every consumer (the two subscriptions, then the projection).
    pub consumers: Vec<ConsumerSample>,
}

/// Takes a sample now.
pub(super) fn take(
    started: Instant,
    store: &PostgresStore,
    executors: &Executors,
    consumers: &Consumers,
    shared: &Shared,
) -> Sample {
    let status = read_proc_status().unwrap_or_default();
    Sample {
        t_secs: started.elapsed().as_secs_f64(),
        rss_kib: status.rss_kib,
        hwm_kib: status.hwm_kib,
        tasks: tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        pool: (store.pool().size(), store.pool().num_idle()),
        totals: shared.totals(),
        executors: executors.sample(),
        consumers: consumers.sample(),
    }
}

/// The samples as CSV, one line each, flushed as written (a soak cut short
/// keeps what it sampled).
pub(super) struct CsvWriter {
    out: BufWriter<File>,
}

impl CsvWriter {
    pub(super) fn create(path: &Path, executors: &Executors, consumers: &Consumers) -> Result<Self, String> {
        let file = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let mut header: Vec<String> = [
            "t_s",
            "rss_kib",
            "hwm_kib",
            "tasks",
            "pool_size",
            "pool_idle",
            "committed",
            "refused",
            "failed",
            "events",
            "accounts",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for i in 0..executors.list.len() {
            for column in [
                "stream_streams",
                "stream_events",
                "stream_capacity",
                "view_entries",
                "view_bytes",
                "view_capacity",
                "view_evictions",
                "snapshots_written",
                "snapshots_loaded",
                "batching_queued",
            ] {
                header.push(format!("e{i}_{column}"));
            }
        }
        for name in consumers.names() {
            let name = name.replace('-', "_");
            for column in ["buffered", "max_buffered", "limit", "handled_through", "events"] {
                header.push(format!("{name}_{column}"));
            }
        }
        let mut writer = CsvWriter {
            out: BufWriter::new(file),
        };
        writer.line(&header.join(","))?;
        Ok(writer)
    }

    pub(super) fn write(&mut self, sample: &Sample) -> Result<(), String> {
        self.line(&csv_row(sample))
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| format!("writing the CSV: {e}"))
    }
}

fn csv_row(s: &Sample) -> String {
    let t = &s.totals;
    let mut row = vec![
        format!("{:.1}", s.t_secs),
        s.rss_kib.to_string(),
        s.hwm_kib.to_string(),
        s.tasks.to_string(),
        s.pool.0.to_string(),
        s.pool.1.to_string(),
        t.committed.to_string(),
        t.refused.to_string(),
        t.failed.to_string(),
        t.events.to_string(),
        t.accounts.to_string(),
    ];
    for e in &s.executors {
        row.extend([
            e.stream_streams.to_string(),
            e.stream_events.to_string(),
            e.stream_capacity.to_string(),
            e.view_entries.to_string(),
            e.view_bytes.to_string(),
            e.view_capacity.to_string(),
            e.view_evictions.to_string(),
            e.snapshots_written.to_string(),
            e.snapshots_loaded.to_string(),
            e.batching_queued.map_or(String::new(), |q| q.to_string()),
        ]);
    }
    for c in &s.consumers {
        row.extend([
            c.buffered.to_string(),
            c.max_buffered.to_string(),
            c.limit.to_string(),
            c.handled_through.to_string(),
            c.events.to_string(),
        ]);
    }
    row.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields_are_read_in_kib() {
        let text = "Name:\tsoak\nVmPeak:\t  900 kB\nVmHWM:\t   5120 kB\nVmRSS:\t   4096 kB\nThreads:\t3\n";
        assert_eq!(
            parse_proc_status(text),
            Some(ProcStatus {
                rss_kib: 4096,
                hwm_kib: 5120
            })
        );
        assert_eq!(parse_proc_status("Name:\tsoak\n"), None);
    }
}
