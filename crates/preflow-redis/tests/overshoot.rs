//! The bound on what asynchronous Quota admits beyond its limit, asserted on schedules
//! driven step by step (flushes called explicitly, so the staleness of each instance's
//! view is exactly what the bound assumes):
//!
//! `admitted ≤ L + (k − 1) · min(L, r · 2T)`
//!
//! for `k` instances, each receiving `r` requests per step and flushing every `T` steps
//! at its own phase (in wall-clock terms: `r` requests per second per instance, flush
//! interval `T`, plus the flush round trip in the window; see the crate docs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::num::NonZeroU32;

use common::{now, server, store};
use preflow_ratelimit::{Quota, QuotaCheck, QuotaConfig, TimeUnit};
use preflow_redis::{CounterPolicy, Counters, Mode};

/// Runs `k` instances for `steps` steps; returns the total admitted.
async fn run(k: usize, limit: u64, per_step: u64, flush_every: usize, steps: usize) -> u64 {
    let server = server();
    common::clear_of_the_hour(std::time::Duration::from_secs(30)).await;
    let quota = Quota::new(QuotaConfig::new(limit, NonZeroU32::MIN, TimeUnit::Hour)).unwrap();
    let mut instances = Vec::new();
    for _ in 0..k {
        instances.push(Counters::new(store(&server).await));
    }
    let key = format!("quota:api:Q:{k}-{limit}-{per_step}-{flush_every}");
    let policy = CounterPolicy::new(Mode::Asynchronous);
    let mut admitted = 0;
    for step in 0..steps {
        for (i, counters) in instances.iter().enumerate() {
            // Unaligned flush timers: instance i flushes at its own phase.
            if (step + i * flush_every / k).is_multiple_of(flush_every) {
                counters.flush().await.unwrap();
            }
            for _ in 0..per_step {
                let op = quota.store_op(&QuotaCheck::new(&key, now(), 1));
                let reply = counters.run(&op, policy).await;
                if op.resolve(&reply).unwrap().is_allowed() {
                    admitted += 1;
                }
            }
        }
    }
    admitted
}

fn bound(k: u64, limit: u64, per_step: u64, flush_every: u64) -> u64 {
    limit + (k - 1) * limit.min(per_step * 2 * flush_every)
}

#[tokio::test]
async fn overshoot_stays_within_the_stated_bound() {
    // (instances, limit, requests per step per instance, flush every T steps)
    for (k, limit, r, t) in [
        (2, 100, 1, 5),
        (2, 100, 3, 10),
        (3, 100, 2, 4),
        (4, 1000, 5, 10),
        (3, 50, 10, 10), // the rate term exceeds L: each other instance adds at most L
    ] {
        let admitted = run(k, limit, r, t, 400).await;
        let b = bound(k as u64, limit, r, t as u64);
        eprintln!("k={k} L={limit} r={r} T={t}: admitted {admitted}, bound {b}");
        assert!(admitted >= limit, "the limit is reached: {admitted}");
        assert!(
            admitted <= b,
            "k={k} L={limit} r={r} T={t}: {admitted} > {b}"
        );
    }
}

#[tokio::test]
async fn one_instance_never_overshoots() {
    let admitted = run(1, 100, 7, 10, 100).await;
    assert_eq!(admitted, 100);
}
