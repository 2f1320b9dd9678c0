//! [`RemoteState`]: runs the store steps of the preflow engine
//! ([`preflow::Step::Store`]) on Redis.

use std::sync::Arc;
use std::time::Duration;

use crate::counters::{CounterPolicy, Counters, FlushTask, Mode, OnFailure};
use crate::store::RedisStore;

/// The state of a gateway built with [`preflow::StateMode::Remote`]: counters (in the
/// configured [`Mode`](crate::Mode)s) and tokens on Redis. Answers every
/// [`preflow::StoreOp`] within the store's timeout and never fails.
///
/// ```no_run
/// # async fn demo(
/// #     gateway: &preflow::Gateway,
/// #     exchange: &mut preflow::Exchange,
/// # ) -> Result<(), preflow_redis::RedisError> {
/// use preflow_redis::{RedisConfig, RedisStore, RemoteState};
/// let state = RemoteState::new(RedisStore::new("redis://127.0.0.1/", RedisConfig::default())?);
/// loop {
///     match gateway.step(exchange) {
///         preflow::Step::Store(op) => exchange.store_reply(state.run(&op).await),
///         _ => break,
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RemoteState {
    counters: Arc<Counters>,
    default_policy: CounterPolicy,
    policies: Vec<(String, CounterPolicy)>,
    flush_interval: Option<Duration>,
}

/// Apigee's default `<AsynchronousConfiguration><SyncIntervalInSeconds>`.
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(10);

impl RemoteState {
    /// Remote state on `store`; rate limits are synchronous and fail open unless
    /// configured otherwise.
    pub fn new(store: RedisStore) -> Self {
        RemoteState {
            counters: Arc::new(Counters::new(store)),
            default_policy: CounterPolicy::default(),
            policies: Vec::new(),
            flush_interval: None,
        }
    }

    /// The policy for rate-limit keys no [`RemoteState::with_policy`] prefix matches.
    pub fn with_default_policy(mut self, policy: CounterPolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Uses `policy` for the rate-limit keys that start with `prefix`. The engine names
    /// keys `spike:PROXY:POLICY:ID` and `quota:PROXY:POLICY:ID`, so a prefix such as
    /// `quota:hello-api:Q-1:` selects one policy. The longest matching prefix wins.
    pub fn with_policy(mut self, prefix: impl Into<String>, policy: CounterPolicy) -> Self {
        self.policies.push((prefix.into(), policy));
        self.policies
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        self
    }

    /// Sets the mode of every Quota policy of `loaded` from its `<Distributed>` and
    /// `<Synchronous>` flags: not distributed is [`Mode::Local`], distributed and
    /// synchronous is [`Mode::Synchronous`], distributed only is [`Mode::Asynchronous`]
    /// with the policy's `<SyncIntervalInSeconds>` (default 10 s) as flush interval (the
    /// shortest one of all policies is used; see [`RemoteState::flush_interval`]).
    /// SpikeArrest policies keep the default policy.
    pub fn with_bundle_policies(mut self, loaded: &preflow::Loaded, on_failure: OnFailure) -> Self {
        for bundle in &loaded.bundles {
            for policy in bundle.policies.values() {
                let preflow::PolicyConfig::Quota(q) = &policy.config else {
                    continue;
                };
                let mode = match (q.distributed, q.synchronous) {
                    (false, _) => Mode::Local,
                    (true, true) => Mode::Synchronous,
                    (true, false) => {
                        let every = q
                            .sync_interval_seconds
                            .map_or(DEFAULT_SYNC_INTERVAL, Duration::from_secs)
                            .max(Duration::from_millis(10));
                        self.flush_interval =
                            Some(self.flush_interval.map_or(every, |f| f.min(every)));
                        Mode::Asynchronous
                    }
                };
                self = self.with_policy(
                    format!("quota:{}:{}:", bundle.name, policy.name),
                    CounterPolicy::new(mode).with_on_failure(on_failure),
                );
            }
        }
        self
    }

    /// The flush interval the asynchronous policies set by
    /// [`RemoteState::with_bundle_policies`] ask for; `None` when there are none.
    pub fn flush_interval(&self) -> Option<Duration> {
        self.flush_interval
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The Redis store.
    pub fn store(&self) -> &RedisStore {
        self.counters.store()
    }

    /// The policy that applies to a rate-limit key.
    pub fn policy_for(&self, key: &str) -> CounterPolicy {
        self.policies
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_str()))
            .map_or(self.default_policy, |(_, p)| *p)
    }

    /// Starts the periodic flush of asynchronous counters (see
    /// [`Counters::spawn_flusher`]).
    pub fn spawn_flusher(&self, interval: Duration) -> Result<FlushTask, crate::RedisError> {
        self.counters.spawn_flusher(interval)
    }

    /// Performs one store step of the engine and returns the reply for
    /// [`preflow::Exchange::store_reply`]. Rate-limit checks follow their
    /// [`CounterPolicy`]; token and key-value operations that fail answer
    /// [`preflow::StoreReply::Unavailable`].
    pub async fn run(&self, op: &preflow::StoreOp) -> preflow::StoreReply {
        match op {
            preflow::StoreOp::RateLimit(op) => preflow::StoreReply::RateLimit(
                self.counters.run(op, self.policy_for(op.key())).await,
            ),
            preflow::StoreOp::Token(op) => match self.store().run_token(op).await {
                Ok(reply) => preflow::StoreReply::Token(reply),
                Err(e) => {
                    tracing::warn!(error = %e, "token store unavailable");
                    preflow::StoreReply::Unavailable
                }
            },
            preflow::StoreOp::Kv(op) => match self.store().run_kv(op).await {
                Ok(reply) => preflow::StoreReply::Kv(reply),
                Err(e) => {
                    tracing::warn!(error = %e, "key-value store unavailable");
                    preflow::StoreReply::Unavailable
                }
            },
            other => {
                tracing::warn!(op = ?other, "store operation not supported");
                preflow::StoreReply::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisConfig;

    #[tokio::test]
    async fn the_longest_matching_prefix_chooses_the_policy() {
        // No connection is made by `new`.
        let store = RedisStore::new("redis://127.0.0.1:1/", RedisConfig::default()).unwrap();
        let local = CounterPolicy::new(Mode::Local);
        let asynchronous =
            CounterPolicy::new(Mode::Asynchronous).with_on_failure(OnFailure::Closed);
        let state = RemoteState::new(store)
            .with_policy("quota:api:", local)
            .with_policy("quota:api:Q-1:", asynchronous);
        assert_eq!(state.policy_for("quota:api:Q-1:app"), asynchronous);
        assert_eq!(state.policy_for("quota:api:Q-2:app"), local);
        assert_eq!(
            state.policy_for("spike:api:S:app"),
            CounterPolicy::default()
        );
        assert_eq!(state.flush_interval(), None);
    }
}
