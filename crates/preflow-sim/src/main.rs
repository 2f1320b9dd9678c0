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
    /// Threads running seeds (each seed runs in one thread, deterministically).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs seeds `from..to`; returns the summed stats and the failures.
fn run_range(from: u64, to: u64) -> (preflow_sim::Stats, Vec<(u64, preflow_sim::Violation)>) {
    let mut total = preflow_sim::Stats::default();
    let mut failures = Vec::new();
    for seed in from..to {
        match preflow_sim::run_seed(seed) {
            Ok(stats) => total.add(&stats),
            Err(v) => failures.push((seed, v)),
        }
    }
    (total, failures)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(seed) = args.replay {
        let options = preflow_sim::Options {
            trace: true,
            ..preflow_sim::Options::default()
        };
        return match preflow_sim::run_seed_with(seed, options) {
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
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1) as u64;
    let end = args.start.saturating_add(args.seeds);
    let chunk = args.seeds.div_ceil(threads).max(1);
    let mut total = preflow_sim::Stats::default();
    let mut failures: Vec<(u64, preflow_sim::Violation)> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let from = args.start.saturating_add(t * chunk).min(end);
                let to = from.saturating_add(chunk).min(end);
                s.spawn(move || run_range(from, to))
            })
            .collect();
        for h in handles {
            if let Ok((stats, mut failed)) = h.join() {
                total.add(&stats);
                failures.append(&mut failed);
            }
        }
    });
    failures.sort_by_key(|(seed, _)| *seed);
    let secs = started.elapsed().as_secs_f64();
    let first = failures
        .first()
        .map(|(s, v)| format!(" first_failure=seed {s}: {v}"))
        .unwrap_or_default();
    for (seed, v) in failures.iter().take(20) {
        eprintln!("seed {seed}: {v}");
    }
    println!(
        "seeds={} failed={} events={} requests={} tokens={} store_ops={} unavailable={} store_restarts={} quota_failed_open={} async_bound_checked={} async_overshoot={} kv_acknowledged={} apps_created={} seconds={:.1} seeds_per_second={:.0}{}",
        args.seeds,
        failures.len(),
        total.events,
        total.requests,
        total.tokens,
        total.store_ops,
        total.unavailable,
        total.store_restarts,
        total.failed_open,
        total.async_bound_checked,
        total.async_overshoot,
        total.kv_acknowledged,
        total.apps_created,
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
