//! `preflow serve`: the reference gateway on hyper and tokio.
//!
//! It loads bundles, an apps file and an environment file, then serves each proxy's base
//! path on the virtual hosts its ProxyEndpoint names (HTTP/1.1 and HTTP/2, plain or TLS),
//! forwarding to `http://` and `https://` targets over pooled connections. An optional
//! extra listener carries the admin API (developer self-service) and the operator's
//! endpoints (`/metrics`, `/healthz`, `/readyz`), which `--metrics` can serve alone. One
//! log line per request (text or JSON) goes to standard error; the bound addresses go to
//! standard output.

mod admin;
mod deploy;
mod gateway;
mod health;
mod listener;
mod metrics;
mod ops;
mod portal;
mod redis;
mod request_id;
mod state;
mod tls;
mod upstream;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use preflow_cli::{apps, environment};
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

/// Shape of the token endpoint's responses (OAuthV2 GenerateAccessToken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenResponseArg {
    /// RFC 6749 only: `token_type` `Bearer`, numeric `expires_in`, `error` objects.
    Rfc,
    /// RFC 6749 members plus Apigee's (`issued_at`, `client_id`, `application_name`,
    /// `api_product_list`, `status`, …).
    RfcPlusApigee,
    /// Apigee Edge's own shape: `BearerToken`, string numbers, `ErrorCode`/`Error`
    /// errors; for clients migrated from Apigee or SAP API Management.
    Apigee,
}

/// What VerifyAccessToken's `<Scope>` list asks of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyScopeArg {
    /// Every listed scope (SAP's Verify Access Tokens page).
    All,
    /// At least one listed scope (Apigee X's reference).
    Any,
}

/// Format of the log on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One `key=value` line per event.
    Text,
    /// One JSON object per line (fields at the top level).
    Json,
}

/// Arguments of `preflow serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundles to serve: `apiproxy/` folders, folders holding them, or zips.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Address of the `default` virtual host (default 127.0.0.1:8080, or the environment
    /// file's); port 0 picks a free port (the bound address is printed).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Environment file (TOML) with virtual hosts, trust and key stores, target servers
    /// and API providers. Default: the first `environment.toml` found directly in a PATH
    /// folder.
    #[arg(long = "env", value_name = "FILE")]
    pub env: Option<PathBuf>,
    /// Listen address of a virtual host of the environment file, as NAME=ADDR (port 0
    /// picks a free port); repeatable.
    #[arg(long = "vhost", value_name = "NAME=ADDR", value_parser = parse_vhost)]
    pub vhosts: Vec<(String, SocketAddr)>,
    /// Apps file (TOML) with developers, products, apps and credentials. Default: the
    /// first `apps.toml` found directly in a PATH folder.
    #[arg(long)]
    pub apps: Option<PathBuf>,
    /// Address of the admin API (developer self-service); off unless given. Needs the
    /// `PREFLOW_ADMIN_TOKEN` environment variable and an apps file.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Address of the developer portal (catalogue, API references, sign-up, apps with
    /// their keys and secrets); off unless given. Needs an apps file to save changes to.
    #[arg(long, value_name = "ADDR")]
    pub portal: Option<SocketAddr>,
    /// The portal's settings file (TOML: title, developer approval, OpenAPI documents).
    /// Default: the first `portal.toml` found directly in a PATH folder.
    #[arg(long, value_name = "FILE", requires = "portal")]
    pub portal_config: Option<PathBuf>,
    /// Address serving only `/metrics` (Prometheus), `/healthz` and `/readyz`, without
    /// the admin API. The admin listener serves them too.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Also count requests by app (`preflow_app_requests_total`): one series per app
    /// that calls, so off by default.
    #[arg(long)]
    pub metrics_app_labels: bool,
    /// Log format on standard error: `text` (key=value) or `json` (one object a line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a client has to send a request head (and to finish a TLS handshake).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_timeout: u64,
    /// Seconds of silence allowed while a request body is read, and the grace period
    /// before --body-min-rate applies; past either the client gets 408.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub body_timeout: u64,
    /// Lowest average request body rate in bytes per second once --body-timeout has
    /// passed (0: none).
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES")]
    pub body_min_rate: u64,
    /// Seconds an open connection with no request in progress is kept.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Most open client connections, all listeners together; further clients wait in
    /// the kernel's accept queue.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Most bytes of request bodies held at once by all requests in flight; a request
    /// that would pass it gets 503 without its body being read.
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    pub max_buffered_bytes: usize,
    /// Largest target response body in bytes; larger ones fail the call (502).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Rate-limit fault statuses.
    #[arg(long, value_enum, default_value_t = ProfileArg::Cloud)]
    pub profile: ProfileArg,
    /// SpikeArrest algorithm.
    #[arg(long, value_enum, default_value_t = SpikeArg::Edge)]
    pub spike_arrest: SpikeArg,
    /// Shape of token responses: RFC 6749 (default), RFC plus Apigee's extra members,
    /// or Apigee's own. A policy with `<RFCCompliantRequestResponse>true` stays RFC.
    #[arg(long, value_enum, default_value_t = TokenResponseArg::Rfc)]
    pub token_response: TokenResponseArg,
    /// VerifyAccessToken `<Scope>`: the token needs every listed scope (default) or any.
    #[arg(long, value_enum, default_value_t = VerifyScopeArg::All)]
    pub verify_scope: VerifyScopeArg,
    /// Leave out the `Retry-After` header that 429 answers of Quota, SpikeArrest and
    /// ConcurrentRatelimit policies otherwise carry.
    #[arg(long)]
    pub no_retry_after: bool,
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
    /// `--redis` names nodes of a Redis Cluster, separated by commas
    /// (`redis://h1:7000,redis://h2:7001`); the cluster must answer at start.
    #[arg(long, requires = "redis")]
    pub redis_cluster: bool,
    /// Time one Redis operation may take, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub redis_timeout_ms: u64,
    /// Deny rate-limited requests while Redis fails (default: admit them).
    #[arg(long)]
    pub redis_fail_closed: bool,
    /// Where a gateway without `--redis` keeps tokens, codes and Quota counters: `file`
    /// (an embedded database that survives restarts) or `memory` (lost at exit).
    #[arg(long, value_enum, default_value_t = state::StateArg::File, conflicts_with = "redis")]
    pub state: state::StateArg,
    /// Folder of the state file `preflow-state.redb` (`--state file`); created if needed.
    /// One gateway process per file.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub state_dir: PathBuf,
    /// Threads serving the virtual hosts, each with a runtime, a socket per listen address
    /// (`SO_REUSEPORT`: the kernel spreads connections) and upstream connections of its
    /// own. Default: one per core.
    #[arg(long, env = "PREFLOW_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WORKERS)))]
    pub workers: Option<u16>,
}

/// The most worker threads `--workers` accepts.
const MAX_WORKERS: u16 = 256;

/// The number of worker threads: `--workers` (or `PREFLOW_WORKERS`), else the cores.
fn worker_count(args: &Args) -> usize {
    args.workers.map_or_else(
        || {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .min(usize::from(MAX_WORKERS))
        },
        usize::from,
    )
}

fn parse_vhost(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| "expected NAME=ADDR".to_owned())?;
    let addr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an address (IP:port)"))?;
    Ok((name.trim().to_owned(), addr))
}

/// The default listen address of the `default` virtual host.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// An error that stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Apps(#[from] apps::AppsError),
    #[error(transparent)]
    Env(#[from] environment::EnvError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("--vhost {0}: the environment has no virtual host of that name")]
    UnknownVhost(String),
    #[error("virtual hosts sharing {0} must all use TLS or none")]
    MixedTls(SocketAddr),
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
    #[error("the portal needs an apps file to save developers and apps to (--apps)")]
    PortalWithoutApps,
    #[error("portal: {0}")]
    Portal(#[from] portal::PortalError),
    #[error("PREFLOW_KVM_KEY must be 64 hexadecimal digits (a 256-bit key)")]
    KvmKey,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot watch for SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("redis: {0}")]
    Redis(#[from] preflow_redis::RedisError),
    #[error("{0}")]
    State(#[from] preflow_store::StoreError),
}

/// Runs `preflow serve` until SIGINT or SIGTERM.
pub fn run(args: &Args) -> ExitCode {
    init_logging(args.log_format);
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PREFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// The environment file with the command line's listen addresses applied.
fn load_environment(args: &Args) -> Result<(environment::Environment, bool), StartError> {
    let path = args.env.clone().or_else(|| environment::find(&args.paths));
    let mut env = match &path {
        Some(p) => environment::Environment::read(p)?,
        None => environment::Environment::default(),
    };
    let default_listen = args
        .listen
        .or_else(|| DEFAULT_LISTEN.parse().ok())
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    let no_hosts = env.hosts.is_empty();
    match env.host_mut(environment::DEFAULT_HOST) {
        Some(h) => {
            if let Some(addr) = args.listen {
                h.listen = addr;
            }
        }
        None if args.listen.is_some() || no_hosts => {
            env.hosts.insert(
                0,
                environment::Host {
                    name: environment::DEFAULT_HOST.to_owned(),
                    listen: default_listen,
                    hosts: Vec::new(),
                    tls: None,
                },
            );
        }
        None => {}
    }
    for (name, addr) in &args.vhosts {
        env.host_mut(name)
            .ok_or_else(|| StartError::UnknownVhost(name.clone()))?
            .listen = *addr;
    }
    Ok((env, path.is_some()))
}

fn load_apps(path: Option<&Path>) -> Result<apps::AppsFile, StartError> {
    let Some(path) = path else {
        tracing::warn!("no apps file: no client can get a token or use an API key");
        return Ok(apps::AppsFile::default());
    };
    Ok(apps::AppsFile::load_hashed(
        path,
        PasswordHashCost::default(),
    )?)
}

async fn serve(args: &Args) -> Result<(), StartError> {
    let apps_path = args
        .apps
        .clone()
        .or_else(|| apps::AppsFile::find(&args.paths));
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
    if args.portal.is_some() && apps_path.is_none() {
        return Err(StartError::PortalWithoutApps);
    }
    let portal_settings = match args.portal.and(
        args.portal_config
            .clone()
            .or_else(|| portal::Settings::find(&args.paths)),
    ) {
        Some(path) => portal::Settings::read(&path)?,
        None => portal::Settings::default(),
    };
    let (mut env, env_given) = load_environment(args)?;
    let workers = worker_count(args);
    // Bound first: a provider may name a virtual host of this gateway (port 0 included).
    let listeners = bind_hosts(&env, workers)?;
    let addrs: Vec<(String, SocketAddr, bool)> = listeners
        .iter()
        .flat_map(|l| l.names.iter().map(|n| (n.clone(), l.bound, l.tls)))
        .collect();
    env.resolve_virtual_host_providers(&addrs)?;
    let env = Arc::new(env);
    let file = load_apps(apps_path.as_deref())?;
    let registry = Arc::new(file.to_registry(PasswordHashCost::default())?);

    let loaded = preflow::load_paths(&args.paths, &preflow::LoadOptions::default());
    for w in loaded.warnings() {
        tracing::warn!("{w}");
    }
    // Targets through providers, target servers or stores the environment lacks.
    for w in preflow::lint_environment(&loaded.bundles, &env.engine) {
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
        token_response: match args.token_response {
            TokenResponseArg::Rfc => preflow::preflow_oauth::ResponseMode::Rfc,
            TokenResponseArg::RfcPlusApigee => preflow::preflow_oauth::ResponseMode::RfcPlusApigee,
            TokenResponseArg::Apigee => preflow::preflow_oauth::ResponseMode::Apigee,
        },
        scope_match: match args.verify_scope {
            VerifyScopeArg::All => preflow::preflow_oauth::ScopeMatch::All,
            VerifyScopeArg::Any => preflow::preflow_oauth::ScopeMatch::Any,
        },
        ..preflow::Settings::default()
    };
    let (remote, sync) = match &args.redis {
        Some(url) => {
            let timeout = Duration::from_millis(args.redis_timeout_ms);
            let target = if args.redis_cluster {
                redis::Target::Cluster(url.split(',').map(|u| u.trim().to_owned()).collect())
            } else {
                redis::Target::Single(url.clone())
            };
            let r =
                redis::start(&target, timeout, args.redis_fail_closed, &registry, &loaded).await?;
            let sync = r.sync.clone();
            (Some(r), Some(sync))
        }
        None => (None, None),
    };
    let _flusher = remote
        .as_ref()
        .and_then(|r| {
            r.state
                .flush_interval()
                .map(|every| r.state.spawn_flusher(every))
        })
        .transpose()?;
    let file_store = match (&remote, args.state) {
        (None, state::StateArg::File) => Some(state::open(&args.state_dir)?),
        _ => None,
    };
    let _maintenance = file_store.clone().map(state::spawn_maintenance);
    let remote = match (remote, &file_store) {
        (Some(r), _) => Some(Arc::new(state::State::Redis(r))),
        (None, Some(f)) => Some(Arc::new(state::State::File(Arc::clone(f)))),
        (None, None) => None,
    };
    let mut resources = preflow::PolicyResources::default();
    if let Some(key) = remote.as_deref().and_then(state::throttle_key) {
        resources = resources.with_throttle_key(key);
    }
    for m in &env.kvms {
        resources = resources.with_kvm(m.clone());
    }
    // Encrypted maps are sealed under PREFLOW_KVM_KEY (64 hex digits) when it is set, so
    // that what policies put survives restarts and is shared by instances; else under a
    // random key per start.
    if let Ok(hex_key) = std::env::var("PREFLOW_KVM_KEY") {
        let mut key = [0u8; 32];
        match hex::decode_to_slice(hex_key.trim(), &mut key) {
            Ok(()) => resources = resources.with_kvm_key(key),
            Err(_) => return Err(StartError::KvmKey),
        }
    }
    let gateway = preflow::Gateway::builder()
        .resources(resources)
        .bundles(loaded.clone())
        .registry(Arc::clone(&registry))
        .settings(settings)
        .environment(env.engine.clone())
        .state(if remote.is_some() {
            preflow::StateMode::Remote
        } else {
            preflow::StateMode::Local
        })
        .build()
        .map_err(|e| StartError::Build(e.to_string()))?;
    let deployments = Arc::new(deploy::Deployments::new(
        gateway,
        &loaded,
        args.paths.clone(),
    ));
    drop(loaded);

    let limits = listener::Limits {
        max_header_bytes: args.max_header_bytes,
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: Duration::from_secs(args.header_timeout.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        body_min_rate: args.body_min_rate,
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
    };
    let budgets = listener::Budgets::new(args.max_connections, args.max_buffered_bytes);
    let grace = Duration::from_secs(args.grace_seconds);
    let (stop_tx, stop_rx) = watch::channel(false);

    for name in deployments.current().gateway.virtual_hosts() {
        if env_given && !env.hosts.iter().any(|h| h.name.eq_ignore_ascii_case(name)) {
            tracing::warn!(
                virtual_host = name,
                "a ProxyEndpoint names a virtual host the environment does not define; it is not served there"
            );
        }
    }
    let target_tls = upstream::TargetTlsConfigs {
        default: tls::client_config("targets", &environment::TargetTls::default())?,
        by_authority: env
            .target_tls
            .iter()
            .map(|((host, port), t)| {
                tls::client_config(&format!("back end {host}:{port}"), t)
                    .map(|c| ((host.clone(), *port), c))
            })
            .collect::<Result<_, _>>()?,
        environment: Arc::clone(&env),
    };
    // Health probes of the active revision's load balancers.
    deployments.start_probes(target_tls.clone());
    #[cfg(unix)]
    let _hangup = deploy::reload_on_hangup(Arc::clone(&deployments)).map_err(StartError::Signal)?;
    if args.admin.is_some() || args.metrics.is_some() || args.portal.is_some() {
        metrics::install(args.metrics_app_labels).deployed("startup", true, 1);
    }
    let ops = Arc::new(ops::Ops::new(Arc::clone(&deployments), remote.clone()));
    let handler = Arc::new(
        gateway::GatewayHandler::new(
            Arc::clone(&deployments),
            upstream::Upstream::new(args.max_response_bytes, target_tls),
        )
        .with_remote(remote)
        .with_retry_after(!args.no_retry_after),
    );
    // The admin API and the portal change apps through one writer (one apps file).
    let writer = apps_path
        .clone()
        .map(|path| Arc::new(admin::AppsWriter::new(Arc::clone(&registry), file, path)));
    let portal_listener = match (args.portal, &writer) {
        (Some(addr), Some(writer)) => {
            let p = portal::Portal::new(
                Arc::clone(writer),
                portal_settings,
                &args.paths,
                PasswordHashCost::default(),
            )?
            .with_redis(sync.clone());
            for api in p.documented_apis() {
                tracing::info!(api, "portal: API reference");
            }
            let l = listener::Listener::bind(addr, "portal")
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            Some((l, bound, Arc::new(p)))
        }
        _ => None,
    };
    let admin_listener = match (args.admin, admin_token, writer) {
        (Some(addr), Some(token), Some(writer)) => {
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
                    admin::Admin::over(&token, writer)
                        .with_redis(sync.clone())
                        .with_ops(Arc::clone(&ops))
                        .with_deployments(Arc::clone(&deployments)),
                ),
            ))
        }
        _ => None,
    };
    let metrics_listener = match args.metrics {
        Some(addr) => {
            let l = listener::Listener::bind(addr, "metrics")
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            Some((l, bound))
        }
        None => None,
    };

    let stopped = shutdown_signal();
    let first = deployments.current();
    for (base, proxy) in first.gateway.base_paths() {
        tracing::info!(base_path = base, proxy, "serving");
    }
    {
        let mut out = std::io::stdout().lock();
        for l in &listeners {
            let scheme = if l.tls { "https" } else { "http" };
            for name in &l.names {
                if name == environment::DEFAULT_HOST {
                    let _ = writeln!(out, "preflow listening on {scheme}://{}", l.bound);
                } else {
                    let _ = writeln!(
                        out,
                        "preflow virtual host {name} listening on {scheme}://{}",
                        l.bound
                    );
                }
            }
        }
        if let Some((_, bound, _)) = &admin_listener {
            let _ = writeln!(out, "preflow admin listening on http://{bound}");
        }
        if let Some((_, bound)) = &metrics_listener {
            let _ = writeln!(out, "preflow metrics listening on http://{bound}");
        }
        if let Some((_, bound, _)) = &portal_listener {
            let _ = writeln!(out, "preflow portal listening on http://{bound}");
        }
        let _ = out.flush();
    }

    // The virtual hosts are served by the worker threads, each accepting on its own
    // sockets and calling targets through its own pools: a request stays on the thread
    // that accepted its connection. The admin API, the portal, the metrics listener,
    // signals, reloads and health probes stay on this runtime.
    let mut shares: Vec<WorkerListeners> = (0..workers).map(|_| Vec::new()).collect();
    let handlers: Vec<Arc<gateway::GatewayHandler>> = (0..workers)
        .map(|i| {
            if i == 0 {
                Arc::clone(&handler)
            } else {
                Arc::new(handler.for_worker())
            }
        })
        .collect();
    for mut l in listeners {
        let name = l.names.join(",");
        let sockets = std::mem::take(&mut l.sockets);
        for (socket, (share, h)) in sockets.into_iter().zip(shares.iter_mut().zip(&handlers)) {
            share.push((socket, name.clone(), l.routes(h, env_given)));
        }
    }
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    for (i, share) in shares.into_iter().enumerate() {
        spawn_worker(
            i,
            share,
            Served {
                limits,
                budgets: budgets.clone(),
                stop: stop_rx.clone(),
                grace,
            },
            done_tx.clone(),
        )
        .map_err(StartError::Runtime)?;
    }
    drop(done_tx);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some((l, _, admin)) = admin_listener {
        tasks.spawn(l.serve(
            vec![listener::Route::plain(admin)],
            limits,
            budgets.clone(),
            stop_rx.clone(),
            grace,
        ));
    }
    if let Some((l, _, portal)) = portal_listener {
        tasks.spawn(l.serve(
            vec![listener::Route::plain(portal)],
            limits,
            budgets.clone(),
            stop_rx.clone(),
            grace,
        ));
    }
    if let Some((l, _)) = metrics_listener {
        tasks.spawn(l.serve(
            vec![listener::Route::plain(Arc::clone(&ops))],
            limits,
            budgets.clone(),
            stop_rx.clone(),
            grace,
        ));
    }
    stopped.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    // Every worker drops its sender when its connections are done.
    while done_rx.recv().await.is_some() {}
    if let Some(store) = &file_store
        && let Err(e) = store.sync()
    {
        tracing::error!(error = %e, "quota counters not synced at shutdown");
    }
    Ok(())
}

/// One worker thread's share of the virtual hosts: a socket of each listen address, the
/// listener's name and its routes.
type WorkerListeners = Vec<(
    std::net::TcpListener,
    String,
    Vec<listener::Route<gateway::VirtualHostHandler>>,
)>;

/// What every worker's listeners share.
struct Served {
    limits: listener::Limits,
    budgets: listener::Budgets,
    stop: watch::Receiver<bool>,
    grace: Duration,
}

/// Starts worker thread `index`: a current-thread runtime of its own serving `share`
/// until the stop signal and the drain; `done` is dropped when it ends.
fn spawn_worker(
    index: usize,
    share: WorkerListeners,
    served: Served,
    done: tokio::sync::mpsc::Sender<()>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("preflow-w{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for (socket, name, routes) in share {
                    match listener::Listener::from_std(socket, &name) {
                        Ok(l) => {
                            tasks.spawn(l.serve(
                                routes,
                                served.limits,
                                served.budgets.clone(),
                                served.stop.clone(),
                                served.grace,
                            ));
                        }
                        Err(e) => {
                            tracing::error!(listener = %name, error = %e, "a worker cannot accept on its socket");
                        }
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
            drop(done);
        })?;
    Ok(())
}

/// A bound listen address with the virtual hosts it serves.
struct Bound {
    /// One socket per worker thread.
    sockets: Vec<std::net::TcpListener>,
    /// Per virtual host: its host names, TLS configuration and name.
    hosts: Vec<(Vec<String>, Option<Arc<rustls::ServerConfig>>, String)>,
    names: Vec<String>,
    bound: SocketAddr,
    tls: bool,
}

impl Bound {
    /// The listener's routes, each virtual host's on `handler`.
    fn routes(
        &self,
        handler: &Arc<gateway::GatewayHandler>,
        env_given: bool,
    ) -> Vec<listener::Route<gateway::VirtualHostHandler>> {
        self.hosts
            .iter()
            .map(|(names, tls, name)| listener::Route {
                names: names.clone(),
                tls: tls.clone(),
                // Without an environment file there is one listener and every
                // ProxyEndpoint serves on it, whatever virtual hosts it names.
                handler: Arc::new(gateway::VirtualHostHandler::new(
                    Arc::clone(handler),
                    env_given.then_some(name.as_str()),
                )),
            })
            .collect()
    }
}

/// Binds the virtual hosts, one socket per worker: hosts with the same address (not port
/// 0) share a listener, told apart by SNI (TLS) or the `Host` header.
fn bind_hosts(env: &environment::Environment, workers: usize) -> Result<Vec<Bound>, StartError> {
    let mut groups: Vec<(SocketAddr, Vec<&environment::Host>)> = Vec::new();
    for h in &env.hosts {
        match groups
            .iter_mut()
            .find(|(a, _)| *a == h.listen && h.listen.port() != 0)
        {
            Some((_, g)) => g.push(h),
            None => groups.push((h.listen, vec![h])),
        }
    }
    let mut out = Vec::new();
    for (addr, hosts) in groups {
        let tls = hosts.iter().filter(|h| h.tls.is_some()).count();
        if tls != 0 && tls != hosts.len() {
            return Err(StartError::MixedTls(addr));
        }
        let mut routes = Vec::new();
        for h in &hosts {
            let config = h
                .tls
                .as_ref()
                .map(|t| tls::server_config(&h.name, t))
                .transpose()?;
            let mut names = vec![h.name.to_ascii_lowercase()];
            names.extend(h.hosts.iter().map(|n| n.to_ascii_lowercase()));
            routes.push((names, config, h.name.clone()));
        }
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let (bound, sockets) = listener::Listener::bind_per_worker(addr, workers)
            .map_err(|source| StartError::Bind { addr, source })?;
        out.push(Bound {
            sockets,
            hosts: routes,
            names,
            bound,
            tls: tls != 0,
        });
    }
    // The default host's line comes first.
    out.sort_by_key(|b| !b.names.iter().any(|n| n == environment::DEFAULT_HOST));
    Ok(out)
}

/// Installs the SIGINT and SIGTERM handlers now (before the address is announced, so a
/// signal sent right after start is not fatal) and returns a future that ends on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
