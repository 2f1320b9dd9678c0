//! Where `preflow serve` keeps tokens, codes and counters: `--state file` (the default,
//! an embedded database that survives restarts), `--state memory`, or `--redis URL`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use preflow_store::{DurableStore, StateStore as _};

/// `--state`: where a gateway without Redis keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// An embedded database file (`preflow-state.redb` in `--state-dir`): tokens, codes,
    /// key-value entries and Quota counters survive a restart.
    File,
    /// Process memory: everything is lost when the gateway stops.
    Memory,
}

/// How often Quota counters committed without fsync are made durable.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often expired tokens, codes and idle counters are removed from the file.
pub const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The state a gateway built with [`preflow::StateMode::Remote`] asks its store steps of.
#[derive(Debug)]
pub enum State {
    /// Shared with other instances through Redis.
    Redis(super::redis::Remote),
    /// The embedded database of this instance.
    File(Arc<DurableStore>),
}

impl State {
    /// Performs one store step.
    pub async fn run(&self, op: &preflow::StoreOp) -> preflow::StoreReply {
        match self {
            State::Redis(remote) if issues(op) && !remote.sync.is_fresh() => {
                // The registry may miss a revocation made elsewhere: issue nothing until
                // it is in step again (token endpoints answer 503).
                tracing::warn!("registry not in step with redis: token not issued");
                preflow::StoreReply::Unavailable
            }
            State::Redis(remote) => remote.state.run(op).await,
            State::File(store)
                if commits_durably(op) && tokio::runtime::Handle::try_current().is_ok() =>
            {
                // An fsync takes milliseconds: it runs on the blocking pool while the
                // thread serves its other connections (whatever the runtime's flavour).
                let (store, op) = (Arc::clone(store), op.clone());
                tokio::task::spawn_blocking(move || store.run(&op))
                    .await
                    .unwrap_or(preflow::StoreReply::Unavailable)
            }
            State::File(store) => store.run(op),
        }
    }
}

/// The shared throttle MAC key of the state, if it has one (Redis).
pub fn throttle_key(state: &State) -> Option<[u8; 32]> {
    match state {
        State::Redis(remote) => remote.throttle_key,
        State::File(_) => None,
    }
}

/// Whether the operation issues a token or an authorization code.
fn issues(op: &preflow::StoreOp) -> bool {
    matches!(
        op,
        preflow::StoreOp::Token(
            preflow_oauth::StoreOp::PutTokens(_) | preflow_oauth::StoreOp::PutCode { .. }
        )
    )
}

/// Whether the operation waits for an fsync (security state), rather than reading or
/// committing a counter without one.
fn commits_durably(op: &preflow::StoreOp) -> bool {
    match op {
        preflow::StoreOp::Token(op) => !matches!(
            op,
            preflow_oauth::StoreOp::GetToken(_)
                | preflow_oauth::StoreOp::ThrottleCheck { .. }
                | preflow_oauth::StoreOp::ThrottleFail { .. }
                | preflow_oauth::StoreOp::ThrottleSuccess(_)
        ),
        preflow::StoreOp::Kv(op) => !matches!(op, preflow::KvOp::Get { .. }),
        _ => false,
    }
}

/// Opens the state file `dir/preflow-state.redb`.
pub fn open(dir: &std::path::Path) -> Result<Arc<DurableStore>, preflow_store::StoreError> {
    let path: PathBuf = dir.join(preflow_store::DEFAULT_FILE_NAME);
    let store = DurableStore::open(&path)?;
    tracing::info!(path = %path.display(), "state kept in an embedded database");
    Ok(Arc::new(store))
}

/// Syncs Quota counters every [`SYNC_EVERY`] and purges dead records every
/// [`PURGE_EVERY`], off the async workers. Stops when the guard is dropped.
pub fn spawn_maintenance(store: Arc<DurableStore>) -> Maintenance {
    let handle = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SYNC_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_purge = Duration::ZERO;
        loop {
            ticker.tick().await;
            since_purge += SYNC_EVERY;
            let purge = since_purge >= PURGE_EVERY;
            if purge {
                since_purge = Duration::ZERO;
            }
            let store = Arc::clone(&store);
            let done = tokio::task::spawn_blocking(move || {
                if let Err(e) = store.sync() {
                    tracing::error!(error = %e, "quota counters not synced");
                }
                if purge {
                    let now = preflow_ratelimit_now();
                    match store.purge_expired(now) {
                        Ok(n) => tracing::debug!(removed = n, "state file purged"),
                        Err(e) => tracing::warn!(error = %e, "state file not purged"),
                    }
                }
            });
            let _ = done.await;
        }
    });
    Maintenance(handle)
}

fn preflow_ratelimit_now() -> preflow::preflow_ratelimit::Timestamp {
    preflow::preflow_ratelimit::Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Stops the maintenance task when dropped.
#[derive(Debug)]
pub struct Maintenance(tokio::task::JoinHandle<()>);

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.0.abort();
    }
}
