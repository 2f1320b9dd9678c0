//! One listener: accept loop (optionally TLS), HTTP/1.1 and HTTP/2 (ALPN `h2` over TLS,
//! prior knowledge on plain TCP), bounds on what a client may hold (header and body read
//! timeouts, idle keep-alive timeout, connection cap, a global budget of buffered request
//! bytes), one log line per request and graceful shutdown. The gateway's virtual hosts and
//! the admin API all run on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// Limits on what one client may send and hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes in the request line and headers together; more is answered 431.
    pub max_header_bytes: usize,
    /// Most bytes in a request body; more is answered 413.
    pub max_body_bytes: usize,
    /// Time a client has to send a request head (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// Longest silence while a body is read, and the grace period before
    /// [`body_min_rate`](Self::body_min_rate) applies; past either the client gets 408.
    pub body_timeout: Duration,
    /// Lowest average body transfer rate in bytes per second once
    /// [`body_timeout`](Self::body_timeout) has passed (0: no rate check).
    pub body_min_rate: u64,
    /// Time an open connection with no request in progress is kept.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 16 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Budgets shared by every listener of the process: open connections, and bytes of
/// request bodies buffered by requests in flight.
#[derive(Debug, Clone)]
pub struct Budgets {
    connections: Arc<Semaphore>,
    /// Permits are KiB of buffered body.
    buffered: Arc<Semaphore>,
}

impl Budgets {
    /// At most `max_connections` open connections and `max_buffered_bytes` of request
    /// bodies held at once.
    pub fn new(max_connections: usize, max_buffered_bytes: usize) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            buffered: Arc::new(Semaphore::new(
                max_buffered_bytes
                    .div_ceil(1024)
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// Reserves `bytes` more of the buffer budget, or none if that would exceed it.
    fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024)).ok()?;
        Arc::clone(&self.buffered).try_acquire_many_owned(kib).ok()
    }
}

/// A back end's response body on its way to the client, failed when the back end sends
/// nothing for `idle` (the target's `io.timeout.millis`): a stalled back end does not hold
/// the client's connection forever.
#[derive(Debug)]
pub struct Streamed {
    inner: Incoming,
    idle: Duration,
    /// Made the first time the back end has nothing to give: a body that arrives with
    /// its head never needs one.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether the timer counts from the last wait (else data came since).
    armed: bool,
}

impl Streamed {
    /// `inner`, failed after `idle` without data.
    pub fn new(inner: Incoming, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: None,
            armed: false,
        }
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if !this.armed {
                    // The silence counts from now: data came since the timer was set.
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                    this.armed = true;
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                        "the target sent nothing for {idle:?}"
                    )
                    .into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body: in memory, or streamed from a back end.
pub type OutBody = http_body_util::Either<Full<Bytes>, Streamed>;

/// What the log line of a request names besides method, path, status and time.
#[derive(Debug, Default)]
pub struct Handled {
    /// The API proxy that served the request.
    pub proxy: Option<String>,
    /// The conditional flow that ran.
    pub flow: Option<String>,
    /// The request body was left unread (or refused): the connection cannot carry
    /// another HTTP/1 request.
    pub close: bool,
    /// The response body, streamed from a back end, to send after the head (whose own
    /// body is then empty and whose `Content-Length`, if any, is the back end's).
    pub stream: Option<Streamed>,
    /// The engine's summary of the exchange (when metrics or the access log are on).
    pub summary: Option<Box<preflow::ExchangeSummary>>,
    /// Time spent in target calls, when there were any.
    pub target_time: Option<Duration>,
}

/// Whether the per-request log line is written (`PREFLOW_LOG` at `info` or finer).
pub fn access_log_enabled() -> bool {
    tracing::enabled!(target: "preflow::access", tracing::Level::INFO)
}

/// Something that answers requests: the head, and the body when it asks for it.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `client`.
    fn handle(
        &self,
        head: http::request::Parts,
        body: Body,
        client: preflow::Client,
    ) -> impl Future<Output = (Response<Bytes>, Handled)> + Send;
}

/// A request body not read yet: read on demand, within the body timeout, the minimum
/// rate, the size limit and the global budget. The budget share it takes is held until
/// the body is dropped.
#[derive(Debug)]
pub struct Body {
    state: BodyState,
    _reserved: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
enum BodyState {
    Unread {
        incoming: Incoming,
        declared: Option<u64>,
        limits: Limits,
        budgets: Budgets,
    },
    Read(Bytes),
}

impl Body {
    /// Whether the body is still unread.
    pub fn is_unread(&self) -> bool {
        matches!(self.state, BodyState::Unread { .. })
    }

    /// The unread body as a stream, to send on as it arrives (nothing of it is
    /// buffered, so neither the size limit nor the buffer budget applies; the back end's
    /// timeouts do); `None` when it has been read (use [`read`](Self::read)).
    pub fn take_stream(&mut self) -> Option<Incoming> {
        match std::mem::replace(&mut self.state, BodyState::Read(Bytes::new())) {
            BodyState::Unread { incoming, .. } => Some(incoming),
            read => {
                self.state = read;
                None
            }
        }
    }

    /// The whole request with `head`; the answer to send instead when its body cannot
    /// be read (the connection then closes).
    pub async fn request(
        mut self,
        head: http::request::Parts,
    ) -> Result<http::Request<Bytes>, (Response<Bytes>, Handled)> {
        match self.read().await {
            Ok(bytes) => Ok(http::Request::from_parts(head, bytes)),
            Err(resp) => Err((
                resp,
                Handled {
                    close: true,
                    ..Handled::default()
                },
            )),
        }
    }

    /// The whole body; the response to send instead when it cannot be read.
    pub async fn read(&mut self) -> Result<Bytes, Response<Bytes>> {
        let state = std::mem::replace(&mut self.state, BodyState::Read(Bytes::new()));
        match state {
            BodyState::Read(bytes) => {
                self.state = BodyState::Read(bytes.clone());
                Ok(bytes)
            }
            BodyState::Unread {
                incoming,
                declared,
                limits,
                budgets,
            } => {
                let (bytes, reserved) = read_body(incoming, declared, limits, &budgets)
                    .await
                    .map_err(|r| r.response)?;
                self._reserved = reserved;
                self.state = BodyState::Read(bytes.clone());
                Ok(bytes)
            }
        }
    }
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

/// A request refused before the handler ran; `close` when its body was left unread.
struct Refused {
    response: Response<Bytes>,
    close: bool,
}

impl Refused {
    fn closing(response: Response<Bytes>) -> Self {
        Self {
            response,
            close: true,
        }
    }
}

fn too_big() -> Response<Bytes> {
    fault(
        StatusCode::PAYLOAD_TOO_LARGE,
        "protocol.http.TooBigBody",
        "Request body is larger than the gateway accepts",
    )
}

fn over_budget() -> Response<Bytes> {
    let mut resp = fault(
        StatusCode::SERVICE_UNAVAILABLE,
        "messaging.adaptors.http.flow.ServiceUnavailable",
        "The gateway is holding too many request bodies; retry later",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn body_timeout() -> Response<Bytes> {
    fault(
        StatusCode::REQUEST_TIMEOUT,
        "protocol.http.RequestTimeout",
        "The request body did not arrive in time",
    )
}

/// When reading the next part of a body must have produced something: `timeout` after
/// the last bytes, and no later than the moment the average rate since `start` falls
/// under `min_rate` (never before `timeout` has passed).
fn body_deadline(
    start: Instant,
    last: Instant,
    received: usize,
    timeout: Duration,
    min_rate: u64,
) -> Instant {
    let idle = last + timeout;
    if min_rate == 0 {
        return idle;
    }
    let earned = Duration::from_secs_f64(received as f64 / min_rate as f64);
    idle.min(start + earned.max(timeout))
}

/// Refuses a head that is too large or declares a body over the limit.
#[allow(clippy::result_large_err)] // the refusal is the cold path, answered at once
fn check_head<B>(req: &Request<B>, limits: Limits) -> Result<Option<u64>, Refused> {
    if head_size(req) > limits.max_header_bytes {
        return Err(Refused::closing(fault(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "protocol.http.TooBigHeaders",
            "Request headers are larger than the gateway accepts",
        )));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A declared length over the limit is refused when the body is read: a body that
    // streams to a back end is not bound by it.
    Ok(declared)
}

async fn read_body(
    mut body: Incoming,
    declared: Option<u64>,
    limits: Limits,
    budgets: &Budgets,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Refused> {
    if hyper::body::Body::is_end_stream(&body) {
        return Ok((Bytes::new(), None));
    }
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(Refused::closing(too_big()));
    }
    // A declared length is reserved whole before any byte is read, so that a burst of
    // large bodies is refused at once instead of being read and then dropped.
    let expected = declared.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    let mut reserved_bytes = 0usize;
    if expected > 0 {
        reserved = Some(
            budgets
                .reserve(expected)
                .ok_or_else(|| Refused::closing(over_budget()))?,
        );
        reserved_bytes = expected.div_ceil(1024).saturating_mul(1024);
    }
    let mut buf = BytesMut::with_capacity(expected.min(limits.max_body_bytes));
    let start = Instant::now();
    let mut last = start;
    loop {
        let deadline = body_deadline(
            start,
            last,
            buf.len(),
            limits.body_timeout,
            limits.body_min_rate,
        );
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(Refused::closing(body_timeout())),
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(Refused::closing(fault(
                    StatusCode::BAD_REQUEST,
                    "protocol.http.BadRequest",
                    "The request body could not be read",
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = buf.len().saturating_add(data.len());
        if total > limits.max_body_bytes {
            return Err(Refused::closing(too_big()));
        }
        if total > reserved_bytes {
            // Bodies of unknown length reserve as they grow, a chunk's worth at a time.
            let more = (total - reserved_bytes).max(64 * 1024);
            let permit = budgets
                .reserve(more)
                .ok_or_else(|| Refused::closing(over_budget()))?;
            reserved_bytes = reserved_bytes.saturating_add(more.div_ceil(1024) * 1024);
            match reserved.as_mut() {
                Some(r) => r.merge(permit),
                None => reserved = Some(permit),
            }
        }
        buf.extend_from_slice(&data);
        last = Instant::now();
    }
    Ok((buf.freeze(), reserved))
}

/// A virtual host served on a listener: the host names it answers (TLS SNI, or the
/// `Host` header on a shared plain address), its TLS configuration and its handler.
#[derive(Debug)]
pub struct Route<H> {
    /// Lower-case host names; the first route also takes names no route lists.
    pub names: Vec<String>,
    /// TLS: every route of a listener has it, or none.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The handler.
    pub handler: Arc<H>,
}

impl<H> Route<H> {
    /// A plain route answering every host name.
    pub fn plain(handler: Arc<H>) -> Self {
        Self {
            names: Vec::new(),
            tls: None,
            handler,
        }
    }
}

/// The route for host name `name` (port and case ignored), else the first.
fn route_index<H>(routes: &[Route<H>], name: Option<&str>) -> usize {
    let Some(name) = name else { return 0 };
    let host = match name.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => name.split(':').next().unwrap_or(name),
    };
    routes
        .iter()
        .position(|r| r.names.iter().any(|n| n.eq_ignore_ascii_case(host)))
        .unwrap_or(0)
}

/// A bound listener, ready to serve.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    name: Arc<str>,
}

/// What one connection's service shares with its idle watchdog.
#[derive(Debug, Default)]
struct Activity {
    /// Whether a request has begun: before one, the header timeout bounds the wait.
    begun: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds since the connection began when the last request finished.
    last_ms: AtomicU64,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, name: &str) -> std::io::Result<Self> {
        Ok(Self {
            tcp: TcpListener::bind(addr).await?,
            name: Arc::from(name),
        })
    }

    /// Binds `addr` once per worker thread (`count` sockets, at least one) and answers the
    /// address bound with them. With more than
    /// one, every socket has `SO_REUSEPORT`, so that the kernel spreads new connections
    /// over the workers' own accept queues; port 0 picks a free port for the first and
    /// the others join it. The sockets are non-blocking, to be registered with each
    /// worker's runtime by [`from_std`](Self::from_std).
    pub fn bind_per_worker(
        addr: SocketAddr,
        count: usize,
    ) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
        let shared = count > 1;
        if shared && addr.port() != 0 {
            // A port another gateway holds must refuse this one, as a single bind would:
            // a probe without SO_REUSEPORT fails on any listener there, shared or not.
            drop(bind_socket(addr, false)?);
        }
        let first = bind_socket(addr, shared)?;
        let bound = first.local_addr()?;
        let mut out = Vec::with_capacity(count.max(1));
        out.push(first);
        for _ in 1..count {
            out.push(bind_socket(bound, shared)?);
        }
        Ok((bound, out))
    }

    /// A listener on a socket of [`bind_per_worker`](Self::bind_per_worker), registered
    /// with the runtime of the calling thread.
    pub fn from_std(socket: std::net::TcpListener, name: &str) -> std::io::Result<Self> {
        Ok(Self {
            tcp: TcpListener::from_std(socket)?,
            name: Arc::from(name),
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
        routes: Vec<Route<H>>,
        limits: Limits,
        budgets: Budgets,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) {
        let name = Arc::clone(&self.name);
        let routes: Arc<[Route<H>]> = Arc::from(routes);
        let tls = routes.first().is_some_and(|r| r.tls.is_some());
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper answers 431 itself past this buffer; our own check gives the fault
            // body for heads between the limit and the buffer size.
            .max_buf_size(limits.max_header_bytes.saturating_mul(2).max(16 * 1024));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(128);
        // Every connection task holds a sender; all are gone when all connections are.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        loop {
            // Accept first, then wait for room: an idle listener must not hold a
            // connection slot that another listener's client needs. At most one accepted
            // connection per listener waits, unread, for a slot.
            let accepted = tokio::select! {
                a = self.tcp.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = tokio::select! {
                p = Arc::clone(&budgets.connections).acquire_owned() => p,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Ok(permit) = permit else { break };
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                routes: Arc::clone(&routes),
                limits,
                budgets: budgets.clone(),
                name: Arc::clone(&name),
                peer,
                builder: builder.clone(),
                shutdown: shutdown.clone(),
                _open: open_tx.clone(),
                _permit: permit,
            };
            tokio::spawn(async move {
                if !tls {
                    return conn.run(stream, None).await;
                }
                match tokio::time::timeout(
                    conn.limits.header_read_timeout,
                    handshake(stream, &conn.routes),
                )
                .await
                {
                    Ok(Ok((stream, index))) => conn.run(stream, Some(index)).await,
                    Ok(Err(e)) => {
                        tracing::debug!(listener = %conn.name, client = %peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(listener = %conn.name, client = %peer, "TLS handshake timed out");
                    }
                }
            });
        }
        drop(self.tcp);
        drop(open_tx);
        tokio::select! {
            _ = open_rx.recv() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(listener = %name, "connections still open after the grace period");
            }
        }
    }
}

/// A listening socket as tokio binds one (`SO_REUSEADDR`, backlog 1024), with
/// `SO_REUSEPORT` when it is one of several sockets on the address.
fn bind_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    {
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Completes the TLS handshake with the configuration of the route that the client's
/// SNI names (else the first route's).
async fn handshake<H>(
    stream: tokio::net::TcpStream,
    routes: &[Route<H>],
) -> std::io::Result<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    usize,
)> {
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let index = route_index(routes, start.client_hello().server_name());
    let config = routes
        .get(index)
        .and_then(|r| r.tls.clone())
        .ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
    Ok((start.into_stream(config).await?, index))
}

/// One accepted connection and what it needs.
struct Connection<H> {
    routes: Arc<[Route<H>]>,
    limits: Limits,
    budgets: Budgets,
    name: Arc<str>,
    peer: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    shutdown: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
    _permit: OwnedSemaphorePermit,
}

impl<H: Handler> Connection<H> {
    /// Serves HTTP on `io`; `route` is the TLS route, none for plain TCP (routed by the
    /// `Host` header of each request).
    async fn run<I>(mut self, io: I, route: Option<usize>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let began = Instant::now();
        let activity = Arc::new(Activity::default());
        let client = preflow::Client {
            addr: self.peer,
            scheme: if route.is_some() {
                preflow::Scheme::Https
            } else {
                preflow::Scheme::Http
            },
        };
        let service = {
            let routes = Arc::clone(&self.routes);
            let budgets = self.budgets.clone();
            let name = Arc::clone(&self.name);
            let activity = Arc::clone(&activity);
            let limits = self.limits;
            service_fn(move |req: Request<Incoming>| {
                let index = route.unwrap_or_else(|| {
                    if routes.len() < 2 {
                        return 0;
                    }
                    let host = req
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .or(req.uri().authority().map(|a| a.as_str()));
                    route_index(&routes, host)
                });
                let handler = routes.get(index).map(|r| Arc::clone(&r.handler));
                let budgets = budgets.clone();
                let name = Arc::clone(&name);
                let activity = Arc::clone(&activity);
                activity.in_flight.fetch_add(1, Ordering::AcqRel);
                activity.begun.store(true, Ordering::Release);
                async move {
                    let resp = match handler {
                        Some(h) => answer(&*h, req, client, limits, &budgets, &name).await,
                        None => fault(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "messaging.runtime.NoRoute",
                            "No virtual host serves this listener",
                        )
                        .map(|b| OutBody::Left(Full::new(b))),
                    };
                    let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
                    activity.last_ms.store(ms, Ordering::Release);
                    activity.in_flight.fetch_sub(1, Ordering::AcqRel);
                    Ok::<_, std::convert::Infallible>(resp)
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        // Until its first request a connection gets the header timeout: hyper's own
        // header timer starts only once the protocol is known (the first 24 bytes).
        let first = self.limits.header_read_timeout;
        let tick = (idle.min(first) / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut closing = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(listener = %self.name, client = %self.peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = self.shutdown.wait_for(|stop| *stop), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep(tick), if !closing => {
                    let since = began.elapsed().saturating_sub(Duration::from_millis(
                        activity.last_ms.load(Ordering::Acquire),
                    ));
                    let limit = if activity.begun.load(Ordering::Acquire) { idle } else { first };
                    if activity.in_flight.load(Ordering::Acquire) == 0 && since >= limit {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

async fn answer<H: Handler>(
    handler: &H,
    req: Request<Incoming>,
    client: preflow::Client,
    limits: Limits,
    budgets: &Budgets,
    name: &str,
) -> Response<OutBody> {
    let started = Instant::now();
    let mut req = req;
    // Checked before the gateway adds its own headers, which a client's limit excludes.
    let checked = check_head(&req, limits);
    let request_id = super::request_id::ensure(req.headers_mut());
    let method = req.method().clone();
    let version = req.version();
    let log = access_log_enabled();
    let path = if log {
        req.uri().path().to_owned()
    } else {
        String::new()
    };
    let mut refused_here = false;
    let (mut resp, mut handled, close) = match checked {
        Ok(declared) => {
            let (head, incoming) = req.into_parts();
            // A request without a body (a GET) keeps its connection reusable.
            let state = if hyper::body::Body::is_end_stream(&incoming) {
                BodyState::Read(Bytes::new())
            } else {
                BodyState::Unread {
                    incoming,
                    declared,
                    limits,
                    budgets: budgets.clone(),
                }
            };
            let body = Body {
                state,
                _reserved: None,
            };
            let (resp, handled) = handler.handle(head, body, client).await;
            let close = handled.close;
            (resp, handled, close)
        }
        Err(refused) => {
            refused_here = true;
            (refused.response, Handled::default(), refused.close)
        }
    };
    resp.headers_mut()
        .insert(super::request_id::X_REQUEST_ID.clone(), request_id.clone());
    let elapsed = started.elapsed();
    if let Some(m) = super::metrics::get()
        && (handled.summary.is_some()
            || (refused_here && name != "admin" && name != "metrics" && name != "portal"))
    {
        m.observe(&super::metrics::Observed {
            summary: handled.summary.as_deref(),
            status: resp.status().as_u16(),
            elapsed,
            target: handled.target_time,
        });
    }
    strip_hop_by_hop(resp.headers_mut());
    let stream = handled.stream.take();
    if stream.is_none() {
        fix_content_length(&mut resp, &method);
    }
    if close && version < http::Version::HTTP_2 {
        // The body was left unread: the connection cannot carry another request.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if log {
        tracing::info!(
            target: "preflow::access",
            listener = name,
            client = %client.addr,
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            proxy = handled.proxy.as_deref().unwrap_or("-"),
            flow = handled.flow.as_deref().unwrap_or("-"),
            ms = millis(elapsed),
            target_ms = handled.target_time.map(millis),
            fault = handled.summary.as_ref().and_then(|s| s.fault.as_deref()),
            // Apigee's x_apigee_fault_* access-log fields.
            fault_code = handled.summary.as_ref().and_then(|s| s.fault_code.as_deref()),
            fault_source = handled.summary.as_ref().and_then(|s| s.fault_source.as_deref()),
            fault_policy = handled.summary.as_ref().and_then(|s| s.fault_policy.as_deref()),
            fault_flow = handled.summary.as_ref().and_then(|s| s.fault_flow.as_deref()),
            request_id = request_id.to_str().unwrap_or("-"),
        );
    }
    match stream {
        Some(s) => resp.map(|_| OutBody::Right(s)),
        None => resp.map(|b| OutBody::Left(Full::new(b))),
    }
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
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
    // Most messages carry none: one pass over the names (standard names compare as
    // tags) instead of parsing and hashing seven names to remove.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The headers hop-by-hop in themselves (RFC 9110 §7.6.1), `Connection` included.
static HOP_BY_HOP: [http::HeaderName; 7] = [
    header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is hop-by-hop in itself.
fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_another_gateway_is_refused_not_shared() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let (addr, held) = Listener::bind_per_worker(any, 2).unwrap();
        assert_eq!(held[0].local_addr().unwrap(), addr);
        assert_eq!(held[1].local_addr().unwrap(), addr);
        for workers in [1, 2, 3] {
            let err = Listener::bind_per_worker(addr, workers).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::AddrInUse,
                "{workers} workers"
            );
        }
        drop(held);
        assert_eq!(Listener::bind_per_worker(addr, 2).unwrap().1.len(), 2);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-private, Keep-Alive"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_left_alone() {
        let mut h = http::HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [&header::ACCEPT]);
        let mut end_to_end = http::HeaderMap::new();
        end_to_end.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        end_to_end.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut end_to_end);
        assert_eq!(end_to_end.len(), 2);
    }
}
