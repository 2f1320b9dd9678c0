//! A bare hyper reverse proxy: the floor of `preflow serve`'s CPU per proxied request
//! (`scripts/bench-vs-envoy.sh` runs it beside the gateway and Envoy).
//!
//! It has the gateway's shape without the gateway: one current-thread tokio runtime per
//! worker thread, each accepting on its own `SO_REUSEPORT` socket, hyper's HTTP/1 server
//! on the client side and hyper-util's pooled client towards the back end, mimalloc as
//! the allocator. Each request goes to the back end with its method, headers and body,
//! the path prefixed with `--prefix`, and the answer comes back as the back end sent it:
//! no policy, no header rewrite, no buffering. What it costs is what hyper, tokio and
//! the kernel cost a proxy on this machine.
//!
//! `cargo run --release -p preflow-cli --example plain_proxy -- --listen 127.0.0.1:8081 --backend 127.0.0.1:8090 --prefix /http`

use std::net::SocketAddr;

use http::Request;
use http::uri::{PathAndQuery, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line: `--listen ADDR --backend ADDR [--prefix PATH] [--workers N]`.
struct Options {
    listen: SocketAddr,
    backend: SocketAddr,
    prefix: String,
    workers: usize,
}

fn options() -> Result<Options, String> {
    let mut listen = None;
    let mut backend = None;
    let mut prefix = String::new();
    let mut workers = std::thread::available_parallelism().map_or(1, usize::from);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| bad(&e))?),
            "--backend" => backend = Some(value.parse().map_err(|e| bad(&e))?),
            "--prefix" => prefix = value,
            "--workers" => workers = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Options {
        listen: listen.ok_or("--listen is required")?,
        backend: backend.ok_or("--backend is required")?,
        prefix,
        workers: workers.max(1),
    })
}

/// One of the workers' listening sockets on `addr`.
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The back end's URI for a request's path and query.
fn upstream_uri(backend: &str, prefix: &str, req: &Request<Incoming>) -> Result<Uri, http::Error> {
    let path = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    Uri::builder()
        .scheme("http")
        .authority(backend)
        .path_and_query(format!("{prefix}{path}"))
        .build()
}

/// A worker: accepts on its socket and proxies every connection's requests.
async fn serve(
    socket: std::net::TcpListener,
    backend: String,
    prefix: String,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(socket)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    let route = std::rc::Rc::new((client, backend, prefix));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let route = route.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let route = route.clone();
                async move {
                    let (client, backend, prefix) = &*route;
                    *req.uri_mut() = upstream_uri(backend, prefix, &req)?;
                    req.headers_mut().remove(http::header::HOST);
                    let resp = client.request(req).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options().map_err(|e| {
        format!(
            "{e}\nusage: plain_proxy --listen ADDR --backend ADDR [--prefix PATH] [--workers N]"
        )
    })?;
    let backend = options.backend.to_string();
    let mut threads = Vec::new();
    for index in 0..options.workers {
        let socket = listener(options.listen)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (backend, prefix) = (backend.clone(), options.prefix.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("plain-proxy-w{index}"))
                .spawn(move || {
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&runtime, serve(socket, backend, prefix))
                })?,
        );
    }
    println!(
        "plain proxy listening on http://{} ({} workers) for http://{}{}",
        options.listen, options.workers, options.backend, options.prefix
    );
    for thread in threads {
        if let Ok(Err(e)) = thread.join() {
            return Err(e.into());
        }
    }
    Ok(())
}
