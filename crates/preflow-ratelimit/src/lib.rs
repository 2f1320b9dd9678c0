//! SpikeArrest and Quota algorithms over a counter-store interface, with an in-memory store.
//!
//! This crate is sans-IO: it never reads a clock and never performs I/O. The host passes
//! the current time ([`Timestamp`], Unix time in nanoseconds) to every check.
//!
//! * [`SpikeArrest`] (keyed by `<Identifier>`) and [`DirectSpikeArrest`] (one state)
//!   implement SpikeArrest as GCRA over integer nanoseconds, with the Apigee Edge
//!   smoothing behaviour or the Apigee X token bucket ([`SpikeBehaviour`]).
//! * [`Quota`] implements the default, calendar, rollingwindow and flexi quota types and
//!   reports the counts behind the `ratelimit.{policy}.*` variables ([`QuotaDecision`]).
//! * Both keep their state in a [`CounterStore`]. The [`MemoryStore`] answers inline and
//!   reclaims idle keys so memory stays bounded. For a remote store, each check is also
//!   available as one atomic [`StoreOp`]; the host runs it (e.g. as a Redis script) and
//!   [`StoreOp::resolve`] turns the [`StoreReply`] into the [`Decision`]. See [`store`].
//!
//! ```
//! use std::num::NonZeroU32;
//! use preflow_ratelimit::{
//!     CounterStore, MemoryStore, Quota, QuotaCheck, QuotaConfig, QuotaType, SpikeArrest,
//!     SpikeArrestConfig, TimeUnit, Timestamp,
//! };
//!
//! let now = Timestamp::from_secs(1_700_000_000);
//!
//! // SpikeArrest 30pm: one request every 2 seconds per identifier.
//! let spike = SpikeArrest::new(SpikeArrestConfig::new("30pm".parse()?));
//! assert!(spike.check("app-1", now, 1).allowed);
//! let denied = spike.check("app-1", now.saturating_add_nanos(500_000_000), 1);
//! assert!(!denied.allowed);
//! assert_eq!(denied.retry_after_ns, 1_500_000_000);
//!
//! // Quota: 100 per day, each identifier's window opening at its first request.
//! let config = QuotaConfig::new(100, NonZeroU32::MIN, TimeUnit::Day).with_type(QuotaType::Flexi);
//! let quota = Quota::new(config)?;
//! let decision = quota.check("app-1", now, 10);
//! assert_eq!((decision.used_count, decision.available_count), (10, 90));
//!
//! // The same quota check as a store operation, run by a (here: in-memory) remote store.
//! let op = quota.store_op(&QuotaCheck::new("app-2", now, 1));
//! let reply = MemoryStore::new().run(&op);
//! assert!(op.resolve(&reply)?.is_allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod quota;
mod rate;
mod spike;
pub mod store;
mod time;

pub use quota::{
    ClassAllow, Quota, QuotaCheck, QuotaConfig, QuotaConfigError, QuotaDecision, QuotaType,
    TimeUnit, parse_interval, parse_start_time,
};
pub use rate::{Rate, RateParseError, RateUnit};
pub use spike::{DirectSpikeArrest, SpikeArrest, SpikeArrestConfig, SpikeBehaviour, SpikeDecision};
pub use store::{CounterStore, Decision, MemoryStore, StoreOp, StoreReply};
pub use time::Timestamp;
