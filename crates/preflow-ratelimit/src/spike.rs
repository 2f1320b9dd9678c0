//! SpikeArrest: GCRA over integer nanoseconds, with the Edge and the Apigee X behaviour.

use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;

use crate::rate::Rate;
use crate::store::{CounterStore, GcraTake, MemoryStore, StoreOp, gcra_cas};
use crate::time::Timestamp;

/// Which platform's SpikeArrest algorithm to follow (a named compatibility setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SpikeBehaviour {
    /// Apigee Edge and SAP: rate smoothing. At most one request per emission interval
    /// (1 s / N for `Nps`, 60 s / N for `Npm`); a request of weight `w` closes the window
    /// for `w` intervals; rejected requests do not move the window. GCRA with tolerance 0.
    #[default]
    Edge,
    /// Apigee X: a token bucket that refills at the rate and holds a burst of
    /// `max(1, N / 10)` messages (the observed `maxBurstMessageCount`). A request of weight
    /// `w` needs `w` tokens, so a weight above the burst never passes. GCRA with a burst
    /// tolerance.
    ApigeeX,
}

/// The configuration of a SpikeArrest policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpikeArrestConfig {
    /// The `<Rate>`.
    pub rate: Rate,
    /// Edge smoothing or the Apigee X token bucket.
    pub behaviour: SpikeBehaviour,
    /// `<UseEffectiveCount>`: when true, the rate is shared by `node_count` gateway nodes,
    /// each enforcing `rate / node_count` locally. Absent means false.
    pub use_effective_count: bool,
    /// The number of gateway nodes that share the rate when `use_effective_count` is set.
    pub node_count: NonZeroU32,
}

impl SpikeArrestConfig {
    /// A configuration with the Edge behaviour, `UseEffectiveCount` false, one node.
    pub const fn new(rate: Rate) -> Self {
        SpikeArrestConfig {
            rate,
            behaviour: SpikeBehaviour::Edge,
            use_effective_count: false,
            node_count: NonZeroU32::MIN,
        }
    }

    /// The same configuration with another behaviour.
    pub const fn with_behaviour(mut self, behaviour: SpikeBehaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// The same configuration with `UseEffectiveCount` true over `node_count` nodes.
    pub const fn with_effective_count(mut self, node_count: NonZeroU32) -> Self {
        self.use_effective_count = true;
        self.node_count = node_count;
        self
    }
}

/// The outcome of a SpikeArrest check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpikeDecision {
    /// Whether the request may proceed (`ratelimit.{policy}.failed` is its negation).
    pub allowed: bool,
    /// When rejected: nanoseconds until the same request would pass; 0 when allowed.
    pub retry_after_ns: u64,
}

/// The GCRA parameters derived from a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gcra {
    emission_interval_ns: u64,
    /// `None` for Edge (tolerance = weight·T); the burst in messages for Apigee X.
    burst: Option<u64>,
}

impl Gcra {
    fn new(config: &SpikeArrestConfig) -> Self {
        let nodes = if config.use_effective_count {
            u128::from(config.node_count.get())
        } else {
            1
        };
        let count = u128::from(config.rate.count().get());
        let period = u128::from(config.rate.period_ns());
        let t = (period * nodes).div_ceil(count);
        let emission_interval_ns = u64::try_from(t).unwrap_or(u64::MAX).max(1);
        let burst = match config.behaviour {
            SpikeBehaviour::Edge => None,
            SpikeBehaviour::ApigeeX => {
                let per_node = count / nodes;
                Some(u64::try_from(per_node / 10).unwrap_or(u64::MAX).max(1))
            }
        };
        Gcra {
            emission_interval_ns,
            burst,
        }
    }

    #[inline]
    fn take(&self, now: Timestamp, weight: u32) -> GcraTake {
        let tolerance_ns = match self.burst {
            None => u64::from(weight).saturating_mul(self.emission_interval_ns),
            Some(burst) => burst.saturating_mul(self.emission_interval_ns),
        };
        GcraTake {
            now,
            emission_interval_ns: self.emission_interval_ns,
            tolerance_ns,
            weight,
        }
    }
}

/// A SpikeArrest policy with independent state per identifier, over a [`CounterStore`].
///
/// The key is the `<Identifier>` value (or `_default` without one), namespaced by the
/// caller as it sees fit (e.g. proxy and policy name). Time is passed in; nothing here
/// reads a clock.
///
/// ```
/// use preflow_ratelimit::{SpikeArrest, SpikeArrestConfig, Timestamp};
/// let spike = SpikeArrest::new(SpikeArrestConfig::new("10ps".parse()?));
/// let t0 = Timestamp::from_secs(1_700_000_000);
/// assert!(spike.check("client-a", t0, 1).allowed);
/// // A second request inside the 100 ms interval fails; another identifier is independent.
/// let t1 = t0.saturating_add_nanos(50_000_000);
/// assert!(!spike.check("client-a", t1, 1).allowed);
/// assert!(spike.check("client-b", t1, 1).allowed);
/// assert!(spike.check("client-a", t0.saturating_add_nanos(100_000_000), 1).allowed);
/// # Ok::<(), preflow_ratelimit::RateParseError>(())
/// ```
#[derive(Debug)]
pub struct SpikeArrest<S = MemoryStore> {
    config: SpikeArrestConfig,
    gcra: Gcra,
    store: S,
}

impl SpikeArrest<MemoryStore> {
    /// A SpikeArrest over its own [`MemoryStore`].
    pub fn new(config: SpikeArrestConfig) -> Self {
        SpikeArrest::with_store(config, MemoryStore::new())
    }
}

impl<S: CounterStore> SpikeArrest<S> {
    /// A SpikeArrest over `store` (which may be shared, e.g. `Arc<MemoryStore>`).
    pub fn with_store(config: SpikeArrestConfig, store: S) -> Self {
        SpikeArrest {
            gcra: Gcra::new(&config),
            config,
            store,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SpikeArrestConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The emission interval in nanoseconds (period / rate, rounded up; times the node
    /// count under `UseEffectiveCount`).
    pub fn emission_interval_ns(&self) -> u64 {
        self.gcra.emission_interval_ns
    }

    /// The burst of the Apigee X behaviour in messages (`maxBurstMessageCount` in its fault
    /// string); `None` for the Edge behaviour.
    pub fn max_burst(&self) -> Option<u64> {
        self.gcra.burst
    }

    /// Checks a request of `weight` for `key` at `now`, answered by the store inline.
    /// A weight of 0 consumes nothing: under [`SpikeBehaviour::Edge`] it passes only while
    /// the window is open, under [`SpikeBehaviour::ApigeeX`] it always passes.
    #[inline]
    pub fn check(&self, key: &str, now: Timestamp, weight: u32) -> SpikeDecision {
        let take = self.gcra.take(now, weight);
        take.decide(&self.store.gcra_take(key, &take))
    }

    /// The same check as one store operation, for a store the host runs remotely; pass
    /// the reply to [`StoreOp::resolve`].
    pub fn store_op(&self, key: &str, now: Timestamp, weight: u32) -> StoreOp {
        StoreOp::GcraTake {
            key: key.to_owned(),
            take: self.gcra.take(now, weight),
        }
    }
}

/// A SpikeArrest with a single state (no `<Identifier>`): one lock-free `AtomicU64`.
///
/// ```
/// use preflow_ratelimit::{DirectSpikeArrest, SpikeArrestConfig, SpikeBehaviour, Timestamp};
/// // Apigee X: 60pm holds a burst of 6.
/// let config = SpikeArrestConfig::new("60pm".parse()?).with_behaviour(SpikeBehaviour::ApigeeX);
/// let spike = DirectSpikeArrest::new(config);
/// let now = Timestamp::from_secs(1_700_000_000);
/// let passed = (0..10).filter(|_| spike.check(now, 1).allowed).count();
/// assert_eq!(passed, 6);
/// # Ok::<(), preflow_ratelimit::RateParseError>(())
/// ```
#[derive(Debug)]
pub struct DirectSpikeArrest {
    config: SpikeArrestConfig,
    gcra: Gcra,
    tat: AtomicU64,
}

impl DirectSpikeArrest {
    /// A direct SpikeArrest.
    pub fn new(config: SpikeArrestConfig) -> Self {
        DirectSpikeArrest {
            gcra: Gcra::new(&config),
            config,
            tat: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SpikeArrestConfig {
        &self.config
    }

    /// Checks a request of `weight` at `now`.
    #[inline]
    pub fn check(&self, now: Timestamp, weight: u32) -> SpikeDecision {
        let take = self.gcra.take(now, weight);
        take.decide(&gcra_cas(&self.tat, &take))
    }
}
