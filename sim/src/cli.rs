//! Command-line parsing and output. Wall-clock time is read here only to
//! report seeds per second; nothing simulated sees it.

use eventcore_sim::coverage::REQUIRED;
use eventcore_sim::sweep::{self, default_failure_dir, parse_seed_list, SweepConfig};
use eventcore_sim::{run, Canary, Profile, SimConfig};
use std::ops::Range;

/// `println!` that treats a closed output (`eventcore-sim --seed 42 | head`)
/// as the reader having seen enough: the process ends quietly with the
/// shell's "closed pipe" status (141) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Profile(#[from] eventcore_sim::faults::UnknownProfile),
    #[error(transparent)]
    Canary(#[from] eventcore_sim::store::UnknownCanary),
    #[error(transparent)]
    Seeds(#[from] eventcore_sim::sweep::SeedListError),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

const USAGE: &str = "usage: eventcore-sim (--seed N | --seeds A..B | --regressions FILE) \
[--profile calm|default|chaos|extreme|all] [--scale N] [--canary skip-last-conflict-check|batch-checks-stale-heads|drop-tombstones|keep-forgotten-keys] [--quiet]";

enum Mode {
    One(u64),
    Many(Range<u64>),
    Regressions(String),
}

struct Args {
    mode: Mode,
    profiles: Option<Vec<Profile>>,
    scale: u32,
    canary: Option<Canary>,
    quiet: bool,
}

fn parse(args: Vec<String>) -> Result<Args, CliError> {
    let mut mode = None;
    let mut profiles = None;
    let mut scale = 1;
    let mut canary = None;
    let mut quiet = false;
    let mut it = args.into_iter();
    let usage = |m: &str| CliError::Usage(format!("{m}\n{USAGE}"));
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                mode = Some(Mode::One(v.parse().map_err(|_| usage("--seed takes a number"))?));
            }
            "--seeds" => {
                let v = value("--seeds")?;
                let (a, b) = v.split_once("..").ok_or_else(|| usage("--seeds takes A..B"))?;
                let a: u64 = a.parse().map_err(|_| usage("--seeds takes A..B"))?;
                let b: u64 = b.parse().map_err(|_| usage("--seeds takes A..B"))?;
                mode = Some(Mode::Many(a..b));
            }
            "--regressions" => mode = Some(Mode::Regressions(value("--regressions")?)),
            "--profile" => {
                let v = value("--profile")?;
                profiles = Some(if v == "all" {
                    Profile::ALL.to_vec()
                } else {
                    vec![v.parse::<Profile>()?]
                });
            }
            "--scale" => {
                scale = value("--scale")?.parse().map_err(|_| usage("--scale takes a number"))?;
            }
            "--canary" => canary = Some(value("--canary")?.parse::<Canary>()?),
            "--quiet" => quiet = true,
            "--help" | "-h" => return Err(usage("")),
            other => return Err(usage(&format!("unknown argument `{other}`"))),
        }
    }
    let mode = mode.ok_or_else(|| usage("say which seeds to run"))?;
    Ok(Args {
        mode,
        profiles,
        scale,
        canary,
        quiet,
    })
}

pub fn main(args: Vec<String>) -> i32 {
    match parse(args).and_then(execute) {
        Ok(code) => code,
        Err(error) => {
            let mut text = error.to_string();
            let mut next = std::error::Error::source(&error);
            while let Some(source) = next {
                text.push_str(&format!(": {source}"));
                next = source.source();
            }
            eprintln!("{text}");
            2
        }
    }
}

fn execute(args: Args) -> Result<i32, CliError> {
    match &args.mode {
        Mode::One(seed) => Ok(replay(*seed, &args)),
        Mode::Many(seeds) => {
            let mut config = SweepConfig::new(seeds.clone());
            if let Some(p) = &args.profiles {
                config.profiles = p.clone();
            }
            config.canary = args.canary;
            config.scale = args.scale;
            Ok(run_sweep(&config, &args))
        }
        Mode::Regressions(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
            let mut failed = 0;
            for (seed, profile) in parse_seed_list(&text)? {
                let config = SimConfig {
                    seed,
                    profile,
                    canary: args.canary,
                    keep_trace: false,
                    scale: args.scale,
                    ..SimConfig::new(seed)
                };
                let report = run(&config);
                if report.passed() {
                    say!("ok   seed {seed} ({profile}) trace {:016x}", report.trace_hash);
                } else {
                    failed += 1;
                    say!("{}", sweep::failure(&config, &report, Some(&default_failure_dir())));
                }
            }
            Ok(i32::from(failed > 0))
        }
    }
}

fn replay(seed: u64, args: &Args) -> i32 {
    let config = SimConfig {
        seed,
        profile: args
            .profiles
            .as_ref()
            .and_then(|p| p.first().copied())
            .unwrap_or(Profile::Default),
        canary: args.canary,
        keep_trace: true,
        scale: args.scale,
        ..SimConfig::new(seed)
    };
    let report = run(&config);
    if !args.quiet {
        for line in &report.trace {
            say!("{line}");
        }
    }
    say!("parameters: {}", report.parameters);
    say!(
        "seed {seed}: {} steps, {:?} simulated, {} events, trace hash {:016x}",
        report.steps,
        report.simulated,
        report.history.events.len(),
        report.trace_hash
    );
    say!("coverage:\n{}", report.coverage);
    if report.passed() {
        say!("PASSED");
        0
    } else {
        say!("{}", sweep::failure(&config, &report, Some(&default_failure_dir())));
        1
    }
}

#[allow(clippy::disallowed_methods)] // wall clock only to report throughput
fn run_sweep(config: &SweepConfig, args: &Args) -> i32 {
    let started = std::time::Instant::now();
    let report = sweep::sweep(config);
    let secs = started.elapsed().as_secs_f64();
    say!(
        "{} seeds in {secs:.1}s ({:.1} seeds/s), {} steps, {} failures",
        report.runs,
        report.runs as f64 / secs.max(1e-9),
        report.steps,
        report.failures.len()
    );
    if !args.quiet {
        say!("coverage:\n{}", report.coverage);
    }
    for failure in &report.failures {
        say!("{failure}");
    }
    let missing = report.coverage.missing(REQUIRED);
    if !missing.is_empty() && args.canary.is_none() && report.runs >= 200 {
        say!("coverage: never exercised: {}", missing.join(", "));
        return 1;
    }
    i32::from(!report.failures.is_empty())
}
