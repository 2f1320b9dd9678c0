//! Bounded memory: ten million distinct identifiers through one limiter.
//!
//! A counting global allocator (`stats_alloc`) measures the live heap. Idle identifiers (whose state equals
//! that of an absent key) are reclaimed by the store's amortised sweep, so the live heap
//! stays proportional to the identifiers active within one emission interval or window
//! (plus the store's idle grace), not to all identifiers ever seen.
// Test helpers outside `#[test]` functions unwrap as well.
#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Instant;

use preflow_ratelimit::{
    DirectSpikeArrest, Quota, QuotaCheck, QuotaConfig, QuotaType, SpikeArrest, SpikeArrestConfig,
    SpikeBehaviour, TimeUnit, Timestamp,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated on the heap.
fn live_heap() -> usize {
    let stats = GLOBAL.stats();
    stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated)
}

const T0: u64 = 1_700_000_000_000_000_000;
const IDENTIFIERS: u64 = 10_000_000;
/// The bound asserted on the live heap growth, and on its sampled peak.
const BOUND: usize = 16 << 20;
/// How often (in requests) the peak is sampled.
const SAMPLE: u64 = 997;

/// Runs every workload in one test so the heap figures see one workload at a time.
fn ten_million_identifiers_stay_bounded() {
    checks_on_known_keys_do_not_allocate();
    spike_arrest(SpikeArrestConfig::new("1000ps".parse().unwrap()));
    // Flexi, 100 per second: each identifier's window lasts 1 s from its first request.
    let config =
        QuotaConfig::new(100, NonZeroU32::MIN, TimeUnit::Second).with_type(QuotaType::Flexi);
    quota(Quota::new(config).unwrap());
}

fn spike_arrest(config: SpikeArrestConfig) {
    let base = live_heap();
    let mut peak = 0;
    let started = Instant::now();
    // 1000ps: an identifier's state is idle 1 ms after its request and reclaimable 1 s (the
    // default idle grace) later. One new identifier every 100 µs: about 10,000 are held.
    let spike = SpikeArrest::new(config);
    let mut key = String::with_capacity(32);
    let mut admitted = 0u64;
    for i in 0..IDENTIFIERS {
        key.clear();
        let _ = write!(key, "client-{i}");
        admitted += u64::from(
            spike
                .check(&key, Timestamp::from_nanos(T0 + i * 100_000), 1)
                .allowed,
        );
        if i % SAMPLE == 0 {
            peak = peak.max(live_heap().saturating_sub(base));
        }
    }
    assert_eq!(admitted, IDENTIFIERS);
    let live = live_heap().saturating_sub(base);
    println!(
        "spike arrest: {IDENTIFIERS} identifiers, {} keys held, live heap {live} bytes, peak {peak} bytes, {:.1?}",
        spike.store().len(),
        started.elapsed()
    );
    assert!(live < BOUND, "live heap grew by {live} bytes");
    assert!(peak < BOUND, "peak heap grew by {peak} bytes");
    drop(spike);
}

fn quota(quota: Quota) {
    let base = live_heap();
    let mut peak = 0;
    let started = Instant::now();
    // One new identifier every 100 µs: about 10,000 one-second windows are live at a time,
    // and as many expired ones wait out the 1 s idle grace.
    let mut key = String::with_capacity(32);
    let mut admitted = 0u64;
    for i in 0..IDENTIFIERS {
        key.clear();
        let _ = write!(key, "app-{i}");
        admitted += u64::from(
            quota
                .check(&key, Timestamp::from_nanos(T0 + i * 100_000), 1)
                .allowed,
        );
        if i % SAMPLE == 0 {
            peak = peak.max(live_heap().saturating_sub(base));
        }
    }
    assert_eq!(admitted, IDENTIFIERS);
    let live = live_heap().saturating_sub(base);
    println!(
        "quota: {IDENTIFIERS} identifiers, {} keys held, live heap {live} bytes, peak {peak} bytes, {:.1?}",
        quota.store().len(),
        started.elapsed()
    );
    assert!(live < BOUND, "live heap grew by {live} bytes");
    assert!(peak < BOUND, "peak heap grew by {peak} bytes");
}

/// After a key has been seen once, checks allocate nothing: keys are looked up by `&str`
/// and class keys are composed on the stack.
fn checks_on_known_keys_do_not_allocate() {
    let keys: Vec<String> = (0..1_000).map(|i| format!("client-{i}")).collect();
    let config =
        SpikeArrestConfig::new("100ps".parse().unwrap()).with_behaviour(SpikeBehaviour::ApigeeX);
    let spike = SpikeArrest::new(config);
    let direct = DirectSpikeArrest::new(config);
    let quota =
        Quota::new(QuotaConfig::new(1_000, NonZeroU32::MIN, TimeUnit::Hour).with_class("gold", 10))
            .unwrap();
    let rolling = Quota::new(
        QuotaConfig::new(1_000, NonZeroU32::MIN, TimeUnit::Hour)
            .with_type(QuotaType::RollingWindow),
    )
    .unwrap();
    let run = |round: u64| {
        for (i, key) in keys.iter().enumerate() {
            let now = Timestamp::from_nanos(T0 + round * 1_000_000 + i as u64);
            let _ = spike.check(key, now, 1);
            let _ = direct.check(now, 1);
            let _ = quota.check(key, now, 1);
            let _ = quota.check_with(&QuotaCheck::new(key, now, 1).with_class("gold"));
            let _ = rolling.check(key, now, 1);
        }
    };
    run(0);
    let before = GLOBAL.stats();
    for round in 1..100 {
        run(round);
    }
    let after = GLOBAL.stats();
    let allocations = after.allocations - before.allocations;
    let reallocations = after.reallocations - before.reallocations;
    println!(
        "hot path: {allocations} allocations, {reallocations} reallocations in 495,000 checks"
    );
    assert_eq!((allocations, reallocations), (0, 0));
}

/// A plain `main` (no test harness): this thread is the only one that allocates.
fn main() {
    ten_million_identifiers_stay_bounded();
    println!("ten_million_identifiers_stay_bounded: 1 passed, 0 failed");
}
