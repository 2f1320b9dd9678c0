//! [`Counters`]: rate-limit state in the three modes Apigee offers, with a failure policy.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use preflow_ratelimit::store::{GcraReply, GcraTake, QuotaIncr, QuotaReply, QuotaSlide};
use preflow_ratelimit::{CounterStore, MemoryStore, StoreOp, StoreReply, Timestamp};

use crate::error::RedisError;
use crate::store::RedisStore;

/// Where a rate-limit policy keeps its counts (Apigee's `Distributed` and `Synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Per instance, in memory: each gateway counts alone (`Distributed` false).
    Local,
    /// Exact across instances: every request is one round trip to Redis
    /// (`Distributed` and `Synchronous` true).
    #[default]
    Synchronous,
    /// Eventually consistent: each instance decides on its last view of the shared count
    /// plus what it admitted since, and flushes the difference to Redis every flush
    /// interval (`Distributed` true, `Synchronous` false). Between two flushes the
    /// instances do not see each other's requests, so together they may admit more than
    /// the limit: at most `(k − 1) · min(L, r · (2T + τ))` beyond it (the
    /// [crate docs](crate) give the terms and the reason).
    Asynchronous,
}

/// What a rate-limit check answers when Redis fails (times out or cannot be reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Admit the request (availability over exactness).
    #[default]
    Open,
    /// Reject the request (exactness over availability).
    Closed,
}

/// How one rate-limit policy uses the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterPolicy {
    /// Where the counts live.
    pub mode: Mode,
    /// What to answer while Redis fails and the circuit breaker is still closed.
    pub on_failure: OnFailure,
}

impl CounterPolicy {
    /// A policy with this mode, failing open.
    pub const fn new(mode: Mode) -> Self {
        CounterPolicy {
            mode,
            on_failure: OnFailure::Open,
        }
    }

    /// The same policy with a failure behaviour.
    pub const fn with_on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }
}

#[derive(Debug, Clone, Copy)]
struct GcraEntry {
    emission_interval_ns: u64,
    tolerance_ns: u64,
    tat: u64,
    pending: u64,
}

#[derive(Debug, Clone, Copy)]
struct QuotaEntry {
    incr: QuotaIncr,
    remote: u64,
    pending: u64,
    exceeded: u64,
}

#[derive(Debug, Clone, Copy)]
struct RollingEntry {
    slide: QuotaSlide,
    remote: u64,
    pending: u64,
    exceeded: u64,
}

/// What one [`Counters::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushStats {
    /// Keys sent to Redis.
    pub keys: usize,
    /// Weight flushed (admitted locally since the previous flush).
    pub weight: u64,
}

/// Rate-limit checks in [`Mode::Local`], [`Mode::Synchronous`] or [`Mode::Asynchronous`],
/// answering every [`StoreOp`] with a [`StoreReply`] for [`StoreOp::resolve`].
///
/// Never fails and never waits longer than the store's timeout:
///
/// * synchronous: one script per check; when Redis fails the reply follows
///   [`OnFailure`]; when the circuit breaker is open the check is answered by the local
///   in-memory store (local mode) without waiting;
/// * asynchronous: answered locally at once; [`Counters::flush`] (run periodically by
///   [`Counters::spawn_flusher`]) sends what was admitted and learns the shared counts.
///   Deltas that fail to flush are kept and sent when Redis answers again.
#[derive(Debug)]
pub struct Counters {
    store: RedisStore,
    local: MemoryStore,
    gcra: DashMap<String, GcraEntry>,
    quota: DashMap<String, QuotaEntry>,
    rolling: DashMap<String, RollingEntry>,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

impl Counters {
    /// Counters on `store`.
    pub fn new(store: RedisStore) -> Self {
        Counters {
            store,
            local: MemoryStore::new(),
            gcra: DashMap::new(),
            quota: DashMap::new(),
            rolling: DashMap::new(),
        }
    }

    /// The Redis store.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// Answers `op` as `policy` says.
    pub async fn run(&self, op: &StoreOp, policy: CounterPolicy) -> StoreReply {
        match policy.mode {
            Mode::Local => self.local.run(op),
            Mode::Synchronous => match self.store.run_ratelimit(op).await {
                Ok(reply) => reply,
                Err(RedisError::CircuitOpen) => self.local.run(op),
                Err(e) => {
                    tracing::warn!(
                        key = op.key(),
                        error = %e,
                        on_failure = ?policy.on_failure,
                        "rate-limit check without redis"
                    );
                    failure_reply(op, policy.on_failure)
                }
            },
            Mode::Asynchronous => self.run_async(op),
        }
    }

    fn run_async(&self, op: &StoreOp) -> StoreReply {
        match op {
            StoreOp::GcraTake { key, take } => StoreReply::Gcra(self.gcra_async(key, take)),
            StoreOp::QuotaIncr { key, incr } => StoreReply::Quota(self.quota_async(key, incr)),
            StoreOp::QuotaSlide { key, slide } => StoreReply::Quota(self.rolling_async(key, slide)),
        }
    }

    fn gcra_async(&self, key: &str, take: &GcraTake) -> GcraReply {
        let mut entry = match self.gcra.get_mut(key) {
            Some(e) => e,
            None => self.gcra.entry(key.to_owned()).or_insert(GcraEntry {
                emission_interval_ns: take.emission_interval_ns,
                tolerance_ns: take.tolerance_ns,
                tat: 0,
                pending: 0,
            }),
        };
        entry.emission_interval_ns = take.emission_interval_ns;
        entry.tolerance_ns = take.tolerance_ns;
        match take.apply(entry.tat) {
            Ok(new) => {
                entry.tat = new;
                entry.pending = entry.pending.saturating_add(u64::from(take.weight));
                GcraReply {
                    allowed: true,
                    tat: Timestamp::from_nanos(new),
                }
            }
            Err(tat) => GcraReply {
                allowed: false,
                tat: Timestamp::from_nanos(tat),
            },
        }
    }

    fn quota_async(&self, key: &str, incr: &QuotaIncr) -> QuotaReply {
        let fresh = QuotaEntry {
            incr: *incr,
            remote: 0,
            pending: 0,
            exceeded: 0,
        };
        let mut entry = match self.quota.get_mut(key) {
            Some(e) => e,
            None => self.quota.entry(key.to_owned()).or_insert(fresh),
        };
        if entry.incr.expires_at <= incr.now {
            *entry = fresh;
        }
        entry.incr.limit = incr.limit;
        let weight = u64::from(incr.weight);
        let used = entry.remote.saturating_add(entry.pending);
        let allowed = used.saturating_add(weight) <= incr.limit;
        if allowed {
            entry.pending = entry.pending.saturating_add(weight);
        } else {
            entry.exceeded = entry.exceeded.saturating_add(weight);
        }
        QuotaReply {
            allowed,
            used: entry.remote.saturating_add(entry.pending),
            total_exceeded: entry.exceeded,
            expires_at: Some(entry.incr.expires_at),
        }
    }

    fn rolling_async(&self, key: &str, slide: &QuotaSlide) -> QuotaReply {
        let mut entry = match self.rolling.get_mut(key) {
            Some(e) => e,
            None => self.rolling.entry(key.to_owned()).or_insert(RollingEntry {
                slide: *slide,
                remote: 0,
                pending: 0,
                exceeded: 0,
            }),
        };
        entry.slide = *slide;
        let weight = u64::from(slide.weight);
        let used = entry.remote.saturating_add(entry.pending);
        let allowed = used.saturating_add(weight) <= slide.limit;
        if allowed {
            entry.pending = entry.pending.saturating_add(weight);
        } else {
            entry.exceeded = entry.exceeded.saturating_add(weight);
        }
        QuotaReply {
            allowed,
            used: entry.remote.saturating_add(entry.pending),
            total_exceeded: entry.exceeded,
            expires_at: None,
        }
    }

    /// Sends what asynchronous checks admitted since the last flush and learns the shared
    /// counts; forgets keys that have become idle. Stops at the first failure (the
    /// deltas not sent are kept for the next flush).
    pub async fn flush(&self) -> Result<FlushStats, RedisError> {
        let mut stats = FlushStats::default();
        let now = now();
        let keys: Vec<String> = self.gcra.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some(entry) = self.gcra.get(&key).map(|e| *e) else {
                continue;
            };
            let weight = u32::try_from(entry.pending).unwrap_or(u32::MAX);
            let take = GcraTake {
                now,
                emission_interval_ns: entry.emission_interval_ns,
                tolerance_ns: entry.tolerance_ns,
                weight,
            };
            let reply = self.store.gcra(&key, &take, true).await?;
            stats.keys += 1;
            stats.weight += u64::from(weight);
            if let Some(mut e) = self.gcra.get_mut(&key) {
                e.pending = e.pending.saturating_sub(u64::from(weight));
                e.tat = e.tat.max(reply.tat.as_nanos());
            }
            self.gcra
                .remove_if(&key, |_, e| e.pending == 0 && e.tat <= now.as_nanos());
        }
        let keys: Vec<String> = self.quota.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some(entry) = self.quota.get(&key).map(|e| *e) else {
                continue;
            };
            if entry.incr.expires_at <= now {
                self.quota.remove_if(&key, |_, e| e.incr.expires_at <= now);
                continue;
            }
            let weight = u32::try_from(entry.pending).unwrap_or(u32::MAX);
            let incr = QuotaIncr {
                now,
                weight,
                ..entry.incr
            };
            let reply = self.store.quota(&key, &incr, true).await?;
            stats.keys += 1;
            stats.weight += u64::from(weight);
            if let Some(mut e) = self.quota.get_mut(&key)
                && e.incr.expires_at == entry.incr.expires_at
            {
                e.pending = e.pending.saturating_sub(u64::from(weight));
                e.remote = reply.used;
            }
        }
        let keys: Vec<String> = self.rolling.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            let Some(entry) = self.rolling.get(&key).map(|e| *e) else {
                continue;
            };
            let weight = u32::try_from(entry.pending).unwrap_or(u32::MAX);
            let slide = QuotaSlide {
                now,
                weight,
                ..entry.slide
            };
            let reply = self.store.rolling(&key, &slide, true).await?;
            stats.keys += 1;
            stats.weight += u64::from(weight);
            if let Some(mut e) = self.rolling.get_mut(&key) {
                e.pending = e.pending.saturating_sub(u64::from(weight));
                e.remote = reply.used;
            }
            self.rolling
                .remove_if(&key, |_, e| e.pending == 0 && e.remote == 0);
        }
        Ok(stats)
    }

    /// Flushes every `interval` on the current tokio runtime until the returned handle
    /// is dropped or the counters are. Failed flushes are logged and retried at the next
    /// tick. Fails with [`RedisError::NoRuntime`] outside a tokio runtime.
    pub fn spawn_flusher(self: &Arc<Self>, interval: Duration) -> Result<FlushTask, RedisError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RedisError::NoRuntime)?;
        let weak: Weak<Counters> = Arc::downgrade(self);
        let handle = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(counters) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = counters.flush().await {
                    tracing::warn!(error = %e, "asynchronous rate-limit flush failed");
                }
            }
        });
        Ok(FlushTask { handle })
    }
}

/// The periodic flush started by [`Counters::spawn_flusher`]; dropping it stops it.
#[derive(Debug)]
pub struct FlushTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FlushTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The reply given without Redis: admit or reject as `on_failure` says.
pub fn failure_reply(op: &StoreOp, on_failure: OnFailure) -> StoreReply {
    let admit = on_failure == OnFailure::Open;
    match op {
        StoreOp::GcraTake { take, .. } => StoreReply::Gcra(GcraReply {
            allowed: admit,
            tat: if admit {
                take.now.saturating_add_nanos(take.increment_ns())
            } else {
                // Retry after one increment.
                take.now.saturating_add_nanos(take.tolerance_ns)
            },
        }),
        StoreOp::QuotaIncr { incr, .. } => StoreReply::Quota(QuotaReply {
            allowed: admit,
            used: if admit {
                u64::from(incr.weight)
            } else {
                incr.limit
            },
            total_exceeded: if admit { 0 } else { u64::from(incr.weight) },
            expires_at: Some(incr.expires_at),
        }),
        StoreOp::QuotaSlide { slide, .. } => StoreReply::Quota(QuotaReply {
            allowed: admit,
            used: if admit {
                u64::from(slide.weight)
            } else {
                slide.limit
            },
            total_exceeded: if admit { 0 } else { u64::from(slide.weight) },
            expires_at: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_replies_resolve_to_the_policy() {
        let op = StoreOp::QuotaIncr {
            key: "k".into(),
            incr: QuotaIncr {
                now: Timestamp::from_secs(10),
                window_start: Timestamp::from_secs(0),
                expires_at: Timestamp::from_secs(60),
                weight: 1,
                limit: 5,
            },
        };
        let open = op.resolve(&failure_reply(&op, OnFailure::Open)).unwrap();
        let closed = op.resolve(&failure_reply(&op, OnFailure::Closed)).unwrap();
        assert!(open.is_allowed());
        assert!(!closed.is_allowed());
        let spike = StoreOp::GcraTake {
            key: "k".into(),
            take: GcraTake {
                now: Timestamp::from_secs(10),
                emission_interval_ns: 1_000,
                tolerance_ns: 1_000,
                weight: 1,
            },
        };
        let closed = spike
            .resolve(&failure_reply(&spike, OnFailure::Closed))
            .unwrap();
        match closed {
            preflow_ratelimit::Decision::Spike(d) => {
                assert!(!d.allowed);
                assert_eq!(d.retry_after_ns, 1_000);
            }
            other => panic!("{other:?}"),
        }
    }
}
