//! Rate-limit benchmarks: preflow beside governor.
//!
//! * `spike_arrest_keyed`: one check on a keyed limiter, 10,000 `String` keys cycled with a
//!   stride of 7919; governor's `RateLimiter::dashmap` with its default clock, preflow with a
//!   passed-in time that advances by 1 ns per check.
//! * `spike_arrest_direct`: one check on an unkeyed limiter (governor `RateLimiter::direct`
//!   with its default clock; preflow `DirectSpikeArrest` with a passed-in time).
//! * `quota_check`: one Quota check (default type, per hour) over the same 10,000 keys.
//!
//! The rate is 10⁹ per second in every case, so every check passes.

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota as GovernorQuota, RateLimiter};
use preflow_ratelimit::{
    DirectSpikeArrest, Quota, QuotaConfig, Rate, SpikeArrest, SpikeArrestConfig, SpikeBehaviour,
    TimeUnit, Timestamp,
};

const PER_SECOND: NonZeroU32 = NonZeroU32::new(1_000_000_000).unwrap();
const KEYS: usize = 10_000;
const STRIDE: usize = 7919;
const T0: u64 = 1_700_000_000_000_000_000;

/// The keys in the order they are checked: all 10,000, visited with a stride of 7919.
fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("client-{:05}", (i * STRIDE) % KEYS))
        .collect()
}

fn spike_config() -> SpikeArrestConfig {
    SpikeArrestConfig::new(Rate::per_second(PER_SECOND)).with_behaviour(SpikeBehaviour::ApigeeX)
}

fn spike_arrest_keyed(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("spike_arrest_keyed");

    let spike = SpikeArrest::new(spike_config());
    let mut now = T0;
    for key in &keys {
        now += 1;
        assert!(spike.check(key, Timestamp::from_nanos(now), 1).allowed);
    }
    let mut cycle = keys.iter().cycle();
    group.bench_function("preflow", |b| {
        b.iter(|| {
            now += 1;
            let key = cycle.next().map_or("", String::as_str);
            black_box(
                spike
                    .check(black_box(key), Timestamp::from_nanos(now), 1)
                    .allowed,
            )
        })
    });

    let governor = RateLimiter::dashmap(GovernorQuota::per_second(PER_SECOND));
    for key in &keys {
        assert!(governor.check_key(key).is_ok());
    }
    let empty = String::new();
    let mut cycle = keys.iter().cycle();
    group.bench_function("governor", |b| {
        b.iter(|| {
            let key = cycle.next().unwrap_or(&empty);
            black_box(governor.check_key(black_box(key)).is_ok())
        })
    });
    group.finish();
}

fn spike_arrest_direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("spike_arrest_direct");

    let spike = DirectSpikeArrest::new(spike_config());
    let mut now = T0;
    group.bench_function("preflow", |b| {
        b.iter(|| {
            now += 1;
            black_box(
                spike
                    .check(black_box(Timestamp::from_nanos(now)), 1)
                    .allowed,
            )
        })
    });

    let governor = RateLimiter::direct(GovernorQuota::per_second(PER_SECOND));
    group.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check().is_ok()))
    });
    group.finish();
}

fn quota_check(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("quota_check");
    let Ok(quota) = Quota::new(QuotaConfig::new(u64::MAX, NonZeroU32::MIN, TimeUnit::Hour)) else {
        return;
    };
    let mut now = T0;
    for key in &keys {
        now += 1;
        assert!(quota.check(key, Timestamp::from_nanos(now), 1).allowed);
    }
    let mut cycle = keys.iter().cycle();
    group.bench_function("preflow", |b| {
        b.iter(|| {
            now += 1;
            let key = cycle.next().map_or("", String::as_str);
            black_box(
                quota
                    .check(black_box(key), Timestamp::from_nanos(now), 1)
                    .allowed,
            )
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    spike_arrest_keyed,
    spike_arrest_direct,
    quota_check
);
criterion_main!(benches);
