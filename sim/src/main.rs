//! `eventcore-sim`: replay one seed with its trace, or sweep many.
//!
//! ```text
//! eventcore-sim --seed 42 [--profile chaos]     replay one seed, print its trace
//! eventcore-sim --seeds 0..10000 [--profile all] sweep
//! eventcore-sim --regressions sim/regression-seeds.txt
//! options: --scale N  --canary skip-last-conflict-check  --quiet
//! ```

mod cli;

fn main() {
    std::process::exit(cli::main(std::env::args().skip(1).collect()));
}
