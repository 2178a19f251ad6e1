//! Drives concurrent clients for a fixed time and tallies what they did.

use std::future::Future;
use std::time::{Duration, Instant};

/// What one operation (one command, one replay, one batch) did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Units of work done (commands, transfers or events, per workload).
    pub units: u64,
    /// Version conflicts met on the way (each followed by a retry).
    pub conflicts: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Store round trips made (reads + appends), when the side counts them.
    pub round_trips: u64,
    /// The operation failed for good.
    pub error: Option<String>,
}

impl Outcome {
    /// `units` done on the first attempt.
    pub fn done(units: u64) -> Self {
        Outcome {
            units,
            ..Outcome::default()
        }
    }

    /// A failed operation.
    pub fn failed(error: impl ToString) -> Self {
        Outcome {
            error: Some(error.to_string()),
            ..Outcome::default()
        }
    }
}

/// Everything the clients of one measurement did.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Operations completed successfully.
    pub ops: u64,
    /// Units done by them.
    pub units: u64,
    /// Conflicts met.
    pub conflicts: u64,
    /// Retries made.
    pub retries: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Store round trips counted.
    pub round_trips: u64,
    /// The first failure, verbatim.
    pub first_error: Option<String>,
    /// Wall time from start to the last client's last operation.
    pub elapsed: Duration,
    /// Per-operation latency in microseconds.
    pub latencies: Vec<u32>,
    /// CPU time of this process (the clients and the library) meanwhile.
    pub client_cpu: Duration,
    /// CPU time of every PostgreSQL process meanwhile.
    pub server_cpu: Duration,
}

impl Tally {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another measurement of the same side (ABBA halves).
    pub fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.units += other.units;
        self.conflicts += other.conflicts;
        self.retries += other.retries;
        self.errors += other.errors;
        self.round_trips += other.round_trips;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.client_cpu += other.client_cpu;
        self.server_cpu += other.server_cpu;
    }

    /// The `q`-quantile of latency in microseconds.
    pub fn latency_us(&mut self, q: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }

    /// CPU microseconds per unit, this process and the server.
    pub fn cpu_per_unit_us(&self) -> (f64, f64) {
        let units = self.units.max(1) as f64;
        (
            self.client_cpu.as_secs_f64() * 1e6 / units,
            self.server_cpu.as_secs_f64() * 1e6 / units,
        )
    }
}

/// Runs every client in its own task, each repeating `op` until `duration`
/// has passed (an operation in flight at the deadline finishes and counts).
/// Clients are handed back for the next measurement.
pub async fn drive<C, F, Fut>(clients: Vec<C>, duration: Duration, op: F) -> (Vec<C>, Tally)
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (C, Outcome)> + Send + 'static,
{
    let cpu_before = cpu_now();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut client = client;
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let began = Instant::now();
                    let (back, outcome) = op(client).await;
                    client = back;
                    tally.conflicts += outcome.conflicts;
                    tally.retries += outcome.retries;
                    tally.round_trips += outcome.round_trips;
                    match outcome.error {
                        None => {
                            tally.ops += 1;
                            tally.units += outcome.units;
                            let micros = began.elapsed().as_micros();
                            tally.latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                        Some(error) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(error);
                        }
                    }
                }
                tally.elapsed = start.elapsed();
                (client, tally)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    let mut total = Tally::default();
    let mut elapsed = Duration::ZERO;
    for task in tasks {
        let (client, tally) = task.await.expect("benchmark client panicked");
        elapsed = elapsed.max(tally.elapsed);
        total.merge(tally);
        clients.push(client);
    }
    total.elapsed = elapsed;
    let cpu_after = cpu_now();
    total.client_cpu = cpu_after.0.saturating_sub(cpu_before.0);
    total.server_cpu = cpu_after.1.saturating_sub(cpu_before.1);
    (clients, total)
}

/// CPU time used so far by this process and by every process named
/// `postgres`, from /proc (zero where /proc is not there).
pub fn cpu_now() -> (Duration, Duration) {
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s))
        .unwrap_or(0);
    let mut server = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let path = entry.path();
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            if comm.trim() != "postgres" {
                continue;
            }
            if let Some(ticks) = std::fs::read_to_string(path.join("stat"))
                .ok()
                .and_then(|s| stat_ticks(&s))
            {
                server += ticks;
            }
        }
    }
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
    (Duration::from_millis(own * 10), Duration::from_millis(server * 10))
}

/// utime + stime from a /proc/<pid>/stat line.
fn stat_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields after the comm start at field 3 (state); utime is 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A small deterministic random source (SplitMix64) for picking accounts.
#[derive(Debug, Clone)]
pub struct Rng(eventcore::Entropy);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(eventcore::Entropy::new(seed))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Two distinct values below `n` (n ≥ 2).
    pub fn pair(&mut self, n: u32) -> (u32, u32) {
        let a = (self.next_u64() % u64::from(n)) as u32;
        let mut b = (self.next_u64() % u64::from(n - 1)) as u32;
        if b >= a {
            b += 1;
        }
        (a, b)
    }
}
