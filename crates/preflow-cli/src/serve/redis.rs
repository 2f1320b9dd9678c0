//! `--redis URL`: tokens, the registry and rate-limit counters shared through Redis by
//! every gateway instance pointed at the same server.

use std::sync::Arc;
use std::time::Duration;

use preflow_oauth::Registry;
use preflow_redis::{BreakerConfig, OnFailure, RedisConfig, RedisStore, RemoteState};

/// The time a registry read or write may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to Redis, writes the apps file's registry through to it and adds what other
/// instances stored, and returns the remote state for the gateway. When Redis cannot be
/// reached now, the gateway still starts with the apps file's registry: token and
/// counter operations then follow the failure policy until Redis answers.
pub async fn start(
    url: &str,
    timeout: Duration,
    fail_closed: bool,
    registry: &Registry,
    loaded: &preflow::Loaded,
) -> Result<Remote, preflow_redis::RedisError> {
    let config = RedisConfig::default()
        .with_timeout(timeout)
        .with_breaker(BreakerConfig::default());
    // Registry reads and writes are not on a request's path: they get more time.
    let setup = RedisStore::new(url, config.clone().with_timeout(timeout.max(SETUP_TIMEOUT)))?;
    let store = RedisStore::new(url, config)?;
    let synced = async {
        setup.save_registry(registry).await?;
        setup.load_registry_into(registry).await
    };
    match synced.await {
        Ok(records) => tracing::info!(records, "registry shared through redis"),
        Err(e) => tracing::error!(
            error = %e,
            "redis unavailable at start: serving the apps file's registry only"
        ),
    }
    let on_failure = if fail_closed {
        OnFailure::Closed
    } else {
        OnFailure::Open
    };
    let default = preflow_redis::CounterPolicy::default().with_on_failure(on_failure);
    let state = RemoteState::new(store)
        .with_default_policy(default)
        .with_bundle_policies(loaded, on_failure);
    Ok(Remote { state, setup })
}

/// The gateway's remote state, and a store with a longer timeout for registry reads and
/// writes.
#[derive(Debug)]
pub struct Remote {
    /// Counters and tokens.
    pub state: RemoteState,
    /// For the registry.
    pub setup: RedisStore,
}

/// Writes the registry through to Redis after a change made by the admin API.
pub async fn save(store: &RedisStore, registry: &Registry) {
    if let Err(e) = store.save_registry(registry).await {
        tracing::error!(error = %e, "registry change not written to redis");
    }
}

/// How often a gateway adds the registry records other instances wrote to Redis.
pub const REGISTRY_REFRESH: Duration = Duration::from_secs(10);

/// Re-reads the registry from Redis every [`REGISTRY_REFRESH`], so apps, credentials
/// and status changes made through another instance reach this one without a restart.
/// Stops when the returned guard is dropped.
pub fn spawn_registry_refresh(store: RedisStore, registry: Arc<Registry>) -> RefreshTask {
    let handle = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(REGISTRY_REFRESH);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match store.load_registry_into(&registry).await {
                Ok(records) => tracing::debug!(records, "registry refreshed from redis"),
                Err(e) => tracing::warn!(error = %e, "registry not refreshed from redis"),
            }
        }
    });
    RefreshTask(handle)
}

/// Stops the registry refresh when dropped.
#[derive(Debug)]
pub struct RefreshTask(tokio::task::JoinHandle<()>);

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
