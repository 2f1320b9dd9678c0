//! Local, synchronous and asynchronous modes across two instances, and the overshoot the
//! asynchronous mode allows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{now, raw, server, store};
use preflow_ratelimit::{
    Quota, QuotaCheck, QuotaConfig, SpikeArrest, SpikeArrestConfig, SpikeBehaviour, TimeUnit,
};
use preflow_redis::{CounterPolicy, Counters, Mode};

const LIMIT: u64 = 100;
const FLUSH: Duration = Duration::from_millis(50);
const PACE: Duration = Duration::from_millis(2);
const REQUESTS: usize = 300;

/// Two instances, each sending `REQUESTS` requests one every `PACE`; returns how many
/// were admitted in total and the count Redis holds at the end.
async fn two_instances(mode: Mode, key: &str) -> (u64, u64) {
    let server = server();
    common::clear_of_the_hour(std::time::Duration::from_secs(30)).await;
    let quota =
        Arc::new(Quota::new(QuotaConfig::new(LIMIT, NonZeroU32::MIN, TimeUnit::Hour)).unwrap());
    let admitted = Arc::new(AtomicU64::new(0));
    let mut instances = Vec::new();
    let mut flushers = Vec::new();
    for _ in 0..2 {
        let counters = Arc::new(Counters::new(store(&server).await));
        flushers.push(counters.spawn_flusher(FLUSH).unwrap());
        instances.push(counters);
    }
    let mut tasks = Vec::new();
    for counters in &instances {
        let counters = Arc::clone(counters);
        let quota = Arc::clone(&quota);
        let admitted = Arc::clone(&admitted);
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PACE);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for _ in 0..REQUESTS {
                ticker.tick().await;
                let op = quota.store_op(&QuotaCheck::new(&key, now(), 1));
                let reply = counters.run(&op, CounterPolicy::new(mode)).await;
                if op.resolve(&reply).unwrap().is_allowed() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(flushers);
    for counters in &instances {
        counters.flush().await.unwrap();
    }
    let stored: Option<u64> = raw(
        &server,
        redis::cmd("HGET")
            .arg(instances[0].store().keys().quota(key))
            .arg("u"),
    )
    .await;
    (admitted.load(Ordering::Relaxed), stored.unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_mode_admits_exactly_the_limit_across_instances() {
    let (admitted, stored) = two_instances(Mode::Synchronous, "sync").await;
    eprintln!(
        "synchronous: admitted {admitted} of {} for a quota of {LIMIT}",
        2 * REQUESTS
    );
    assert_eq!(admitted, LIMIT);
    assert_eq!(stored, LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_mode_overshoots_by_at_most_one_flush_interval_of_the_other_instance() {
    let (admitted, stored) = two_instances(Mode::Asynchronous, "async").await;
    let overshoot = admitted.saturating_sub(LIMIT);
    // The other instance admits FLUSH / PACE = 25 requests per flush interval. Its view
    // and ours of the shared count are each up to one interval old and the two flush
    // timers are not aligned, so together they may overshoot by up to two intervals of
    // the other instance's traffic; one more interval allows for a flush delayed on a
    // loaded machine.
    let bound = 3 * (FLUSH.as_millis() / PACE.as_millis()) as u64;
    eprintln!(
        "asynchronous: admitted {admitted} (overshoot {overshoot}, bound {bound}) for a quota of {LIMIT}; redis holds {stored}"
    );
    assert!(admitted >= LIMIT, "the limit is reached: {admitted}");
    assert!(overshoot <= bound, "overshoot {overshoot} > {bound}");
    assert_eq!(stored, admitted, "every admitted request reaches redis");
}

#[tokio::test]
async fn local_mode_counts_per_instance_and_leaves_redis_alone() {
    let server = server();
    common::clear_of_the_hour(std::time::Duration::from_secs(30)).await;
    let quota = Quota::new(QuotaConfig::new(10, NonZeroU32::MIN, TimeUnit::Hour)).unwrap();
    let a = Counters::new(store(&server).await);
    let b = Counters::new(store(&server).await);
    let mut admitted = 0;
    for counters in [&a, &b] {
        for _ in 0..15 {
            let op = quota.store_op(&QuotaCheck::new("local", now(), 1));
            if op
                .resolve(&counters.run(&op, CounterPolicy::new(Mode::Local)).await)
                .unwrap()
                .is_allowed()
            {
                admitted += 1;
            }
        }
    }
    assert_eq!(admitted, 20, "ten per instance");
    let keys: Vec<String> = raw(&server, redis::cmd("KEYS").arg("*")).await;
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn asynchronous_spike_arrest_shares_its_state_after_a_flush() {
    let server = server();
    let spike = SpikeArrest::new(
        SpikeArrestConfig::new("60pm".parse().unwrap()).with_behaviour(SpikeBehaviour::ApigeeX),
    );
    let a = Counters::new(store(&server).await);
    let b = Counters::new(store(&server).await);
    let policy = CounterPolicy::new(Mode::Asynchronous);
    let mut admitted_a = 0;
    for _ in 0..10 {
        let op = spike.store_op("s", now(), 1);
        if op.resolve(&a.run(&op, policy).await).unwrap().is_allowed() {
            admitted_a += 1;
        }
    }
    assert_eq!(admitted_a, 6, "the burst of 6, decided locally");
    let stats = a.flush().await.unwrap();
    assert_eq!(stats.weight, 6);
    // B learns the shared TAT at its flush and then refuses.
    let op = spike.store_op("s", now(), 1);
    let _ = b.run(&op, policy).await;
    b.flush().await.unwrap();
    let op = spike.store_op("s", now(), 1);
    assert!(!op.resolve(&b.run(&op, policy).await).unwrap().is_allowed());
}
