//! State for preflow gateways that run with [`preflow::StateMode::Remote`]: one
//! interface, [`StateStore`], and two stores behind it that answer the engine's store
//! steps ([`preflow::Step::Store`]) inline.
//!
//! * [`MemoryState`]: the in-memory token and counter stores of `preflow-oauth` and
//!   `preflow-ratelimit`. Everything is lost when the process ends (tests).
//! * [`DurableStore`]: an embedded database in one file ([redb]): access and refresh
//!   tokens, authorization codes, key-value entries ([`preflow::KvOp`]) and Quota
//!   counters survive a restart (even `kill -9`)
//!   of a single gateway with no other process. Writes of security state (tokens issued,
//!   revoked, codes taken, key-value entries written or deleted) are committed with fsync before the operation returns, so
//!   nothing is acknowledged to a client that a crash could take back. Quota counters are
//!   committed without fsync and made durable by [`DurableStore::sync`] (the gateway calls
//!   it every second and at shutdown); a crash loses at most the counts since the last
//!   sync. SpikeArrest state stays in memory: it spans one rate interval (milliseconds to
//!   a minute), so a restart forgets at most one interval of smoothing, and an fsync per
//!   request would cost more than the check protects. Client-authentication throttle
//!   entries ([`preflow_oauth::StoreOp::ThrottleCheck`] and its kin) stay in memory
//!   too: they matter within minutes, and one file serves one gateway.
//!
//!   Decoded token records are also kept in memory in front of the file (up to
//!   [`DEFAULT_TOKEN_CACHE_ENTRIES`], see [`DurableStore::with_token_cache`]), so a
//!   verification does not read and decode the file each time. Because the file belongs
//!   to one gateway, every write passes through it and updates the cache after its
//!   commit: a revocation takes effect on the next request.
//!
//! The Redis store of `preflow-redis` answers the same operations; the conformance suite
//! of this crate (`tests/conformance.rs`) runs one set of cases against all three.
//!
//! Raw tokens and secrets never reach the file: tokens and codes are keyed by their
//! SHA-256 digests, as in memory and in Redis.
//!
//! ```
//! use std::sync::Arc;
//! use preflow_store::{DurableStore, StateStore};
//! use preflow_oauth::{StoreOp, StoreReply, TokenHash};
//!
//! let dir = tempfile::tempdir()?;
//! let store = DurableStore::open(dir.path().join("state.redb"))?;
//! let reply = store.token(&StoreOp::GetToken(TokenHash::of(b"unknown")))?;
//! assert_eq!(reply, StoreReply::Token(None));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [redb]: https://www.redb.org
#![deny(missing_docs)]

mod durable;
mod error;
mod kv;
mod token_cache;
mod windows;

pub use durable::{DEFAULT_FILE_NAME, DurableStore};
pub use error::StoreError;
pub use kv::MemoryKv;
pub use token_cache::DEFAULT_TOKEN_CACHE_ENTRIES;

use preflow_oauth::TokenStore as _;
use preflow_ratelimit::CounterStore as _;

/// A store that answers the engine's state operations inline (blocking briefly: a
/// durable store waits for its commit).
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Performs a token or authorization-code operation.
    fn token(&self, op: &preflow_oauth::StoreOp) -> Result<preflow_oauth::StoreReply, StoreError>;

    /// Performs a SpikeArrest or Quota counter operation.
    fn counter(
        &self,
        op: &preflow_ratelimit::StoreOp,
    ) -> Result<preflow_ratelimit::StoreReply, StoreError>;

    /// Performs a key-value operation ([`preflow::KvOp`]).
    fn kv(&self, op: &preflow::KvOp) -> Result<preflow::KvReply, StoreError>;

    /// Performs one store step of the engine. A failed operation answers
    /// [`preflow::StoreReply::Unavailable`] (logged, without keys or tokens).
    fn run(&self, op: &preflow::StoreOp) -> preflow::StoreReply {
        let result = match op {
            preflow::StoreOp::RateLimit(op) => self.counter(op).map(preflow::StoreReply::RateLimit),
            preflow::StoreOp::Token(op) => self.token(op).map(preflow::StoreReply::Token),
            preflow::StoreOp::Kv(op) => self.kv(op).map(preflow::StoreReply::Kv),
            _ => return preflow::StoreReply::Unavailable,
        };
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "state store operation failed");
            preflow::StoreReply::Unavailable
        })
    }
}

/// State in process memory: lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryState {
    tokens: preflow_oauth::MemoryStore,
    counters: preflow_ratelimit::MemoryStore,
    kv: MemoryKv,
}

impl MemoryState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateStore for MemoryState {
    fn token(&self, op: &preflow_oauth::StoreOp) -> Result<preflow_oauth::StoreReply, StoreError> {
        Ok(self.tokens.execute(op.clone()))
    }

    fn counter(
        &self,
        op: &preflow_ratelimit::StoreOp,
    ) -> Result<preflow_ratelimit::StoreReply, StoreError> {
        Ok(self.counters.run(op))
    }

    fn kv(&self, op: &preflow::KvOp) -> Result<preflow::KvReply, StoreError> {
        Ok(self.kv.run(op))
    }
}
