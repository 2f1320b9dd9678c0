//! A tower [`Layer`](tower_layer::Layer) that runs preflow API proxies in front of any
//! tower service.
//!
//! [`PreflowLayer`] wraps a service that plays the *target*: every request first runs
//! through the [`preflow::Gateway`] (policies, flows, faults); when a proxy routes to a
//! target endpoint, the target request (absolute URI built from the bundle's
//! `HTTPTargetConnection`, path suffix and query kept) is handed to the inner service,
//! and its response runs through the response flows. Requests that a policy refuses
//! (a missing token, a spike arrest, a RaiseFault) never reach the inner service.
//!
//! The inner service sees a `Request<Full<Bytes>>` and may answer any body with `Bytes`
//! chunks; the layer answers `Response<Full<Bytes>>` and never fails (faults are
//! responses). A target endpoint's `io.timeout.millis` bounds the inner call (504);
//! an error of the inner service is a 502.
//!
//! The client address (`client.ip`) comes from a [`ClientAddr`] or a [`SocketAddr`]
//! request extension; without one it is `0.0.0.0:0`.
//!
//! # With axum
//!
//! The axum router is the back end; preflow guards it. The layer wraps the whole router
//! (not its routes: the proxy's base path is not one of the router's routes):
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use preflow_tower::PreflowLayer;
//! use tower_layer::Layer as _;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Bundles whose target endpoints point at this router, e.g.
//! // <HTTPTargetConnection><URL>http://backend/api</URL></HTTPTargetConnection>.
//! let loaded = preflow::load_path("examples/seed".as_ref(), &Default::default());
//! let gateway = preflow::Gateway::builder()
//!     .bundles(loaded)
//!     .registry(Arc::new(preflow::preflow_oauth::Registry::new()))
//!     .build()?;
//!
//! let backend = Router::new().route("/api/hello", get(|| async { "Hello world" }));
//! let app = Router::new().fallback_service(PreflowLayer::new(Arc::new(gateway)).layer(backend));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use preflow::{Client, Gateway, Step, StoreReply, Target, TargetError};
use tower_layer::Layer;
use tower_service::Service;

/// Errors of bodies and inner services, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's address, as a request extension the host sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Default limit on request and target response bodies: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Runs a [`Gateway`] in front of the wrapped service; see the crate documentation.
#[derive(Debug, Clone)]
pub struct PreflowLayer {
    gateway: Arc<Gateway>,
    max_body_bytes: usize,
}

impl PreflowLayer {
    /// A layer running `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Sets the largest request body (larger ones get 413) and target response body
    /// (larger ones fail the target call: 502).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

impl<S> Layer<S> for PreflowLayer {
    type Service = PreflowService<S>;

    fn layer(&self, target: S) -> Self::Service {
        PreflowService {
            gateway: Arc::clone(&self.gateway),
            target,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// The service made by [`PreflowLayer`].
#[derive(Debug, Clone)]
pub struct PreflowService<S> {
    gateway: Arc<Gateway>,
    target: S,
    max_body_bytes: usize,
}

fn fault(status: StatusCode, errorcode: &str, faultstring: &str) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"fault":{{"faultstring":"{faultstring}","detail":{{"errorcode":"{errorcode}"}}}}}}"#
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn client_addr<B>(req: &Request<B>) -> SocketAddr {
    req.extensions()
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| req.extensions().get::<SocketAddr>().copied())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

async fn call_target<S, ResB>(
    target: &mut S,
    t: Target,
    max_body_bytes: usize,
) -> Result<Response<Bytes>, TargetError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let exchange = async {
        poll_fn(|cx| target.poll_ready(cx))
            .await
            .map_err(|e| TargetError::Other(e.into().to_string()))?;
        let resp = target
            .call(t.request.map(Full::new))
            .await
            .map_err(|e| TargetError::Other(e.into().to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, max_body_bytes)
            .collect()
            .await
            .map_err(|e| TargetError::Other(e.to_string()))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    };
    match t.timeouts.io {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(TargetError::Timeout)),
        None => exchange.await,
    }
}

impl<S, B, ResB> Service<Request<B>> for PreflowService<S>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is polled for readiness only when a target call needs it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let gateway = Arc::clone(&self.gateway);
        let max = self.max_body_bytes;
        let fresh = self.target.clone();
        let mut target = std::mem::replace(&mut self.target, fresh);
        Box::pin(async move {
            let client = client_addr(&req);
            let (parts, body) = req.into_parts();
            let mut body = Some(body);
            // The body is read only when the engine asks: a request the proxy rejects
            // on its head is answered without reading it.
            let mut ex = gateway.begin_head(parts, Client::http(client), SystemTime::now());
            loop {
                match gateway.step(&mut ex) {
                    Step::Respond(resp) => return Ok(resp.map(Full::new)),
                    Step::ReadBody => {
                        let bytes = match body.take() {
                            Some(b) => match read_body(b, max).await {
                                Ok(bytes) => bytes,
                                Err(resp) => return Ok(resp),
                            },
                            None => Bytes::new(),
                        };
                        ex.request_body(bytes);
                    }
                    Step::Pause(d) => tokio::time::sleep(d).await,
                    Step::Forward(t) => {
                        let result = call_target(&mut target, t, max).await;
                        ex.target_response(result);
                    }
                    // A gateway built with StateMode::Remote needs a store driver; this
                    // layer has none, so such operations fail as the policies document.
                    Step::Store(_) => ex.store_reply(StoreReply::Unavailable),
                }
            }
        })
    }
}

/// Reads a request body of at most `max` bytes; past it, or unreadable, the answer.
async fn read_body<B>(body: B, max: usize) -> Result<Bytes, Response<Full<Bytes>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(fault(
            StatusCode::PAYLOAD_TOO_LARGE,
            "protocol.http.TooBigBody",
            "Request body is larger than the gateway accepts",
        )),
        Err(_) => Err(fault(
            StatusCode::BAD_REQUEST,
            "protocol.http.BadRequest",
            "The request body could not be read",
        )),
    }
}

#[cfg(test)]
mod tests;
