//! Sweeps: many seeds, one report. A failing seed is re-run with its trace
//! kept (the run is deterministic, so it fails the same way) and written,
//! with its history, to a file; the report carries the one-line command
//! that replays it.

use crate::coverage::Coverage;
use crate::faults::Profile;
use crate::history::History;
use crate::store::Canary;
use crate::world::{run, RunReport, SimConfig};
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where failing runs are written: `target/sim-failures/` of the workspace.
pub fn default_failure_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("target")
        .join("sim-failures")
}

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The seeds.
    pub seeds: Range<u64>,
    /// Profiles, rotated by seed (seed `s` runs `profiles[s % len]`).
    pub profiles: Vec<Profile>,
    /// The canary, if any.
    pub canary: Option<Canary>,
    /// Commands-per-client multiplier.
    pub scale: u32,
    /// Stop at the first failing seed.
    pub stop_at_first: bool,
    /// Where to write failing runs (`None`: do not write).
    pub failure_dir: Option<PathBuf>,
}

impl SweepConfig {
    /// Sweeps `seeds` rotating through every profile.
    pub fn new(seeds: Range<u64>) -> Self {
        SweepConfig {
            seeds,
            profiles: Profile::ALL.to_vec(),
            canary: None,
            scale: 1,
            stop_at_first: false,
            failure_dir: Some(default_failure_dir()),
        }
    }

    /// The configuration of one seed of the sweep.
    pub fn config(&self, seed: u64) -> SimConfig {
        let profile = if self.profiles.is_empty() {
            Profile::Default
        } else {
            self.profiles[(seed % self.profiles.len() as u64) as usize]
        };
        SimConfig {
            seed,
            profile,
            canary: self.canary,
            keep_trace: false,
            scale: self.scale,
            ..SimConfig::new(seed)
        }
    }
}

/// One failing seed.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What ran.
    pub config: SimConfig,
    /// The parameters the seed chose.
    pub parameters: String,
    /// What broke, first the earliest.
    pub violations: Vec<String>,
    /// The file holding its trace and history, if written.
    pub file: Option<PathBuf>,
}

impl Failure {
    /// The exact command that replays this failure.
    pub fn replay_command(&self) -> String {
        self.config.replay_command()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SIMULATION FAILED: seed {} (profile {})",
            self.config.seed, self.config.profile
        )?;
        writeln!(f, "  parameters: {}", self.parameters)?;
        for v in self.violations.iter().take(5) {
            writeln!(f, "  violated:   {v}")?;
        }
        if self.violations.len() > 5 {
            writeln!(f, "  ... and {} more", self.violations.len() - 5)?;
        }
        if let Some(file) = &self.file {
            writeln!(f, "  trace:      {}", file.display())?;
        }
        write!(f, "  replay:     {}", self.replay_command())
    }
}

/// The result of a sweep.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    /// Seeds run.
    pub runs: u64,
    /// Scheduler steps, summed.
    pub steps: u64,
    /// Coverage, summed.
    pub coverage: Coverage,
    /// Failing seeds.
    pub failures: Vec<Failure>,
}

/// Runs every seed of the sweep.
pub fn sweep(config: &SweepConfig) -> SweepReport {
    let mut report = SweepReport::default();
    for seed in config.seeds.clone() {
        let run_config = config.config(seed);
        let result = run(&run_config);
        report.runs += 1;
        report.steps += result.steps;
        report.coverage.merge(&result.coverage);
        if !result.passed() {
            report
                .failures
                .push(failure(&run_config, &result, config.failure_dir.as_deref()));
            if config.stop_at_first {
                break;
            }
        }
    }
    report
}

/// Describes a failed run and, with a directory, writes its trace and
/// history there (re-running the seed with the trace kept).
pub fn failure(config: &SimConfig, result: &RunReport, dir: Option<&Path>) -> Failure {
    let file = dir.and_then(|dir| {
        let traced = if config.keep_trace {
            None
        } else {
            Some(run(&SimConfig {
                keep_trace: true,
                ..config.clone()
            }))
        };
        let traced = traced.as_ref().unwrap_or(result);
        write_failure(dir, config, traced).ok()
    });
    Failure {
        config: config.clone(),
        parameters: result.parameters.clone(),
        violations: result.violations.iter().map(ToString::to_string).collect(),
        file,
    }
}

fn write_failure(dir: &Path, config: &SimConfig, report: &RunReport) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut name = format!("seed-{}-{}", config.seed, config.profile);
    if let Some(canary) = config.canary {
        name.push_str(&format!("-canary-{canary}"));
    }
    let path = dir.join(format!("{name}.txt"));
    let mut text = String::new();
    let _ = writeln!(text, "replay: {}", config.replay_command());
    let _ = writeln!(text, "parameters: {}", report.parameters);
    for v in &report.violations {
        let _ = writeln!(text, "violated: {v}");
    }
    let _ = writeln!(text, "\n== trace (hash {:016x})", report.trace_hash);
    for line in &report.trace {
        let _ = writeln!(text, "{line}");
    }
    let _ = writeln!(text, "\n== history");
    text.push_str(&render_history(&report.history));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The history in words: every event, then every command and what each of
/// its executions was told.
pub fn render_history(history: &History) -> String {
    let mut text = String::new();
    for e in &history.events {
        let _ = writeln!(
            text,
            "{:>6} {}@{} {} {} cmd={}",
            e.position,
            e.stream_id,
            e.version,
            e.event_type,
            e.payload.as_json(),
            e.metadata.command_id
        );
    }
    for c in &history.commands {
        let _ = writeln!(text, "command {} {}", c.command_id, c.label);
        for (i, x) in c.executions.iter().enumerate() {
            let _ = writeln!(
                text,
                "  run {} (after {}, healed {}, {} appends): {:?}",
                i + 1,
                x.started_after,
                x.healed,
                x.attempts.len(),
                x.outcome
            );
        }
    }
    text
}

/// A malformed line in a regression-seed list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("regression seeds line {line}: {message}")]
pub struct SeedListError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a regression-seed list: one `SEED PROFILE` per line; `#` starts a
/// comment.
///
/// ```
/// use eventcore_sim::{sweep::parse_seed_list, Profile};
/// let seeds = parse_seed_list("# found by the canary\n42 chaos\n7 default # lost ack\n")?;
/// assert_eq!(seeds, vec![(42, Profile::Chaos), (7, Profile::Default)]);
/// # Ok::<(), eventcore_sim::sweep::SeedListError>(())
/// ```
pub fn parse_seed_list(text: &str) -> Result<Vec<(u64, Profile)>, SeedListError> {
    let mut seeds = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let error = |message: String| SeedListError { line: i + 1, message };
        let mut parts = line.split_whitespace();
        let seed = parts
            .next()
            .unwrap_or("")
            .parse::<u64>()
            .map_err(|e| error(format!("bad seed: {e}")))?;
        let profile = match parts.next() {
            Some(name) => name.parse::<Profile>().map_err(|e| error(e.to_string()))?,
            None => Profile::Default,
        };
        seeds.push((seed, profile));
    }
    Ok(seeds)
}
