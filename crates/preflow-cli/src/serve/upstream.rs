//! The upstream client: performs the target requests the engine builds, over pooled
//! HTTP/1.1 connections, with a connect timeout and a response timeout.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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
    /// The request could not be sent (e.g. the URL is not `http://`).
    #[error("cannot send the target request: {0}")]
    Request(String),
}

type Pool = Client<HttpConnector, Full<Bytes>>;

/// Pooled clients, one per connect timeout in use (the connector holds the timeout).
#[derive(Debug)]
pub struct Upstream {
    pools: RwLock<HashMap<Duration, Pool>>,
    max_response_bytes: usize,
}

impl Upstream {
    /// A client that accepts response bodies up to `max_response_bytes`.
    pub fn new(max_response_bytes: usize) -> Self {
        Self {
            pools: RwLock::new(HashMap::new()),
            max_response_bytes,
        }
    }

    fn pool(&self, connect_timeout: Duration) -> Pool {
        if let Ok(pools) = self.pools.read()
            && let Some(p) = pools.get(&connect_timeout)
        {
            return p.clone();
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let pool: Pool = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        if let Ok(mut pools) = self.pools.write() {
            pools.entry(connect_timeout).or_insert_with(|| pool.clone());
        }
        pool
    }

    /// Sends `request` (absolute `http://` URI) and reads the whole response.
    pub async fn call(
        &self,
        mut request: Request<Bytes>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| UpstreamError::Request("the target URL has no host".into()))?;
        if request.uri().scheme_str() != Some("http") {
            return Err(UpstreamError::Request(format!(
                "only http:// targets are supported, not {}",
                request.uri()
            )));
        }
        let headers = request.headers_mut();
        strip_hop_by_hop(headers);
        headers.remove(header::CONTENT_LENGTH);
        let host = HeaderValue::from_str(&authority)
            .map_err(|_| UpstreamError::Request("the target host is not a valid header".into()))?;
        headers.insert(header::HOST, host);
        let pool = self.pool(connect_timeout);
        let limit = self.max_response_bytes;
        let exchange = async move {
            let resp = pool.request(request.map(Full::new)).await.map_err(|e| {
                if e.is_connect() {
                    UpstreamError::Connect(error_chain(&e))
                } else {
                    UpstreamError::Protocol(error_chain(&e))
                }
            })?;
            let (mut parts, body) = resp.into_parts();
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?
                .to_bytes();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body))
        };
        match tokio::time::timeout(response_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(response_timeout)),
        }
    }
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Upstream::new(1024);
        let req = Request::get(format!("http://127.0.0.1:{port}/x"))
            .body(Bytes::new())
            .unwrap();
        let err = up
            .call(req, Duration::from_secs(1), Duration::from_secs(5))
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
        let up = Upstream::new(1024);
        let req = Request::get(format!("http://{addr}/x"))
            .body(Bytes::new())
            .unwrap();
        let err = up
            .call(req, Duration::from_secs(1), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err, UpstreamError::Timeout(Duration::from_millis(200)));
        hold.abort();
    }

    #[tokio::test]
    async fn https_targets_are_refused_plainly() {
        let up = Upstream::new(1024);
        let req = Request::get("https://127.0.0.1:1/x")
            .body(Bytes::new())
            .unwrap();
        let err = up
            .call(req, Duration::from_secs(1), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Request(_)), "{err:?}");
    }
}
