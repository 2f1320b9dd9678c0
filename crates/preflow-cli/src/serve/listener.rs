//! One HTTP/1.1 listener: accept loop, request size limits, one log line per request and
//! graceful shutdown. The gateway and the admin API both run on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Limits on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes in the request line and headers together; more is answered 431.
    pub max_header_bytes: usize,
    /// Most bytes in a request body; more is answered 413.
    pub max_body_bytes: usize,
    /// Time a client has to send the request head.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// What the log line of a request names besides method, path, status and time.
#[derive(Debug, Clone, Default)]
pub struct Handled {
    /// The API proxy that served the request.
    pub proxy: Option<String>,
    /// The conditional flow that ran.
    pub flow: Option<String>,
}

/// Whether the per-request log line is written (`PREFLOW_LOG` at `info` or finer).
pub fn access_log_enabled() -> bool {
    tracing::enabled!(target: "preflow::access", tracing::Level::INFO)
}

/// Something that answers complete requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `client`.
    fn handle(
        &self,
        request: Request<Bytes>,
        client: SocketAddr,
    ) -> impl Future<Output = (Response<Bytes>, Handled)> + Send;
}

/// An Apigee-style fault response: `{"fault":{"faultstring":…,"detail":{"errorcode":…}}}`.
pub fn fault(status: StatusCode, errorcode: &str, faultstring: &str) -> Response<Bytes> {
    let body = serde_json::json!({
        "fault": { "faultstring": faultstring, "detail": { "errorcode": errorcode } }
    });
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    req.headers().iter().fold(line, |n, (k, v)| {
        n.saturating_add(k.as_str().len() + v.len() + 4)
    })
}

async fn read_request(
    req: Request<Incoming>,
    limits: Limits,
) -> Result<Request<Bytes>, Response<Bytes>> {
    if head_size(&req) > limits.max_header_bytes {
        return Err(fault(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "protocol.http.TooBigHeaders",
            "Request headers are larger than the gateway accepts",
        ));
    }
    let too_big = || {
        fault(
            StatusCode::PAYLOAD_TOO_LARGE,
            "protocol.http.TooBigBody",
            "Request body is larger than the gateway accepts",
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_big());
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, limits.max_body_bytes).collect().await {
        Ok(collected) => Ok(Request::from_parts(parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(_) => Err(fault(
            StatusCode::BAD_REQUEST,
            "protocol.http.BadRequest",
            "The request body could not be read",
        )),
    }
}

/// A bound listener, ready to serve.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    name: &'static str,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, name: &'static str) -> std::io::Result<Self> {
        Ok(Self {
            tcp: TcpListener::bind(addr).await?,
            name,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves until `shutdown` turns true, then stops accepting and waits up to `grace`
    /// for open requests to finish.
    pub async fn serve<H: Handler>(
        self,
        handler: Arc<H>,
        limits: Limits,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        let name = self.name;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper answers 431 itself past this buffer; our own check below gives the
            // fault body for heads between the limit and the buffer size.
            .max_buf_size(limits.max_header_bytes.saturating_mul(2).max(16 * 1024));
        loop {
            let accepted = tokio::select! {
                a = self.tcp.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = Arc::clone(&handler);
            let service = service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                async move {
                    let started = Instant::now();
                    let method = req.method().clone();
                    let log = access_log_enabled();
                    let path = if log {
                        req.uri().path().to_owned()
                    } else {
                        String::new()
                    };
                    let (mut resp, handled) = match read_request(req, limits).await {
                        Ok(req) => handler.handle(req, peer).await,
                        Err(resp) => (resp, Handled::default()),
                    };
                    strip_hop_by_hop(resp.headers_mut());
                    fix_content_length(&mut resp, &method);
                    if log {
                        tracing::info!(
                            target: "preflow::access",
                            listener = name,
                            client = %peer,
                            method = %method,
                            path = %path,
                            status = resp.status().as_u16(),
                            proxy = handled.proxy.as_deref().unwrap_or("-"),
                            flow = handled.flow.as_deref().unwrap_or("-"),
                            ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(resp.map(Full::new))
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let watched = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = watched.await {
                    tracing::debug!(listener = name, client = %peer, error = %e, "connection ended");
                }
            });
        }
        drop(self.tcp);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(listener = name, "connections still open after the grace period");
            }
        }
    }
}

/// Drops a `Content-Length` that does not match the body (a policy may have changed the
/// body); hyper then frames the body itself. Answers to HEAD keep theirs.
fn fix_content_length(resp: &mut Response<Bytes>, method: &http::Method) {
    if method == http::Method::HEAD {
        return;
    }
    let len = resp.body().len();
    let matches = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n == len);
    if !matches {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1 and any header that the
/// `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}
