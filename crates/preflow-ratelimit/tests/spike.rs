//! SpikeArrest behaviour: Edge smoothing, Apigee X bursts, weights, identifiers, store ops.
// Test helpers outside `#[test]` functions unwrap as well.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::Arc;

use preflow_ratelimit::{
    CounterStore, Decision, DirectSpikeArrest, MemoryStore, Rate, RateParseError, RateUnit,
    SpikeArrest, SpikeArrestConfig, SpikeBehaviour, StoreReply, Timestamp,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn at(offset_ns: u64) -> Timestamp {
    Timestamp::from_nanos(T0 + offset_ns)
}

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

fn edge(s: &str) -> SpikeArrest {
    SpikeArrest::new(SpikeArrestConfig::new(rate(s)))
}

fn x(s: &str) -> SpikeArrest {
    SpikeArrest::new(SpikeArrestConfig::new(rate(s)).with_behaviour(SpikeBehaviour::ApigeeX))
}

#[test]
fn rate_parses_per_second_and_per_minute() {
    assert_eq!(rate("30ps"), Rate::per_second(NonZeroU32::new(30).unwrap()));
    assert_eq!(rate("10pm"), Rate::per_minute(NonZeroU32::new(10).unwrap()));
    assert_eq!(rate(" 7PS \n").unit(), RateUnit::PerSecond);
    assert_eq!(rate("4294967295pm").count().get(), u32::MAX);
    assert_eq!(rate("30pm").to_string(), "30pm");
    assert_eq!(rate("10ps").emission_interval_ns(), 100 * MS);
    assert_eq!(rate("30pm").emission_interval_ns(), 2 * SEC);
    // Rounded up, so 3 per second never admits 4 in a second.
    assert_eq!(rate("3ps").emission_interval_ns(), 333_333_334);
}

#[test]
fn rate_rejects_bad_input() {
    assert_eq!("".parse::<Rate>(), Err(RateParseError::Empty));
    assert_eq!("  ".parse::<Rate>(), Err(RateParseError::Empty));
    assert_eq!(
        "0ps".parse::<Rate>(),
        Err(RateParseError::Zero("0ps".into()))
    );
    assert_eq!(
        "30".parse::<Rate>(),
        Err(RateParseError::MissingUnit("30".into()))
    );
    assert_eq!(
        "30ph".parse::<Rate>(),
        Err(RateParseError::MissingUnit("30ph".into()))
    );
    assert_eq!(
        "p".parse::<Rate>(),
        Err(RateParseError::MissingUnit("p".into()))
    );
    assert_eq!(
        "ps".parse::<Rate>(),
        Err(RateParseError::InvalidCount("ps".into()))
    );
    assert_eq!(
        "-3ps".parse::<Rate>(),
        Err(RateParseError::InvalidCount("-3ps".into()))
    );
    assert_eq!(
        "+3ps".parse::<Rate>(),
        Err(RateParseError::InvalidCount("+3ps".into()))
    );
    assert_eq!(
        "1.5ps".parse::<Rate>(),
        Err(RateParseError::InvalidCount("1.5ps".into()))
    );
    assert_eq!(
        "3 ps".parse::<Rate>(),
        Err(RateParseError::InvalidCount("3 ps".into()))
    );
    assert_eq!(
        "4294967296ps".parse::<Rate>(),
        Err(RateParseError::TooLarge("4294967296ps".into()))
    );
    assert_eq!(
        "é".parse::<Rate>(),
        Err(RateParseError::MissingUnit("é".into()))
    );
    assert_eq!(
        "3pé".parse::<Rate>(),
        Err(RateParseError::MissingUnit("3pé".into()))
    );
    let message = "30".parse::<Rate>().unwrap_err().to_string();
    assert!(message.starts_with("rate `30` must end in"), "{message}");
}

#[test]
fn edge_10ps_allows_one_per_100ms() {
    let s = edge("10ps");
    assert!(s.check("k", at(0), 1).allowed);
    // "A second request inside of 100ms will fail."
    let denied = s.check("k", at(99 * MS), 1);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ns, MS);
    assert!(s.check("k", at(100 * MS), 1).allowed);
    // Over a second of back-to-back attempts every 10 ms, exactly 10 pass.
    let s = edge("10ps");
    let passed = (0..100)
        .filter(|i| s.check("k", at(i * 10 * MS), 1).allowed)
        .count();
    assert_eq!(passed, 10);
}

#[test]
fn edge_30pm_allows_one_per_two_seconds() {
    let s = edge("30pm");
    assert!(s.check("k", at(0), 1).allowed);
    assert!(!s.check("k", at(SEC), 1).allowed);
    assert!(s.check("k", at(2 * SEC), 1).allowed);
    // Attempts every 100 ms for a minute: the 31st within a minute fails.
    let s = edge("30pm");
    let passed = (0..600)
        .filter(|i| s.check("k", at(i * 100 * MS), 1).allowed)
        .count();
    assert_eq!(passed, 30);
}

#[test]
fn edge_rejected_requests_do_not_move_the_window() {
    let s = edge("1ps");
    assert!(s.check("k", at(0), 1).allowed);
    for ms in (0..1000).step_by(50) {
        assert!(!s.check("k", at(ms * MS), 1).allowed);
    }
    // Still open exactly one interval after the last success.
    assert!(s.check("k", at(SEC), 1).allowed);
}

#[test]
fn edge_weight_multiplies_the_interval() {
    // "if the SpikeArrest Rate is 10 per minute, and an application submits requests with
    // weight 5, then only 2 messages are permitted per minute"
    let s = edge("10pm");
    let passed = (0..60)
        .filter(|i| s.check("k", at(i * SEC), 5).allowed)
        .count();
    assert_eq!(passed, 2);
    // Weight 0 passes only while the window is open and consumes nothing.
    let s = edge("1ps");
    assert!(s.check("k", at(0), 0).allowed);
    assert!(s.check("k", at(0), 1).allowed);
    assert!(!s.check("k", at(1), 0).allowed);
}

#[test]
fn apigee_x_burst_matches_observed_max_burst_counts() {
    // (rate, observed maxBurstMessageCount)
    for (r, burst) in [
        ("60pm", 6),
        ("300pm", 30),
        ("5pm", 1),
        ("10ps", 1),
        ("5ps", 1),
        ("1ps", 1),
        ("100ps", 10),
    ] {
        let s = x(r);
        assert_eq!(s.max_burst(), Some(burst as u64));
        assert_eq!(edge(r).max_burst(), None);
        let passed = (0..1000).filter(|_| s.check("k", at(0), 1).allowed).count();
        assert_eq!(passed, burst, "rate {r}");
    }
}

#[test]
fn apigee_x_refills_at_the_rate() {
    let s = x("60pm"); // T = 1 s, burst 6
    for _ in 0..6 {
        assert!(s.check("k", at(0), 1).allowed);
    }
    let denied = s.check("k", at(0), 1);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ns, SEC);
    assert!(!s.check("k", at(SEC - 1), 1).allowed);
    assert!(s.check("k", at(SEC), 1).allowed);
    assert!(!s.check("k", at(SEC), 1).allowed);
    // After 6 idle seconds the bucket is full again, and no fuller.
    let passed = (0..20)
        .filter(|_| s.check("k", at(100 * SEC), 1).allowed)
        .count();
    assert_eq!(passed, 6);
}

#[test]
fn apigee_x_weight_needs_that_many_tokens() {
    let s = x("60pm"); // burst 6
    assert!(
        !s.check("k", at(0), 7).allowed,
        "a weight above the burst never passes"
    );
    assert!(s.check("k", at(0), 4).allowed);
    assert!(!s.check("k", at(0), 3).allowed);
    assert!(s.check("k", at(0), 2).allowed);
    let denied = s.check("k", at(0), 3);
    assert_eq!(denied.retry_after_ns, 3 * SEC);
    assert!(s.check("k", at(3 * SEC), 3).allowed);
}

#[test]
fn identifiers_are_independent() {
    let s = edge("1ps");
    assert!(s.check("a", at(0), 1).allowed);
    assert!(!s.check("a", at(1), 1).allowed);
    assert!(s.check("b", at(1), 1).allowed);
    assert!(s.check("", at(1), 1).allowed);
    assert!(!s.check("b", at(2), 1).allowed);
}

#[test]
fn effective_count_divides_the_rate_between_nodes() {
    let config =
        SpikeArrestConfig::new(rate("10ps")).with_effective_count(NonZeroU32::new(4).unwrap());
    let s = SpikeArrest::new(config);
    assert_eq!(s.emission_interval_ns(), 400 * MS);
    let passed = (0..100)
        .filter(|i| s.check("k", at(i * 10 * MS), 1).allowed)
        .count();
    assert_eq!(passed, 3); // at 0, 400 ms and 800 ms
}

#[test]
fn direct_matches_keyed() {
    for behaviour in [SpikeBehaviour::Edge, SpikeBehaviour::ApigeeX] {
        let config = SpikeArrestConfig::new(rate("120pm")).with_behaviour(behaviour);
        let keyed = SpikeArrest::new(config);
        let direct = DirectSpikeArrest::new(config);
        let mut t = 0;
        for i in 0u64..2000 {
            t += (i * 7919) % (700 * MS);
            let w = (i % 4) as u32;
            assert_eq!(
                keyed.check("k", at(t), w),
                direct.check(at(t), w),
                "step {i}"
            );
        }
    }
}

#[test]
fn store_op_round_trip_matches_inline_check() {
    let config = SpikeArrestConfig::new(rate("60pm")).with_behaviour(SpikeBehaviour::ApigeeX);
    let inline = SpikeArrest::new(config);
    let remote_store = MemoryStore::new();
    let planner = SpikeArrest::with_store(config, MemoryStore::new());
    for i in 0u64..200 {
        let now = at(i * 300 * MS);
        let op = planner.store_op("client", now, 1);
        assert_eq!(op.key(), "client");
        let reply = remote_store.run(&op);
        let decision = op.resolve(&reply).unwrap();
        assert_eq!(
            decision,
            Decision::Spike(inline.check("client", now, 1)),
            "step {i}"
        );
    }
    // The planner never touched its own store.
    assert!(planner.store().is_empty());
    // A quota reply is not a GCRA reply.
    let op = planner.store_op("client", at(0), 1);
    let wrong = StoreReply::Quota(preflow_ratelimit::store::QuotaReply {
        allowed: true,
        used: 1,
        total_exceeded: 0,
        expires_at: None,
    });
    assert!(op.resolve(&wrong).is_err());
}

#[test]
fn shared_store_and_reclaim() {
    let store = Arc::new(MemoryStore::new());
    let a = SpikeArrest::with_store(SpikeArrestConfig::new(rate("1ps")), Arc::clone(&store));
    for i in 0..100 {
        assert!(a.check(&format!("id-{i}"), at(0), 1).allowed);
    }
    assert_eq!(store.len(), 100);
    // Before every TAT has passed nothing is idle; afterwards everything is.
    assert_eq!(store.reclaim(at(SEC - 1)), 0);
    assert_eq!(store.reclaim(at(SEC)), 100);
    assert!(store.is_empty());
}

#[test]
fn amortised_sweep_keeps_the_map_bounded() {
    let s = SpikeArrest::with_store(
        SpikeArrestConfig::new(rate("1000ps")),
        MemoryStore::with_sweep(64, 0),
    );
    // One new identifier every 100 µs: about 10 are live (TAT ahead of now) at any time.
    let mut key = String::new();
    for i in 0u64..100_000 {
        key.clear();
        key.push_str("id-");
        key.push_str(&i.to_string());
        assert!(s.check(&key, at(i * 100_000), 1).allowed);
        assert!(
            s.store().len() <= 2 * 64 + 16,
            "len {} at {i}",
            s.store().len()
        );
    }
}

#[test]
fn time_going_backwards_and_extreme_values_are_safe() {
    let s = x("10ps");
    assert!(s.check("k", at(SEC), 1).allowed);
    // An older timestamp (another thread's clock): measured against the same TAT.
    let denied = s.check("k", at(0), 1);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ns, SEC + 100 * MS);
    // A weight whose interval overflows saturates the TAT instead of wrapping around.
    let e = edge("1pm");
    assert!(e.check("k", at(0), u32::MAX).allowed);
    let denied = e.check("k", at(SEC), 1);
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after_ns, u64::MAX - T0 - SEC);
    // The ends of time do not panic.
    for w in [0, 1, u32::MAX] {
        let _ = s.check("k", Timestamp::MAX, w);
        let _ = e.check("j", Timestamp::UNIX_EPOCH, w);
        let _ = e.check("j", Timestamp::MAX, w);
    }
}

#[test]
fn store_with_siphash_behaves_the_same() {
    use std::collections::hash_map::RandomState;
    let config = SpikeArrestConfig::new(rate("10ps"));
    let sip = SpikeArrest::with_store(config, MemoryStore::with_hasher(16, 0, RandomState::new()));
    let fold = SpikeArrest::new(config);
    for i in 0u64..500 {
        let key = format!("k{}", i % 37);
        let now = at(i * 7 * MS);
        assert_eq!(
            sip.check(&key, now, 1),
            fold.check(&key, now, 1),
            "step {i}"
        );
    }
    let held = sip.store().len();
    assert!((1..=37).contains(&held), "{held}");
    assert_eq!(sip.store().reclaim(at(SEC * 100)), held);
    assert!(sip.store().is_empty());
}
