//! `preflow ext-proc`: the Envoy external processor ([`preflow_envoy::ExtProc`]) over gRPC.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use preflow_cli::hosted;

/// Arguments of `preflow ext-proc`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundles to run: `apiproxy/` folders, folders holding them, or zips.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// gRPC listen address; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Apps file (TOML). Default: the first `apps.toml` found directly in a PATH folder.
    #[arg(long)]
    pub apps: Option<PathBuf>,
    /// Environment file (TOML): target servers, trust stores, API providers.
    #[arg(long = "env", value_name = "FILE")]
    pub env: Option<PathBuf>,
    /// Redis for tokens and rate-limit counters shared with other instances
    /// (`redis://host:port/db`). Without it all state is in this process.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Time one Redis operation may take, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub redis_timeout_ms: u64,
}

/// Runs the processor until SIGINT or SIGTERM.
pub fn run(args: &Args) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PREFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    runtime.block_on(async {
        let options = hosted::Options {
            paths: args.paths.clone(),
            apps: args.apps.clone(),
            env: args.env.clone(),
            redis: args.redis.clone(),
            redis_timeout: Duration::from_millis(args.redis_timeout_ms),
        };
        let loaded = match hosted::load(&options) {
            Ok(l) => l,
            Err(e) => return fail(&e),
        };
        let mut host = match preflow_host::Host::new(Arc::clone(&loaded.gateway)) {
            Ok(h) => h,
            Err(e) => return fail(&e),
        };
        if let Some(store) = loaded.store {
            host = host.with_store(store);
        }
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen on {}: {e}", args.listen)),
        };
        let bound = listener.local_addr().unwrap_or(args.listen);
        for (base, proxy) in loaded.gateway.base_paths() {
            tracing::info!(base_path = base, proxy, "serving");
        }
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "preflow ext-proc listening on {bound}");
            let _ = out.flush();
        }
        // SIGINT or SIGTERM stop the processor; open streams end with it.
        let stop = async {
            #[cfg(unix)]
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            let _ = tokio::signal::ctrl_c().await;
        };
        match preflow_envoy::ExtProc::new(host)
            .serve(listener, stop)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        }
    })
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("preflow ext-proc: {e}");
    ExitCode::FAILURE
}
