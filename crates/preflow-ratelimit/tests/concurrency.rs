//! Exactness under contention: threads hammering one quota or one SpikeArrest key.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use preflow_ratelimit::{
    DirectSpikeArrest, Quota, QuotaConfig, QuotaType, SpikeArrest, SpikeArrestConfig,
    SpikeBehaviour, TimeUnit, Timestamp,
};

const T0: u64 = 1_700_000_000_000_000_000;

#[test]
fn quota_admits_exactly_n_across_threads() {
    const N: u64 = 5_000;
    for quota_type in [
        QuotaType::Default,
        QuotaType::Flexi,
        QuotaType::RollingWindow,
    ] {
        for threads in 2..=8u64 {
            let quota = Quota::new(
                QuotaConfig::new(N, NonZeroU32::MIN, TimeUnit::Hour).with_type(quota_type),
            )
            .unwrap();
            let admitted = AtomicU64::new(0);
            thread::scope(|s| {
                for t in 0..threads {
                    let (quota, admitted) = (&quota, &admitted);
                    s.spawn(move || {
                        // Every thread tries N times, at slightly different times within the window.
                        for i in 0..N {
                            let now = Timestamp::from_nanos(T0 + i * 1_000 + t);
                            if quota.check("shared", now, 1).allowed {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            assert_eq!(
                admitted.load(Ordering::Relaxed),
                N,
                "{quota_type}, {threads} threads"
            );
            let after = quota.check("shared", Timestamp::from_nanos(T0 + N * 1_000), 0);
            assert_eq!(after.used_count, N, "{quota_type}, {threads} threads");
            assert_eq!(
                after.total_exceed_count,
                (threads - 1) * N,
                "{quota_type}, {threads} threads"
            );
        }
    }
}

#[test]
fn quota_weights_are_exact_across_threads() {
    // Weights 1..=3 from 4 threads; the admitted weight never exceeds N and the counter
    // agrees with the sum of admitted weights.
    const N: u64 = 10_000;
    let quota = Quota::new(QuotaConfig::new(N, NonZeroU32::MIN, TimeUnit::Day)).unwrap();
    let admitted = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..4u32 {
            let (quota, admitted) = (&quota, &admitted);
            s.spawn(move || {
                for i in 0..5_000u32 {
                    let w = 1 + (i + t) % 3;
                    if quota.check("k", Timestamp::from_nanos(T0), w).allowed {
                        admitted.fetch_add(u64::from(w), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let used = quota.check("k", Timestamp::from_nanos(T0), 0).used_count;
    assert_eq!(used, admitted.load(Ordering::Relaxed));
    assert!((N - 2..=N).contains(&used), "{used}");
}

#[test]
fn spike_arrest_burst_is_exact_across_threads() {
    // Apigee X, 1000ps: burst 100. All threads at the same instant: exactly 100 pass.
    let config =
        SpikeArrestConfig::new("1000ps".parse().unwrap()).with_behaviour(SpikeBehaviour::ApigeeX);
    for threads in 2..=8 {
        let keyed = SpikeArrest::new(config);
        let direct = DirectSpikeArrest::new(config);
        let (k, d) = (AtomicU64::new(0), AtomicU64::new(0));
        thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        let now = Timestamp::from_nanos(T0);
                        if keyed.check("k", now, 1).allowed {
                            k.fetch_add(1, Ordering::Relaxed);
                        }
                        if direct.check(now, 1).allowed {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(k.load(Ordering::Relaxed), 100, "keyed, {threads} threads");
        assert_eq!(d.load(Ordering::Relaxed), 100, "direct, {threads} threads");
    }
}
