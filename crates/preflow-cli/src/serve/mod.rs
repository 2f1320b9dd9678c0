//! `preflow serve`: the reference gateway on hyper and tokio.
//!
//! It loads bundles and an apps file, then serves every proxy's base path on one
//! listener, forwarding to targets over pooled connections. An optional second listener
//! carries the admin API (developer self-service). One log line per request goes to
//! standard error; the bound addresses go to standard output.

mod admin;
mod gateway;
mod listener;
mod redis;
mod upstream;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use preflow_cli::apps;
use preflow_oauth::PasswordHashCost;
use tokio::sync::watch;

/// Rate-limit fault statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Apigee X and Edge cloud: 429.
    Cloud,
    /// Edge private cloud and SAP API Management: 500.
    PrivateCloud,
}

/// SpikeArrest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SpikeArg {
    /// Edge smoothing: one request per interval, no burst (Edge and SAP).
    Edge,
    /// Apigee X: a token bucket that allows a burst of a tenth of the rate.
    X,
}

/// Arguments of `preflow serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundles to serve: `apiproxy/` folders, folders holding them, or zips.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Apps file (TOML) with developers, products, apps and credentials. Default: the
    /// first `apps.toml` found directly in a PATH folder.
    #[arg(long)]
    pub apps: Option<PathBuf>,
    /// Address of the admin API (developer self-service); off unless given. Needs the
    /// `PREFLOW_ADMIN_TOKEN` environment variable and an apps file.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest target response body in bytes; larger ones fail the call (502).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Rate-limit fault statuses.
    #[arg(long, value_enum, default_value_t = ProfileArg::Cloud)]
    pub profile: ProfileArg,
    /// SpikeArrest algorithm.
    #[arg(long, value_enum, default_value_t = SpikeArg::Edge)]
    pub spike_arrest: SpikeArg,
    /// Environment name (`environment.name`, checked against API products).
    #[arg(long, default_value = "prod")]
    pub environment: String,
    /// Seconds to let open requests finish after SIGINT or SIGTERM.
    #[arg(long, default_value_t = 10)]
    pub grace_seconds: u64,
    /// Redis for state shared by gateway instances: tokens, apps and rate-limit counters
    /// (`redis://host:port/db`). Without it all state is in this process.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Time one Redis operation may take, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub redis_timeout_ms: u64,
    /// Deny rate-limited requests while Redis fails (default: admit them).
    #[arg(long)]
    pub redis_fail_closed: bool,
}

/// An error that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Apps(#[from] apps::AppsError),
    #[error("the bundles have {0} error(s); nothing is served")]
    Load(usize),
    #[error("cannot build the gateway: {0}")]
    Build(String),
    #[error(
        "the admin API needs the {} environment variable (at least {} characters)",
        admin::TOKEN_VARIABLE,
        admin::MIN_TOKEN_LEN
    )]
    AdminToken,
    #[error("the admin API needs an apps file to save changes to (--apps)")]
    AdminWithoutApps,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("redis: {0}")]
    Redis(#[from] preflow_redis::RedisError),
}

/// Runs `preflow serve` until SIGINT or SIGTERM.
pub fn run(args: &Args) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&StartError::Runtime(e)),
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &StartError) -> ExitCode {
    eprintln!("preflow serve: {e}");
    ExitCode::FAILURE
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PREFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn find_apps_file(paths: &[PathBuf]) -> Option<PathBuf> {
    paths
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| p.join("apps.toml"))
        .find(|p| p.is_file())
}

fn load_apps(path: Option<&Path>) -> Result<apps::AppsFile, StartError> {
    let Some(path) = path else {
        tracing::warn!("no apps file: no client can get a token or use an API key");
        return Ok(apps::AppsFile::default());
    };
    let mut file = apps::AppsFile::read(path)?;
    file.validate()?;
    file.hash_secrets(PasswordHashCost::default())?;
    Ok(file)
}

async fn serve(args: &Args) -> Result<(), StartError> {
    let apps_path = args.apps.clone().or_else(|| find_apps_file(&args.paths));
    let admin_token = match args.admin {
        Some(_) => {
            let token = std::env::var(admin::TOKEN_VARIABLE).unwrap_or_default();
            if token.trim().len() < admin::MIN_TOKEN_LEN {
                return Err(StartError::AdminToken);
            }
            if apps_path.is_none() {
                return Err(StartError::AdminWithoutApps);
            }
            Some(token.trim().to_owned())
        }
        None => None,
    };
    let file = load_apps(apps_path.as_deref())?;
    let registry = Arc::new(file.to_registry(PasswordHashCost::default())?);

    let mut loaded = preflow::Loaded::default();
    for path in &args.paths {
        let mut one = preflow::load_path(path, &preflow::LoadOptions::default());
        loaded.bundles.append(&mut one.bundles);
        loaded.diagnostics.append(&mut one.diagnostics);
    }
    for w in loaded.warnings() {
        tracing::warn!("{w}");
    }
    if loaded.has_errors() {
        for e in loaded.errors() {
            eprintln!("{e}");
        }
        return Err(StartError::Load(loaded.errors().count()));
    }
    let settings = preflow::Settings {
        profile: match args.profile {
            ProfileArg::Cloud => preflow::Profile::Cloud,
            ProfileArg::PrivateCloud => preflow::Profile::PrivateCloud,
        },
        spike: match args.spike_arrest {
            SpikeArg::Edge => preflow::preflow_ratelimit::SpikeBehaviour::Edge,
            SpikeArg::X => preflow::preflow_ratelimit::SpikeBehaviour::ApigeeX,
        },
        environment: args.environment.clone(),
        ..preflow::Settings::default()
    };
    let (remote, registry_store) = match &args.redis {
        Some(url) => {
            let timeout = Duration::from_millis(args.redis_timeout_ms);
            let r = redis::start(url, timeout, args.redis_fail_closed, &registry, &loaded).await?;
            (Some(Arc::new(r.state)), Some(r.setup))
        }
        None => (None, None),
    };
    let _flusher = remote
        .as_ref()
        .and_then(|r| r.flush_interval().map(|every| r.spawn_flusher(every)))
        .transpose()?;
    let _refresh = registry_store
        .clone()
        .map(|store| redis::spawn_registry_refresh(store, Arc::clone(&registry)));
    let gateway = preflow::Gateway::builder()
        .bundles(loaded)
        .registry(Arc::clone(&registry))
        .settings(settings)
        .state(if remote.is_some() {
            preflow::StateMode::Remote
        } else {
            preflow::StateMode::Local
        })
        .build()
        .map_err(|e| StartError::Build(e.to_string()))?;
    let gateway = Arc::new(gateway);

    let limits = listener::Limits {
        max_header_bytes: args.max_header_bytes,
        max_body_bytes: args.max_body_bytes,
        ..listener::Limits::default()
    };
    let grace = Duration::from_secs(args.grace_seconds);
    let (stop_tx, stop_rx) = watch::channel(false);

    let main = listener::Listener::bind(args.listen, "gateway")
        .await
        .map_err(|source| StartError::Bind {
            addr: args.listen,
            source,
        })?;
    let main_addr = main.local_addr().map_err(|source| StartError::Bind {
        addr: args.listen,
        source,
    })?;
    let admin_listener = match (args.admin, admin_token, apps_path.clone()) {
        (Some(addr), Some(token), Some(path)) => {
            let l = listener::Listener::bind(addr, "admin")
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            Some((
                l,
                bound,
                Arc::new(
                    admin::Admin::new(&token, Arc::clone(&registry), file, path)
                        .with_redis(registry_store.clone()),
                ),
            ))
        }
        _ => None,
    };

    for (base, proxy) in gateway.base_paths() {
        tracing::info!(base_path = base, proxy, "serving");
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "preflow listening on http://{main_addr}");
        if let Some((_, bound, _)) = &admin_listener {
            let _ = writeln!(out, "preflow admin listening on http://{bound}");
        }
        let _ = out.flush();
    }

    let handler = Arc::new(
        gateway::GatewayHandler::new(gateway, upstream::Upstream::new(args.max_response_bytes))
            .with_remote(remote),
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(main.serve(handler, limits, stop_rx.clone(), grace));
    if let Some((l, _, admin)) = admin_listener {
        tasks.spawn(l.serve(admin, limits, stop_rx.clone(), grace));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
