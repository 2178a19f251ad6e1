//! The demo: sweeps this build's box office (`BoxOffice::default()`, with
//! the planted bug under `--features planted-bug`) over the seeds
//! `0..EVENTCORE_SIM_SEEDS` (default 300) and prints the first failure.
//!
//! ```text
//! cargo run -p eventcore-example-ticketing                          # passes
//! cargo run -p eventcore-example-ticketing --features planted-bug   # finds the oversell
//! ```

use eventcore_example_ticketing::{BoxOffice, PLANTED_BUG};
use eventcore_sim::harness::Sweep;
use eventcore_sim::Profile;

fn main() {
    let seeds = std::env::var("EVENTCORE_SIM_SEEDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(300);
    println!("box office, planted bug {}", if PLANTED_BUG { "on" } else { "off" });
    let report = Sweep::new(BoxOffice::default)
        .seeds(0..seeds)
        .profiles(&Profile::ALL)
        .run();
    match report.failures.first() {
        Some(failure) => {
            println!("failed after {} seeds:\n{failure}", report.runs);
            std::process::exit(1);
        }
        None => println!("{} seeds passed", report.runs),
    }
}
