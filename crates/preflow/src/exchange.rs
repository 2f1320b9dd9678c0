//! One request/response exchange through the gateway, and the steps it asks the host for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use preflow_condition::OwnedValue;

use crate::engine::{Resume, Stage};
use crate::fault::Fault;

/// The scheme the client used to reach the gateway (`client.scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the host knows about the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// The peer address (`client.ip`, `client.port`).
    pub addr: SocketAddr,
    /// The scheme of the connection (`client.scheme`).
    pub scheme: Scheme,
}

impl Client {
    /// A plain-HTTP client at `addr`.
    pub fn http(addr: SocketAddr) -> Self {
        Client {
            addr,
            scheme: Scheme::Http,
        }
    }
}

/// Timeouts for a target call, from the target endpoint's `<Properties>`
/// (`connect.timeout.millis`, `io.timeout.millis`); `None` leaves the host's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Connection timeout.
    pub connect: Option<Duration>,
    /// Time to wait for the response.
    pub io: Option<Duration>,
}

/// A request the host must send to a backend, then hand the result to
/// [`Exchange::target_response`].
#[derive(Debug)]
pub struct Target {
    /// The request, with an absolute URI (`scheme://authority/path?query`).
    pub request: http::Request<Bytes>,
    /// Timeouts configured on the target endpoint.
    pub timeouts: Timeouts,
    /// The target endpoint's name, or empty for a RouteRule `<URL>`. A ServiceCallout's
    /// call is `servicecallout:{policy}`; one with a `<LocalTargetConnection>` is
    /// `servicecallout-local:{policy}` and its URI is a path on this gateway.
    pub endpoint: std::sync::Arc<str>,
}

/// Why a target call produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The connection could not be made (503 `ServiceUnavailable`).
    #[error("cannot connect to the target: {0}")]
    Connect(String),
    /// The target did not answer in time (504 `GatewayTimeout`).
    #[error("the target did not answer in time")]
    Timeout,
    /// Any other transport failure (502 `BadGateway`).
    #[error("the target call failed: {0}")]
    Other(String),
}

/// A state operation the host must perform when the gateway runs with
/// [`StateMode::Remote`](crate::StateMode::Remote); the reply goes to
/// [`Exchange::store_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// A SpikeArrest or Quota counter operation. Keys are namespaced by proxy and policy.
    RateLimit(preflow_ratelimit::StoreOp),
    /// A token or authorization-code operation.
    Token(preflow_oauth::StoreOp),
}

/// The reply to a [`StoreOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreReply {
    /// The reply to [`StoreOp::RateLimit`].
    RateLimit(preflow_ratelimit::StoreReply),
    /// The reply to [`StoreOp::Token`].
    Token(preflow_oauth::StoreReply),
    /// The store could not perform the operation. Rate limits fail open with the policy
    /// marked failed; token operations fail as their policy documents (503 or 401).
    Unavailable,
}

/// What the host must do next for an exchange.
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// Send this response to the client; the exchange is finished.
    Respond(http::Response<Bytes>),
    /// Call the backend and pass the outcome to [`Exchange::target_response`].
    Forward(Target),
    /// Perform this store operation and pass its reply to [`Exchange::store_reply`].
    Store(StoreOp),
}

/// Which part of the execution a trace event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// ProxyEndpoint request path.
    ProxyRequest,
    /// TargetEndpoint request path.
    TargetRequest,
    /// TargetEndpoint response path.
    TargetResponse,
    /// ProxyEndpoint response path.
    ProxyResponse,
    /// Fault handling.
    Error,
    /// PostClientFlow.
    PostClient,
}

/// One event of an exchange, recorded when tracing is on ([`Exchange::enable_trace`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TraceEvent {
    /// A proxy endpoint was selected by base path.
    ProxySelected {
        /// The API proxy.
        proxy: String,
        /// The ProxyEndpoint.
        endpoint: String,
        /// `proxy.basepath`.
        base_path: String,
        /// `proxy.pathsuffix`.
        path_suffix: String,
    },
    /// A flow (PreFlow, conditional Flow, PostFlow, fault rule…) started.
    Flow {
        /// Where.
        phase: Phase,
        /// The flow's name.
        name: String,
    },
    /// A condition was evaluated.
    Condition {
        /// What it guards (`flow X`, `step P`, `route rule R`, `fault rule F`).
        what: String,
        /// The text.
        text: String,
        /// The result.
        result: bool,
    },
    /// A policy ran.
    Policy {
        /// Policy name.
        name: String,
        /// Policy type.
        type_name: String,
        /// `ok`, `skipped (disabled)`, `fault NAME`, `failed NAME (continueOnError)`.
        result: String,
    },
    /// A route rule was chosen.
    Route {
        /// The rule's name.
        rule: String,
        /// Where it sends the request (`target endpoint X`, a URL, or `null route`).
        target: String,
    },
    /// The exchange entered the error state.
    Fault {
        /// `fault.name`.
        name: String,
        /// The error code.
        code: String,
        /// The status.
        status: u16,
    },
    /// A store operation was performed.
    Store {
        /// A short description.
        op: String,
    },
}

/// An HTTP message as the flows see it: the request, or the response under construction.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub method: Method,
    /// The normalised path (requests).
    pub path: String,
    /// The raw query, without `?`.
    pub query: Option<String>,
    pub version: Version,
    pub status: StatusCode,
    pub reason: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Message {
    pub(crate) fn response(status: StatusCode) -> Self {
        Message {
            method: Method::GET,
            path: String::new(),
            query: None,
            version: Version::HTTP_11,
            status,
            reason: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// The state of one exchange: the request, the response under construction, flow
/// variables and where execution stands. Created by [`Gateway::begin`](crate::Gateway::begin)
/// and driven by [`Gateway::step`](crate::Gateway::step).
#[derive(Debug)]
pub struct Exchange {
    pub(crate) request: Message,
    pub(crate) original_uri: Uri,
    pub(crate) response: Option<Message>,
    pub(crate) client: Client,
    pub(crate) now: SystemTime,
    pub(crate) now_ns: u64,
    /// The bundle and proxy endpoint selected, and the base path's length in the path.
    pub(crate) bundle: usize,
    pub(crate) endpoint: usize,
    pub(crate) base_len: usize,
    pub(crate) target: Option<usize>,
    pub(crate) target_url: Option<String>,
    pub(crate) route: Option<usize>,
    pub(crate) proxy_flow: Option<usize>,
    pub(crate) target_flow: Option<usize>,
    pub(crate) current_flow: &'static str,
    pub(crate) current_flow_name: Option<String>,
    pub(crate) stage: Stage,
    pub(crate) resume: Option<Resume>,
    pub(crate) reply: Option<StoreReply>,
    pub(crate) target_result: Option<Result<http::Response<Bytes>, TargetError>>,
    pub(crate) fault: Option<Fault>,
    pub(crate) vars: HashMap<String, OwnedValue>,
    pub(crate) failed: Vec<(usize, usize)>,
    pub(crate) verified: Option<preflow_oauth::VerifiedToken>,
    pub(crate) api_keys: Vec<(usize, usize, preflow_oauth::VerifiedApiKey)>,
    pub(crate) quotas: Vec<(usize, usize, preflow_ratelimit::QuotaDecision, String)>,
    pub(crate) trace: Option<Vec<TraceEvent>>,
    pub(crate) message_id: u64,
    pub(crate) query_cache: std::sync::OnceLock<Vec<(String, String)>>,
    pub(crate) form_cache: std::sync::OnceLock<Vec<(String, String)>>,
    pub(crate) client_ip_cache: std::sync::OnceLock<String>,
    pub(crate) target_url_cache: std::sync::OnceLock<String>,
    pub(crate) callouts: Vec<crate::engine::Frame>,
    pub(crate) rule_raised: bool,
    pub(crate) final_response: Option<http::Response<Bytes>>,
    /// A ServiceCallout waiting for the host's call: `(bundle, policy)`.
    pub(crate) callout: Option<(usize, usize)>,
}

impl Exchange {
    /// Hands the outcome of the target call requested by [`Step::Forward`] to the
    /// exchange; the next [`Gateway::step`](crate::Gateway::step) continues with the
    /// response flows (or the error flow).
    pub fn target_response(&mut self, result: Result<http::Response<Bytes>, TargetError>) {
        self.target_result = Some(result);
    }

    /// Hands the reply to the operation requested by [`Step::Store`] to the exchange.
    pub fn store_reply(&mut self, reply: StoreReply) {
        self.reply = Some(reply);
    }

    /// Records a [`TraceEvent`] for everything that happens from now on.
    pub fn enable_trace(&mut self) {
        if self.trace.is_none() {
            self.trace = Some(Vec::new());
        }
    }

    /// The events recorded since [`enable_trace`](Self::enable_trace).
    pub fn trace(&self) -> &[TraceEvent] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// The time the exchange began at.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `fault.name` of the fault the exchange is handling or ended with, if any.
    pub fn fault_name(&self) -> Option<&str> {
        self.fault.as_ref().map(|f| f.name.as_ref())
    }

    pub(crate) fn record(&mut self, event: impl FnOnce() -> TraceEvent) {
        if let Some(t) = &mut self.trace {
            t.push(event());
        }
    }
}
