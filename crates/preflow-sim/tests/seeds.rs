//! CI runs a bounded number of seeds; any failure names its seed for `--replay`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[test]
fn three_hundred_seeds_keep_every_invariant() {
    let mut total = preflow_sim::Stats::default();
    for seed in 0..300 {
        match preflow_sim::run_seed(seed) {
            Ok(stats) => total.add(&stats),
            Err(v) => {
                panic!("seed {seed}: {v} (replay: cargo run -p preflow-sim -- --replay {seed})")
            }
        }
    }
    // The runs exercised what they claim to.
    assert!(total.tokens > 1000, "{total:?}");
    assert!(total.unavailable > 100, "{total:?}");
    assert!(total.store_restarts > 50, "{total:?}");
    assert!(total.async_bound_checked > 30, "{total:?}");
    assert!(total.async_overshoot > 0, "{total:?}");
    assert!(total.kv_acknowledged > 300, "{total:?}");
    assert!(total.apps_created > 50, "{total:?}");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 17, 4242] {
        assert_eq!(preflow_sim::run_seed(seed), preflow_sim::run_seed(seed));
    }
}

#[test]
fn the_checks_catch_a_broken_protocol() {
    // Acknowledging a revocation when only one gateway applied it lets another issue the
    // app a token after the acknowledgement: some seeds must report it.
    let broken = preflow_sim::Options {
        acknowledge_on_first_apply: true,
        ..preflow_sim::Options::default()
    };
    let caught = (0..500).find(|seed| {
        matches!(
            preflow_sim::run_seed_with(*seed, broken),
            Err(preflow_sim::Violation::IssuedAfterRevoke { .. }
                | preflow_sim::Violation::RevokedTokenAccepted { .. })
        )
    });
    assert!(caught.is_some(), "no seed caught the early acknowledgement");
}
