//! Shared test setup: a private redis-server per test.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use preflow_ratelimit::Timestamp;
use preflow_redis::server::RedisServer;
use preflow_redis::{BreakerConfig, RedisConfig, RedisStore};

/// Starts a private redis-server. Fails the test when none can be started (CI installs
/// redis-server; these tests never skip).
pub fn server() -> RedisServer {
    match RedisServer::start() {
        Ok(s) => s,
        Err(e) => panic!("these tests need redis-server (apt-get install redis-server): {e}"),
    }
}

pub fn config() -> RedisConfig {
    RedisConfig::default()
        .with_timeout(Duration::from_millis(200))
        .with_breaker(BreakerConfig::disabled())
}

pub async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url(), config()).await.unwrap()
}

pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A raw command on the server, for inspection.
pub async fn raw<T: redis::FromRedisValue>(server: &RedisServer, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}
