//! What every preflow host adapter shares: it advances an [`Exchange`] through the steps
//! a host answers the same way whatever proxy it lives in, and hands back only the
//! steps that belong to the host's own proxying.
//!
//! [`Host::advance`] performs
//!
//! * [`Step::Store`] against the Redis driver of `preflow serve --redis`
//!   ([`preflow_redis::RemoteState`]), for a gateway built with
//!   [`preflow::StateMode::Remote`];
//! * [`Step::Pause`] by waiting;
//! * the side calls of a [`Step::Forward`]: a ServiceCallout's request and an API
//!   provider's token request, with an HTTP client of its own (plain HTTP, or HTTPS
//!   verified against the web PKI roots);
//!
//! and returns [`Next`]: the final response, a request for the body, or the exchange's
//! own target call, which the proxy makes (Pingora's upstream, Envoy's route).
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use preflow::{Exchange, Gateway, Step, StoreReply, Target, TargetError};
use preflow_redis::RemoteState;

/// Default connect timeout of side calls (Apigee's `connect.timeout.millis` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default response timeout of side calls (Apigee's `io.timeout.millis` default).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(55);
/// Largest side-call response body read.
pub const MAX_SIDE_CALL_BODY: usize = 10 * 1024 * 1024;

/// Why a [`Host`] cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The side-call HTTP client could not be built.
    #[error("cannot build the HTTP client for side calls: {0}")]
    Client(#[source] reqwest::Error),
}

/// The trust and key stores that targets name in `<SSLInfo>` (`<TrustStore>`,
/// `<KeyStore>`), as DER, for hosts that make the target call with their own TLS client
/// (Pingora's upstream). Loaded from the environment file.
#[derive(Clone, Default)]
pub struct TlsStores {
    /// CA certificates by trust store name.
    pub truststores: std::collections::BTreeMap<String, Vec<Vec<u8>>>,
    /// Certificate chain (leaf first) and private key by key store name.
    pub keystores: std::collections::BTreeMap<String, (Vec<Vec<u8>>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsStores {
    // Names only: a key store holds a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStores")
            .field("truststores", &self.truststores.keys().collect::<Vec<_>>())
            .field("keystores", &self.keystores.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What the host's proxy must do next with an exchange.
// `Forward` is the common answer and is moved on at once: boxing it would cost an
// allocation per proxied request to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Next {
    /// Send this response to the client; the exchange is finished (PostClientFlow has
    /// run).
    Respond(http::Response<Bytes>),
    /// Read the request body and give it with [`Exchange::request_body`].
    ReadBody,
    /// Make the exchange's target call and give its outcome with
    /// [`Exchange::target_response`] (or [`Exchange::target_response_head`]).
    Forward(Target),
}

/// A gateway with the drivers a host needs: the state store and a side-call client.
#[derive(Debug, Clone)]
pub struct Host {
    gateway: Arc<Gateway>,
    store: Option<Arc<RemoteState>>,
    client: reqwest::Client,
    tls: Arc<TlsStores>,
}

impl Host {
    /// A host running `gateway` (local state: no store steps are expected).
    pub fn new(gateway: Arc<Gateway>) -> Result<Self, HostError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            .build()
            .map_err(HostError::Client)?;
        Ok(Self {
            gateway,
            store: None,
            client,
            tls: Arc::default(),
        })
    }

    /// Answers store steps with `store` (a gateway built with
    /// [`preflow::StateMode::Remote`]).
    pub fn with_store(mut self, store: Arc<RemoteState>) -> Self {
        self.store = Some(store);
        self
    }

    /// The trust and key stores targets may name.
    pub fn with_tls_stores(mut self, stores: TlsStores) -> Self {
        self.tls = Arc::new(stores);
        self
    }

    /// The trust and key stores targets may name.
    pub fn tls_stores(&self) -> &TlsStores {
        &self.tls
    }

    /// The gateway run.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Steps `ex` until the proxy must act: see [`Next`].
    pub async fn advance(&self, ex: &mut Exchange) -> Next {
        loop {
            match self.gateway.step(ex) {
                Step::Respond(resp) => return Next::Respond(resp),
                Step::ReadBody => return Next::ReadBody,
                Step::Pause(wait) => tokio::time::sleep(wait).await,
                // The store's and the HTTP client's futures are large and these steps are
                // not on every request: boxed, they stay out of this future (and of the
                // host's futures holding it), which is copied whole when it is made.
                Step::Store(op) => {
                    let reply = Box::pin(self.store(&op)).await;
                    ex.store_reply(reply);
                }
                Step::Forward(target) if is_side_call(&target) => {
                    let result = Box::pin(self.call(target)).await;
                    ex.target_response(result);
                }
                Step::Forward(target) => return Next::Forward(target),
            }
        }
    }

    /// Performs one store operation.
    pub async fn store(&self, op: &preflow::StoreOp) -> StoreReply {
        match &self.store {
            Some(store) => store.run(op).await,
            None => {
                // A local-state gateway never asks; answer rather than hang.
                tracing::error!("store operation asked of a host without a store");
                StoreReply::Unavailable
            }
        }
    }

    /// Makes a target call with the host's own client, the whole response read.
    pub async fn call(&self, target: Target) -> Result<http::Response<Bytes>, TargetError> {
        if target.endpoint.starts_with("servicecallout-local:") {
            return Err(TargetError::Other(
                "a ServiceCallout to a local target is not supported by this host".to_owned(),
            ));
        }
        if target
            .tls
            .as_ref()
            .is_some_and(|t| t.truststore.is_some() || t.keystore.is_some())
        {
            return Err(TargetError::Other(
                "trust and key stores are not supported for side calls by this host".to_owned(),
            ));
        }
        let io = target.timeouts.io.unwrap_or(DEFAULT_IO_TIMEOUT);
        let request = reqwest::Request::try_from(target.request)
            .map_err(|e| TargetError::Other(e.to_string()))?;
        let exchange = async {
            let resp = self.client.execute(request).await.map_err(|e| {
                if e.is_connect() {
                    TargetError::Connect(e.to_string())
                } else {
                    TargetError::Other(e.to_string())
                }
            })?;
            let mut out = http::Response::builder()
                .status(resp.status())
                .version(resp.version());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            let mut body = Vec::new();
            let mut resp = resp;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| TargetError::Other(e.to_string()))?
            {
                if body.len() + chunk.len() > MAX_SIDE_CALL_BODY {
                    return Err(TargetError::Other(
                        "the side call's response body is too large".to_owned(),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            out.body(Bytes::from(body))
                .map_err(|e| TargetError::Other(e.to_string()))
        };
        tokio::time::timeout(io, exchange)
            .await
            .unwrap_or(Err(TargetError::Timeout))
    }
}

/// Whether a target call is a side call (ServiceCallout, an API provider's token
/// request) rather than the exchange's own target.
pub fn is_side_call(target: &Target) -> bool {
    target.endpoint.starts_with("servicecallout") || target.endpoint.starts_with("provider-token:")
}

/// An Apigee-style fault body, for answers a host makes itself.
pub fn fault(
    status: http::StatusCode,
    errorcode: &str,
    faultstring: &str,
) -> http::Response<Bytes> {
    let body = serde_free_fault(errorcode, faultstring);
    let mut resp = http::Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn serde_free_fault(errorcode: &str, faultstring: &str) -> String {
    // Both strings are the host's own constants: nothing to escape.
    format!(
        r#"{{"fault":{{"faultstring":"{faultstring}","detail":{{"errorcode":"{errorcode}"}}}}}}"#
    )
}
