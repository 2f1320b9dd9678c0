//! Serves bundles with Pingora the way `preflow serve` does:
//!
//! ```text
//! cargo run --release -p preflow-pingora --example gateway -- PATH... --listen ADDR
//!     [--apps FILE] [--env FILE] [--redis URL]
//! ```
//!
//! `--plain HOST:PORT` runs plain Pingora instead (no preflow), proxying everything to
//! that back end: the baseline of the benchmark (scripts/bench-hosts.sh). With
//! `--connect-timeout-ms` and `--io-timeout-ms` it sets the peer timeouts preflow's
//! adapter sets from a target's `connect.timeout.millis` and `io.timeout.millis`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::Server;
use preflow_cli::hosted;
use preflow_pingora::PreflowProxy;

#[derive(Debug, Parser)]
struct Args {
    /// Bundles: `apiproxy/` folders, folders holding them, or zips.
    paths: Vec<PathBuf>,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Apps file. Default: the first `apps.toml` directly in a PATH folder.
    #[arg(long)]
    apps: Option<PathBuf>,
    /// Environment file.
    #[arg(long = "env")]
    env: Option<PathBuf>,
    /// Redis for shared state (`redis://host:port/db`).
    #[arg(long)]
    redis: Option<String>,
    /// Plain Pingora to this back end, without preflow (benchmark baseline).
    #[arg(long, value_name = "HOST:PORT")]
    plain: Option<SocketAddr>,
    /// With `--plain`: the peer's connection timeout, in milliseconds.
    #[arg(long, requires = "plain")]
    connect_timeout_ms: Option<u64>,
    /// With `--plain`: the peer's read and write timeouts, in milliseconds.
    #[arg(long, requires = "plain")]
    io_timeout_ms: Option<u64>,
    /// Pingora worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

// The allocator of `preflow serve`. Both sides of the benchmark (scripts/bench-hosts.sh) run
// this binary, so they share it: with glibc's malloc the ~40 small allocations of a
// request through the engine and Pingora (headers, futures, the exchange) cost more than
// the engine's work itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Plain Pingora: every request to one back end, with the given timeouts.
struct Plain {
    backend: SocketAddr,
    connect: Option<Duration>,
    io: Option<Duration>,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.backend, false, String::new());
        peer.options.connection_timeout = self.connect;
        peer.options.read_timeout = self.io;
        peer.options.write_timeout = self.io;
        Ok(Box::new(peer))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PREFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let mut server = Server::new(None)?;
    server.bootstrap();
    if let Some(conf) = Arc::get_mut(&mut server.configuration) {
        conf.threads = args.threads;
    }
    let listen = args.listen.to_string();
    match args.plain {
        Some(backend) => {
            let plain = Plain {
                backend,
                connect: args.connect_timeout_ms.map(Duration::from_millis),
                io: args.io_timeout_ms.map(Duration::from_millis),
            };
            let mut service = pingora::proxy::http_proxy_service(&server.configuration, plain);
            service.add_tcp(&listen);
            server.add_service(service);
        }
        None => {
            // Loading (and Redis's connection) runs on a runtime of its own, kept alive.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let options = hosted::Options {
                paths: args.paths.clone(),
                apps: args.apps.clone(),
                env: args.env.clone(),
                redis: args.redis.clone(),
                redis_timeout: Duration::from_millis(50),
            };
            let loaded = runtime.block_on(async { hosted::load(&options) })?;
            std::mem::forget(runtime);
            let mut host = preflow_host::Host::new(loaded.gateway)?.with_tls_stores(loaded.tls);
            if let Some(store) = loaded.store {
                host = host.with_store(store);
            }
            let mut service =
                pingora::proxy::http_proxy_service(&server.configuration, PreflowProxy::new(host));
            service.add_tcp(&listen);
            server.add_service(service);
        }
    }
    println!("preflow-pingora listening on http://{listen}");
    server.run_forever();
}
