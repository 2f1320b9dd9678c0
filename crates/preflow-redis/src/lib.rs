//! Redis backends for preflow: rate-limit counters, OAuth tokens and codes, and the
//! registry of apps and credentials, shared by every gateway instance.
//!
//! The preflow crates are sans-IO: a rate-limit check or a token lookup that needs remote
//! state is handed to the host as a store operation
//! ([`preflow_ratelimit::StoreOp`], [`preflow_oauth::StoreOp`]) and resumed with the
//! reply. This crate is the async driver that performs those operations on Redis, for
//! tokio hosts, on the `redis` crate with a self-reconnecting `ConnectionManager`.
//!
//! * [`RedisStore`] runs one operation: [`RedisStore::run_ratelimit`] and
//!   [`RedisStore::run_token`]. Every operation has a timeout in milliseconds
//!   ([`RedisConfig::timeout`]) and passes a circuit breaker ([`BreakerConfig`]).
//! * [`Counters`] adds the modes of rate-limit policies ([`Mode`]) and the failure policy
//!   ([`OnFailure`]): it always answers, within the timeout.
//! * [`RemoteState`] runs the store steps of the preflow engine
//!   ([`preflow::Step::Store`], for a gateway built with [`preflow::StateMode::Remote`]).
//! * [`RedisRegistry`], [`RedisStore::save_registry`] and [`RedisStore::load_registry`]
//!   keep the registry of developers, products, apps and credentials in Redis;
//!   [`RegistrySync`] keeps every instance's registry in step with versioned records and
//!   change notifications (see its docs for the guarantees).
//! * [`server::RedisServer`] runs a private `redis-server` for tests and benches,
//!   [`server::RedisCluster`] a private Redis Cluster.
//!
//! Stores are created and polled on a tokio runtime; creating one elsewhere is an error
//! ([`RedisError::NoRuntime`]).
//!
//! # Modes
//!
//! As Apigee's `Distributed` and `Synchronous` flags:
//!
//! * [`Mode::Local`]: counts in process memory, per instance.
//! * [`Mode::Synchronous`]: one Lua script per check, exact across instances.
//! * [`Mode::Asynchronous`]: the check is answered locally from the last known shared
//!   count plus what this instance admitted since; [`Counters::flush`], every N ms
//!   ([`Counters::spawn_flusher`]), sends the deltas and reads back the shared counts.
//!
//! ## The overshoot of asynchronous mode
//!
//! With `k` instances, a limit `L`, a flush interval `T`, flushes taking at most `τ`
//! (one round trip per key, bounded by [`RedisConfig::timeout`]) and requests arriving
//! at each instance at a rate of at most `r` (weight per second), one window admits at
//! most
//!
//! ```text
//! L + (k − 1) · min(L, r · (2T + τ))
//! ```
//!
//! Why: take the instance that admits last. Its view of the shared count was read at its
//! last flush, at most `T` before; that view lacks what each other instance admitted after
//! its own last flush before the read (at most `T` earlier still, the timers not being
//! aligned) and since: at most `2T + τ` of its traffic, and never more than `L`, since no
//! instance admits beyond `L` on its own view. One instance alone never overshoots. The
//! bound assumes flushes succeed; during a Redis outage an instance's view ages by the
//! outage's length, which then adds to `T`.
//! `tests/overshoot.rs` asserts the bound on schedules driven step by step. Examples:
//! two instances at 1,500 requests/s each, `L` = 100: any `T` of 33 ms or more allows up
//! to 200 (each instance may use the whole limit before it sees the other); `T` = 5 ms
//! allows about 100 + 1,500 · 0.015 ≈ 123 with `τ` ≈ 5 ms. Synchronous mode is exact.
//!
//! # Algorithms and scripts
//!
//! * SpikeArrest: GCRA in Lua on the Redis clock (`TIME`), so the gateways' clocks never
//!   disagree. The key holds the theoretical arrival time as absolute nanoseconds
//!   (`SET … PXAT`), and the reply carries it relative to `TIME`, re-based on the host's
//!   clock so [`preflow_ratelimit::StoreOp::resolve`] computes the retry-after as usual.
//! * Quota (default, calendar, flexi): a hash per window, `HINCRBY` guarded by the limit
//!   and `PEXPIREAT` at the window end; rejected requests are not counted.
//! * Quota rollingwindow: a hash of per-slot counts, summed and trimmed by the script.
//! * Tokens, refresh tokens and codes: hashes keyed by the SHA-256 digest (hex) of the
//!   value, `PEXPIREAT` the expiry; revocation sets a field; a set per grant revokes a
//!   token family. Raw tokens and secrets never reach Redis.
//! * Key-value entries ([`preflow::KvOp`], [`RedisStore::run_kv`]): one string key per
//!   entry, `SET … PXAT` the expiry (`NX` when a live entry must not be replaced).
//! * Client-authentication throttle entries ([`preflow_oauth::ThrottleEntry`]): a hash
//!   per keyed digest of (client id, source) or source, updated by a Lua script with the
//!   arithmetic of [`preflow_oauth::ThrottleEntry::fail`], expiring when forgotten
//!   ([`RedisStore::throttle_check`], [`RedisStore::throttle_fail`],
//!   [`RedisStore::throttle_success`]). Client ids never reach Redis.
//!
//! Scripts are sent with `EVALSHA` and loaded on `NOSCRIPT` ([`redis::Script`]). See
//! [`keys`] for the key layout: every operation touches keys of one hash tag, so it runs
//! in one cluster slot.
//!
//! # Failure policy
//!
//! * Every operation is bounded by [`RedisConfig::timeout`]; failures (timeouts, refused
//!   or dropped connections) are logged with `tracing` and returned as [`RedisError`].
//! * Rate-limit checks in synchronous mode then admit or reject as the policy's
//!   [`OnFailure`] says. After [`BreakerConfig::failure_threshold`] consecutive failures
//!   the circuit breaker opens: checks are answered from local memory (local mode) at
//!   once, and after [`BreakerConfig::cooldown`] one operation probes Redis again; the
//!   first success closes the breaker.
//! * Token operations fail closed: [`RedisStore::execute_token`] answers
//!   [`preflow_oauth::StoreReply::Unavailable`] and the endpoints answer 503.
//! * The connection is re-established by later operations when Redis returns; nothing
//!   panics or waits longer than the timeout.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use preflow_ratelimit::{SpikeArrest, SpikeArrestConfig, Timestamp};
//! use preflow_redis::{CounterPolicy, Counters, Mode, OnFailure, RedisConfig, RedisStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisConfig::default().with_timeout(Duration::from_millis(20));
//! let store = RedisStore::connect("redis://127.0.0.1:6379/", config).await?;
//!
//! // One exact check, as the engine's store step asks for it.
//! let spike = SpikeArrest::new(SpikeArrestConfig::new("30ps".parse()?));
//! let op = spike.store_op("app-1", Timestamp::from_system_time(std::time::SystemTime::now()), 1);
//! let reply = store.run_ratelimit(&op).await?;
//! assert!(op.resolve(&reply)?.is_allowed());
//!
//! // The same through the modes and the failure policy: always answers.
//! let counters = Counters::new(store);
//! let policy = CounterPolicy::new(Mode::Synchronous).with_on_failure(OnFailure::Closed);
//! let decision = op.resolve(&counters.run(&op, policy).await)?;
//! println!("allowed: {}", decision.is_allowed());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod breaker;
mod counters;
mod engine;
mod error;
pub mod keys;
mod oauth;
mod registry;
mod scripts;
mod store;
mod sync;
mod throttle;

pub mod server;

pub use breaker::BreakerConfig;
pub use counters::{
    CounterPolicy, Counters, FlushStats, FlushTask, Mode, OnFailure, failure_reply,
};
pub use engine::RemoteState;
pub use error::RedisError;
pub use keys::KeyLayout;
pub use registry::RedisRegistry;
pub use store::{RedisConfig, RedisStore};
pub use sync::{DEFAULT_CONFIRM_TIMEOUT, Published, RegistrySync, SyncTask};
