//! The box office under the chaos harness, through its public API
//! ([`ChaosWorkload`], [`ChaosCommand`], [`run_workload`]): the fixed
//! domain's commands run through the real executor against PostgreSQL
//! behind the fault proxy, and its rules ([`BoxOfficeModel`]) hold.
//!
//! Budget: `EVENTCORE_CHAOS_SECS` seconds of faults (default 10); the seed
//! from `EVENTCORE_CHAOS_SEED` or the clock, printed with the report.
//! Needs PostgreSQL at `DATABASE_URL`: skipped with a notice when it cannot
//! be reached, a failure under `CI=true`.

use eventcore::StreamId;
use eventcore_chaos::faults::FaultRng;
use eventcore_chaos::run::{run_workload, ChaosConfig};
use eventcore_chaos::workload::{ChaosCommand, ChaosWorkload};
use eventcore_example_ticketing::{concert, reservation, BoxOfficeModel, Cancel, Reserve, Schedule};
use eventcore_sim::check::DomainModel;
use std::collections::BTreeMap;
use std::sync::Mutex;

const CONCERTS: u64 = 3;
const CAPACITY: u64 = 150;

/// Clients reserve 1–3 seats of one of three concerts under reservation
/// ids of their own (`reservation-<client>-<n>`), and cancel one of their
/// earlier reservations 40% of the time.
#[derive(Default)]
struct BoxOfficeWorkload {
    /// Per client: reservations issued so far, with their concert.
    issued: Mutex<BTreeMap<u64, Vec<(u64, StreamId)>>>,
}

impl ChaosWorkload for BoxOfficeWorkload {
    fn setup(&self) -> Vec<ChaosCommand> {
        (0..CONCERTS)
            .map(|c| {
                ChaosCommand::new(
                    format!("schedule {c}"),
                    Schedule {
                        concert: concert(c),
                        capacity: CAPACITY,
                    },
                )
            })
            .collect()
    }

    fn next(&self, client: u64, rng: &mut FaultRng) -> ChaosCommand {
        let mut issued = self.issued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = issued.entry(client).or_default();
        if !mine.is_empty() && rng.percent(40) {
            let (c, r) = mine[rng.below(mine.len() as u64) as usize].clone();
            return ChaosCommand::new(
                format!("cancel {r}"),
                Cancel {
                    concert: concert(c),
                    reservation: r,
                },
            );
        }
        // Concert 0 is hot.
        let c = if rng.percent(60) { 0 } else { rng.below(CONCERTS) };
        let n = client * 1_000_000 + mine.len() as u64;
        let r = reservation(n);
        let seats = rng.between(1, 3);
        mine.push((c, r.clone()));
        ChaosCommand::new(
            format!("reserve {r}: {seats} of concert {c}"),
            Reserve {
                concert: concert(c),
                reservation: r,
                seats,
                buggy: false,
            },
        )
    }

    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        vec![Box::<BoxOfficeModel>::default()]
    }

    fn hot_streams(&self) -> Vec<StreamId> {
        vec![concert(0)]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_box_office_keeps_its_rules_under_chaos() {
    let mut config = ChaosConfig::from_env(10);
    config.clients = 8;
    println!(
        "chaos seed {}, {} s of faults",
        config.seed,
        config.fault_phase.as_secs()
    );
    let options = eventcore_tests::postgres::options("chaos_ticketing").max_connections(8);
    let Some(direct) = eventcore_tests::postgres::fresh_store_with(options).await else {
        return;
    };
    let seed = config.seed;
    let report = match run_workload(config, direct.clone(), BoxOfficeWorkload::default()).await {
        Ok(report) => report,
        Err(error) => panic!("chaos run (seed {seed}) could not be carried out: {error}"),
    };
    println!("{report}");
    if report.passed() {
        let _ = direct.drop_schema().await;
    }
    assert!(report.passed(), "{report}");
    assert!(report.commands > CONCERTS as usize, "{report}");
}
