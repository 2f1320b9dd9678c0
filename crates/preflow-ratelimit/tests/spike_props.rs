//! Properties of SpikeArrest under a generated fake clock: it agrees with simple models of
//! the Edge and Apigee X algorithms, and never admits more than the rate (plus the burst)
//! allows over any window.

use std::num::NonZeroU32;

use preflow_ratelimit::{Rate, SpikeArrest, SpikeArrestConfig, SpikeBehaviour, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const T0: u128 = 1_700_000_000_000_000_000;

/// Apigee's own description of Edge: the time until which the window is closed.
#[derive(Default)]
struct EdgeModel {
    closed_until: u128,
}

impl EdgeModel {
    fn check(&mut self, now: u128, weight: u128, t: u128) -> bool {
        if now < self.closed_until {
            return false;
        }
        self.closed_until = now + weight * t;
        true
    }
}

/// A token bucket holding `burst·T` nanoseconds of credit, refilled one per nanosecond.
struct BucketModel {
    credit: u128,
    last: u128,
}

impl BucketModel {
    fn check(&mut self, now: u128, weight: u128, t: u128, burst: u128) -> bool {
        self.credit = (self.credit + now.saturating_sub(self.last)).min(burst * t);
        self.last = self.last.max(now);
        if self.credit >= weight * t {
            self.credit -= weight * t;
            true
        } else {
            false
        }
    }
}

fn rate_strategy() -> impl Strategy<Value = Rate> {
    (1u32..=2_000, any::<bool>()).prop_map(|(n, per_second)| {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        if per_second {
            Rate::per_second(n)
        } else {
            Rate::per_minute(n)
        }
    })
}

/// Steps of (time advance in thousandths of an emission interval, weight, key, and whether
/// to advance one nanosecond less, to probe exact boundaries).
fn steps() -> impl Strategy<Value = Vec<(u32, u32, usize, bool)>> {
    let advance = prop_oneof![
        0u32..50,
        0u32..1_500,
        0u32..20_000,
        (0u32..5).prop_map(|k| k * 1_000)
    ];
    prop::collection::vec((advance, 0u32..=4, 0usize..3, any::<bool>()), 1..300)
}

/// Advances `now` by `advance` thousandths of `t`, minus one nanosecond if `nudge`.
fn advance(now: u128, t: u128, advance: u32, nudge: bool) -> u128 {
    let delta = t * u128::from(advance) / 1_000;
    now + if nudge {
        delta.saturating_sub(1)
    } else {
        delta
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/spike_props.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn agrees_with_models_and_bounds_every_window(rate in rate_strategy(), x in any::<bool>(), steps in steps()) {
        let behaviour = if x { SpikeBehaviour::ApigeeX } else { SpikeBehaviour::Edge };
        let spike = SpikeArrest::new(SpikeArrestConfig::new(rate).with_behaviour(behaviour));
        let t = u128::from(rate.emission_interval_ns());
        let burst = u128::from((rate.count().get() / 10).max(1));
        let mut edge = [EdgeModel::default(), EdgeModel::default(), EdgeModel::default()];
        let mut bucket: Vec<BucketModel> = (0..3).map(|_| BucketModel { credit: burst * t, last: 0 }).collect();
        let mut now = T0;
        // Admitted (time, weight) per key.
        let mut admitted: [Vec<(u128, u128)>; 3] = Default::default();
        for (step, weight, key, nudge) in steps {
            now = advance(now, t, step, nudge);
            let decision = spike.check(["a", "b", "c"][key], Timestamp::from_nanos(now as u64), weight);
            let w = u128::from(weight);
            let expected = if x { bucket[key].check(now, w, t, burst) } else { edge[key].check(now, w, t) };
            prop_assert_eq!(decision.allowed, expected, "at {} weight {} key {}", now - T0, weight, key);
            if decision.allowed {
                prop_assert_eq!(decision.retry_after_ns, 0);
                admitted[key].push((now, w));
            } else {
                prop_assert!(decision.retry_after_ns > 0);
            }
        }
        for log in &admitted {
            for (i, &(start, _)) in log.iter().enumerate() {
                let mut sum = 0;
                for &(end, w) in &log[i..] {
                    sum += w;
                    let refilled = (end - start) / t;
                    if x {
                        // A token bucket: at most the burst plus what refilled in between.
                        prop_assert!(sum <= burst + refilled, "{} admitted over {} ns", sum, end - start);
                    } else {
                        // Smoothing: every admitted request but the last waited out its
                        // weight in intervals.
                        prop_assert!(sum - w <= refilled, "{} admitted over {} ns", sum, end - start);
                    }
                }
            }
        }
    }

    #[test]
    fn edge_with_unit_weights_never_exceeds_the_rate_in_a_period(rate in rate_strategy(), steps in steps()) {
        let spike = SpikeArrest::new(SpikeArrestConfig::new(rate));
        let t = rate.emission_interval_ns();
        let period = rate.period_ns();
        let mut now = T0;
        let mut admitted = Vec::new();
        for (step, _, _, nudge) in steps {
            now = advance(now, u128::from(t), step, nudge);
            let now = now as u64;
            if spike.check("k", Timestamp::from_nanos(now), 1).allowed {
                admitted.push(now);
            }
        }
        for (i, &start) in admitted.iter().enumerate() {
            let in_period = admitted[i..].iter().take_while(|&&at| at < start + period).count();
            prop_assert!(in_period as u64 <= u64::from(rate.count().get()), "{} in one period of {}", in_period, rate);
        }
    }
}
