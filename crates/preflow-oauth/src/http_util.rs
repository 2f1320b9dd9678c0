//! Request parsing and response building shared by the endpoints.

use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};

use crate::form::{DecodeError, DecodedBasic, basic_param, decode_basic, parse_form};

/// Error codes of RFC 6749 §5.2, RFC 7009 §2.2.1 and common practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `invalid_request` (400).
    InvalidRequest,
    /// `invalid_client` (401).
    InvalidClient,
    /// `invalid_grant` (400).
    InvalidGrant,
    /// `unauthorized_client` (400).
    UnauthorizedClient,
    /// `unsupported_grant_type` (400).
    UnsupportedGrantType,
    /// `invalid_scope` (400).
    InvalidScope,
    /// `server_error`.
    ServerError,
    /// `temporarily_unavailable` (503).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The registered code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// A rejection by the token, introspection or revocation endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointError {
    /// The error code.
    pub code: ErrorCode,
    /// Which check failed, in plain words.
    pub description: String,
    /// HTTP status.
    pub status: StatusCode,
    /// Seconds to put in `Retry-After`.
    pub retry_after: Option<u64>,
}

impl EndpointError {
    /// An error with the status RFC 6749 gives its code.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            code,
            description: description.into(),
            status,
            retry_after: None,
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub(crate) fn store_unavailable() -> Self {
        let mut e = Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the token store is unavailable",
        );
        e.retry_after = Some(1);
        e
    }
}

/// Shape of token-endpoint responses (DESIGN.md: compatibility is explicit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// RFC 6749 only (default).
    #[default]
    Rfc,
    /// RFC-typed bodies that also carry Apigee's extra members; errors carry both
    /// `error`/`error_description` and `ErrorCode`/`Error`.
    RfcPlusApigee,
    /// Apigee Edge bodies: string numbers, `token_type` `BearerToken`,
    /// `{"ErrorCode","Error"}` errors. Breaks RFC clients; opt in only for migrated
    /// consumers.
    Apigee,
}

/// Keeps only the characters RFC 6749 §5.2 allows in `error_description`
/// (%x20-21 / %x23-5B / %x5D-7E), so the text is also a valid quoted-string.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '?',
        })
        .collect()
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(bytes);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

pub(crate) fn empty_response(status: StatusCode) -> Response<Vec<u8>> {
    let mut resp = Response::new(Vec::new());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Renders an endpoint error (RFC 6749 §5.2) with `Cache-Control: no-store`,
/// `Pragma: no-cache`, `WWW-Authenticate: Basic` on 401, `Allow: POST` on 405 and
/// `Retry-After` when set.
pub(crate) fn error_response(
    err: &EndpointError,
    mode: ResponseMode,
    realm: &str,
) -> Response<Vec<u8>> {
    let description = sanitize(&err.description);
    let mut body = serde_json::Map::new();
    if mode != ResponseMode::Apigee {
        body.insert("error".into(), err.code.as_str().into());
        body.insert("error_description".into(), description.clone().into());
    }
    if mode != ResponseMode::Rfc {
        let apigee_text = match err.code {
            ErrorCode::InvalidClient if err.status == StatusCode::UNAUTHORIZED => {
                format!("ClientId is Invalid: {description}")
            }
            _ => description,
        };
        body.insert("ErrorCode".into(), err.code.as_str().into());
        body.insert("Error".into(), apigee_text.into());
    }
    let mut resp = json_response(err.status, &serde_json::Value::Object(body));
    let h = resp.headers_mut();
    if err.status == StatusCode::UNAUTHORIZED {
        let v = format!("Basic realm=\"{}\"", sanitize(realm));
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(WWW_AUTHENTICATE, v);
        }
    }
    if err.status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some(secs) = err.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Form parameters with empty values dropped (RFC 6749 §3.2) and repeats of known
/// parameters rejected.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn from_pairs(pairs: Vec<(String, String)>, known: &[&str]) -> Result<Self, EndpointError> {
        let kept: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(n, v)| !v.is_empty() && known.contains(&n.as_str()))
            .collect();
        for (i, (name, _)) in kept.iter().enumerate() {
            if kept.iter().skip(i + 1).any(|(n, _)| n == name) {
                return Err(EndpointError::invalid_request(format!(
                    "parameter {name} is repeated"
                )));
            }
        }
        Ok(Self(kept))
    }
}

/// How the client tried to authenticate.
#[derive(Debug, Clone)]
pub(crate) enum ClientAuth {
    /// `Authorization: Basic`.
    Basic(DecodedBasic),
    /// `client_id` and `client_secret` in the body.
    Post { client_id: String, secret: String },
    /// `client_id` alone: identification without authentication.
    IdOnly,
    /// Nothing.
    None,
}

/// A parsed request to a client-authenticated endpoint.
#[derive(Debug, Clone)]
pub(crate) struct ClientRequest {
    pub(crate) params: Params,
    pub(crate) query: Params,
    pub(crate) auth: ClientAuth,
}

/// Options of request parsing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseOptions<'a> {
    pub(crate) known: &'a [&'a str],
    pub(crate) allow_get: bool,
}

fn content_type_is_form(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or(&[]);
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

fn decode_err(what: &str, e: DecodeError) -> EndpointError {
    EndpointError::invalid_request(format!("the {what} is not valid form data: {e}"))
}

/// Parses method, content type, body, query and client authentication (RFC 6749 §2.3,
/// §3.2; spec/oauth.md §1 items 2-10).
pub(crate) fn parse_client_request<B: AsRef<[u8]>>(
    req: &Request<B>,
    opts: ParseOptions<'_>,
) -> Result<ClientRequest, EndpointError> {
    let is_get = req.method() == Method::GET;
    if req.method() != Method::POST && !(opts.allow_get && is_get) {
        let mut e = EndpointError::invalid_request("the method must be POST");
        e.status = StatusCode::METHOD_NOT_ALLOWED;
        return Err(e);
    }
    let query = match req.uri().query() {
        Some(q) => parse_form(q.as_bytes()).map_err(|e| decode_err("query", e))?,
        None => Vec::new(),
    };
    if query
        .iter()
        .any(|(n, v)| n == "client_secret" && !v.is_empty())
    {
        return Err(EndpointError::invalid_request(
            "client credentials must not be sent in the request uri",
        ));
    }
    let body = req.body().as_ref();
    let pairs = if is_get && body.is_empty() {
        Vec::new()
    } else {
        let mut cts = req.headers().get_all(CONTENT_TYPE).iter();
        match (cts.next(), cts.next()) {
            (Some(ct), None) if content_type_is_form(ct.as_bytes()) => {}
            _ => {
                return Err(EndpointError::invalid_request(
                    "the content type must be application/x-www-form-urlencoded",
                ));
            }
        }
        parse_form(body).map_err(|e| decode_err("request body", e))?
    };
    let params = Params::from_pairs(pairs, opts.known)?;
    let query = Params::from_pairs(query, opts.known)?;

    let mut auths = req.headers().get_all(AUTHORIZATION).iter();
    let header = match (auths.next(), auths.next()) {
        (_, Some(_)) => {
            return Err(EndpointError::invalid_request(
                "more than one authorization header",
            ));
        }
        (h, None) => h,
    };
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let auth = match header {
        Some(h) => {
            let Some(param) = basic_param(h.as_bytes()) else {
                return Err(EndpointError::new(
                    ErrorCode::InvalidClient,
                    "unsupported client authentication scheme; use Basic",
                ));
            };
            if body_secret.is_some() {
                return Err(EndpointError::invalid_request(
                    "the client used more than one authentication method (basic and client_secret)",
                ));
            }
            let decoded = decode_basic(param).map_err(|e| {
                EndpointError::new(
                    ErrorCode::InvalidClient,
                    format!("malformed basic credentials: {e}"),
                )
            })?;
            if let Some(id) = body_id {
                let same_strict = decoded.strict.as_ref().is_ok_and(|c| c.client_id == id);
                let same_raw = decoded.raw_readings().iter().any(|c| c.client_id == id);
                if !same_strict && !same_raw {
                    return Err(EndpointError::invalid_request(
                        "client_id in the body differs from the authenticated client",
                    ));
                }
            }
            ClientAuth::Basic(decoded)
        }
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => ClientAuth::Post {
                client_id: id.to_owned(),
                secret: secret.to_owned(),
            },
            (None, Some(_)) => {
                return Err(EndpointError::invalid_request(
                    "client_secret without client_id",
                ));
            }
            (Some(_), None) => ClientAuth::IdOnly,
            (None, None) => ClientAuth::None,
        },
    };
    Ok(ClientRequest {
        params,
        query,
        auth,
    })
}
