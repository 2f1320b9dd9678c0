//! `<LoadBalancer>` over the environment's target servers, and their health.
//!
//! The engine chooses a server from state the host reports: the outcome of each call
//! (through [`Exchange::target_response`](crate::Exchange::target_response)) and the
//! result of each health probe ([`Gateway::report_health`](crate::Gateway::report_health)).
//! The state lives in the compiled gateway, per load balancer and server, in atomics:
//! consecutive failures, whether the server is out of rotation and since when, and the
//! calls in flight (released when the exchange gets its response or is dropped).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use preflow_condition::OwnedValue;
use preflow_policy::runtime::{Fault, TargetError, TlsSettings};

use crate::endpoint::{HealthMonitor, HttpTargetConnection, LoadBalancer, Probe};
use crate::environment::Environment;

/// Most servers one load balancer may name (the servers tried by one request are a bit
/// set).
pub(crate) const MAX_SERVERS: usize = 64;

/// How long a server taken out after `<MaxFailures>` stays out when no health monitor
/// brings it back (Apigee's `<TargetDisableSecs>` default).
pub(crate) const DEFAULT_DISABLE_SECS: u64 = 300;

/// One health check the host runs every `interval` and reports with
/// [`Gateway::report_health`](crate::Gateway::report_health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthCheck {
    /// The target server's name.
    pub server: String,
    /// How often.
    pub interval: Duration,
    /// What to do.
    pub kind: CheckKind,
}

/// What a [`HealthCheck`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckKind {
    /// Open a TCP connection to `host:port` within `connect_timeout`.
    Tcp {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Connect timeout (default 10 s).
        connect_timeout: Duration,
    },
    /// Send a request and check the answer with [`CheckKind::accepts`].
    Http(Box<HttpCheck>),
}

/// The request of an HTTP health check and the answers it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCheck {
    /// Method.
    pub method: http::Method,
    /// Absolute URI.
    pub uri: http::Uri,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// TLS towards the server (an `https` URI).
    pub tls: Option<Arc<TlsSettings>>,
    /// Connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Time to wait for the answer (default 10 s).
    pub read_timeout: Duration,
    /// Accepted statuses (empty: any 2xx).
    pub success_codes: Vec<u16>,
    /// Headers the answer must carry.
    pub success_headers: Vec<(String, String)>,
}

impl CheckKind {
    /// Whether an HTTP probe's answer counts as healthy (always true for a TCP probe,
    /// which has no answer).
    pub fn accepts(&self, status: http::StatusCode, headers: &http::HeaderMap) -> bool {
        let CheckKind::Http(check) = self else {
            return true;
        };
        let HttpCheck {
            success_codes,
            success_headers,
            ..
        } = &**check;
        let status_ok = if success_codes.is_empty() {
            status.is_success()
        } else {
            success_codes.contains(&status.as_u16())
        };
        status_ok
            && success_headers.iter().all(|(name, value)| {
                headers
                    .get_all(name.as_str())
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| v.trim() == value.trim()))
            })
    }
}

/// The load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    RoundRobin,
    Weighted,
    LeastConnections,
}

/// What the engine knows of one server's health.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    out: AtomicBool,
    out_since_ns: AtomicU64,
    in_flight: AtomicUsize,
}

/// A call in flight to a server: released when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Health>);

impl InFlight {
    fn new(h: &Arc<Health>) -> Self {
        h.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(h))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A server of a compiled load balancer, resolved against the environment.
#[derive(Debug)]
pub(crate) struct CServer {
    pub name: Arc<str>,
    pub host: String,
    pub port: u16,
    pub scheme: Scheme,
    pub authority: Authority,
    pub tls: Option<Arc<TlsSettings>>,
    pub weight: u32,
    pub fallback: bool,
    pub enabled: bool,
    pub health: Arc<Health>,
}

/// A compiled `<LoadBalancer>`.
#[derive(Debug)]
pub(crate) struct CBalancer {
    pub servers: Vec<CServer>,
    pub algorithm: Algorithm,
    /// 0: failures are not counted and no server is taken out.
    pub max_failures: u32,
    pub retry: bool,
    pub unhealthy_codes: Vec<u16>,
    pub disable_ns: u64,
    /// `<Path>`, without a trailing `/`.
    pub path: String,
    pub monitor: Option<HealthMonitor>,
    next: AtomicUsize,
}

/// The server an exchange's target call went to.
#[derive(Debug)]
pub(crate) struct Chosen {
    pub server: usize,
    /// Servers already tried by this request (bit per server index).
    pub tried: u64,
    /// `target.url` of the call.
    pub url: String,
    pub in_flight: Option<InFlight>,
}

/// Why a load balancer cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BalancerError {
    /// `<Server name>` is not a target server of the environment.
    #[error("`<Server name=\"{0}\">` is not a target server of the environment")]
    UnknownServer(String),
    /// `<Algorithm>` is none of RoundRobin, Weighted, LeastConnections.
    #[error("unknown `<Algorithm>` `{0}` (RoundRobin, Weighted or LeastConnections)")]
    UnknownAlgorithm(String),
    /// No `<Server>`, or more than the limit.
    #[error("a load balancer needs 1 to {MAX_SERVERS} `<Server>` entries, not {0}")]
    ServerCount(usize),
    /// A target server's host and port do not form a URI authority.
    #[error("target server `{0}`: its host and port do not form a valid address")]
    BadAddress(String),
}

impl CBalancer {
    /// Resolves `lb` against the environment's target servers.
    pub(crate) fn build(
        lb: &LoadBalancer,
        conn: &HttpTargetConnection,
        env: &Environment,
    ) -> Result<CBalancer, BalancerError> {
        if lb.servers.is_empty() || lb.servers.len() > MAX_SERVERS {
            return Err(BalancerError::ServerCount(lb.servers.len()));
        }
        let algorithm = match lb.algorithm.as_deref().map(str::trim) {
            None => Algorithm::RoundRobin,
            Some(a) if a.eq_ignore_ascii_case("RoundRobin") => Algorithm::RoundRobin,
            Some(a) if a.eq_ignore_ascii_case("Weighted") => Algorithm::Weighted,
            Some(a) if a.eq_ignore_ascii_case("LeastConnections") => Algorithm::LeastConnections,
            Some(other) => return Err(BalancerError::UnknownAlgorithm(other.to_owned())),
        };
        let endpoint_tls = conn.ssl_info.as_ref().filter(|t| t.enabled);
        let mut servers = Vec::with_capacity(lb.servers.len());
        for s in &lb.servers {
            let ts = env
                .find_target_server(&s.name)
                .ok_or_else(|| BalancerError::UnknownServer(s.name.clone()))?;
            // The endpoint's `<SSLInfo>` wins over the target server's settings.
            let tls = endpoint_tls
                .or(ts.tls.as_ref().filter(|t| t.enabled))
                .cloned()
                .map(Arc::new);
            let scheme = if tls.is_some() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            };
            let host = if ts.host.contains(':') && !ts.host.starts_with('[') {
                format!("[{}]", ts.host)
            } else {
                ts.host.clone()
            };
            let authority = format!("{host}:{}", ts.port)
                .parse::<Authority>()
                .map_err(|_| BalancerError::BadAddress(ts.name.clone()))?;
            servers.push(CServer {
                name: Arc::from(ts.name.as_str()),
                host: ts.host.clone(),
                port: ts.port,
                scheme,
                authority,
                tls,
                weight: s.weight.unwrap_or(1).max(1),
                fallback: s.is_fallback,
                enabled: ts.enabled,
                health: Arc::new(Health::default()),
            });
        }
        let path = conn
            .path
            .as_deref()
            .map(str::trim)
            .unwrap_or("")
            .trim_end_matches('/');
        let path = if path.is_empty() || path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(CBalancer {
            servers,
            algorithm,
            max_failures: lb.max_failures.unwrap_or(0),
            retry: lb.retry_enabled.unwrap_or(true),
            unhealthy_codes: lb.unhealthy_codes.clone(),
            disable_ns: lb
                .target_disable_secs
                .unwrap_or(DEFAULT_DISABLE_SECS)
                .saturating_mul(1_000_000_000),
            path,
            monitor: conn
                .health_monitor
                .as_deref()
                .filter(|m| m.enabled)
                .cloned(),
            next: AtomicUsize::new(0),
        })
    }

    /// Whether server `s` may take traffic at `now_ns`.
    fn available(&self, s: &CServer, now_ns: u64) -> bool {
        if !s.enabled {
            return false;
        }
        if !s.health.out.load(Ordering::Acquire) {
            return true;
        }
        // Out: a monitor brings it back; without one, the time does.
        self.monitor.is_none()
            && now_ns
                >= s.health
                    .out_since_ns
                    .load(Ordering::Acquire)
                    .saturating_add(self.disable_ns)
    }

    /// Chooses a server not in `tried`: the regular servers first, the fallback servers
    /// only when every regular server is out.
    pub(crate) fn choose(&self, tried: u64, now_ns: u64) -> Option<usize> {
        let usable = |fallback: bool| {
            self.servers
                .iter()
                .enumerate()
                .filter(move |(i, s)| {
                    s.fallback == fallback
                        && tried & (1u64 << (*i % MAX_SERVERS)) == 0
                        && self.available(s, now_ns)
                })
                .map(|(i, _)| i)
        };
        let mut candidates: Vec<usize> = usable(false).collect();
        if candidates.is_empty() {
            candidates = usable(true).collect();
        }
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let tick = self.next.fetch_add(1, Ordering::Relaxed);
        let weight = |i: usize| self.servers.get(i).map_or(1, |s| s.weight as usize);
        match self.algorithm {
            Algorithm::RoundRobin => candidates.get(tick % n).copied(),
            Algorithm::Weighted => {
                let total: usize = candidates.iter().map(|&i| weight(i)).sum();
                let mut k = tick % total.max(1);
                for &i in &candidates {
                    let w = weight(i);
                    if k < w {
                        return Some(i);
                    }
                    k -= w;
                }
                candidates.last().copied()
            }
            Algorithm::LeastConnections => {
                let load = |i: usize| {
                    self.servers
                        .get(i)
                        .map_or(usize::MAX, |s| s.health.in_flight.load(Ordering::Relaxed))
                };
                // Ties go round in turn.
                (0..n)
                    .filter_map(|k| candidates.get((tick + k) % n).copied())
                    .min_by_key(|&i| load(i))
            }
        }
    }

    /// Records the outcome of a call to server `i` at `now_ns`; returns whether it was a
    /// failure that a retry on another server may cure.
    pub(crate) fn record(
        &self,
        i: usize,
        result: &Result<http::Response<Bytes>, TargetError>,
        now_ns: u64,
    ) -> bool {
        let Some(s) = self.servers.get(i) else {
            return false;
        };
        let failed = match result {
            Ok(r) => self.unhealthy_codes.contains(&r.status().as_u16()),
            Err(TargetError::Connect(_) | TargetError::Timeout) => true,
            Err(_) => false,
        };
        let h = &s.health;
        if failed {
            let n = h.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            if self.max_failures > 0 && n >= self.max_failures {
                h.out_since_ns.store(now_ns, Ordering::Release);
                h.out.store(true, Ordering::Release);
            }
        } else if result.is_ok() {
            h.failures.store(0, Ordering::Release);
            // A server let back in by time answered: it is in again (with a monitor,
            // only the monitor brings a server back).
            if self.monitor.is_none() {
                h.out.store(false, Ordering::Release);
            }
        }
        failed
    }

    /// The host's health probe of server `name` succeeded (`ok`) or failed.
    pub(crate) fn report(&self, name: &str, ok: bool) -> bool {
        let mut any = false;
        for s in self.servers.iter().filter(|s| &*s.name == name) {
            any = true;
            if ok {
                s.health.failures.store(0, Ordering::Release);
                s.health.out.store(false, Ordering::Release);
            } else {
                s.health.out.store(true, Ordering::Release);
            }
        }
        any
    }

    /// The checks of this balancer's monitor, one per enabled server.
    pub(crate) fn checks(&self) -> Vec<HealthCheck> {
        let Some(m) = &self.monitor else {
            return Vec::new();
        };
        let default_timeout = Duration::from_secs(10);
        self.servers
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| {
                let kind = match &m.probe {
                    Probe::Tcp {
                        connect_timeout,
                        port,
                    } => CheckKind::Tcp {
                        host: s.host.clone(),
                        port: port.unwrap_or(s.port),
                        connect_timeout: connect_timeout.unwrap_or(default_timeout),
                    },
                    Probe::Http(p) => {
                        let ssl = p.is_ssl.unwrap_or(s.tls.is_some());
                        let host = s.authority.host();
                        let host = if host.contains(':') && !host.starts_with('[') {
                            format!("[{host}]")
                        } else {
                            host.to_owned()
                        };
                        let path = if p.path.starts_with('/') {
                            p.path.clone()
                        } else {
                            format!("/{}", p.path)
                        };
                        let uri = format!(
                            "{}://{host}:{}{path}",
                            if ssl { "https" } else { "http" },
                            p.port.unwrap_or(s.port)
                        )
                        .parse::<http::Uri>()
                        .ok()?;
                        let mut headers = http::HeaderMap::new();
                        for (k, v) in &p.headers {
                            if let (Ok(k), Ok(v)) = (
                                http::HeaderName::from_bytes(k.as_bytes()),
                                http::HeaderValue::from_str(v),
                            ) {
                                headers.append(k, v);
                            }
                        }
                        CheckKind::Http(Box::new(HttpCheck {
                            method: http::Method::from_bytes(p.verb.trim().as_bytes())
                                .unwrap_or(http::Method::GET),
                            uri,
                            headers,
                            tls: if ssl {
                                Some(
                                    s.tls
                                        .clone()
                                        .unwrap_or_else(|| Arc::new(TlsSettings::verified())),
                                )
                            } else {
                                None
                            },
                            connect_timeout: p.connect_timeout.unwrap_or(default_timeout),
                            read_timeout: p.read_timeout.unwrap_or(default_timeout),
                            success_codes: p.success_codes.clone(),
                            success_headers: p.success_headers.clone(),
                        }))
                    }
                };
                Some(HealthCheck {
                    server: s.name.to_string(),
                    interval: m.interval.max(Duration::from_secs(1)),
                    kind,
                })
            })
            .collect()
    }
}

/// Where the call goes: the chosen server's scheme, authority, TLS and name.
pub(crate) struct Call<'g> {
    pub scheme: &'g Scheme,
    pub authority: &'g Authority,
    pub base: &'g str,
    pub tls: Option<Arc<TlsSettings>>,
    pub name: Arc<str>,
}

/// Chooses the server for an exchange's next call through `lb` and records it in the
/// exchange's `chosen` (and the `loadbalancing.*` and `target.host`/`target.port`
/// variables in `vars`).
pub(crate) fn begin_call<'g>(
    lb: &'g CBalancer,
    chosen: &mut Option<Box<Chosen>>,
    vars: &mut HashMap<String, OwnedValue>,
    now_ns: u64,
) -> Result<Call<'g>, Fault> {
    let tried = chosen.as_ref().map_or(0, |c| c.tried);
    let Some(i) = lb.choose(tried, now_ns) else {
        return Err(no_active_targets());
    };
    let Some(s) = lb.servers.get(i) else {
        return Err(no_active_targets());
    };
    let failed: Vec<&str> = lb
        .servers
        .iter()
        .enumerate()
        .filter(|(j, _)| tried & (1u64 << (*j % MAX_SERVERS)) != 0)
        .map(|(_, s)| &*s.name)
        .collect();
    if !failed.is_empty() {
        vars.insert(
            "loadbalancing.failedservers".to_owned(),
            OwnedValue::String(failed.join(",")),
        );
    }
    for (k, v) in [
        (
            "loadbalancing.targetserver",
            OwnedValue::String(s.name.to_string()),
        ),
        ("loadbalancing.isfallback", OwnedValue::Boolean(s.fallback)),
        ("target.host", OwnedValue::String(s.host.clone())),
        ("target.port", OwnedValue::Integer(i32::from(s.port))),
    ] {
        vars.insert(k.to_owned(), v);
    }
    *chosen = Some(Box::new(Chosen {
        server: i,
        tried: tried | (1u64 << (i % MAX_SERVERS)),
        url: String::new(),
        in_flight: Some(InFlight::new(&s.health)),
    }));
    Ok(Call {
        scheme: &s.scheme,
        authority: &s.authority,
        base: &lb.path,
        tls: s.tls.clone(),
        name: Arc::clone(&s.name),
    })
}

/// Records the outcome of the call in flight; returns whether to retry on another
/// server (`<RetryEnabled>` and a server still available).
pub(crate) fn end_call(
    lb: &CBalancer,
    chosen: &mut Option<Box<Chosen>>,
    result: &Result<http::Response<Bytes>, TargetError>,
    now_ns: u64,
) -> bool {
    let Some(chosen) = chosen.as_mut() else {
        return false;
    };
    chosen.in_flight = None;
    let failed = lb.record(chosen.server, result, now_ns);
    failed && lb.retry && lb.choose_peek(chosen.tried, now_ns)
}

impl CBalancer {
    /// Whether a server outside `tried` is available, without moving the rotation.
    fn choose_peek(&self, tried: u64, now_ns: u64) -> bool {
        self.servers
            .iter()
            .enumerate()
            .any(|(i, s)| tried & (1u64 << (i % MAX_SERVERS)) == 0 && self.available(s, now_ns))
    }
}

/// No server of the load balancer can take the request (503, as Apigee).
pub(crate) fn no_active_targets() -> Fault {
    let mut f = Fault::new(
        "messaging.adaptors.http.flow.NoActiveTargets",
        http::StatusCode::SERVICE_UNAVAILABLE,
        "The Service is temporarily unavailable: no target server of the load balancer is available",
    );
    f.source = "target";
    f
}
