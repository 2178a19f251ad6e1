//! What a soak found: every bound checked at every sample, the final
//! checks, the resident memory's summary and its least-squares slope after
//! warm-up, a table by time and a text chart.

use super::sample::Sample;
use super::workload::Totals;
use super::SoakConfig;
use std::fmt::{self, Write as _};

const MIB: f64 = 1024.0;

/// The least-squares slope of `points` (x, y): `None` with fewer than two
/// distinct x.
///
/// ```
/// use eventcore_chaos::soak::least_squares_slope;
/// let line = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)];
/// assert_eq!(least_squares_slope(&line), Some(2.0));
/// assert_eq!(least_squares_slope(&[(1.0, 1.0)]), None);
/// ```
pub fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The resident memory over a soak, in MiB.
///
/// ```
/// let s = eventcore_chaos::soak::Summary::default();
/// assert_eq!(s.slope_mib_per_min, 0.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// When warm-up ended (the first sample at or after it), in seconds.
    pub warmup_secs: f64,
    /// `VmRSS` at the end of warm-up.
    pub rss_warmup_mib: f64,
    /// `VmRSS` at the last sample.
    pub rss_end_mib: f64,
    /// The highest `VmRSS` sampled.
    pub rss_max_mib: f64,
    /// The highest `VmRSS` sampled after warm-up.
    pub rss_max_after_warmup_mib: f64,
    /// `VmHWM` at the last sample.
    pub hwm_end_mib: f64,
    /// Least-squares slope of `VmRSS` after warm-up, in MiB per minute.
    pub slope_mib_per_min: f64,
}

/// What a soak found.
///
/// ```
/// # use eventcore_chaos::soak::*;
/// # use std::time::Duration;
/// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
/// # let mut config = SoakConfig::new(Duration::from_secs(3));
/// # config.warmup = Duration::from_secs(1);
/// # let report = SoakReport {
/// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
/// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
/// # };
/// assert!(report.passed());
/// let summary = report.summary().expect("samples after warm-up");
/// assert_eq!((summary.rss_warmup_mib, summary.rss_end_mib, summary.slope_mib_per_min), (10.0, 10.0, 0.0));
/// println!("{report}\n{}\n{}", report.table(1.0), report.chart(40, 8));
/// ```
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// The configuration it ran with.
    pub config: SoakConfig,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// How long the load ran, in seconds.
    pub load_secs: f64,
    /// The clients' counters at the end.
    pub totals: Totals,
    /// The first few command failures (other than refusals), in words.
    pub errors: Vec<String>,
    /// What the final checks found wrong: consumers not caught up or
    /// restarted, events missed, the projection's money not conserved.
    pub problems: Vec<String>,
}

impl SoakReport {
    pub(super) fn new(
        config: &SoakConfig,
        samples: Vec<Sample>,
        load_secs: f64,
        totals: Totals,
        errors: Vec<String>,
        problems: Vec<String>,
    ) -> Self {
        SoakReport {
            config: config.clone(),
            samples,
            load_secs,
            totals,
            errors,
            problems,
        }
    }

    /// The most tasks that may be alive on the runtime: the clients, the
    /// consumers' drive loops, the notifier's listener, every batching
    /// executor's worker and batches in flight, every executor's snapshot
    /// writes in flight (at most 8 each), and 16 for the pool and the test
    /// harness.
    ///
    /// ```
    /// # use eventcore_chaos::soak::*;
    /// # use std::time::Duration;
    /// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
    /// # let mut config = SoakConfig::new(Duration::from_secs(3));
    /// # config.warmup = Duration::from_secs(1);
    /// # let report = SoakReport {
    /// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
    /// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
    /// # };
    /// // 16 clients, 3 consumers, the listener, 2 batching workers and their
    /// // batches, 4 × 8 snapshot writes, 16.
    /// assert_eq!(report.task_bound(), 16 + 3 + 1 + 2 * 2 + 32 + 16);
    /// ```
    pub fn task_bound(&self) -> usize {
        let c = &self.config;
        let batching = c.executors / 2;
        c.clients() + 3 + 1 + batching * (1 + c.batching.max_in_flight) + c.executors * 8 + 16
    }

    /// Every bound broken, at any sample: each cache within its capacity
    /// (the stream cache in events and in streams, the view cache in
    /// bytes), each batching queue within its executor's clients, each
    /// consumer's buffer (now and its most ever) within its limit, the
    /// runtime's tasks within [`SoakReport::task_bound`]. One line per kind
    /// of structure broken, with how often and the first time.
    ///
    /// ```
    /// # use eventcore_chaos::soak::*;
    /// # use std::time::Duration;
    /// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
    /// # let mut config = SoakConfig::new(Duration::from_secs(3));
    /// # config.warmup = Duration::from_secs(1);
    /// # let report = SoakReport {
    /// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
    /// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
    /// # };
    /// let mut report = report;
    /// report.samples[2].consumers.push(ConsumerSample { buffered: 9, limit: 8, ..ConsumerSample::default() });
    /// assert_eq!(report.violations().len(), 1);
    /// assert!(!report.passed());
    /// ```
    pub fn violations(&self) -> Vec<String> {
        let mut broken: Vec<(String, usize, String)> = Vec::new();
        let mut note = |what: String, detail: String| match broken.iter_mut().find(|b| b.0 == what) {
            Some(b) => b.1 += 1,
            None => broken.push((what, 1, detail)),
        };
        let task_bound = self.task_bound();
        for s in &self.samples {
            let at = s.t_secs;
            for (i, e) in s.executors.iter().enumerate() {
                if e.stream_events > e.stream_capacity {
                    let detail = format!("{} events > {} at {at:.0} s", e.stream_events, e.stream_capacity);
                    note(format!("executor {i}'s stream cache (events)"), detail);
                }
                if e.stream_streams > e.stream_capacity {
                    let detail = format!("{} streams > {} at {at:.0} s", e.stream_streams, e.stream_capacity);
                    note(format!("executor {i}'s stream cache (streams)"), detail);
                }
                if e.view_bytes > e.view_capacity {
                    let detail = format!("{} bytes > {} at {at:.0} s", e.view_bytes, e.view_capacity);
                    note(format!("executor {i}'s view cache"), detail);
                }
                if let Some(queued) = e.batching_queued.filter(|q| *q > e.clients) {
                    let detail = format!("{queued} queued > {} clients at {at:.0} s", e.clients);
                    note(format!("executor {i}'s batching queue"), detail);
                }
            }
            for (i, c) in s.consumers.iter().enumerate() {
                if c.buffered > c.limit || c.max_buffered > c.limit {
                    let detail = format!(
                        "{} buffered (most {}) > {} at {at:.0} s",
                        c.buffered, c.max_buffered, c.limit
                    );
                    note(format!("consumer {i}'s buffer"), detail);
                }
            }
            if s.tasks > task_bound {
                note(
                    "runtime tasks".to_owned(),
                    format!("{} > {task_bound} at {at:.0} s", s.tasks),
                );
            }
        }
        broken
            .into_iter()
            .map(|(what, times, first)| format!("{what}: over its bound in {times} samples (first: {first})"))
            .collect()
    }

    /// True when no bound was broken and the final checks found nothing.
    ///
    /// ```
    /// # use eventcore_chaos::soak::*;
    /// # use std::time::Duration;
    /// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
    /// # let mut config = SoakConfig::new(Duration::from_secs(3));
    /// # config.warmup = Duration::from_secs(1);
    /// # let report = SoakReport {
    /// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
    /// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
    /// # };
    /// let mut report = report;
    /// assert!(report.passed());
    /// report.problems.push("the consumers did not catch up with the log in time".into());
    /// assert!(!report.passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.violations().is_empty() && self.problems.is_empty()
    }

    /// The resident memory's summary; `None` without a sample after
    /// warm-up.
    ///
    /// ```
    /// # use eventcore_chaos::soak::*;
    /// # use std::time::Duration;
    /// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
    /// # let mut config = SoakConfig::new(Duration::from_secs(3));
    /// # config.warmup = Duration::from_secs(1);
    /// # let report = SoakReport {
    /// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
    /// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
    /// # };
    /// let summary = report.summary().expect("samples after warm-up");
    /// assert_eq!(summary.warmup_secs, 1.0);
    /// assert_eq!(summary.rss_max_mib, 10.0);
    /// ```
    pub fn summary(&self) -> Option<Summary> {
        let warmup = self.config.warmup.as_secs_f64();
        let start = self.samples.iter().position(|s| s.t_secs >= warmup)?;
        let after = &self.samples[start..];
        let last = self.samples.last()?;
        let mib = |kib: u64| kib as f64 / MIB;
        let points: Vec<(f64, f64)> = after.iter().map(|s| (s.t_secs / 60.0, mib(s.rss_kib))).collect();
        Some(Summary {
            warmup_secs: after[0].t_secs,
            rss_warmup_mib: mib(after[0].rss_kib),
            rss_end_mib: mib(last.rss_kib),
            rss_max_mib: mib(self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            rss_max_after_warmup_mib: mib(after.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            hwm_end_mib: mib(last.hwm_kib),
            slope_mib_per_min: least_squares_slope(&points).unwrap_or(0.0),
        })
    }

    /// A markdown table of the samples nearest every `step_secs`: resident
    /// memory, work done so far, and what the caches hold (summed over the
    /// executors).
    ///
    /// ```
    /// # use eventcore_chaos::soak::*;
    /// # use std::time::Duration;
    /// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
    /// # let mut config = SoakConfig::new(Duration::from_secs(3));
    /// # config.warmup = Duration::from_secs(1);
    /// # let report = SoakReport {
    /// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
    /// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
    /// # };
    /// let table = report.table(2.0);
    /// assert_eq!(table.lines().count(), 2 + 3, "header, rule; t = 0, 2 and the last sample, 3");
    /// ```
    pub fn table(&self, step_secs: f64) -> String {
        let mut out = String::from(
            "| t (s) | VmRSS (MiB) | VmHWM (MiB) | commands | events | accounts | stream caches: streams / events | \
             view caches: entries / KiB | tasks |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let step = step_secs.max(1.0);
        let mut next = 0.0;
        for (i, s) in self.samples.iter().enumerate() {
            let last = i + 1 == self.samples.len();
            if s.t_secs + 0.5 < next && !last {
                continue;
            }
            while next <= s.t_secs + 0.5 {
                next += step;
            }
            let t = &s.totals;
            let sum = |f: fn(&super::ExecutorSample) -> usize| s.executors.iter().map(f).sum::<usize>();
            let _ = writeln!(
                out,
                "| {:.0} | {:.1} | {:.1} | {} | {} | {} | {} / {} | {} / {:.0} | {} |",
                s.t_secs,
                s.rss_kib as f64 / MIB,
                s.hwm_kib as f64 / MIB,
                t.committed + t.refused + t.failed,
                t.events,
                t.accounts,
                sum(|e| e.stream_streams),
                sum(|e| e.stream_events),
                sum(|e| e.view_entries),
                sum(|e| e.view_bytes) as f64 / 1024.0,
                s.tasks,
            );
        }
        out
    }

    /// `VmRSS` over time as text, `width` columns by `height` rows, from 0
    /// to a little above the highest sample (each column the highest sample
    /// in its time slice, or the one before when it has none).
    ///
    /// ```
    /// # use eventcore_chaos::soak::*;
    /// # use std::time::Duration;
    /// # let sample = |t: f64, rss_kib: u64| Sample { t_secs: t, rss_kib, hwm_kib: rss_kib, ..Sample::default() };
    /// # let mut config = SoakConfig::new(Duration::from_secs(3));
    /// # config.warmup = Duration::from_secs(1);
    /// # let report = SoakReport {
    /// #     config, load_secs: 3.0, totals: Totals::default(), errors: vec![], problems: vec![],
    /// #     samples: vec![sample(0.0, 8 << 10), sample(1.0, 10 << 10), sample(2.0, 10 << 10), sample(3.0, 10 << 10)],
    /// # };
    /// let chart = report.chart(20, 4);
    /// assert_eq!(chart.lines().count(), 4 + 2, "rows, axis, time labels");
    /// ```
    pub fn chart(&self, width: usize, height: usize) -> String {
        let (width, height) = (width.max(10), height.max(4));
        let Some(end) = self.samples.last().map(|s| s.t_secs.max(1.0)) else {
            return String::new();
        };
        let mut columns = vec![None::<u64>; width];
        for s in &self.samples {
            let x = ((s.t_secs / end) * (width - 1) as f64).round() as usize;
            let slot = &mut columns[x.min(width - 1)];
            *slot = Some(slot.map_or(s.rss_kib, |v| v.max(s.rss_kib)));
        }
        // Fewer samples than columns: a column without one repeats the last.
        let mut last = None;
        for column in &mut columns {
            match column {
                Some(kib) => last = Some(*kib),
                None => *column = last,
            }
        }
        let top_mib = self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / MIB;
        let top = nice_ceiling(top_mib * 1.1);
        let mut out = String::new();
        for row in (0..height).rev() {
            let level = top * (row as f64 + 0.5) / height as f64;
            let label = if row == height - 1 || row == 0 || row == height / 2 {
                format!("{:>6.0} MiB |", top * (row as f64 + 1.0) / height as f64)
            } else {
                "           |".to_owned()
            };
            out.push_str(&label);
            for column in &columns {
                let c = match column {
                    Some(kib) if *kib as f64 / MIB >= level => '#',
                    _ => ' ',
                };
                out.push(c);
            }
            out.push('\n');
        }
        let _ = writeln!(out, "     0 MiB +{}", "-".repeat(width));
        let _ = writeln!(
            out,
            "            0 s{:>w$}",
            format!("{end:.0} s"),
            w = width.saturating_sub(3)
        );
        out
    }
}

/// 1, 2 or 5 times a power of ten, at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * power)
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let t = &self.totals;
        writeln!(
            f,
            "soak: {:.0} s of load ({:.0} s warm-up), {} executors × {} clients ({} batching), {} samples",
            self.load_secs,
            c.warmup.as_secs_f64(),
            c.executors,
            c.clients_per_executor,
            c.executors / 2,
            self.samples.len()
        )?;
        writeln!(
            f,
            "bounds: stream caches {} events/streams, view caches {} bytes, subscriptions in batches of {} and {}, \
             projection in batches of {} (buffers: two batches), tasks ≤ {}",
            c.stream_cache_events,
            c.view_cache_bytes,
            c.subscription_batches[0],
            c.subscription_batches[1],
            c.projection_batch,
            self.task_bound()
        )?;
        writeln!(
            f,
            "commands: {} committed, {} refused, {} failed; {} events; {} accounts",
            t.committed, t.refused, t.failed, t.events, t.accounts
        )?;
        let most = |f: fn(&Sample) -> usize| self.samples.iter().map(f).max().unwrap_or(0);
        writeln!(
            f,
            "largest seen: stream cache {} streams / {} events, view cache {} entries / {} bytes, batching queue {}, \
             consumer buffers {}, tasks {}",
            most(|s| s.executors.iter().map(|e| e.stream_streams).max().unwrap_or(0)),
            most(|s| s.executors.iter().map(|e| e.stream_events).max().unwrap_or(0)),
            most(|s| s.executors.iter().map(|e| e.view_entries).max().unwrap_or(0)),
            most(|s| s.executors.iter().map(|e| e.view_bytes).max().unwrap_or(0)),
            most(|s| s.executors.iter().filter_map(|e| e.batching_queued).max().unwrap_or(0)),
            most(|s| s.consumers.iter().map(|c| c.max_buffered).max().unwrap_or(0)),
            most(|s| s.tasks),
        )?;
        if let Some(last) = self.samples.last() {
            let evictions: u64 = last.executors.iter().map(|e| e.view_evictions).sum();
            let written: u64 = last.executors.iter().map(|e| e.snapshots_written).sum();
            let loaded: u64 = last.executors.iter().map(|e| e.snapshots_loaded).sum();
            writeln!(
                f,
                "view cache evictions {evictions}, snapshots written {written}, loaded {loaded}"
            )?;
        }
        match self.summary() {
            Some(s) => writeln!(
                f,
                "VmRSS: {:.1} MiB at warm-up end ({:.0} s), {:.1} MiB at the end, max {:.1} MiB ({:.1} MiB after \
                 warm-up), VmHWM {:.1} MiB; slope after warm-up {:+.3} MiB/min",
                s.rss_warmup_mib,
                s.warmup_secs,
                s.rss_end_mib,
                s.rss_max_mib,
                s.rss_max_after_warmup_mib,
                s.hwm_end_mib,
                s.slope_mib_per_min
            )?,
            None => writeln!(f, "VmRSS: no sample after warm-up")?,
        }
        for error in &self.errors {
            writeln!(f, "command failure: {error}")?;
        }
        let violations = self.violations();
        for v in &violations {
            writeln!(f, "BOUND BROKEN: {v}")?;
        }
        for p in &self.problems {
            writeln!(f, "PROBLEM: {p}")?;
        }
        if violations.is_empty() && self.problems.is_empty() {
            writeln!(
                f,
                "every bound held at every sample; the consumers caught up and agree with the log"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::ExecutorSample;
    use std::time::Duration;

    fn report(rss: &[u64]) -> SoakReport {
        let mut config = SoakConfig::new(Duration::from_secs(rss.len() as u64));
        config.warmup = Duration::from_secs(2);
        let samples = rss
            .iter()
            .enumerate()
            .map(|(i, kib)| Sample {
                t_secs: i as f64,
                rss_kib: *kib,
                hwm_kib: *kib,
                executors: vec![ExecutorSample {
                    stream_capacity: 10,
                    view_capacity: 100,
                    clients: 4,
                    ..ExecutorSample::default()
                }],
                ..Sample::default()
            })
            .collect();
        SoakReport::new(&config, samples, rss.len() as f64, Totals::default(), vec![], vec![])
    }

    #[test]
    fn the_slope_leaves_out_warm_up() {
        // Growing fast during warm-up, then one MiB per second.
        let rss = [0, 50_000, 100_000, 101_024, 102_048, 103_072];
        let s = report(&rss).summary().expect("samples after warm-up");
        assert_eq!(s.warmup_secs, 2.0);
        assert!((s.slope_mib_per_min - 60.0).abs() < 1e-9, "{}", s.slope_mib_per_min);
        assert!((s.rss_end_mib - 103_072.0 / 1024.0).abs() < 1e-9);
    }

    #[test]
    fn a_bound_broken_once_is_reported_with_how_often() {
        let mut r = report(&[1, 1, 1, 1]);
        r.samples[1].executors[0].stream_streams = 11;
        r.samples[3].executors[0].stream_streams = 12;
        let v = r.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].contains("in 2 samples") && v[0].contains("11 streams > 10 at 1 s"),
            "{v:?}"
        );
        assert!(!r.passed());
    }

    #[test]
    fn the_chart_and_table_cover_every_sample() {
        let r = report(&[1024, 2048, 4096, 4096, 4096]);
        let chart = r.chart(20, 5);
        assert_eq!(chart.lines().count(), 7, "{chart}");
        assert!(chart.contains('#'));
        let table = r.table(2.0);
        assert_eq!(table.lines().count(), 2 + 3, "t = 0, 2, 4:\n{table}");
    }
}
