//! `preflow-sim`: runs seeds of the cluster simulation and prints one summary line.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

/// Deterministic simulation of preflow gateways and a faulty state store.
#[derive(Debug, Parser)]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run only this seed and print what it did (to replay a failure).
    #[arg(long)]
    replay: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(seed) = args.replay {
        return match preflow_sim::run_seed(seed) {
            Ok(stats) => {
                println!("seed {seed}: ok {stats:?}");
                ExitCode::SUCCESS
            }
            Err(v) => {
                println!("seed {seed}: {v}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let mut total = preflow_sim::Stats::default();
    let mut failures: Vec<(u64, preflow_sim::Violation)> = Vec::new();
    for seed in args.start..args.start.saturating_add(args.seeds) {
        match preflow_sim::run_seed(seed) {
            Ok(stats) => total.add(&stats),
            Err(v) => failures.push((seed, v)),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let first = failures
        .first()
        .map(|(s, v)| format!(" first_failure=seed {s}: {v}"))
        .unwrap_or_default();
    println!(
        "seeds={} failed={} events={} requests={} tokens={} store_ops={} unavailable={} store_restarts={} quota_failed_open={} seconds={:.1} seeds_per_second={:.0}{}",
        args.seeds,
        failures.len(),
        total.events,
        total.requests,
        total.tokens,
        total.store_ops,
        total.unavailable,
        total.store_restarts,
        total.failed_open,
        secs,
        args.seeds as f64 / secs.max(1e-9),
        first
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
