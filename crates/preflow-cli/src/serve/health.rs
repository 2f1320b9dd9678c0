//! Health probes of the load balancers' target servers: one task per check the engine
//! lists ([`preflow::Gateway::health_checks`]), each probing every interval (a TCP
//! connect, or an HTTP request whose answer the check accepts) and reporting the result
//! with [`preflow::Gateway::report_health`]. A server out of rotation comes back when its
//! probe succeeds.

use std::sync::Arc;

use bytes::Bytes;
use preflow::{CheckKind, Gateway, HealthCheck};

use super::upstream::Upstream;

/// The probe tasks; dropping this stops them.
#[derive(Debug, Default)]
pub struct Probes(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Probes {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Starts one task per health check of `gateway`, calling HTTP probes through `client`.
pub fn spawn(gateway: Gateway, client: Upstream) -> Probes {
    let checks = gateway.health_checks();
    let client = Arc::new(client);
    Probes(
        checks
            .into_iter()
            .map(|check| {
                tracing::info!(
                    server = check.server.as_str(),
                    every = ?check.interval,
                    "health monitor"
                );
                tokio::spawn(run(gateway.clone(), Arc::clone(&client), check))
            })
            .collect(),
    )
}

async fn run(gateway: Gateway, client: Arc<Upstream>, check: HealthCheck) {
    let mut every = tokio::time::interval(check.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: probe one interval after start, as Apigee does.
    every.tick().await;
    let mut last = None;
    loop {
        every.tick().await;
        let ok = probe(&client, &check.kind).await;
        gateway.report_health(&check.server, ok);
        if last != Some(ok) {
            if ok {
                tracing::info!(server = check.server.as_str(), "health probe succeeded");
            } else {
                tracing::warn!(server = check.server.as_str(), "health probe failed");
            }
            last = Some(ok);
        }
    }
}

/// Runs one probe.
async fn probe(client: &Upstream, kind: &CheckKind) -> bool {
    match kind {
        CheckKind::Tcp {
            host,
            port,
            connect_timeout,
        } => matches!(
            tokio::time::timeout(
                *connect_timeout,
                tokio::net::TcpStream::connect((host.as_str(), *port))
            )
            .await,
            Ok(Ok(_))
        ),
        CheckKind::Http(check) => {
            let mut req = http::Request::new(Bytes::new());
            *req.method_mut() = check.method.clone();
            *req.uri_mut() = check.uri.clone();
            *req.headers_mut() = check.headers.clone();
            match client
                .call(req, None, check.connect_timeout, check.read_timeout)
                .await
            {
                Ok(resp) => kind.accepts(resp.status(), resp.headers()),
                Err(_) => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn tcp_probes_succeed_only_on_a_listening_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = super::super::upstream::tests::upstream(1024);
        let check = |port| CheckKind::Tcp {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(1),
        };
        assert!(probe(&client, &check(port)).await);
        drop(listener);
        assert!(!probe(&client, &check(port)).await);
    }
}
