//! Failure policy against a real redis-server that is stopped, frozen and restarted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::{Instance, now, server};
use preflow_oauth::VerifyError;
use preflow_ratelimit::{Quota, QuotaCheck, QuotaConfig, StoreOp, TimeUnit};
use preflow_redis::{
    BreakerConfig, CounterPolicy, Counters, Mode, OnFailure, RedisConfig, RedisError, RedisStore,
};

const TIMEOUT: Duration = Duration::from_millis(250);
/// Scheduling slack on a loaded two-core machine (an unbounded wait would take the
/// client's default of seconds, or forever).
const SLACK: Duration = Duration::from_millis(400);

fn quota_op(limit: u64) -> StoreOp {
    let quota = Quota::new(QuotaConfig::new(limit, NonZeroU32::MIN, TimeUnit::Hour)).unwrap();
    quota.store_op(&QuotaCheck::new("q", now(), 1))
}

async fn counters(url: &str, breaker: BreakerConfig) -> Counters {
    let config = RedisConfig::default()
        .with_timeout(TIMEOUT)
        .with_breaker(breaker);
    Counters::new(RedisStore::connect(url, config).await.unwrap())
}

async fn timed(counters: &Counters, policy: CounterPolicy) -> (bool, Duration) {
    let op = quota_op(1000);
    let started = Instant::now();
    let reply = counters.run(&op, policy).await;
    (op.resolve(&reply).unwrap().is_allowed(), started.elapsed())
}

#[tokio::test]
async fn redis_stopped_answers_within_the_timeout_fail_closed_denies_fail_open_admits() {
    let mut server = server();
    let counters = counters(&server.url(), BreakerConfig::disabled()).await;
    let closed = CounterPolicy::new(Mode::Synchronous).with_on_failure(OnFailure::Closed);
    let open = CounterPolicy::new(Mode::Synchronous).with_on_failure(OnFailure::Open);
    assert!(timed(&counters, closed).await.0, "redis up: admitted");

    server.stop();
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (allowed, took) = timed(&counters, closed).await;
        assert!(!allowed, "fail-closed denies");
        worst = worst.max(took);
        let (allowed, took) = timed(&counters, open).await;
        assert!(allowed, "fail-open admits");
        worst = worst.max(took);
    }
    eprintln!("redis stopped: slowest answer {worst:?}");
    assert!(worst <= TIMEOUT + SLACK, "{worst:?}");

    server.restart().unwrap();
    let started = Instant::now();
    let mut recovered = None;
    while started.elapsed() < Duration::from_secs(5) {
        if counters
            .store()
            .run_ratelimit(&quota_op(1000))
            .await
            .is_ok()
        {
            recovered = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("redis restarted: first success after {recovered:?}");
    assert!(recovered.is_some(), "the connection is re-established");
}

#[tokio::test]
async fn a_frozen_redis_times_out_and_the_breaker_falls_back_to_local_mode() {
    let server = server();
    let cooldown = Duration::from_millis(300);
    let counters = counters(
        &server.url(),
        BreakerConfig {
            failure_threshold: 3,
            cooldown,
        },
    )
    .await;
    let closed = CounterPolicy::new(Mode::Synchronous).with_on_failure(OnFailure::Closed);
    assert!(timed(&counters, closed).await.0);

    server.pause().unwrap();
    // The first three time out (fail-closed: denied), each within the timeout.
    for i in 0..3 {
        let (allowed, took) = timed(&counters, closed).await;
        eprintln!("frozen redis, check {i}: {took:?}");
        assert!(!allowed);
        assert!(took >= TIMEOUT / 2 && took <= TIMEOUT + SLACK, "{took:?}");
    }
    assert!(counters.store().is_circuit_open());
    // Then the breaker is open: answered locally at once (admitted by the local quota).
    let (allowed, took) = timed(&counters, closed).await;
    eprintln!("breaker open: {took:?}");
    assert!(allowed, "local mode admits within the local count");
    assert!(took < TIMEOUT / 2, "{took:?}");
    assert!(matches!(
        counters.store().run_ratelimit(&quota_op(10)).await,
        Err(RedisError::CircuitOpen)
    ));

    server.resume().unwrap();
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    // The probe after the cool-down succeeds and closes the breaker.
    let started = Instant::now();
    while counters.store().is_circuit_open() || !timed(&counters, closed).await.0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        counters
            .store()
            .run_ratelimit(&quota_op(1000))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn asynchronous_mode_keeps_answering_and_flushes_after_an_outage() {
    let mut server = server();
    let counters = counters(&server.url(), BreakerConfig::disabled()).await;
    let policy = CounterPolicy::new(Mode::Asynchronous);
    server.stop();
    let started = Instant::now();
    for _ in 0..10 {
        let op = quota_op(1000);
        assert!(
            op.resolve(&counters.run(&op, policy).await)
                .unwrap()
                .is_allowed()
        );
    }
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    assert!(counters.flush().await.is_err(), "redis is down");
    server.restart().unwrap();
    let started = Instant::now();
    loop {
        match counters.flush().await {
            Ok(stats) => {
                assert_eq!(stats.weight, 10, "the deltas kept during the outage");
                break;
            }
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let used: u64 = common::raw(
        &server,
        redis::cmd("HGET")
            .arg(counters.store().keys().quota("q"))
            .arg("u"),
    )
    .await;
    assert_eq!(used, 10);
}

#[tokio::test]
async fn persisted_tokens_work_again_after_a_redis_restart() {
    let mut server = server();
    let a = Instance::start(&server.url()).await;
    let cred = common::seed(&a.registry).await;
    let token = a.client_credentials(&cred).await;
    assert!(a.verify(&token).await.is_ok());

    server.stop();
    let started = Instant::now();
    let down = a.verify(&token).await;
    let took = started.elapsed();
    eprintln!("token lookup with redis down: {took:?}");
    assert!(
        matches!(down, Err(VerifyError::StoreUnavailable)),
        "{down:?}"
    );
    assert!(took <= common::config().timeout + SLACK, "{took:?}");
    let (status, _) = a
        .token(format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            cred.client_id, cred.client_secret
        ))
        .await;
    assert_eq!(status, 503, "the token endpoint fails closed");

    // Killed without a shutdown save: the append-only file brings the token back.
    server.restart().unwrap();
    let started = Instant::now();
    loop {
        match a.verify(&token).await {
            Ok(v) => {
                assert_eq!(v.app_name(), "my-app");
                break;
            }
            Err(VerifyError::StoreUnavailable) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // A new gateway started now loads the registry from the restarted Redis.
    let b = Instance::start(&server.url()).await;
    assert!(b.verify(&token).await.is_ok());
}
