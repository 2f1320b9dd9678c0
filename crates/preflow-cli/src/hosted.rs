//! Loading bundles for the host adapters (`preflow ext-proc` for Envoy, the Pingora
//! example): the bundles, the apps file, an optional environment file and optional Redis
//! for state shared with other instances, into a built [`preflow::Gateway`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use preflow_oauth::PasswordHashCost;
use preflow_redis::{
    BreakerConfig, CounterPolicy, OnFailure, RedisConfig, RedisStore, RemoteState,
};

use crate::{apps, environment};

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Bundles: `apiproxy/` folders, folders holding them, or zips.
    pub paths: Vec<PathBuf>,
    /// The apps file; default: the first `apps.toml` directly in a PATH folder.
    pub apps: Option<PathBuf>,
    /// The environment file (target servers, trust stores, API providers); none by
    /// default.
    pub env: Option<PathBuf>,
    /// Redis (`redis://host:port/db`) for tokens and rate-limit counters shared by every
    /// instance; without it all state is in this process.
    pub redis: Option<String>,
    /// Time one Redis operation may take.
    pub redis_timeout: Duration,
}

/// A gateway ready for a host, and the store its store steps go to.
#[derive(Debug)]
pub struct Hosted {
    /// The gateway.
    pub gateway: Arc<preflow::Gateway>,
    /// Redis state, when asked for (the gateway is then built with remote state).
    pub store: Option<Arc<RemoteState>>,
    /// The environment file's trust and key stores, for hosts that make the target call
    /// with their own TLS client.
    pub tls: preflow_host::TlsStores,
}

/// Why the gateway could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The apps file.
    #[error(transparent)]
    Apps(#[from] apps::AppsError),
    /// The environment file.
    #[error(transparent)]
    Env(#[from] environment::EnvError),
    /// Bundles with errors (each printed to standard error).
    #[error("the bundles have {0} error(s); nothing is served")]
    Bundles(usize),
    /// The gateway could not be built.
    #[error("cannot build the gateway: {0}")]
    Build(#[from] preflow::BuildError),
    /// Redis.
    #[error("redis: {0}")]
    Redis(#[from] preflow_redis::RedisError),
}

/// Loads and builds; must run on a tokio runtime when `redis` is given.
pub fn load(options: &Options) -> Result<Hosted, LoadError> {
    let apps_path = options
        .apps
        .clone()
        .or_else(|| apps::AppsFile::find(&options.paths));
    let file = match &apps_path {
        Some(p) => apps::AppsFile::load_hashed(p, PasswordHashCost::default())?,
        None => apps::AppsFile::default(),
    };
    let registry = Arc::new(file.to_registry(PasswordHashCost::default())?);
    let env = match &options.env {
        Some(p) => Some(environment::Environment::read(p)?),
        None => None,
    };
    let loaded = preflow::load_paths(&options.paths, &preflow::LoadOptions::default());
    if loaded.has_errors() {
        for e in loaded.errors() {
            eprintln!("{e}");
        }
        return Err(LoadError::Bundles(loaded.errors().count()));
    }
    let store = match &options.redis {
        Some(url) => {
            let config = RedisConfig::default()
                .with_timeout(options.redis_timeout)
                .with_breaker(BreakerConfig::default());
            let store = RedisStore::new(url, config)?;
            let state = RemoteState::new(store)
                .with_default_policy(CounterPolicy::default().with_on_failure(OnFailure::Open))
                .with_bundle_policies(&loaded, OnFailure::Open);
            Some(Arc::new(state))
        }
        None => None,
    };
    let mut builder = preflow::Gateway::builder()
        .bundles(loaded)
        .registry(registry)
        .state(if store.is_some() {
            preflow::StateMode::Remote
        } else {
            preflow::StateMode::Local
        });
    let mut tls = preflow_host::TlsStores::default();
    if let Some(env) = env {
        tls.truststores = env
            .truststores
            .iter()
            .map(|(name, certs)| (name.clone(), certs.iter().map(|c| c.to_vec()).collect()))
            .collect();
        tls.keystores = env
            .keystores
            .iter()
            .map(|(name, (chain, key))| {
                let chain = chain.iter().map(|c| c.to_vec()).collect();
                (name.clone(), (chain, key.secret_der().to_vec()))
            })
            .collect();
        builder = builder.environment(env.engine);
    }
    Ok(Hosted {
        gateway: Arc::new(builder.build()?),
        store,
        tls,
    })
}
