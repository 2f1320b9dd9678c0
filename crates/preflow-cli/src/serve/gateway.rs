//! Drives the per-request API of [`preflow::Gateway`]: begin an exchange, then perform
//! what each step asks for until the response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use preflow::{Client, Gateway, Step, StoreReply, TargetError};

use super::listener::{Body, Handled, Handler};
use super::upstream::{Answer as Upstreamed, UpBody, Upstream, UpstreamError};

/// Default connect timeout of target calls (Apigee's `connect.timeout.millis` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default response timeout of target calls (Apigee's `io.timeout.millis` default).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(55);

/// The gateway as a [`Handler`].
#[derive(Debug)]
pub struct GatewayHandler {
    deployments: Arc<super::deploy::Deployments>,
    upstream: Upstream,
    remote: Option<Arc<super::state::State>>,
    /// Where steps that may check a client secret run.
    secret_checks: SecretChecks,
    /// Whether 429 answers of rate limits get `Retry-After`.
    retry_after: bool,
}

type Answer<'a> = Pin<Box<dyn Future<Output = (Response<Bytes>, Handled)> + Send + 'a>>;

impl GatewayHandler {
    /// A handler running the active revision of `deployments`, calling targets through
    /// `upstream`.
    pub fn new(deployments: Arc<super::deploy::Deployments>, upstream: Upstream) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            deployments,
            upstream,
            remote: None,
            secret_checks: SecretChecks::new(cores),
            retry_after: true,
        }
    }

    /// The same handler with upstream pools of its own, for one worker thread (the
    /// deployments, the state and the secret-check threads are shared).
    pub fn for_worker(&self) -> Self {
        Self {
            deployments: Arc::clone(&self.deployments),
            upstream: self.upstream.fresh(),
            remote: self.remote.clone(),
            secret_checks: self.secret_checks.clone(),
            retry_after: self.retry_after,
        }
    }

    /// Whether a 429 from a Quota, SpikeArrest or ConcurrentRatelimit carries
    /// `Retry-After` (on by default).
    pub fn with_retry_after(mut self, on: bool) -> Self {
        self.retry_after = on;
        self
    }

    /// Performs store operations on `remote` (a gateway built with remote state).
    pub fn with_remote(mut self, remote: Option<Arc<super::state::State>>) -> Self {
        self.remote = remote;
        self
    }

    fn run<'a>(
        &'a self,
        head: http::request::Parts,
        mut body: Body,
        client: Client,
        vhost: Option<&'a str>,
    ) -> Answer<'a> {
        Box::pin(async move {
            // The revision active now serves this request to its end, whatever is
            // deployed meanwhile.
            let revision = self.deployments.current();
            let gateway = &revision.gateway;
            let slow = may_check_a_secret(&head);
            // Policies run on the head; the body is read only when one of them, a
            // condition or the target call needs it.
            let mut ex = gateway.begin_head(head, client, SystemTime::now());
            if let Some(v) = vhost {
                ex.set_virtual_host(v);
            }
            // Bodies no policy needs go through as they arrive, both ways.
            ex.enable_streaming();
            // A body already known (none, for a GET) is no stream: a load balancer may
            // then send the request again to another server.
            if !body.is_unread()
                && let Ok(bytes) = body.read().await
            {
                ex.request_body(bytes);
            }
            let mut streamed: Option<super::listener::Streamed> = None;
            let mut refused = false;
            let mut target_time: Option<Duration> = None;
            let resp = loop {
                let step = if slow {
                    // Checking a chosen client secret is an Argon2id hash: tens of
                    // milliseconds of CPU that must not hold up an async worker.
                    let g = Gateway::clone(gateway);
                    match self
                        .secret_checks
                        .run(move || {
                            let step = g.step(&mut ex);
                            (ex, step)
                        })
                        .await
                    {
                        Some((back, step)) => {
                            ex = back;
                            step
                        }
                        None => {
                            let handled = Handled {
                                close: true,
                                ..Handled::default()
                            };
                            return (internal_error(), handled);
                        }
                    }
                } else {
                    gateway.step(&mut ex)
                };
                match step {
                    Step::Respond(resp) => break resp,
                    Step::ReadBody => match body.read().await {
                        Ok(bytes) => ex.request_body(bytes),
                        Err(resp) => {
                            refused = true;
                            break resp;
                        }
                    },
                    Step::Pause(d) => tokio::time::sleep(d).await,
                    Step::Forward(target) => {
                        let began = std::time::Instant::now();
                        if target.stream_request_body || target.stream_response_body {
                            let idle = target.timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
                            let answer = self.forward_streaming(target, &mut body).await;
                            // Until the head: the body's time is the client's.
                            target_time = Some(target_time.unwrap_or_default() + began.elapsed());
                            match answer {
                                Ok(Upstreamed::Whole(r)) => ex.target_response(Ok(r)),
                                Ok(Upstreamed::Head(parts, s)) => {
                                    streamed = Some(super::listener::Streamed::new(s, idle));
                                    // Nothing of the engine touches this answer: the back
                                    // end's head (hop-by-hop headers already stripped) goes
                                    // out as it came.
                                    if gateway.pass_response(&mut ex, parts.status) {
                                        break Response::from_parts(parts, Bytes::new());
                                    }
                                    ex.target_response_head(Ok(parts));
                                }
                                Err(e) => ex.target_response(Err(e)),
                            }
                            continue;
                        }
                        let result = self.forward(target).await;
                        target_time = Some(target_time.unwrap_or_default() + began.elapsed());
                        ex.target_response(result);
                    }
                    Step::Store(op) => match &self.remote {
                        Some(remote) => {
                            let reply = remote.run(&op).await;
                            if let Some(m) = super::metrics::get() {
                                m.store(&op, &reply);
                            }
                            ex.store_reply(reply);
                        }
                        None => {
                            // A local-state gateway never asks; answer rather than hang.
                            tracing::error!(?op, "store operation asked of a local-state gateway");
                            ex.store_reply(StoreReply::Unavailable);
                        }
                    },
                }
            };
            let mut resp = resp;
            // A policy's reason phrase goes on the status line (HTTP/1.1).
            if let Some(p) = resp.extensions_mut().remove::<preflow::ReasonPhrase>()
                && let Ok(r) = hyper::ext::ReasonPhrase::try_from(p.0.into_bytes())
            {
                resp.extensions_mut().insert(r);
            }
            if self.retry_after
                && resp.status() == http::StatusCode::TOO_MANY_REQUESTS
                && !resp.headers().contains_key(http::header::RETRY_AFTER)
                && let Some(secs) = gateway.retry_after(&ex)
            {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            let close = refused || body.is_unread();
            // The back end's body follows the head only if the answer is still its own.
            let stream = streamed.filter(|_| ex.streams_response_body());
            let handled = if super::listener::access_log_enabled() || super::metrics::enabled() {
                Handled {
                    proxy: gateway.variable(&ex, "apiproxy.name"),
                    flow: gateway.variable(&ex, "proxy.flow.name"),
                    close,
                    stream,
                    summary: Some(Box::new(gateway.summary(&ex))),
                    target_time,
                }
            } else {
                Handled {
                    close,
                    stream,
                    target_time,
                    ..Handled::default()
                }
            };
            (resp, handled)
        })
    }

    /// Calls a back end with the client's body streamed to it and/or its response body
    /// left to stream, as the engine allowed.
    async fn forward_streaming(
        &self,
        target: preflow::Target,
        body: &mut Body,
    ) -> Result<Upstreamed, TargetError> {
        let connect = target.timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let io = target.timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
        let (parts, bytes) = target.request.into_parts();
        let up = match target
            .stream_request_body
            .then(|| body.take_stream())
            .flatten()
        {
            Some(incoming) => UpBody::Right(incoming),
            None => UpBody::Left(http_body_util::Full::new(bytes)),
        };
        self.upstream
            .send(
                Request::from_parts(parts, up),
                target.tls.as_ref(),
                connect,
                io,
                target.stream_response_body,
            )
            .await
            .map_err(target_error)
    }

    async fn forward(&self, target: preflow::Target) -> Result<Response<Bytes>, TargetError> {
        let (request, timeouts) = (target.request, target.timeouts);
        let connect = timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let io = timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
        self.upstream
            .call(request, target.tls.as_ref(), connect, io)
            .await
            .map_err(target_error)
    }
}

fn target_error(e: UpstreamError) -> TargetError {
    match e {
        UpstreamError::Connect(why) => TargetError::Connect(why),
        UpstreamError::Timeout(_) => TargetError::Timeout,
        other
        @ (UpstreamError::Protocol(_) | UpstreamError::Request(_) | UpstreamError::Tls(_)) => {
            TargetError::Other(other.to_string())
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads, one per core, for the steps that may check a client secret.
/// An Argon2id verification (tens of milliseconds, 19 MiB of working memory) then never
/// holds up an async worker, a flood of token requests takes at most the cores, and the
/// working memory is reused by the same few threads. Moving async workers aside with
/// `block_in_place` grew 40 threads and 110 MiB under 3,000 token requests, and the
/// runtime's blocking pool kept each thread's freed Argon2 memory (+50 MiB): with these
/// threads 3,000 failed authentications from fresh addresses add +11 MiB or less.
#[derive(Debug, Clone)]
struct SecretChecks {
    jobs: std::sync::mpsc::Sender<Job>,
    /// Jobs queued or running: callers beyond wait asynchronously for room.
    room: Arc<tokio::sync::Semaphore>,
}

impl SecretChecks {
    fn new(threads: usize) -> Self {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("preflow-secrets-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a secret-check thread");
            }
        }
        Self {
            jobs,
            room: Arc::new(tokio::sync::Semaphore::new(threads * 2)),
        }
    }

    /// Runs `f` on one of the threads; `None` if they are gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let _room = Arc::clone(&self.room).acquire_owned().await.ok()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

/// The answer when a step could not run (the blocking pool is shutting down).
fn internal_error() -> Response<Bytes> {
    super::listener::fault(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "messaging.runtime.InternalError",
        "the request could not be processed",
    )
}

/// Whether a request may carry client credentials to check: a form POST, as token,
/// introspection and revocation requests are. Only those leave the async workers, on a
/// multi-threaded runtime.
fn may_check_a_secret(head: &http::request::Parts) -> bool {
    head.method == http::Method::POST
        && head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .get(..33)
                    .is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
            })
        && tokio::runtime::Handle::try_current().is_ok()
}

impl Handler for GatewayHandler {
    async fn handle(
        &self,
        head: http::request::Parts,
        body: Body,
        client: Client,
    ) -> (Response<Bytes>, Handled) {
        self.run(head, body, client, None).await
    }
}

/// The gateway as served on one virtual host: the engine chooses among the
/// ProxyEndpoints that serve there.
#[derive(Debug)]
pub struct VirtualHostHandler {
    inner: Arc<GatewayHandler>,
    name: Option<String>,
}

impl VirtualHostHandler {
    /// `inner` on the virtual host `name` (`None`: every ProxyEndpoint serves).
    pub fn new(inner: Arc<GatewayHandler>, name: Option<&str>) -> Self {
        Self {
            inner,
            name: name.map(str::to_owned),
        }
    }
}

impl Handler for VirtualHostHandler {
    async fn handle(
        &self,
        head: http::request::Parts,
        body: Body,
        client: Client,
    ) -> (Response<Bytes>, Handled) {
        self.inner
            .run(head, body, client, self.name.as_deref())
            .await
    }
}
