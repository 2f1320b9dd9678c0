//! Drives the per-request API of [`preflow::Gateway`]: begin an exchange, then perform
//! what each step asks for until the response.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, Uri};
use preflow::{Client, Gateway, Step, StoreReply, TargetError};

use super::listener::{Body, Handled, Handler};
use super::upstream::{Answer as Upstreamed, UpBody, Upstream, UpstreamError};

/// The host name of target URLs that this gateway answers itself, in process:
/// `http://preflow.internal/path` runs `/path` through the gateway again, as a request
/// from the loopback address. It is never looked up in DNS.
pub const INTERNAL_HOST: &str = "preflow.internal";

/// Deepest chain of in-process target calls (a proxy whose target is a proxy …).
const MAX_INTERNAL_DEPTH: u8 = 4;

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
}

type Answer<'a> = Pin<Box<dyn Future<Output = (Response<Bytes>, Handled)> + Send + 'a>>;

impl GatewayHandler {
    /// A handler running `gateway`, calling targets through `upstream`.
    pub fn new(gateway: Arc<Gateway>, upstream: Upstream) -> Self {
        Self {
            gateway,
            upstream,
            remote: None,
        }
    }

    /// The gateway run.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Performs store operations on `remote` (a gateway built with remote state).
    pub fn with_remote(mut self, remote: Option<Arc<super::state::State>>) -> Self {
        self.remote = remote;
        self
    }

    fn run(
        &self,
        head: http::request::Parts,
        mut body: Body,
        client: Client,
        depth: u8,
    ) -> Answer<'_> {
        Box::pin(async move {
            let gateway = &self.gateway;
            let slow = may_check_a_secret(&head);
            // Policies run on the head; the body is read only when one of them, a
            // condition or the target call needs it.
            let mut ex = gateway.begin_head(head, client, SystemTime::now());
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
                    Step::Forward(target) => {
                        if target.stream_request_body || target.stream_response_body {
                            let internal = target.request.uri().host() == Some(INTERNAL_HOST);
                            if !internal {
                                let idle = target.timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
                                match self.forward_streaming(target, &mut body).await {
                                    Ok(Upstreamed::Whole(r)) => ex.target_response(Ok(r)),
                                    Ok(Upstreamed::Head(parts, s)) => {
                                        streamed = Some(super::listener::Streamed::new(s, idle));
                                        ex.target_response_head(Ok(parts));
                                    }
                                    Err(e) => ex.target_response(Err(e)),
                                }
                                continue;
                            }
                        }
                        let mut request = target.request;
                        if target.stream_request_body {
                            // An in-process call takes the body whole.
                            match body.read().await {
                                Ok(bytes) => *request.body_mut() = bytes,
                                Err(resp) => {
                                    refused = true;
                                    break resp;
                                }
                            }
                        }
                        let result = self.forward(request, target.timeouts, depth).await;
                        ex.target_response(result);
                    }
                    Step::Store(op) => match &self.remote {
                        Some(remote) => ex.store_reply(remote.run(&op).await),
                        None => {
                            // A local-state gateway never asks; answer rather than hang.
                            tracing::error!(?op, "store operation asked of a local-state gateway");
                            ex.store_reply(StoreReply::Unavailable);
                        }
                    },
                }
            };
            let close = refused || body.is_unread();
            // The back end's body follows the head only if the answer is still its own.
            let stream = streamed.filter(|_| ex.streams_response_body());
            let handled = if depth == 0 && super::listener::access_log_enabled() {
                Handled {
                    proxy: gateway.variable(&ex, "apiproxy.name"),
                    flow: gateway.variable(&ex, "proxy.flow.name"),
                    close,
                    stream,
                }
            } else {
                Handled {
                    close,
                    stream,
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
                connect,
                io,
                target.stream_response_body,
            )
            .await
            .map_err(target_error)
    }

    async fn forward(
        &self,
        request: Request<Bytes>,
        timeouts: preflow::Timeouts,
        depth: u8,
    ) -> Result<Response<Bytes>, TargetError> {
        if request.uri().host() == Some(INTERNAL_HOST) {
            if depth >= MAX_INTERNAL_DEPTH {
                return Err(TargetError::Other(format!(
                    "more than {MAX_INTERNAL_DEPTH} nested calls to {INTERNAL_HOST}"
                )));
            }
            let (mut parts, body) = request.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            parts.uri = path
                .parse::<Uri>()
                .map_err(|e| TargetError::Other(e.to_string()))?;
            let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let io = timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
            return match tokio::time::timeout(
                io,
                self.run(parts, Body::ready(body), Client::http(loopback), depth + 1),
            )
            .await
            {
                Ok((resp, _)) => Ok(resp),
                Err(_) => Err(TargetError::Timeout),
            };
        }
        let connect = timeouts.connect.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let io = timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
        self.upstream
            .call(request, connect, io)
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
        self.run(head, body, client, 0).await
    }
}

/// Which virtual hosts serve each base path: a ProxyEndpoint serves on the virtual hosts
/// its `<HTTPProxyConnection><VirtualHost>` names, on all when it names none.
#[derive(Debug, Default)]
pub struct VirtualHostTable {
    /// Normalised base paths, longest first, with their virtual hosts (empty: all).
    bases: Vec<(String, Vec<String>)>,
}

impl VirtualHostTable {
    /// The table for the base paths `gateway` serves, from the endpoints in `loaded`.
    pub fn new(gateway: &Gateway, loaded: &[preflow::Bundle]) -> Self {
        let bases = gateway
            .base_paths()
            .map(|(base, proxy)| {
                let endpoints: Vec<&preflow::ProxyEndpoint> = loaded
                    .iter()
                    .filter(|b| b.name == proxy)
                    .flat_map(|b| b.proxy_endpoints.iter())
                    .collect();
                let exact: Vec<&&preflow::ProxyEndpoint> = endpoints
                    .iter()
                    .filter(|e| normalize_base(e.base_path.as_deref().unwrap_or("/")) == base)
                    .collect();
                let hosts = if exact.is_empty() {
                    // Not told apart: the union, so nothing served becomes unreachable.
                    if endpoints.iter().any(|e| e.virtual_hosts.is_empty()) {
                        Vec::new()
                    } else {
                        endpoints
                            .iter()
                            .flat_map(|e| e.virtual_hosts.iter().cloned())
                            .collect()
                    }
                } else {
                    exact
                        .iter()
                        .flat_map(|e| e.virtual_hosts.iter().cloned())
                        .collect()
                };
                (base.to_owned(), hosts)
            })
            .collect();
        Self { bases }
    }

    /// The virtual host names any endpoint refers to.
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.bases
            .iter()
            .flat_map(|(_, h)| h.iter().map(String::as_str))
    }

    /// Whether `path` may be served on virtual host `vhost`: the base path the engine
    /// would choose (after the same normalisation) lists it or lists none.
    pub fn allows(&self, vhost: &str, path: &str) -> bool {
        let Ok(path) = preflow::path::normalize(path) else {
            // The engine refuses such a path itself.
            return true;
        };
        self.bases
            .iter()
            .find(|(base, _)| strip_base(&path, base))
            .is_none_or(|(_, hosts)| hosts.is_empty() || hosts.iter().any(|h| h == vhost))
    }
}

/// Whether `path` lies under `base` (whole segments).
fn strip_base(path: &str, base: &str) -> bool {
    if base == "/" || base.is_empty() {
        return true;
    }
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A base path as written, in the form [`Gateway::base_paths`] gives.
fn normalize_base(base: &str) -> String {
    let trimmed = base.trim();
    let with_slash = if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    };
    let n = preflow::path::normalize(&with_slash).map_or(with_slash.clone(), |c| c.into_owned());
    let t = n.trim_end_matches('/');
    if t.is_empty() {
        "/".to_owned()
    } else {
        t.to_owned()
    }
}

/// The gateway as served on one virtual host.
#[derive(Debug)]
pub struct VirtualHostHandler {
    inner: Arc<GatewayHandler>,
    name: String,
    table: Arc<VirtualHostTable>,
}

impl VirtualHostHandler {
    /// `inner` on the virtual host `name`.
    pub fn new(inner: Arc<GatewayHandler>, name: &str, table: Arc<VirtualHostTable>) -> Self {
        Self {
            inner,
            name: name.to_owned(),
            table,
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
        if !self.table.allows(&self.name, head.uri.path()) {
            let resp = super::listener::fault(
                http::StatusCode::NOT_FOUND,
                "messaging.adaptors.http.flow.ApplicationNotFound",
                &format!(
                    "Unable to identify proxy for host: {} and url: {}",
                    self.name,
                    head.uri.path()
                ),
            );
            let close = body.is_unread();
            return (
                resp,
                Handled {
                    close,
                    ..Handled::default()
                },
            );
        }
        self.inner.run(head, body, client, 0).await
    }
}
