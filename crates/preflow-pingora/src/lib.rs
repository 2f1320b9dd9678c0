//! A Pingora [`ProxyHttp`] that runs preflow API proxies: [`PreflowProxy`] drives one
//! [`preflow::Exchange`] per request through Pingora's phases.
//!
//! * `request_filter`: the exchange begins from the head; a
//!   [`Step::Respond`](preflow::Step::Respond) (a missing token, a spike arrest, a
//!   RaiseFault, a token endpoint's answer) is written here and the back end never sees
//!   the request. The body is read only when the engine asks (and then forwarded from
//!   Pingora's retry buffer, at most 64 KiB; larger ones get 413).
//! * `upstream_peer`: the [`Step::Forward`](preflow::Step::Forward)'s target: address
//!   from its URL (taken as is when the engine worked it out for an IP-literal URL,
//!   `Target::address`), TLS and SNI for `https` (certificates verified unless the
//!   target's `<SSLInfo>` says
//!   `IgnoreValidationErrors`; against the `<TrustStore>` it names, presenting the
//!   `<KeyStore>` it names, from the host's [`preflow_host::TlsStores`]), the target's
//!   connect timeout and its I/O timeout as Pingora's read and write timeouts.
//! * `upstream_request_filter`: the upstream request becomes the engine's target request
//!   (method, path and query, headers, `Host`).
//! * `response_filter`: the response flows run on the back end's head, and the head sent
//!   to the client is the engine's; the body streams through. When nothing of the engine
//!   touches the answer ([`preflow::Gateway::pass_response`]: no response step, a status
//!   below 400…), the back end's head goes out as it came, as plain Pingora sends it. A
//!   back end's error status runs the error flow on the head; its body follows unless a
//!   step of the error flow ran. When a response policy needs the response body (the
//!   engine decides when the gateway is built, and says so in the Forward step), the
//!   target call is made whole from `request_filter` instead and the answer written
//!   there; when a response flow replaces the answer (a fault), `response_body_filter`
//!   sends the engine's body in place of the back end's.
//! * Store steps, pauses and side calls (ServiceCallout, API provider tokens) are
//!   answered by [`preflow_host::Host`]; store steps go to the same Redis driver as
//!   `preflow serve --redis`.
//! * `logging`: one access-log line per request (PostClientFlow has run in the engine
//!   before the final response was handed over).
//!
//! ```no_run
//! use std::sync::Arc;
//! use pingora::server::Server;
//! use preflow_pingora::PreflowProxy;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = preflow::load_path("examples/envoy/hello-api".as_ref(), &Default::default());
//! let gateway = Arc::new(preflow::Gateway::builder().bundles(loaded).build()?);
//! let mut server = Server::new(None)?;
//! server.bootstrap();
//! let proxy = PreflowProxy::new(preflow_host::Host::new(gateway)?);
//! let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
//! service.add_tcp("127.0.0.1:8080");
//! server.add_service(service);
//! server.run_forever();
//! # }
//! ```
#![deny(missing_docs)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::utils::tls::{CertKey, WrappedX509, parse_x509};
use pingora::{Error, ErrorType, Result};
use preflow::{Client, Exchange, Target, TargetError};
use preflow_host::{Host, Next};

/// Default limit on request bodies the engine reads: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Largest request body the engine reads that can still be forwarded (Pingora's retry
/// buffer).
pub const MAX_FORWARDED_BODY_BYTES: usize = 64 * 1024;

/// Runs a [`Host`]'s gateway in front of the back ends its bundles name.
#[derive(Clone)]
pub struct PreflowProxy {
    host: Host,
    max_body_bytes: usize,
    /// The host's trust stores as Pingora's per-peer CA lists.
    cas: HashMap<String, Arc<CaType>>,
    /// The host's key stores as Pingora's client certificates.
    identities: HashMap<String, Arc<CertKey>>,
}

impl std::fmt::Debug for PreflowProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreflowProxy")
            .field("host", &self.host)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("truststores", &self.cas.keys().collect::<Vec<_>>())
            .field("keystores", &self.identities.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `der` parses as an X.509 certificate (Pingora's own parsing panics otherwise).
fn is_certificate(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok()
}

impl PreflowProxy {
    /// A proxy running `host`'s gateway. The host's trust and key stores
    /// ([`preflow_host::TlsStores`]) become the CA lists and client certificates of the
    /// targets whose `<SSLInfo>` names them; a store whose certificates or key do not
    /// parse is left out (and a target naming it fails), with an error logged.
    pub fn new(host: Host) -> Self {
        let stores = host.tls_stores();
        let mut cas = HashMap::new();
        for (name, certs) in &stores.truststores {
            if certs.is_empty() || !certs.iter().all(|c| is_certificate(c)) {
                tracing::error!(truststore = %name, "a certificate of the trust store does not parse; left out");
                continue;
            }
            let list: Vec<WrappedX509> = certs
                .iter()
                .map(|c| WrappedX509::new(c.clone(), parse_x509))
                .collect();
            cas.insert(name.clone(), Arc::<CaType>::from(list));
        }
        let mut identities = HashMap::new();
        for (name, (chain, key)) in &stores.keystores {
            let key_ok = pingora::tls::PrivateKeyDer::try_from(key.clone()).is_ok();
            if chain.is_empty() || !chain.iter().all(|c| is_certificate(c)) || !key_ok {
                tracing::error!(keystore = %name, "the key store's certificate or key does not parse; left out");
                continue;
            }
            identities.insert(
                name.clone(),
                Arc::new(CertKey::new(chain.clone(), key.clone())),
            );
        }
        Self {
            host,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cas,
            identities,
        }
    }

    /// Sets the largest request body the engine reads (larger ones get 413).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

/// Where the exchange of one request stands.
///
/// Pingora keeps the context inline in its per-request future, which is copied whole when
/// it is made: the exchange (1.5 KB) and the target call (over 300 bytes) are boxed so
/// the context stays small.
#[derive(Debug, Default)]
pub struct Ctx {
    ex: Option<Box<Exchange>>,
    /// The target call Pingora makes.
    target: Option<Box<Target>>,
    /// The request body the engine read, to send in place of the client's.
    body: Option<Bytes>,
    /// The engine's body replacing the back end's (a response flow's fault).
    replace_body: Option<Bytes>,
    /// Whether the answer was written by preflow in `request_filter`.
    answered: bool,
    status: u16,
}

fn client_of(session: &Session) -> SocketAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet().copied())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

fn internal(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InternalError, why)
}

/// A host without the brackets of an IPv6 literal.
fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The socket address of the target URI's host and port; a name is resolved off the
/// worker thread (std's resolver blocks).
async fn resolve(uri: &http::Uri, tls: bool) -> Result<SocketAddr> {
    let host = uri
        .host()
        .map(unbracket)
        .ok_or_else(|| internal("the target URL has no host"))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::explain(
                ErrorType::ConnectNoRoute,
                format!("cannot resolve the target host `{host}`"),
            )
        })
}

/// The answer to a request body over the limit.
fn too_big() -> http::Response<Bytes> {
    preflow_host::fault(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        "protocol.http.TooBigBody",
        "Request body is larger than the gateway accepts",
    )
}

/// Writes a whole response.
async fn write(session: &mut Session, resp: http::Response<Bytes>) -> Result<u16> {
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut head = ResponseHeader::build(parts.status, Some(parts.headers.len() + 1))?;
    for (name, value) in &parts.headers {
        if name == http::header::TRANSFER_ENCODING {
            continue;
        }
        head.append_header(name.clone(), value.clone())?;
    }
    head.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session
        .write_response_header(Box::new(head), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(status)
}

impl PreflowProxy {
    /// Reads the whole request body, within the limit; past it, the answer.
    async fn read_body(&self, session: &mut Session) -> Result<std::result::Result<Bytes, ()>> {
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Ok(Err(()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Ok(Bytes::from(body)))
    }
}

#[async_trait]
impl ProxyHttp for PreflowProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let client = Client::http(client_of(session));
        let head: http::request::Parts = (**session.req_header()).clone();
        // The exchange lives in the context from the start: it is not moved (copied) into
        // it on the way out, and this future does not hold it.
        let ex = &mut **ctx.ex.insert(Box::new(self.host.gateway().begin_head(
            head,
            client,
            SystemTime::now(),
        )));
        ex.enable_streaming();
        if session.is_body_empty() {
            ex.request_body(Bytes::new());
        }
        let mut read = false;
        loop {
            match self.host.advance(ex).await {
                Next::Respond(resp) => {
                    ctx.status = Box::pin(write(session, resp)).await?;
                    ctx.answered = true;
                    return Ok(true);
                }
                Next::ReadBody => {
                    // Kept for the upstream: the engine may forward what it read.
                    session.enable_retry_buffering();
                    match Box::pin(self.read_body(session)).await? {
                        Ok(body) => ex.request_body(body),
                        Err(()) => {
                            ctx.status = Box::pin(write(session, too_big())).await?;
                            ctx.answered = true;
                            return Ok(true);
                        }
                    }
                    read = true;
                }
                Next::Forward(mut target) if !target.stream_response_body => {
                    // A response policy needs the body: the call is made whole here, with
                    // the client's body if the engine left it unread.
                    if target.stream_request_body {
                        match Box::pin(self.read_body(session)).await? {
                            Ok(body) => *target.request.body_mut() = body,
                            Err(_) => {
                                ctx.status = Box::pin(write(session, too_big())).await?;
                                ctx.answered = true;
                                return Ok(true);
                            }
                        }
                    }
                    let result = Box::pin(self.host.call(target)).await;
                    ex.target_response(result);
                }
                Next::Forward(target) => {
                    if read && !target.stream_request_body {
                        let body = target.request.body().clone();
                        if body.len() > MAX_FORWARDED_BODY_BYTES {
                            let resp = preflow_host::fault(
                                http::StatusCode::PAYLOAD_TOO_LARGE,
                                "protocol.http.TooBigBody",
                                "Request body is larger than this gateway forwards",
                            );
                            ctx.status = Box::pin(write(session, resp)).await?;
                            ctx.answered = true;
                            return Ok(true);
                        }
                        ctx.body = Some(body);
                    }
                    ctx.target = Some(Box::new(target));
                    return Ok(false);
                }
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let target = ctx
            .target
            .as_ref()
            .ok_or_else(|| internal("no target for the upstream"))?;
        let uri = target.request.uri();
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS)
            || target.tls.as_ref().is_some_and(|t| t.enabled);
        let address = match target.address {
            // An IP literal the engine took apart when the gateway was built.
            Some(address) => address,
            None => resolve(uri, tls).await?,
        };
        // SNI only for TLS: no string to allocate for plain HTTP.
        let sni = if tls {
            uri.host().map(unbracket).unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(address, tls, sni);
        let timeouts = target.timeouts;
        peer.options.connection_timeout = Some(
            timeouts
                .connect
                .unwrap_or(preflow_host::DEFAULT_CONNECT_TIMEOUT),
        );
        // Apigee's io.timeout.millis bounds each wait for data to read or for the socket to
        // take a write: Pingora's per-read and per-write timeouts (its timer is armed only
        // when an operation has to wait).
        let io = timeouts.io.unwrap_or(preflow_host::DEFAULT_IO_TIMEOUT);
        peer.options.read_timeout = Some(io);
        peer.options.write_timeout = Some(io);
        if let Some(t) = &target.tls {
            // A store the target names but the host lacks: no connection without it.
            if let Some(name) = &t.truststore {
                let ca = self.cas.get(name).ok_or_else(|| {
                    Error::explain(
                        ErrorType::InternalError,
                        format!("no trust store named `{name}`"),
                    )
                })?;
                peer.options.ca = Some(Arc::clone(ca));
            }
            if let Some(name) = &t.keystore {
                let id = self.identities.get(name).ok_or_else(|| {
                    Error::explain(
                        ErrorType::InternalError,
                        format!("no key store named `{name}`"),
                    )
                })?;
                peer.client_cert_key = Some(Arc::clone(id));
            }
        }
        if let Some(t) = &target.tls
            && t.ignore_validation_errors
        {
            tracing::warn!(
                host = "pingora",
                target = %uri.host().unwrap_or_default(),
                "back-end certificate not verified (IgnoreValidationErrors)"
            );
            peer.options.verify_cert = false;
            peer.options.verify_hostname = false;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(target) = &ctx.target else {
            return Err(internal("no target for the upstream request"));
        };
        // The engine's target request replaces Pingora's copy of the client's head whole:
        // one clone of the headers rather than removing and re-adding each (and on a
        // retry Pingora asks again, so the target's request stays in place).
        let req = &target.request;
        let mut head = http::Request::new(()).into_parts().0;
        head.method = req.method().clone();
        head.version = http::Version::HTTP_11;
        head.uri = req
            .uri()
            .path_and_query()
            .cloned()
            .map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
        // The engine gave the target's `Host` already.
        head.headers = req.headers().clone();
        if let Some(body) = &ctx.body {
            head.headers.remove(http::header::TRANSFER_ENCODING);
            head.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
        }
        *upstream = RequestHeader::from(head);
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The engine read the body (and may have changed it): send its version, once.
        if ctx.body.is_some() {
            *body = ctx.body.take();
        } else if ctx.target.as_ref().is_some_and(|t| !t.stream_request_body) {
            *body = None;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(ex) = ctx.ex.as_deref_mut() else {
            return Ok(());
        };
        // Nothing of the engine touches this answer: the back end's head goes out as it came.
        if self.host.gateway().pass_response(ex, upstream.status) {
            ctx.status = upstream.status.as_u16();
            return Ok(());
        }
        // The back end's head moves into the engine and the engine's answer moves back:
        // no copies of the header maps. The framing headers are kept for a streamed body.
        let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
        let back = http::response::Parts::from(std::mem::replace(upstream, empty));
        let length = back.headers.get(http::header::CONTENT_LENGTH).cloned();
        let chunked: Vec<http::HeaderValue> = back
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .cloned()
            .collect();
        ex.target_response_head(Ok(back));
        let answer = match self.host.advance(ex).await {
            Next::Respond(resp) => resp,
            Next::ReadBody | Next::Forward(_) => {
                return Err(internal("the engine asked for a second target call"));
            }
        };
        let streams = ex.streams_response_body();
        let (mut parts, body) = answer.into_parts();
        ctx.status = parts.status.as_u16();
        let headers = &mut parts.headers;
        if streams {
            if !headers.contains_key(http::header::CONTENT_LENGTH)
                && let Some(length) = length
            {
                headers.insert(http::header::CONTENT_LENGTH, length);
            }
            if !headers.contains_key(http::header::TRANSFER_ENCODING) {
                for value in chunked {
                    headers.append(http::header::TRANSFER_ENCODING, value);
                }
            }
        } else {
            // The engine's answer replaces the back end's body.
            headers.remove(http::header::TRANSFER_ENCODING);
            headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
            ctx.replace_body = Some(body);
        }
        *upstream = ResponseHeader::from(parts);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if ctx.replace_body.is_some() {
            *body = if end_of_stream {
                ctx.replace_body.take()
            } else {
                None
            };
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // A failed target call runs the engine's error flow; its answer goes out.
        let answer = match (ctx.ex.as_deref_mut(), ctx.target.is_some()) {
            (Some(ex), true) if !ctx.answered => {
                let err = match e.etype() {
                    ErrorType::ConnectTimedout
                    | ErrorType::ConnectRefused
                    | ErrorType::ConnectNoRoute
                    | ErrorType::ConnectError
                    | ErrorType::ConnectProxyFailure => TargetError::Connect(e.to_string()),
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout => TargetError::Timeout,
                    _ => TargetError::Other(e.to_string()),
                };
                ex.target_response(Err(err));
                match self.host.advance(ex).await {
                    Next::Respond(resp) => Some(resp),
                    Next::ReadBody | Next::Forward(_) => None,
                }
            }
            _ => None,
        };
        let code = match answer {
            Some(resp) => write(session, resp).await.unwrap_or(0),
            None => {
                let _ = session.respond_error(502).await;
                502
            }
        };
        ctx.status = code;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // Looking variables up costs: only when the line is written.
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        let status = session
            .response_written()
            .map_or(ctx.status, |r| r.status.as_u16());
        let gateway = self.host.gateway();
        let (proxy, flow, fault) = ctx.ex.as_ref().map_or_else(Default::default, |ex| {
            (
                gateway.variable(ex, "apiproxy.name").unwrap_or_default(),
                gateway.variable(ex, "proxy.flow.name").unwrap_or_default(),
                ex.fault_name().unwrap_or_default().to_owned(),
            )
        });
        tracing::info!(
            host = "pingora",
            status,
            proxy,
            flow,
            fault,
            error = e.map(|e| e.to_string()).unwrap_or_default(),
            "request"
        );
    }
}
