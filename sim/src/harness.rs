//! A seed sweep for `cargo test`: run a user [`Domain`] under many seeds
//! and fault profiles, and on a failure say exactly how to replay it.
//!
//! ```
//! # use eventcore_sim::{Domain, DomainCommand, check::DomainModel, rng::SimRng};
//! # use eventcore::{Command, Decision, Event, StreamId};
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct E;
//! # impl Event for E {}
//! # #[derive(Clone, Debug)] struct Touch(StreamId);
//! # impl Command for Touch {
//! #     type Event = E; type State = (); type Error = std::convert::Infallible;
//! #     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
//! #     fn apply(&self, _: &mut (), _: &StreamId, _: &E) {}
//! #     fn decide(&self, _: &(), out: &mut Decision<E>) -> Result<(), Self::Error> { out.emit(&self.0, E); Ok(()) }
//! # }
//! # struct Touches;
//! # impl Domain for Touches {
//! #     fn name(&self) -> String { "touches".into() }
//! #     fn setup(&mut self, _: &mut SimRng) -> Vec<DomainCommand> { Vec::new() }
//! #     fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
//! #         DomainCommand::new("touch", Touch(StreamId::new(format!("t-{}", rng.below(2))).unwrap()))
//! #     }
//! #     fn models(&self) -> Vec<Box<dyn DomainModel>> { Vec::new() }
//! # }
//! use eventcore_sim::harness::Sweep;
//! use eventcore_sim::Profile;
//!
//! let report = Sweep::new(|| Touches).seeds(0..8).profiles(&[Profile::Default, Profile::Chaos]).run();
//! report.assert_passed();
//! assert_eq!(report.runs, 8);
//! ```
//!
//! When a seed fails, the harness runs it again and compares the trace
//! hashes (a different hash means the domain is not deterministic: it drew
//! from somewhere other than the seeded stream). It then tries to shrink
//! the failure — the same seed under calmer fault profiles, with fewer
//! clients and commands, and with each fault kind of its plan switched off
//! in turn — and reports the smallest parameters that still fail. Every failure prints the line that replays it in the same test:
//!
//! ```text
//! EVENTCORE_SIM_SEED=17 EVENTCORE_SIM_PROFILE=chaos cargo test -p my-crate my_test
//! ```
//!
//! With [`SEED_VAR`] set, [`Sweep::run`] runs only that seed, with its
//! trace kept and printed to stderr (and [`PROFILE_VAR`],
//! [`MAX_CLIENTS_VAR`], [`MAX_COMMANDS_VAR`] pick its profile and the
//! caps of a shrunk run).

use crate::check::Violation;
use crate::faults::{FaultPlan, Profile, FAULT_KINDS};
use crate::rng::{Purpose, SimRng};
use crate::world::{run_with, RunReport, SimConfig};
use crate::Domain;
use std::fmt;
use std::ops::Range;

/// The environment variable that makes [`Sweep::run`] run one seed only,
/// with its trace printed.
pub const SEED_VAR: &str = "EVENTCORE_SIM_SEED";
/// The environment variable that picks the profile of that one seed
/// (`calm`, `default`, `chaos`, `extreme`; otherwise the sweep's rotation).
pub const PROFILE_VAR: &str = "EVENTCORE_SIM_PROFILE";
/// With [`SEED_VAR`]: at most this many clients (replays a shrunk failure;
/// see [`SimConfig::max_clients`]).
pub const MAX_CLIENTS_VAR: &str = "EVENTCORE_SIM_MAX_CLIENTS";
/// With [`SEED_VAR`]: at most this many commands per client (see
/// [`SimConfig::max_commands_per_client`]).
pub const MAX_COMMANDS_VAR: &str = "EVENTCORE_SIM_MAX_COMMANDS";
/// With [`SEED_VAR`]: fault kinds switched off, comma-separated (see
/// [`SimConfig::faults_off`]).
pub const FAULTS_OFF_VAR: &str = "EVENTCORE_SIM_FAULTS_OFF";

/// Many seeds of one user domain. `factory` builds a fresh domain for each
/// run (a domain keeps per-run state, such as the orders placed so far).
#[derive(Clone, Debug)]
pub struct Sweep<F> {
    factory: F,
    seeds: Range<u64>,
    profiles: Vec<Profile>,
    scale: u32,
    stop_at_first: bool,
    shrink: bool,
}

impl<D: Domain + 'static, F: Fn() -> D> Sweep<F> {
    /// Seeds `0..100` under [`Profile::Default`], stopping at the first
    /// failure, shrinking it.
    ///
    /// ```
    /// # use eventcore_sim::{Domain, DomainCommand, check::DomainModel, rng::SimRng};
    /// # use eventcore_sim::workload::bank::{account, OpenAccount};
    /// # struct Mine;
    /// # impl Domain for Mine {
    /// #     fn name(&self) -> String { "mine".into() }
    /// #     fn setup(&mut self, _: &mut SimRng) -> Vec<DomainCommand> { Vec::new() }
    /// #     fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
    /// #         DomainCommand::new("open", OpenAccount { account: account(rng.below(4) as u32), initial: 10 })
    /// #     }
    /// #     fn models(&self) -> Vec<Box<dyn DomainModel>> { Vec::new() }
    /// # }
    /// let sweep = eventcore_sim::harness::Sweep::new(|| Mine);
    /// # let _ = sweep;
    /// ```
    pub fn new(factory: F) -> Self {
        Sweep {
            factory,
            seeds: 0..100,
            profiles: vec![Profile::Default],
            scale: 1,
            stop_at_first: true,
            shrink: true,
        }
    }

    /// The seeds to run.
    pub fn seeds(mut self, seeds: Range<u64>) -> Self {
        self.seeds = seeds;
        self
    }

    /// The profiles, rotated by seed (seed `s` runs `profiles[s % len]`);
    /// an empty slice means [`Profile::Default`].
    pub fn profiles(mut self, profiles: &[Profile]) -> Self {
        self.profiles = profiles.to_vec();
        self
    }

    /// Multiplies the commands each client issues (see [`SimConfig::scale`]).
    pub fn scale(mut self, scale: u32) -> Self {
        self.scale = scale.max(1);
        self
    }

    /// Keep running after a failure (default: stop at the first).
    pub fn keep_going(mut self, keep_going: bool) -> Self {
        self.stop_at_first = !keep_going;
        self
    }

    /// Try to shrink a failure (default: on).
    pub fn shrink(mut self, shrink: bool) -> Self {
        self.shrink = shrink;
        self
    }

    /// The profile seed `seed` runs under.
    pub fn profile_of(&self, seed: u64) -> Profile {
        if self.profiles.is_empty() {
            Profile::Default
        } else {
            self.profiles[(seed % self.profiles.len() as u64) as usize]
        }
    }

    /// The configuration of seed `seed` under `profile`.
    pub fn config(&self, seed: u64, profile: Profile) -> SimConfig {
        let mut config = SimConfig::new(seed);
        config.profile = profile;
        config.scale = self.scale;
        config
    }

    /// Runs one configuration of the domain.
    pub fn run_one(&self, config: &SimConfig) -> RunReport {
        run_with(config, (self.factory)())
    }

    /// Runs one seed with its trace kept: what [`SEED_VAR`] does.
    pub fn replay(&self, seed: u64, profile: Profile) -> RunReport {
        let mut config = self.config(seed, profile);
        config.keep_trace = true;
        self.run_one(&config)
    }

    /// Runs a failure's seed again, with its profile and caps and its
    /// trace kept: the same trace hash as the failing run.
    pub fn replay_failure(&self, failure: &Failure) -> RunReport {
        let mut config = self.config(failure.seed, failure.profile);
        config.keep_trace = true;
        config.max_clients = failure.max_clients;
        config.max_commands_per_client = failure.max_commands_per_client;
        config.faults_off = failure.faults_off.clone();
        self.run_one(&config)
    }

    /// Runs the sweep (or, with [`SEED_VAR`] set, that one seed, printing
    /// its trace).
    pub fn run(&self) -> SweepReport {
        if let Some(seed) = env_seed() {
            let profile = env_profile().unwrap_or_else(|| self.profile_of(seed));
            let mut config = self.config(seed, profile);
            config.keep_trace = true;
            config.max_clients = env_u32(MAX_CLIENTS_VAR);
            config.max_commands_per_client = env_u32(MAX_COMMANDS_VAR);
            config.faults_off = std::env::var(FAULTS_OFF_VAR)
                .map(|v| v.split(',').filter(|k| !k.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            let report = self.run_one(&config);
            eprintln!("{SEED_VAR}={seed} {PROFILE_VAR}={profile}: {}", report.parameters);
            for line in &report.trace {
                eprintln!("{line}");
            }
            eprintln!("trace hash {:016x}", report.trace_hash);
            // A replay is not shrunk again.
            return self.collect(std::iter::once((config, report)), false);
        }
        let runs = self.seeds.clone().map(|seed| {
            let config = self.config(seed, self.profile_of(seed));
            let report = self.run_one(&config);
            (config, report)
        });
        self.collect(runs, self.shrink)
    }

    fn collect(&self, runs: impl Iterator<Item = (SimConfig, RunReport)>, shrink: bool) -> SweepReport {
        let mut report = SweepReport::default();
        for (config, run) in runs {
            report.runs += 1;
            report.steps += run.steps;
            if run.passed() {
                continue;
            }
            // Keeping the trace does not change its hash.
            let again = self.run_one(&config);
            let shrunk = if shrink {
                self.shrink_failure(config.seed, config.profile)
            } else {
                None
            };
            report.failures.push(Failure {
                seed: config.seed,
                profile: config.profile,
                scale: self.scale,
                max_clients: config.max_clients,
                max_commands_per_client: config.max_commands_per_client,
                faults_off: config.faults_off.clone(),
                parameters: run.parameters,
                trace_hash: run.trace_hash,
                replay_hash: again.trace_hash,
                violations: run.violations,
                shrunk,
            });
            if self.stop_at_first {
                break;
            }
        }
        report
    }

    /// The calmest profile, and then the fewest clients and commands per
    /// client, under which `seed` still fails.
    fn shrink_failure(&self, seed: u64, profile: Profile) -> Option<Shrunk> {
        let order = [Profile::Calm, Profile::Default, Profile::Chaos, Profile::Extreme];
        let fails = |config: &SimConfig| !self.run_one(config).passed();
        let mut best = self.config(seed, profile);
        for candidate in order.into_iter().take_while(|p| *p != profile) {
            let config = self.config(seed, candidate);
            if fails(&config) {
                best = config;
                break;
            }
        }
        for clients in 1..=6 {
            let mut config = best.clone();
            config.max_clients = Some(clients);
            if fails(&config) {
                best = config;
                break;
            }
        }
        for commands in 1..=16 * self.scale {
            let mut config = best.clone();
            config.max_commands_per_client = Some(commands);
            if fails(&config) {
                best = config;
                break;
            }
        }
        // Then each fault kind of the plan, switched off one at a time,
        // kept off while the seed still fails.
        let plan = FaultPlan::choose(best.profile, &mut SimRng::new(seed, Purpose::Faults))
            .with_batching(best.profile, &mut SimRng::new(seed, Purpose::Batching));
        let mut faults_needed = Vec::new();
        for kind in FAULT_KINDS.iter().filter(|kind| plan.has(kind)) {
            let mut config = best.clone();
            config.faults_off.push((*kind).to_string());
            if fails(&config) {
                best = config;
            } else {
                faults_needed.push((*kind).to_string());
            }
        }
        (best != self.config(seed, profile)).then_some(Shrunk {
            profile: best.profile,
            max_clients: best.max_clients,
            max_commands_per_client: best.max_commands_per_client,
            faults_off: best.faults_off,
            faults_needed,
        })
    }
}

fn env_seed() -> Option<u64> {
    std::env::var(SEED_VAR).ok().and_then(|v| v.trim().parse().ok())
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn env_profile() -> Option<Profile> {
    std::env::var(PROFILE_VAR).ok().and_then(|v| v.trim().parse().ok())
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Seeds run (not counting re-runs and shrinking).
    pub runs: u64,
    /// Scheduler steps over those runs.
    pub steps: u64,
    /// The failing seeds.
    pub failures: Vec<Failure>,
}

impl SweepReport {
    /// True when no seed failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics with every failure and how to replay it.
    pub fn assert_passed(&self) {
        if !self.passed() {
            let failures: Vec<String> = self.failures.iter().map(ToString::to_string).collect();
            panic!(
                "{} of {} seeds failed:\n{}",
                self.failures.len(),
                self.runs,
                failures.join("\n")
            );
        }
    }
}

/// The smallest parameters under which a failing seed still failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The calmest profile that still fails.
    pub profile: Profile,
    /// The fewest clients (`None`: as drawn).
    pub max_clients: Option<u32>,
    /// The fewest commands per client (`None`: as drawn).
    pub max_commands_per_client: Option<u32>,
    /// Fault kinds of the seed's plan that could be switched off.
    pub faults_off: Vec<String>,
    /// Fault kinds of the seed's plan that the failure still needs (each
    /// one, switched off alone, made it pass).
    pub faults_needed: Vec<String>,
}

/// One failing seed.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Its profile.
    pub profile: Profile,
    /// Its scale.
    pub scale: u32,
    /// Its clients cap (set only when replaying a shrunk run).
    pub max_clients: Option<u32>,
    /// Its commands-per-client cap (set only when replaying a shrunk run).
    pub max_commands_per_client: Option<u32>,
    /// Fault kinds it ran without (set only when replaying a shrunk run).
    pub faults_off: Vec<String>,
    /// The parameters the seed drew, in words.
    pub parameters: String,
    /// The failing run's trace hash.
    pub trace_hash: u64,
    /// The re-run's trace hash (equal when the run is deterministic).
    pub replay_hash: u64,
    /// What broke.
    pub violations: Vec<Violation>,
    /// The shrunk parameters, if shrinking found smaller ones.
    pub shrunk: Option<Shrunk>,
}

impl Failure {
    /// True when the re-run produced the same trace.
    pub fn deterministic(&self) -> bool {
        self.trace_hash == self.replay_hash
    }

    /// The environment that replays this seed alone in the same test.
    pub fn replay_env(&self) -> String {
        Shrunk {
            profile: self.profile,
            max_clients: self.max_clients,
            max_commands_per_client: self.max_commands_per_client,
            faults_off: self.faults_off.clone(),
            faults_needed: Vec::new(),
        }
        .replay_env(self.seed)
    }
}

impl Shrunk {
    /// The environment that replays the shrunk run of `seed` alone.
    ///
    /// ```
    /// use eventcore_sim::harness::Shrunk;
    /// use eventcore_sim::Profile;
    /// let shrunk = Shrunk {
    ///     profile: Profile::Default,
    ///     max_clients: Some(2),
    ///     max_commands_per_client: None,
    ///     faults_off: vec!["slow".into(), "read_lost".into()],
    ///     faults_needed: vec!["lost_ack".into()],
    /// };
    /// assert_eq!(
    ///     shrunk.replay_env(5),
    ///     "EVENTCORE_SIM_SEED=5 EVENTCORE_SIM_PROFILE=default EVENTCORE_SIM_MAX_CLIENTS=2 EVENTCORE_SIM_FAULTS_OFF=slow,read_lost"
    /// );
    /// ```
    pub fn replay_env(&self, seed: u64) -> String {
        let mut env = format!("{SEED_VAR}={seed} {PROFILE_VAR}={}", self.profile);
        if let Some(n) = self.max_clients {
            env.push_str(&format!(" {MAX_CLIENTS_VAR}={n}"));
        }
        if let Some(n) = self.max_commands_per_client {
            env.push_str(&format!(" {MAX_COMMANDS_VAR}={n}"));
        }
        if !self.faults_off.is_empty() {
            env.push_str(&format!(" {FAULTS_OFF_VAR}={}", self.faults_off.join(",")));
        }
        env
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} ({}) failed: {}", self.seed, self.profile, self.parameters)?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        if self.deterministic() {
            writeln!(
                f,
                "  deterministic: the re-run has the same trace hash {:016x}",
                self.trace_hash
            )?;
        } else {
            writeln!(
                f,
                "  NOT deterministic: trace hash {:016x}, re-run {:016x} (the domain draws from outside the seeded stream?)",
                self.trace_hash, self.replay_hash
            )?;
        }
        if let Some(s) = &self.shrunk {
            writeln!(
                f,
                "  still fails with profile={} clients<={} commands/client<={} faults off=[{}] (needs [{}]) (replay: {} cargo test <this test>)",
                s.profile,
                s.max_clients.map_or("as drawn".to_string(), |n| n.to_string()),
                s.max_commands_per_client
                    .map_or("as drawn".to_string(), |n| n.to_string()),
                s.faults_off.join(","),
                s.faults_needed.join(","),
                s.replay_env(self.seed)
            )?;
        }
        write!(
            f,
            "  replay it alone, trace printed: {} cargo test <this test>",
            self.replay_env()
        )
    }
}
