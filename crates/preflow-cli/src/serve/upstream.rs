//! The upstream client: performs the target requests the engine builds, over pooled
//! connections (HTTP/1.1, or HTTP/2 when a TLS back end offers it by ALPN), with a connect
//! timeout and a response timeout. `https://` back ends are verified against the web PKI
//! roots, or against the trust store the environment names for that host and port, with
//! the host name checked; a certificate that does not verify fails the call before any
//! request byte is sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

use super::listener::strip_hop_by_hop;

/// Why a target call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, connect timeout).
    #[error("cannot connect to the target: {0}")]
    Connect(String),
    /// The target did not answer in time.
    #[error("the target did not answer within {0:?}")]
    Timeout(Duration),
    /// The target answered something that is not usable HTTP, or too large a body.
    #[error("bad answer from the target: {0}")]
    Protocol(String),
    /// The request could not be sent (e.g. the URL is neither `http://` nor `https://`).
    #[error("cannot send the target request: {0}")]
    Request(String),
    /// The TLS handshake with the target failed (its certificate did not verify, or
    /// it refused ours); nothing was sent.
    #[error("TLS with the target failed: {0}")]
    Tls(String),
}

/// A request body towards a back end: in memory, or the client's, streamed.
pub type UpBody = http_body_util::Either<Full<Bytes>, hyper::body::Incoming>;

type Pool = Client<HttpsConnector<HttpConnector>, UpBody>;

/// A back end's answer: read whole, or its head with the body still to stream.
#[derive(Debug)]
pub enum Answer {
    /// The whole response.
    Whole(Response<Bytes>),
    /// The head; the body follows as the back end sends it.
    Head(http::response::Parts, hyper::body::Incoming),
}

/// TLS client configurations: the default (web PKI roots) and those the environment
/// gives for `host:port` back ends.
#[derive(Debug, Clone)]
pub struct TargetTlsConfigs {
    /// For back ends the environment does not name.
    pub default: Arc<ClientConfig>,
    /// By lower-case host and port.
    pub by_authority: BTreeMap<(String, u16), Arc<ClientConfig>>,
    /// The environment's stores, for targets whose `<SSLInfo>` names them.
    pub environment: Arc<super::environment::Environment>,
}

/// Which TLS configuration a request uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TlsChoice {
    /// The web PKI roots (or plain HTTP).
    Default,
    /// The environment's settings for this host and port.
    Authority(String, u16),
    /// The target's own `<SSLInfo>`.
    Settings(Arc<preflow::TlsSettings>),
}

/// Which pool a request goes to: connect timeout and TLS configuration.
type PoolKey = (Duration, TlsChoice);

/// Pooled clients, one per connect timeout and TLS configuration in use (the connector
/// holds both).
#[derive(Debug)]
pub struct Upstream {
    pools: RwLock<HashMap<PoolKey, Pool>>,
    tls: TargetTlsConfigs,
    max_response_bytes: usize,
}

impl Upstream {
    /// A client that accepts response bodies up to `max_response_bytes`.
    pub fn new(max_response_bytes: usize, tls: TargetTlsConfigs) -> Self {
        Self {
            pools: RwLock::new(HashMap::new()),
            tls,
            max_response_bytes,
        }
    }

    /// A client with the same settings and pools of its own: each worker thread has one,
    /// so that a connection's task runs on the thread whose requests use it.
    pub fn fresh(&self) -> Self {
        Self::new(self.max_response_bytes, self.tls.clone())
    }

    fn pool(&self, key: &PoolKey) -> Result<Pool, UpstreamError> {
        if let Ok(pools) = self.pools.read()
            && let Some(p) = pools.get(key)
        {
            return Ok(p.clone());
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(key.0));
        http.set_nodelay(true);
        http.enforce_http(false);
        let own;
        let config = match &key.1 {
            TlsChoice::Default => &self.tls.default,
            TlsChoice::Authority(host, port) => self
                .tls
                .by_authority
                .get(&(host.clone(), *port))
                .unwrap_or(&self.tls.default),
            TlsChoice::Settings(settings) => {
                if settings.ignore_validation_errors {
                    tracing::warn!("a target's <SSLInfo> turns certificate validation off");
                }
                let resolved = self
                    .tls
                    .environment
                    .resolve_tls(settings)
                    .map_err(UpstreamError::Tls)?;
                own = super::tls::client_config("the target's <SSLInfo>", &resolved)
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
                &own
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(ClientConfig::clone(config))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let pool: Pool = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        if let Ok(mut pools) = self.pools.write() {
            pools.entry(key.clone()).or_insert_with(|| pool.clone());
        }
        Ok(pool)
    }

    /// Sends `request` (absolute `http://` or `https://` URI) and reads the whole
    /// response.
    pub async fn call(
        &self,
        request: Request<Bytes>,
        tls_settings: Option<&Arc<preflow::TlsSettings>>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        match self
            .send(
                request.map(|b| UpBody::Left(Full::new(b))),
                tls_settings,
                connect_timeout,
                response_timeout,
                false,
            )
            .await?
        {
            Answer::Whole(r) => Ok(r),
            // Not asked for: read it after all.
            Answer::Head(parts, body) => {
                let body = Limited::new(body, self.max_response_bytes)
                    .collect()
                    .await
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?
                    .to_bytes();
                Ok(Response::from_parts(parts, body))
            }
        }
    }

    /// Sends `request`, whose body may be the client's, streamed. With `stream_response`
    /// a successful answer (status below 400) comes back as its head, the body to stream;
    /// the response timeout then covers the head only. Error answers are read whole
    /// (within the response size limit), as the error flow may read them.
    pub async fn send(
        &self,
        mut request: Request<UpBody>,
        tls_settings: Option<&Arc<preflow::TlsSettings>>,
        connect_timeout: Duration,
        response_timeout: Duration,
        stream_response: bool,
    ) -> Result<Answer, UpstreamError> {
        let streamed_request = matches!(request.body(), UpBody::Right(_));
        let host = request
            .uri()
            .authority()
            .ok_or_else(|| UpstreamError::Request("the target URL has no host".into()))
            .and_then(|a| {
                HeaderValue::from_str(a.as_str()).map_err(|_| {
                    UpstreamError::Request("the target host is not a valid header".into())
                })
            })?;
        let tls = match request.uri().scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(UpstreamError::Request(format!(
                    "only http:// and https:// targets are supported, not {}",
                    request.uri()
                )));
            }
        };
        let choice = match tls_settings {
            // `<SSLInfo>` of the endpoint wins over the environment's host settings.
            Some(s) if tls && (s.enabled || s.truststore.is_some() || s.keystore.is_some()) => {
                TlsChoice::Settings(Arc::clone(s))
            }
            _ if tls => {
                let host = request.uri().host().unwrap_or("").to_ascii_lowercase();
                let port = request.uri().port_u16().unwrap_or(443);
                if self.tls.by_authority.contains_key(&(host.clone(), port)) {
                    TlsChoice::Authority(host, port)
                } else {
                    TlsChoice::Default
                }
            }
            _ => TlsChoice::Default,
        };
        let headers = request.headers_mut();
        strip_hop_by_hop(headers);
        if !streamed_request {
            // hyper frames an in-memory body itself; a streamed one keeps the client's
            // length (or goes chunked without one).
            headers.remove(header::CONTENT_LENGTH);
        }
        headers.insert(header::HOST, host);
        let pool = self.pool(&(connect_timeout, choice))?;
        let limit = self.max_response_bytes;
        let exchange = async move {
            let resp = pool.request(request).await.map_err(|e| {
                if let Some(why) = tls_failure(&e) {
                    UpstreamError::Tls(why)
                } else if e.is_connect() {
                    UpstreamError::Connect(error_chain(&e))
                } else {
                    UpstreamError::Protocol(error_chain(&e))
                }
            })?;
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            if stream_response && parts.status.as_u16() < 400 {
                return Ok(Answer::Head(parts, body));
            }
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?
                .to_bytes();
            Ok(Answer::Whole(Response::from_parts(parts, body)))
        };
        match tokio::time::timeout(response_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(response_timeout)),
        }
    }
}

/// The rustls error in the cause chain of a failed call, said plainly.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: cause chains are short; a cycle would be a bug elsewhere.
    for _ in 0..16 {
        let Some(err) = cur else { break };
        // io::Error hides what it wraps from `source()`: look inside it.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            cur = Some(inner);
            continue;
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(match t {
                rustls::Error::InvalidCertificate(why) => {
                    format!("the target's certificate did not verify: {why:?}")
                }
                other => other.to_string(),
            });
        }
        cur = err.source();
    }
    None
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::serve) fn upstream(max: usize) -> Upstream {
        let default = super::super::tls::client_config("test", &Default::default()).unwrap();
        Upstream::new(
            max,
            TargetTlsConfigs {
                default,
                by_authority: BTreeMap::new(),
                environment: Arc::default(),
            },
        )
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = upstream(1024);
        let req = Request::get(format!("http://127.0.0.1:{port}/x"))
            .body(Bytes::new())
            .unwrap();
        let err = up
            .call(req, None, Duration::from_secs(1), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_targets_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never answers.
        let hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let up = upstream(1024);
        let req = Request::get(format!("http://{addr}/x"))
            .body(Bytes::new())
            .unwrap();
        let err = up
            .call(
                req,
                None,
                Duration::from_secs(1),
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert_eq!(err, UpstreamError::Timeout(Duration::from_millis(200)));
        hold.abort();
    }

    #[tokio::test]
    async fn other_schemes_are_refused_plainly() {
        let up = upstream(1024);
        let req = Request::get("ftp://127.0.0.1:1/x")
            .body(Bytes::new())
            .unwrap();
        let err = up
            .call(req, None, Duration::from_secs(1), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Request(_)), "{err:?}");
    }
}
