//! Rate-limit operations on a real redis-server: exactness, agreement with the in-memory
//! store, key layout, script reloading.

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

use common::{now, raw, server, store};
use preflow_ratelimit::store::QuotaIncr;
use preflow_ratelimit::{
    CounterStore, Decision, MemoryStore, Quota, QuotaCheck, QuotaConfig, QuotaType, SpikeArrest,
    SpikeArrestConfig, SpikeBehaviour, StoreOp, StoreReply, TimeUnit, Timestamp,
};

#[tokio::test]
async fn spike_arrest_edge_admits_one_per_interval() {
    let server = server();
    let store = store(&server).await;
    // 10ps, Edge smoothing: one request per 100 ms.
    let spike = SpikeArrest::new(SpikeArrestConfig::new("10ps".parse().unwrap()));
    let mut allowed = 0;
    let mut retry = Vec::new();
    for _ in 0..10 {
        let op = spike.store_op("app", now(), 1);
        let reply = store.run_ratelimit(&op).await.unwrap();
        match op.resolve(&reply).unwrap() {
            Decision::Spike(d) if d.allowed => allowed += 1,
            Decision::Spike(d) => retry.push(d.retry_after_ns),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allowed, 1, "ten back-to-back requests at 10ps admit one");
    for r in retry {
        assert!(
            r > 0 && r <= 100_000_000,
            "retry-after within one interval: {r}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(110)).await;
    let op = spike.store_op("app", now(), 1);
    assert!(
        op.resolve(&store.run_ratelimit(&op).await.unwrap())
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test]
async fn spike_arrest_apigee_x_burst_is_exact_across_two_clients() {
    let server = server();
    let a = store(&server).await;
    let b = store(&server).await;
    // 60pm Apigee X: a burst of 6, then one per second.
    let config =
        SpikeArrestConfig::new("60pm".parse().unwrap()).with_behaviour(SpikeBehaviour::ApigeeX);
    let spike = Arc::new(SpikeArrest::new(config));
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let spike = Arc::clone(&spike);
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            let op = spike.store_op("burst", now(), 1);
            if op
                .resolve(&s.run_ratelimit(&op).await.unwrap())
                .unwrap()
                .is_allowed()
            {
                admitted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The 40 requests take far less than a second, so at most one more token refills.
    let n = admitted.load(Ordering::Relaxed);
    assert!((6..=7).contains(&n), "admitted {n}");
}

#[tokio::test]
async fn spike_arrest_key_expires_with_its_tat() {
    let server = server();
    let store = store(&server).await;
    let spike = SpikeArrest::new(SpikeArrestConfig::new("1pm".parse().unwrap()));
    let op = spike.store_op("slow", now(), 1);
    store.run_ratelimit(&op).await.unwrap();
    let key = store.keys().gcra("slow");
    let ttl: i64 = raw(&server, redis::cmd("PTTL").arg(&key)).await;
    assert!(ttl > 55_000 && ttl <= 60_001, "PXAT at the TAT: {ttl}");
    let value: String = raw(&server, redis::cmd("GET").arg(&key)).await;
    let tat: u64 = value.parse().unwrap();
    let expect = now().as_nanos() + 60_000_000_000;
    assert!(
        tat.abs_diff(expect) < 5_000_000_000,
        "absolute ns TAT {tat}"
    );
}

#[tokio::test]
async fn quota_of_100_across_two_clients_admits_exactly_100() {
    let server = server();
    let clients = [store(&server).await, store(&server).await];
    common::clear_of_the_hour(std::time::Duration::from_secs(30)).await;
    let quota =
        Arc::new(Quota::new(QuotaConfig::new(100, NonZeroU32::MIN, TimeUnit::Hour)).unwrap());
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let s = clients[worker % 2].clone();
        let quota = Arc::clone(&quota);
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let op = quota.store_op(&QuotaCheck::new("shared", now(), 1));
                if op
                    .resolve(&s.run_ratelimit(&op).await.unwrap())
                    .unwrap()
                    .is_allowed()
                {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        admitted.load(Ordering::Relaxed),
        100,
        "320 requests, quota 100"
    );
    let key = clients[0].keys().quota("shared");
    let (used, exceeded): (u64, u64) =
        raw(&server, redis::cmd("HMGET").arg(&key).arg("u").arg("x")).await;
    assert_eq!((used, exceeded), (100, 220));
    let ttl: i64 = raw(&server, redis::cmd("PTTL").arg(&key)).await;
    assert!(
        ttl > 0 && ttl <= 3_600_000,
        "PEXPIREAT the window end: {ttl}"
    );
}

fn quota_ops(kind: QuotaType, seed: u64) -> Vec<StoreOp> {
    let config = QuotaConfig::new(25, NonZeroU32::MIN, TimeUnit::Minute).with_type(kind);
    let quota = Quota::new(config).unwrap();
    // A fixed recent origin, aligned to the minute, so the windows are deterministic.
    let origin = (now().as_nanos() / 60_000_000_000) * 60_000_000_000;
    let mut x = seed;
    let mut t = origin;
    (0..300)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += (x >> 33) % 1_500_000_000; // up to 1.5 s between requests
            let weight = ((x >> 20) % 4) as u32; // 0..=3
            let key = if (x >> 40).is_multiple_of(3) {
                "a"
            } else {
                "b"
            };
            quota.store_op(&QuotaCheck::new(key, Timestamp::from_nanos(t), weight))
        })
        .collect()
}

async fn agrees_with_memory(kind: QuotaType) {
    let server = server();
    let store = store(&server).await;
    for seed in 1..=3u64 {
        let memory = MemoryStore::new();
        // Each seed on its own keys.
        for op in quota_ops(kind, seed) {
            let op = match op {
                StoreOp::QuotaIncr { key, incr } => StoreOp::QuotaIncr {
                    key: format!("{seed}-{key}"),
                    incr,
                },
                StoreOp::QuotaSlide { key, slide } => StoreOp::QuotaSlide {
                    key: format!("{seed}-{key}"),
                    slide,
                },
                other => other,
            };
            let remote = store.run_ratelimit(&op).await.unwrap();
            let local = memory.run(&op);
            assert_eq!(remote, local, "{op:?}");
        }
    }
}

#[tokio::test]
async fn fixed_window_quota_agrees_with_the_memory_store() {
    agrees_with_memory(QuotaType::Default).await;
}

#[tokio::test]
async fn flexi_quota_agrees_with_the_memory_store() {
    agrees_with_memory(QuotaType::Flexi).await;
}

#[tokio::test]
async fn rolling_window_quota_agrees_with_the_memory_store() {
    agrees_with_memory(QuotaType::RollingWindow).await;
}

#[tokio::test]
async fn a_new_window_opens_when_the_old_one_ends() {
    let server = server();
    let store = store(&server).await;
    let t0 = now();
    let op = |t: Timestamp, end: Timestamp| StoreOp::QuotaIncr {
        key: "short".into(),
        incr: QuotaIncr {
            now: t,
            window_start: t,
            expires_at: end,
            weight: 1,
            limit: 2,
        },
    };
    let end = t0.saturating_add_nanos(150_000_000);
    let mut allowed = Vec::new();
    for _ in 0..3 {
        let reply = store.run_ratelimit(&op(t0, end)).await.unwrap();
        allowed.push(matches!(reply, StoreReply::Quota(q) if q.allowed));
    }
    assert_eq!(allowed, [true, true, false]);
    let later = t0.saturating_add_nanos(200_000_000);
    let reply = store
        .run_ratelimit(&op(later, later.saturating_add_nanos(150_000_000)))
        .await
        .unwrap();
    match reply {
        StoreReply::Quota(q) => {
            assert!(q.allowed);
            assert_eq!((q.used, q.total_exceeded), (1, 0));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn scripts_reload_after_script_flush() {
    let server = server();
    let store = store(&server).await;
    let spike = SpikeArrest::new(SpikeArrestConfig::new("100ps".parse().unwrap()));
    let op = spike.store_op("k", now(), 1);
    store.run_ratelimit(&op).await.unwrap();
    let () = raw(&server, &mut redis::cmd("SCRIPT").arg("FLUSH").clone()).await;
    // EVALSHA answers NOSCRIPT; the script is loaded and the call repeated.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let op = spike.store_op("k", now(), 1);
    assert!(
        op.resolve(&store.run_ratelimit(&op).await.unwrap())
            .unwrap()
            .is_allowed()
    );
}
