//! Messages, the calls a policy asks the host for, and the store operations.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};

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
/// the exchange (`Exchange::target_response` in the engine).
#[derive(Debug)]
pub struct Target {
    /// The request, with an absolute URI (`scheme://authority/path?query`). A target
    /// endpoint's call carries that authority as its `Host` header, in place of the
    /// client's.
    pub request: http::Request<Bytes>,
    /// Timeouts configured on the target endpoint.
    pub timeouts: Timeouts,
    /// The target endpoint's name, or empty for a RouteRule `<URL>`. A ServiceCallout's
    /// call is `servicecallout:{policy}`; one with a `<LocalTargetConnection>` is
    /// `servicecallout-local:{policy}` and its URI is a path on this gateway.
    pub endpoint: std::sync::Arc<str>,
    /// TLS towards the back end (`<SSLInfo>`, or the settings of the target server or
    /// provider); `None`: an `https` URL is verified against the web PKI roots.
    pub tls: Option<std::sync::Arc<TlsSettings>>,
    /// The target server a `<LoadBalancer>` chose for this call, if any; its outcome
    /// (the response, a connect error or a timeout) counts towards that server's health.
    pub server: Option<std::sync::Arc<str>>,
    /// The back end's socket address when the URL names it by an IP literal, worked out
    /// when the gateway was built: a host may connect to it without parsing the URI's
    /// authority. `None`: the host resolves the URI's host.
    pub address: Option<std::net::SocketAddr>,
    /// The engine has not read the request body and needs none of it: the host sends the
    /// client's body to the back end as it arrives (the request's own body is empty and
    /// its `Content-Length`, if any, is the client's). Only for an exchange whose host
    /// enabled streaming.
    pub stream_request_body: bool,
    /// No policy needs the response body: the host may hand over the response head alone
    /// (`Exchange::target_response_head` in the engine) and stream the body to the
    /// client. Only for an exchange whose host enabled streaming.
    pub stream_response_body: bool,
}

/// TLS settings towards a back end: a TargetEndpoint's `<SSLInfo>`, or the settings of
/// a target server or provider. Stores are named; the host holds their certificates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct TlsSettings {
    /// `<Enabled>`: TLS is used (an `https` URL implies it).
    pub enabled: bool,
    /// `<TrustStore>`: verify the back end against this trust store instead of the web
    /// PKI roots (`ref://` stripped).
    pub truststore: Option<String>,
    /// `<KeyStore>`: present this key store's certificate (mutual TLS).
    pub keystore: Option<String>,
    /// `<KeyAlias>`.
    pub key_alias: Option<String>,
    /// `<ClientAuthEnabled>`.
    pub client_auth: bool,
    /// `<IgnoreValidationErrors>`: accept any certificate. An explicit opt-out that
    /// hosts log and `check` warns about.
    pub ignore_validation_errors: bool,
    /// `<Protocols><Protocol>`: e.g. `TLSv1.2`, `TLSv1.3`; empty: the host's default.
    pub protocols: Vec<String>,
    /// `<Ciphers><Cipher>`; empty: the host's default.
    pub ciphers: Vec<String>,
}

impl TlsSettings {
    /// Settings that verify against the web PKI roots.
    pub fn verified() -> Self {
        TlsSettings {
            enabled: true,
            ..TlsSettings::default()
        }
    }

    /// With trust store `name`.
    pub fn with_truststore(mut self, name: impl Into<String>) -> Self {
        self.truststore = Some(name.into());
        self
    }

    /// With key store `name` for a client certificate.
    pub fn with_keystore(mut self, name: impl Into<String>) -> Self {
        self.keystore = Some(name.into());
        self.client_auth = true;
        self
    }

    /// Accepting any certificate.
    pub fn ignoring_validation_errors(mut self) -> Self {
        self.ignore_validation_errors = true;
        self
    }
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
/// [`StateMode::Remote`](super::StateMode::Remote); the reply goes to
/// the exchange (`Exchange::store_reply`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// A SpikeArrest or Quota counter operation. Keys are namespaced by proxy and policy.
    RateLimit(preflow_ratelimit::StoreOp),
    /// A token or authorization-code operation.
    Token(preflow_oauth::StoreOp),
    /// A key-value operation (KeyValueMapOperations, caches of the gateway).
    Kv(KvOp),
}

/// The reply to a [`StoreOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreReply {
    /// The reply to [`StoreOp::RateLimit`].
    RateLimit(preflow_ratelimit::StoreReply),
    /// The reply to [`StoreOp::Token`].
    Token(preflow_oauth::StoreReply),
    /// The reply to [`StoreOp::Kv`].
    Kv(KvReply),
    /// The store could not perform the operation. Rate limits fail open with the policy
    /// marked failed; token operations fail as their policy documents (503 or 401).
    Unavailable,
}

/// A generic key-value operation on the state store: one entry, named by a namespace
/// the caller chooses (for instance `kvm:{org/env/proxy}:{map}`) and a key in it.
///
/// Times are nanoseconds since the Unix epoch. An entry whose expiry is at or before the
/// operation's `now` is absent: the file and memory stores compare with `now`, Redis
/// expires the key itself on its own clock (`PXAT`). Values are strings; callers bound
/// their sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvOp {
    /// Reads an entry. Reply: [`KvReply::Value`].
    Get {
        /// The namespace.
        namespace: String,
        /// The key in the namespace.
        key: String,
        /// The current time (ns).
        now: u64,
    },
    /// Writes an entry. Reply: [`KvReply::Written`], false when `overwrite` is false
    /// and a live entry exists (which is then left as it is).
    Put {
        /// The namespace.
        namespace: String,
        /// The key in the namespace.
        key: String,
        /// The value.
        value: String,
        /// When the entry expires (ns); `None` keeps it until deleted.
        expires_at: Option<u64>,
        /// Whether to replace a live entry.
        overwrite: bool,
        /// The current time (ns).
        now: u64,
    },
    /// Removes an entry, if any. Reply: [`KvReply::Done`].
    Delete {
        /// The namespace.
        namespace: String,
        /// The key in the namespace.
        key: String,
    },
}

impl KvOp {
    /// The namespace the operation works in.
    pub fn namespace(&self) -> &str {
        match self {
            KvOp::Get { namespace, .. }
            | KvOp::Put { namespace, .. }
            | KvOp::Delete { namespace, .. } => namespace,
        }
    }

    /// The key the operation works on.
    pub fn key(&self) -> &str {
        match self {
            KvOp::Get { key, .. } | KvOp::Put { key, .. } | KvOp::Delete { key, .. } => key,
        }
    }
}

/// The reply to a [`KvOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvReply {
    /// The live value of the entry read, if any.
    Value(Option<String>),
    /// Whether the entry was written.
    Written(bool),
    /// The operation was done.
    Done,
}

/// An HTTP message as the flows see it: the request, or the response under construction.
#[derive(Debug, Clone)]
pub struct Message {
    /// The method (requests).
    pub method: Method,
    /// The normalised path (requests).
    pub path: String,
    /// The raw query, without `?`.
    pub query: Option<String>,
    /// The HTTP version.
    pub version: Version,
    /// The status (responses).
    pub status: StatusCode,
    /// A reason phrase other than the status's canonical one.
    pub reason: Option<String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The buffered body.
    pub body: Bytes,
}

impl Message {
    /// An empty response with `status`.
    pub fn response(status: StatusCode) -> Self {
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
