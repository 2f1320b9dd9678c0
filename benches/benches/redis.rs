//! SpikeArrest on Redis, against a loopback redis-server that the bench starts itself.
//!
//! * `redis_spike_arrest/sync`: one synchronous check: the GCRA script on Redis, one
//!   round trip over loopback (`EVALSHA`).
//! * `redis_spike_arrest/async`: one asynchronous check: decided locally, the admitted
//!   weight flushed to Redis every 100 ms by a background task.
//!
//! 1,000 identifiers are cycled; the rate is 10⁹ per second, so every check passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use preflow_ratelimit::{Rate, SpikeArrest, SpikeArrestConfig, SpikeBehaviour, Timestamp};
use preflow_redis::server::RedisServer;
use preflow_redis::{CounterPolicy, Counters, Mode, RedisConfig, RedisStore};

const KEYS: usize = 1_000;

fn redis_spike_arrest(c: &mut Criterion) {
    let server =
        RedisServer::start().unwrap_or_else(|e| panic!("the redis bench needs redis-server: {e}"));
    // One thread: the connection's driver task and the background flush run inside
    // `block_on`, so a check pays no cross-thread wake-up.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = RedisConfig::default().with_timeout(Duration::from_secs(1));
    let store = rt
        .block_on(RedisStore::connect(&server.url(), config))
        .unwrap();
    let counters = Arc::new(Counters::new(store.clone()));
    let _flusher = rt
        .block_on(async { counters.spawn_flusher(Duration::from_millis(100)) })
        .unwrap();
    let spike = SpikeArrest::new(
        SpikeArrestConfig::new(Rate::per_second(NonZeroU32::new(1_000_000_000).unwrap()))
            .with_behaviour(SpikeBehaviour::ApigeeX),
    );
    let keys: Vec<String> = (0..KEYS).map(|i| format!("client-{i:04}")).collect();
    let now = || Timestamp::from_system_time(SystemTime::now());

    let mut group = c.benchmark_group("redis_spike_arrest");
    let mut cycle = keys.iter().cycle();
    group.bench_function("sync", |b| {
        b.iter(|| {
            let key = cycle.next().map_or("", String::as_str);
            let op = spike.store_op(black_box(key), now(), 1);
            let reply = rt.block_on(store.run_ratelimit(&op)).unwrap();
            assert!(op.resolve(&reply).unwrap().is_allowed());
        })
    });
    let mut cycle = keys.iter().cycle();
    let policy = CounterPolicy::new(Mode::Asynchronous);
    group.bench_function("async", |b| {
        b.iter(|| {
            let key = cycle.next().map_or("", String::as_str);
            let op = spike.store_op(black_box(key), now(), 1);
            let reply = rt.block_on(counters.run(&op, policy));
            assert!(op.resolve(&reply).unwrap().is_allowed());
        })
    });
    group.finish();
    rt.block_on(counters.flush()).unwrap();
}

criterion_group!(benches, redis_spike_arrest);
criterion_main!(benches);
