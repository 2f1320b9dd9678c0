//! A deterministic simulation of a cluster of preflow gateways and their state store.
//!
//! Possible because the engine is sans-IO: several [`preflow::Gateway`]s built with
//! [`preflow::StateMode::Remote`] run in one thread on simulated time, and every store
//! step they ask for travels over a simulated network to a simulated store
//! ([`preflow_store::MemoryState`], durable across its restarts). From a seed the run
//! draws its parameters and every decision: message latencies (so replies overtake one
//! another), lost messages, partitions of single gateways, a store crash and restart,
//! client requests (tokens, API calls, a synchronous Quota) and an admin revoking an app,
//! whose change reaches each gateway after its own delay and is acknowledged once every
//! gateway applied it (as `preflow_redis::RegistrySync` does).
//!
//! After every event the invariants are checked, and at the end of the run, once every
//! fault is healed, the last ones:
//!
//! * the synchronous Quota never admits more than its limit (counting the requests the
//!   store decided; a check the store never answers fails open, as documented, and is
//!   counted apart);
//! * no token is issued to a revoked app, and no API call accepts its tokens, when the
//!   request started after the revocation was acknowledged;
//! * no acknowledged token is lost once the store recovers: every token issued to an app
//!   still approved is accepted by every gateway, and every token of a revoked app refused;
//! * every exchange finishes (none waits forever), and nothing panics.
//!
//! The same seed replays the same run (tokens are random values, but no decision depends
//! on them). [`run_seed`] runs one seed; `cargo run -p preflow-sim --release -- --seeds N`
//! runs many and prints one summary line.
#![deny(missing_docs)]

mod world;

pub use world::Params;

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled.
    pub events: u64,
    /// Client requests.
    pub requests: u64,
    /// Store operations asked for.
    pub store_ops: u64,
    /// Store operations answered `Unavailable` (lost, partitioned, store down).
    pub unavailable: u64,
    /// Tokens issued (acknowledged to a client).
    pub tokens: u64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
    /// Store crashes.
    pub store_restarts: u64,
    /// Quota checks admitted without an answer from the store (failing open).
    pub failed_open: u64,
    /// Runs whose asynchronous Quota was checked against the README's bound (every flush
    /// succeeded).
    pub async_bound_checked: u64,
    /// What the asynchronous Quota admitted beyond its limit, summed over runs.
    pub async_overshoot: u64,
    /// KVM puts acknowledged (each read back after recovery).
    pub kv_acknowledged: u64,
    /// Apps created during runs and acknowledged.
    pub apps_created: u64,
}

impl Stats {
    /// Adds another run's numbers.
    pub fn add(&mut self, other: &Stats) {
        self.events += other.events;
        self.requests += other.requests;
        self.store_ops += other.store_ops;
        self.unavailable += other.unavailable;
        self.tokens += other.tokens;
        self.server_errors += other.server_errors;
        self.store_restarts += other.store_restarts;
        self.failed_open += other.failed_open;
        self.async_bound_checked += other.async_bound_checked;
        self.async_overshoot += other.async_overshoot;
        self.kv_acknowledged += other.kv_acknowledged;
        self.apps_created += other.apps_created;
    }
}

/// An invariant that did not hold (or a run that could not be set up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The synchronous Quota admitted more than its limit.
    #[error("synchronous quota admitted {admitted} > limit {limit}")]
    QuotaExceeded {
        /// Admitted.
        admitted: u64,
        /// The limit.
        limit: u64,
    },
    /// A token was issued to an app after its revocation was acknowledged.
    #[error("app {app} was issued a token after its revocation was acknowledged (t={at} ns)")]
    IssuedAfterRevoke {
        /// The app.
        app: usize,
        /// Simulated time.
        at: u64,
    },
    /// A revoked app's token was accepted.
    #[error("a token of revoked app {app} was accepted (t={at} ns)")]
    RevokedTokenAccepted {
        /// The app.
        app: usize,
        /// Simulated time.
        at: u64,
    },
    /// An acknowledged token was refused after recovery.
    #[error("an acknowledged token was refused by gateway {gateway} after recovery: {status}")]
    TokenLost {
        /// The gateway.
        gateway: usize,
        /// Its answer.
        status: u16,
    },
    /// The asynchronous Quota admitted more than its bound.
    #[error("asynchronous quota admitted {admitted} > bound {bound}")]
    AsyncQuotaExceeded {
        /// Admitted.
        admitted: u64,
        /// The bound.
        bound: u64,
    },
    /// An app whose creation was acknowledged was refused a token.
    #[error("app {app}, created and acknowledged, was refused by gateway {gateway}: {status}")]
    AppLost {
        /// The app.
        app: usize,
        /// The gateway.
        gateway: usize,
        /// Its answer.
        status: u16,
    },
    /// An acknowledged KVM entry was not read back after recovery.
    #[error("the acknowledged KVM entry k{key} was lost")]
    KvLost {
        /// The entry's number.
        key: u64,
    },
    /// A client that never failed its authentication was throttled.
    #[error("app {app}'s own client was throttled (t={at} ns)")]
    LegitimateThrottled {
        /// The app.
        app: usize,
        /// Simulated time.
        at: u64,
    },
    /// Exchanges never finished.
    #[error("{0} exchange(s) never finished")]
    Stuck(usize),
    /// A token response without a token.
    #[error("a 200 token response without an access token")]
    Malformed,
    /// The run panicked.
    #[error("panic: {0}")]
    Panic(String),
    /// The simulated cluster could not be built.
    #[error("setup: {0}")]
    Setup(String),
}

/// Variations of the protocol under test, to show that the checks catch a broken one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Acknowledge a revocation as soon as one gateway applied it, instead of all (the
    /// broken protocol: other gateways may still issue tokens to the app).
    pub acknowledge_on_first_apply: bool,
    /// Print every event to standard error (for `--replay`).
    pub trace: bool,
}

/// Runs one seed; a panic inside the run is reported as [`Violation::Panic`].
pub fn run_seed(seed: u64) -> Result<Stats, Violation> {
    run_seed_with(seed, Options::default())
}

/// Runs one seed with `options`.
pub fn run_seed_with(seed: u64, options: Options) -> Result<Stats, Violation> {
    let outcome =
        std::panic::catch_unwind(|| world::World::new(seed, options).and_then(world::World::run));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_owned());
            Err(Violation::Panic(message))
        }
    }
}
