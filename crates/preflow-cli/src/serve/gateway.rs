//! Drives the per-request API of [`preflow::Gateway`]: begin an exchange, then perform
//! what each step asks for until the response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Response;
use preflow::{Client, Gateway, Step, StoreReply, TargetError};

use super::listener::{Body, Handled, Handler};
use super::upstream::{Upstream, UpstreamError};

/// Default connect timeout of target calls (Apigee's `connect.timeout.millis` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default response timeout of target calls (Apigee's `io.timeout.millis` default).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(55);

/// The gateway as a [`Handler`].
#[derive(Debug)]
pub struct GatewayHandler {
    gateway: Arc<Gateway>,
    upstream: Upstream,
    remote: Option<Arc<super::state::State>>,
    /// Whether 429 answers of rate limits get `Retry-After`.
    retry_after: bool,
}

type Answer<'a> = Pin<Box<dyn Future<Output = (Response<Bytes>, Handled)> + Send + 'a>>;

impl GatewayHandler {
    /// A handler running `gateway`, calling targets through `upstream`.
    pub fn new(gateway: Arc<Gateway>, upstream: Upstream) -> Self {
        Self {
            gateway,
            upstream,
            remote: None,
            retry_after: true,
        }
    }

    /// The gateway run.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
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
            let gateway = &self.gateway;
            let slow = may_check_a_secret(&head);
            // Policies run on the head; the body is read only when one of them, a
            // condition or the target call needs it.
            let mut ex = gateway.begin_head(head, client, SystemTime::now());
            if let Some(v) = vhost {
                ex.set_virtual_host(v);
            }
            let mut refused = false;
            let mut target_time: Option<Duration> = None;
            let resp = loop {
                let step = if slow {
                    // Checking a chosen client secret is an Argon2id hash: tens of
                    // milliseconds of CPU that must not hold up an async worker.
                    tokio::task::block_in_place(|| gateway.step(&mut ex))
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
            if self.retry_after
                && resp.status() == http::StatusCode::TOO_MANY_REQUESTS
                && !resp.headers().contains_key(http::header::RETRY_AFTER)
                && let Some(secs) = gateway.retry_after(&ex)
            {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            let close = refused || body.is_unread();
            let handled = if super::listener::access_log_enabled() || super::metrics::enabled() {
                Handled {
                    proxy: gateway.variable(&ex, "apiproxy.name"),
                    flow: gateway.variable(&ex, "proxy.flow.name"),
                    close,
                    summary: Some(Box::new(gateway.summary(&ex))),
                    target_time,
                }
            } else {
                Handled {
                    close,
                    target_time,
                    ..Handled::default()
                }
            };
            (resp, handled)
        })
    }

    async fn forward(&self, target: preflow::Target) -> Result<Response<Bytes>, TargetError> {
        let (request, timeouts) = (target.request, target.timeouts);
        let connect = timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let io = timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
        self.upstream
            .call(request, target.tls.as_ref(), connect, io)
            .await
            .map_err(|e| match e {
                UpstreamError::Connect(why) => TargetError::Connect(why),
                UpstreamError::Timeout(_) => TargetError::Timeout,
                other @ (UpstreamError::Protocol(_)
                | UpstreamError::Request(_)
                | UpstreamError::Tls(_)) => TargetError::Other(other.to_string()),
            })
    }
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
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
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
