//! The operator's endpoints: `GET /metrics` (Prometheus), `GET /healthz` (the process
//! answers) and `GET /readyz` (bundles loaded and the state store reachable).
//!
//! They are served on the admin listener before its token check, and alone on the
//! `--metrics` listener. They carry no token: Prometheus scrapers and orchestrator probes
//! (Kubernetes, load balancers) call them without credentials by convention, and they
//! reveal only counts and proxy, policy and fault names, never a secret, a token or
//! client data. Whoever must hide even those binds `--metrics` to a private address.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::listener::{Body, Handled, Handler};

/// Longest a readiness check of the state store may take.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The operator's endpoints.
#[derive(Debug)]
pub struct Ops {
    /// The revisions served (start fails on a bundle with errors).
    deployments: Arc<super::deploy::Deployments>,
    /// The state store the gateway uses, if any (none: process memory).
    state: Option<Arc<super::state::State>>,
}

impl Ops {
    /// Endpoints for a gateway serving `deployments` with state in `state`.
    pub fn new(
        deployments: Arc<super::deploy::Deployments>,
        state: Option<Arc<super::state::State>>,
    ) -> Self {
        Self { deployments, state }
    }

    /// Answers `head` when it asks for one of the endpoints.
    pub async fn answer(&self, head: &http::request::Parts) -> Option<Response<Bytes>> {
        let path = head.uri.path();
        if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
            return None;
        }
        if head.method != Method::GET && head.method != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(resp);
        }
        Some(match path {
            "/metrics" => match super::metrics::get() {
                Some(m) => {
                    let mut resp = text(StatusCode::OK, m.encode());
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(super::metrics::CONTENT_TYPE),
                    );
                    resp
                }
                None => text(StatusCode::NOT_FOUND, "metrics are off\n"),
            },
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => self.ready().await,
        })
    }

    async fn ready(&self) -> Response<Bytes> {
        if self
            .deployments
            .current()
            .gateway
            .base_paths()
            .next()
            .is_none()
        {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no API proxy deployed\n",
            );
        }
        let Some(state) = &self.state else {
            return text(StatusCode::OK, "ready\n");
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // A read of a key nobody writes: it reaches the store and changes nothing.
        let probe = preflow::StoreOp::Kv(preflow::KvOp::Get {
            namespace: "preflow:readyz".to_owned(),
            key: "probe".to_owned(),
            now,
        });
        match tokio::time::timeout(READY_TIMEOUT, state.run(&probe)).await {
            Ok(preflow::StoreReply::Unavailable) | Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the state store does not answer\n",
            ),
            Ok(_) => text(StatusCode::OK, "ready\n"),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl Handler for Ops {
    async fn handle(
        &self,
        head: http::request::Parts,
        body: Body,
        _client: preflow::Client,
    ) -> (Response<Bytes>, Handled) {
        let resp = match self.answer(&head).await {
            Some(resp) => resp,
            None => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz, /readyz\n",
            ),
        };
        let handled = Handled {
            close: body.is_unread(),
            ..Handled::default()
        };
        (resp, handled)
    }
}
