//! `--redis URL`: tokens, the registry and rate-limit counters shared through Redis by
//! every gateway instance pointed at the same server; registry changes pushed to every
//! instance ([`RegistrySync`]).

use std::sync::Arc;
use std::time::Duration;

use preflow_oauth::Registry;
use preflow_redis::{
    BreakerConfig, OnFailure, RedisConfig, RedisStore, RegistrySync, RemoteState, SyncTask,
};

/// The time a registry read or write may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to Redis, shares the apps file's registry through it (records Redis lacks
/// are written; newer ones stored by other instances are loaded) and subscribes to the
/// changes of every instance, then returns the remote state for the gateway. When Redis
/// cannot be reached now, the gateway still starts with the apps file's registry: token
/// and counter operations follow the failure policy, and no token is issued, until Redis
/// answers and the registry is in step again.
pub async fn start(
    target: &Target,
    timeout: Duration,
    fail_closed: bool,
    registry: &Arc<Registry>,
    loaded: &preflow::Loaded,
) -> Result<Remote, preflow_redis::RedisError> {
    let config = RedisConfig::default()
        .with_timeout(timeout)
        .with_breaker(BreakerConfig::default());
    // Registry reads and writes are not on a request's path: they get more time.
    let setup_config = config.clone().with_timeout(timeout.max(SETUP_TIMEOUT));
    let (setup, store, urls) = match target {
        Target::Single(url) => (
            RedisStore::new(url, setup_config)?,
            RedisStore::new(url, config)?,
            vec![url.clone()],
        ),
        Target::Cluster(urls) => (
            RedisStore::connect_cluster(urls, setup_config).await?,
            RedisStore::connect_cluster(urls, config).await?,
            urls.clone(),
        ),
    };
    // Every instance counts failed client authentications under the same keys.
    let throttle_key = match setup.throttle_mac_key().await {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::error!(error = %e, "no shared throttle key: failed client authentications are counted apart from other instances until a restart");
            None
        }
    };
    let sync = RegistrySync::with_urls(&urls, setup, Arc::clone(registry))?;
    let task = sync.start(SETUP_TIMEOUT).await;
    if sync.is_fresh() {
        tracing::info!("registry shared through redis");
    } else {
        tracing::error!("redis unavailable at start: serving the apps file's registry only");
    }
    let on_failure = if fail_closed {
        OnFailure::Closed
    } else {
        OnFailure::Open
    };
    // The connection is made on first use, its task spawned on the runtime that uses it:
    // made here, it lives on the control runtime, which outlives the worker threads'.
    if let Err(e) = store.ping().await {
        tracing::warn!(error = %e, "redis did not answer a ping at start");
    }
    let default = preflow_redis::CounterPolicy::default().with_on_failure(on_failure);
    let state = RemoteState::new(store)
        .with_default_policy(default)
        .with_bundle_policies(loaded, on_failure);
    Ok(Remote {
        state,
        sync,
        throttle_key,
        _task: task,
    })
}

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum Target {
    /// One server.
    Single(String),
    /// Nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

/// The gateway's remote state and the registry kept in step through Redis.
#[derive(Debug)]
pub struct Remote {
    /// Counters and tokens.
    pub state: RemoteState,
    /// The registry's versioned records and change notifications.
    pub sync: RegistrySync,
    /// The throttle's MAC key shared by the instances, when Redis gave it.
    pub throttle_key: Option<[u8; 32]>,
    /// Stops the subscription when the gateway stops.
    pub _task: SyncTask,
}

/// Shares a registry change made by the admin API with every instance; whether every
/// record reached Redis.
pub async fn share(sync: &RegistrySync) -> bool {
    match sync.publish_changes().await {
        Ok(p) => {
            tracing::info!(
                records = p.records,
                instances = p.receivers,
                confirmed = p.confirmed,
                "registry change shared"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "registry change not written to redis");
            false
        }
    }
}
