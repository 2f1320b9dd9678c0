//! Bounded memory: ten million distinct identifiers through one limiter.
//!
//! A counting global allocator (`stats_alloc`) measures the live heap. Idle identifiers (whose state equals
//! that of an absent key) are reclaimed by the store's amortised sweep, so the live heap
//! stays proportional to the identifiers active within one emission interval or window
//! (plus the store's idle grace), not to all identifiers ever seen.

use std::alloc::System;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Instant;

use preflow_ratelimit::{
    Quota, QuotaConfig, QuotaType, SpikeArrest, SpikeArrestConfig, TimeUnit, Timestamp,
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

/// Runs both limiters in one test so the heap figures see one workload at a time.
#[test]
fn ten_million_identifiers_stay_bounded() {
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
