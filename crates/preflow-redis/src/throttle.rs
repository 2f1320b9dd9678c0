//! Client-authentication throttle entries shared through Redis
//! ([`preflow_oauth::Throttle`]'s counts, kept where every instance sees them).
//!
//! Instances must derive keys under one MAC key ([`preflow_oauth::Throttle::with_key`]).
//! The host reads the entries of an attempt's keys before checking its secret and counts
//! a failure after; the arithmetic is [`preflow_oauth::ThrottleEntry::fail`], repeated in
//! the `THROTTLE_FAIL` script on the time the host passes.

use preflow_oauth::{Lockout, ThrottleConfig, ThrottleEntry, ThrottleKey, ThrottleKeys};

use crate::error::RedisError;
use crate::store::RedisStore;

fn entry(values: (Option<u64>, Option<u64>, Option<u64>)) -> ThrottleEntry {
    ThrottleEntry {
        failures: values.0.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)),
        last_failure: values.1.unwrap_or(0),
        wait_until: values.2.unwrap_or(0),
    }
}

impl RedisStore {
    /// The MAC key every instance on this Redis derives throttle keys under
    /// ([`preflow_oauth::Throttle::with_key`]): created at random by the first instance
    /// (`SET NX`), read by the others. It is a secret of the deployment (it keeps client
    /// ids out of Redis) and never logged.
    pub async fn throttle_mac_key(&self) -> Result<[u8; 32], RedisError> {
        let k = self.keys().throttle_mac_key();
        let mut fresh = [0u8; 32];
        let (a, b) = fresh.split_at_mut(16);
        a.copy_from_slice(&preflow_oauth::GrantId::random().0);
        b.copy_from_slice(&preflow_oauth::GrantId::random().0);
        let fresh = hex::encode(fresh);
        let stored: String = self
            .guarded("throttle_mac_key", |mut c| async move {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(&fresh)
                    .arg("NX")
                    .query_async::<Option<String>>(&mut c)
                    .await?;
                redis::cmd("GET").arg(&k).query_async(&mut c).await
            })
            .await?;
        crate::keys::unhex32(&stored)
            .ok_or_else(|| RedisError::Reply("the stored throttle key is malformed".to_owned()))
    }

    /// The stored entry of a throttle key (default when absent).
    pub async fn throttle_entry(&self, key: &ThrottleKey) -> Result<ThrottleEntry, RedisError> {
        let k = self.keys().throttle(key);
        self.guarded("throttle_entry", |mut c| async move {
            redis::cmd("HMGET")
                .arg(&k)
                .arg("f")
                .arg("l")
                .arg("w")
                .query_async::<(Option<u64>, Option<u64>, Option<u64>)>(&mut c)
                .await
        })
        .await
        .map(entry)
    }

    /// Whether an attempt with these keys must wait at `now` (one read per key).
    pub async fn throttle_check(
        &self,
        keys: &ThrottleKeys,
        now: u64,
    ) -> Result<Result<(), Lockout>, RedisError> {
        if let Some(retry_after) = self.throttle_entry(&keys.pair).await?.wait(now) {
            return Ok(Err(Lockout::Pair { retry_after }));
        }
        if let Some(source) = &keys.source
            && let Some(retry_after) = self.throttle_entry(source).await?.wait(now)
        {
            return Ok(Err(Lockout::Source { retry_after }));
        }
        Ok(Ok(()))
    }

    async fn throttle_fail_one(
        &self,
        key: &ThrottleKey,
        now: u64,
        free: u32,
        config: &ThrottleConfig,
    ) -> Result<ThrottleEntry, RedisError> {
        let k = self.keys().throttle(key);
        let script = &self.scripts().throttle_fail;
        let (base, max, forget) = (config.base_delay, config.max_delay, config.forget_after);
        self.guarded("throttle_fail", |mut c| async move {
            script
                .key(&k)
                .arg(now)
                .arg(free)
                .arg(base)
                .arg(max)
                .arg(forget)
                .invoke_async::<(u64, u64, u64)>(&mut c)
                .await
        })
        .await
        .map(|(f, l, w)| entry((Some(f), Some(l), Some(w))))
    }

    /// Counts one failed authentication under both keys; returns the pair's entry.
    pub async fn throttle_fail(
        &self,
        keys: &ThrottleKeys,
        now: u64,
        config: &ThrottleConfig,
    ) -> Result<ThrottleEntry, RedisError> {
        let pair = self
            .throttle_fail_one(&keys.pair, now, config.free_pair_failures, config)
            .await?;
        if let Some(source) = &keys.source {
            self.throttle_fail_one(source, now, config.free_source_failures, config)
                .await?;
        }
        Ok(pair)
    }

    /// Clears the pair after a successful authentication (the source keeps its count).
    pub async fn throttle_success(&self, keys: &ThrottleKeys) -> Result<(), RedisError> {
        let k = self.keys().throttle(&keys.pair);
        self.guarded("throttle_success", |mut c| async move {
            redis::cmd("DEL").arg(&k).query_async::<u64>(&mut c).await
        })
        .await
        .map(|_| ())
    }
}
