//! Resource-server checks: bearer tokens (RFC 6750, Apigee `VerifyAccessToken`) and API
//! keys (Apigee `VerifyAPIKey`), with product and scope authorization.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};

use crate::form::parse_form;
use crate::http_util::sanitize;
use crate::registry::{ApiProduct, App, ClientRecord, ClientRefusal, Developer, Registry};
use crate::scope::scope_contains;
use crate::secret::TokenHash;
use crate::server::OAuthServer;
use crate::store::{StoreOp, StoreReply, TokenStore};
use crate::token::{TokenKind, TokenRecord};

/// Whether a token needs any or all of the required scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScopeMatch {
    /// At least one required scope must be present (Apigee X wording; the default of a
    /// bare [`ApiCall`]).
    #[default]
    Any,
    /// Every required scope must be present (SAP wording).
    All,
}

/// Where a bearer token may be sent (RFC 6750 §2). The `Authorization` header is always
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BearerLocations {
    /// Form-encoded body parameter `access_token` (§2.2).
    pub form_body: bool,
    /// URI query parameter `access_token` (§2.3); off by default (logging risk, §5.3).
    pub query: bool,
}

/// The API call being authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall<'a> {
    /// The proxy's name.
    pub proxy: &'a str,
    /// `proxy.pathsuffix`.
    pub path_suffix: &'a str,
    /// The environment's name.
    pub environment: &'a str,
    /// Scopes the call requires (`<Scope>` of VerifyAccessToken); empty requires none.
    pub required_scopes: &'a [&'a str],
    /// Any or all of `required_scopes`.
    pub scope_match: ScopeMatch,
    /// Where bearer tokens are accepted.
    pub locations: BearerLocations,
    /// Current time, seconds since the epoch.
    pub now: u64,
}

/// Why a bearer token was refused. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No token in the request.
    #[error("no access token was sent")]
    MissingToken,
    /// The token was sent in more than one way, or the request is otherwise malformed.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The token does not have the b64token syntax.
    #[error("the access token is malformed")]
    MalformedToken,
    /// No such token.
    #[error("the access token is unknown")]
    UnknownToken,
    /// The token has expired.
    #[error("the access token expired")]
    Expired,
    /// The token was revoked.
    #[error("the access token was revoked")]
    Revoked,
    /// The token's app, credential or developer may no longer be used.
    #[error("the access token is not approved: {}", .0.description())]
    ClientNotApproved(ClientRefusal),
    /// None of the token's products covers this proxy, path and environment.
    #[error(
        "no api product of this token covers proxy {proxy}, path {path} in environment {environment}"
    )]
    NoProductMatch {
        /// The proxy.
        proxy: String,
        /// The path suffix.
        path: String,
        /// The environment.
        environment: String,
    },
    /// The token lacks a required scope.
    #[error("the access token lacks the required scope {required}")]
    InsufficientScope {
        /// The required scopes, space-separated.
        required: String,
    },
    /// The token store could not answer.
    #[error("the token store is unavailable")]
    StoreUnavailable,
}

impl VerifyError {
    /// HTTP status: 400, 401, 403 or 503.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 error code; `None` when no token was sent (§3: no error
    /// information then).
    pub fn rfc_error(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::StoreUnavailable => None,
            Self::BadRequest(_) => Some("invalid_request"),
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// The Apigee fault name (`fault.name`).
    pub fn fault_name(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::BadRequest(_) | Self::MalformedToken => "InvalidAccessToken",
            Self::UnknownToken => "invalid_access_token",
            Self::Expired => "access_token_expired",
            Self::Revoked
            | Self::ClientNotApproved(
                ClientRefusal::CredentialExpired | ClientRefusal::CredentialNotApproved,
            ) => "access_token_not_approved",
            Self::ClientNotApproved(ClientRefusal::AppNotApproved) => "app_not_approved",
            Self::ClientNotApproved(ClientRefusal::DeveloperInactive) => "DeveloperStatusNotActive",
            Self::NoProductMatch { .. } => "InvalidAPICallAsNoApiProductMatchFound",
            Self::InsufficientScope { .. } => "InsufficientScope",
            Self::StoreUnavailable => "FailedToResolveAccessToken",
        }
    }

    /// The Apigee error code (`detail.errorcode`).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::BadRequest(_) | Self::MalformedToken => {
                "oauth.v2.InvalidAccessToken"
            }
            Self::UnknownToken => "keymanagement.service.invalid_access_token",
            Self::Expired => "keymanagement.service.access_token_expired",
            Self::Revoked
            | Self::ClientNotApproved(
                ClientRefusal::CredentialExpired | ClientRefusal::CredentialNotApproved,
            ) => "keymanagement.service.access_token_not_approved",
            Self::ClientNotApproved(ClientRefusal::AppNotApproved) => {
                "keymanagement.service.invalid_client-app_not_approved"
            }
            Self::ClientNotApproved(ClientRefusal::DeveloperInactive) => {
                "keymanagement.service.DeveloperStatusNotActive"
            }
            Self::NoProductMatch { .. } => {
                "keymanagement.service.InvalidAPICallAsNoApiProductMatchFound"
            }
            Self::InsufficientScope { .. } => "steps.oauth.v2.InsufficientScope",
            Self::StoreUnavailable => "steps.oauth.v2.FailedToResolveAccessToken",
        }
    }

    /// Apigee's fixed `faultstring`.
    pub fn faultstring(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::BadRequest(_) | Self::MalformedToken => {
                "Invalid access token"
            }
            Self::UnknownToken => "Invalid Access Token",
            Self::Expired => "Access Token expired",
            Self::Revoked | Self::ClientNotApproved(_) => "Access Token not approved",
            Self::NoProductMatch { .. } => "Invalid API call as no apiproduct match found",
            Self::InsufficientScope { .. } => "Required scope(s) : not present",
            Self::StoreUnavailable => "Failed to resolve access token",
        }
    }

    /// The RFC 6750 §3 challenge: `Bearer realm="…"`, plus `error` and an
    /// `error_description` saying which check failed (and `scope` for 403).
    pub fn www_authenticate(&self, realm: &str) -> String {
        let mut v = format!("Bearer realm=\"{}\"", sanitize(realm));
        if let Some(code) = self.rfc_error() {
            v.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                sanitize(&self.to_string())
            ));
        }
        if let Self::InsufficientScope { required } = self {
            v.push_str(&format!(", scope=\"{}\"", sanitize(required)));
        }
        v
    }

    /// The error response: status, `WWW-Authenticate: Bearer …` and Apigee's fault body
    /// `{"fault":{"faultstring":…,"detail":{"errorcode":…}}}`.
    pub fn to_response(&self, realm: &str) -> Response<Vec<u8>> {
        let body = serde_json::json!({
            "fault": {"faultstring": self.faultstring(), "detail": {"errorcode": self.error_code()}}
        });
        let mut resp = Response::new(serde_json::to_vec(&body).unwrap_or_default());
        *resp.status_mut() = self.status();
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&self.www_authenticate(realm)) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// A client with the one of its approved products that covers a call. The product is
/// kept as its place in the client's list, which the client record holds for its whole
/// life: a verification takes no second reference count (an atomic update each way).
#[derive(Debug, Clone)]
struct Covered {
    client: Arc<ClientRecord>,
    product: usize,
}

impl Covered {
    /// The first of `names` (a token's products, in its order) that the client has
    /// approved and that covers `call`.
    fn named<'a>(
        client: Arc<ClientRecord>,
        mut names: impl Iterator<Item = &'a str>,
        call: &ApiCall<'_>,
    ) -> Option<Self> {
        let approved = client.approved_products();
        let product = names.find_map(|name| {
            let (i, p) = approved.iter().enumerate().find(|(_, p)| p.name == name)?;
            p.covers_call(call).then_some(i)
        })?;
        Some(Self { client, product })
    }

    /// The client's first approved product that covers `call`.
    fn first(client: Arc<ClientRecord>, call: &ApiCall<'_>) -> Option<Self> {
        let product = client
            .approved_products()
            .iter()
            .position(|p| p.covers_call(call))?;
        Some(Self { client, product })
    }

    fn product(&self) -> &ApiProduct {
        // The index was found in this very list, so the fallback is never taken.
        static NONE: std::sync::LazyLock<ApiProduct> =
            std::sync::LazyLock::new(|| ApiProduct::new(""));
        self.client
            .approved_products()
            .get(self.product)
            .map_or_else(|| &*NONE, |p| &**p)
    }
}

/// A verified bearer token: what flows see as variables.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    token: Arc<TokenRecord>,
    covered: Covered,
    expires_in: Option<u64>,
}

fn quota_vars(product: &ApiProduct, out: &mut Vec<(String, String)>) {
    out.push(("apiproduct.name".into(), product.name.clone()));
    if let Some(q) = &product.quota {
        out.push((
            "apiproduct.developer.quota.limit".into(),
            q.limit.to_string(),
        ));
        out.push((
            "apiproduct.developer.quota.interval".into(),
            q.interval.to_string(),
        ));
        out.push((
            "apiproduct.developer.quota.timeunit".into(),
            q.time_unit.as_str().into(),
        ));
    }
    for (k, v) in &product.attributes {
        out.push((format!("apiproduct.{k}"), v.clone()));
    }
}

fn app_vars(app: &App, developer: &Developer, products: String, out: &mut Vec<(String, String)>) {
    out.push(("developer.app.name".into(), app.name.clone()));
    out.push(("developer.app.id".into(), app.id.clone()));
    out.push(("app.name".into(), app.name.clone()));
    out.push(("app.id".into(), app.id.clone()));
    out.push(("app.status".into(), app.status.as_str().into()));
    out.push(("app.apiproducts".into(), products));
    for (k, v) in &app.attributes {
        out.push((format!("app.{k}"), v.clone()));
    }
    out.push(("developer.id".into(), developer.email.clone()));
    out.push(("developer.email".into(), developer.email.clone()));
    out.push((
        "developer.status".into(),
        match developer.status {
            crate::registry::DeveloperStatus::Active => "active",
            crate::registry::DeveloperStatus::Inactive => "inactive",
        }
        .into(),
    ));
}

impl VerifiedToken {
    /// The token record.
    pub fn token(&self) -> &Arc<TokenRecord> {
        &self.token
    }

    /// The token's credential, app and developer, as they are now.
    pub fn client(&self) -> &Arc<ClientRecord> {
        &self.covered.client
    }

    /// The first of the token's products that covers the call.
    pub fn product(&self) -> &ApiProduct {
        self.covered.product()
    }

    /// Seconds left; `None` never expires.
    pub fn expires_in(&self) -> Option<u64> {
        self.expires_in
    }

    /// Client id (consumer key).
    pub fn client_id(&self) -> &str {
        &self.token.client_id
    }

    /// App name.
    pub fn app_name(&self) -> &str {
        &self.client().app.name
    }

    /// Developer email.
    pub fn developer_email(&self) -> &str {
        &self.client().developer.email
    }

    /// Granted scope, space-separated.
    pub fn scope(&self) -> &str {
        &self.token.scope
    }

    /// The token's products.
    pub fn products(&self) -> impl Iterator<Item = &str> {
        self.token.product_names()
    }

    /// Flow variables as `(name, value)` pairs (spec/policies.md §3.3 VerifyAccessToken
    /// step 5).
    pub fn variables(&self) -> Vec<(String, String)> {
        let t = &self.token;
        let mut out = vec![
            ("client_id".to_owned(), t.client_id.to_string()),
            ("grant_type".to_owned(), t.grant_type.as_str().to_owned()),
            ("token_type".to_owned(), "BearerToken".to_owned()),
            (
                "issued_at".to_owned(),
                t.issued_at.saturating_mul(1000).to_string(),
            ),
            (
                "expires_in".to_owned(),
                self.expires_in
                    .map_or_else(|| "-1".to_owned(), |e| e.to_string()),
            ),
            ("status".to_owned(), "approved".to_owned()),
            ("scope".to_owned(), t.scope.to_string()),
        ];
        for (k, v) in t.attributes.iter() {
            out.push((format!("accesstoken.{k}"), v.clone()));
        }
        let products = self.products().collect::<Vec<_>>().join(",");
        app_vars(
            &self.client().app,
            &self.client().developer,
            products,
            &mut out,
        );
        quota_vars(self.product(), &mut out);
        out
    }
}

/// A suspended bearer verification, waiting for a [`StoreOp::GetToken`] reply.
#[derive(Debug)]
pub struct VerifyPending(());

/// The next step of a bearer verification.
#[derive(Debug)]
#[must_use]
pub enum VerifyStep {
    /// Finished.
    Done(Result<VerifiedToken, VerifyError>),
    /// Perform this lookup and pass the reply to [`OAuthServer::finish_verify`].
    NeedsStore(StoreOp, VerifyPending),
}

/// Whether `b` is one of RFC 6750's b64token characters before its `=` padding:
/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`. Written as range checks without
/// branches (letters folded to lower case; `-./0-9` is one range), so a block of bytes
/// compiles to a few vector compares.
fn is_b64token_char(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'-') < 13)
        | (b == b'+')
        | (b == b'_')
        | (b == b'~')
}

fn is_b64token_block(block: &[u8; 16]) -> bool {
    block.iter().fold(true, |ok, &b| ok & is_b64token_char(b))
}

/// Whether `t` is an RFC 6750 b64token (so also ASCII).
fn is_b64token(t: &[u8]) -> bool {
    let end = t.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body = t.get(..end).unwrap_or(&[]);
    // Whole blocks of sixteen, then the last sixteen bytes again (overlapping), so no
    // byte goes through a scalar tail; a shorter body is padded into one block.
    if body.len() < 16 {
        let mut block = [b'A'; 16];
        if let Some(head) = block.get_mut(..body.len()) {
            head.copy_from_slice(body);
        }
        return !body.is_empty() & is_b64token_block(&block);
    }
    let blocks = body.chunks_exact(16).fold(true, |ok, c| {
        ok & <&[u8; 16]>::try_from(c).is_ok_and(is_b64token_block)
    });
    blocks & body.last_chunk::<16>().is_some_and(is_b64token_block)
}

/// The token after an `Authorization: Bearer` scheme (in any letter case), spaces
/// trimmed (so possibly empty, which is a malformed token).
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") || rest.is_empty() {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let end = rest
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    rest.get(start..end)
}

/// Extracts the bearer token of a request (RFC 6750 §2): the `Authorization: Bearer`
/// header (scheme in any letter case) and, when enabled, the `access_token` form body
/// or query parameter. More than one method is `invalid_request`.
pub fn bearer_token<B: AsRef<[u8]>>(
    req: &Request<B>,
    locations: BearerLocations,
) -> Result<Cow<'_, str>, VerifyError> {
    // A b64token is ASCII, so the conversion cannot fail.
    Ok(match bearer_bytes(req, locations)? {
        Cow::Borrowed(b) => {
            Cow::Borrowed(std::str::from_utf8(b).map_err(|_| VerifyError::MalformedToken)?)
        }
        Cow::Owned(b) => Cow::Owned(String::from_utf8(b).map_err(|_| VerifyError::MalformedToken)?),
    })
}

/// [`bearer_token`] as bytes: the token is hashed as such, with no UTF-8 check.
fn bearer_bytes<B: AsRef<[u8]>>(
    req: &Request<B>,
    locations: BearerLocations,
) -> Result<Cow<'_, [u8]>, VerifyError> {
    let mut found: Option<Cow<'_, [u8]>> = None;
    let mut count = 0usize;
    for h in req.headers().get_all(AUTHORIZATION) {
        if let Some(token) = bearer_credentials(h.as_bytes()) {
            count += 1;
            found = Some(Cow::Borrowed(token));
        }
    }
    if locations.query
        && let Some(q) = req.uri().query()
    {
        let pairs = parse_form(q.as_bytes())
            .map_err(|_| VerifyError::BadRequest("the query is malformed"))?;
        for (n, v) in pairs {
            if n == "access_token" {
                count += 1;
                found = Some(Cow::Owned(v.into_bytes()));
            }
        }
    }
    if locations.form_body && req.method() != Method::GET {
        let is_form = req.headers().get(CONTENT_TYPE).is_some_and(|ct| {
            ct.as_bytes().split(|&b| b == b';').next().is_some_and(|m| {
                m.trim_ascii()
                    .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            })
        });
        let body = req.body().as_ref();
        if is_form
            && body.is_ascii()
            && let Ok(pairs) = parse_form(body)
        {
            for (n, v) in pairs {
                if n == "access_token" {
                    count += 1;
                    found = Some(Cow::Owned(v.into_bytes()));
                }
            }
        }
    }
    match (count, found) {
        (0, _) | (_, None) => Err(VerifyError::MissingToken),
        (1, Some(t)) if is_b64token(&t) => Ok(t),
        (1, Some(_)) => Err(VerifyError::MalformedToken),
        _ => Err(VerifyError::BadRequest(
            "the access token was sent in more than one way",
        )),
    }
}

/// A verified API key.
#[derive(Debug, Clone)]
pub struct VerifiedApiKey {
    covered: Covered,
}

impl VerifiedApiKey {
    /// The credential, app and developer.
    pub fn client(&self) -> &Arc<ClientRecord> {
        &self.covered.client
    }

    /// The first approved product covering the call.
    pub fn product(&self) -> &ApiProduct {
        self.covered.product()
    }

    /// Flow variables as `(name, value)` pairs (spec/policies.md §3.4 (c), without the
    /// `verifyapikey.{policy}.` prefix).
    pub fn variables(&self) -> Vec<(String, String)> {
        let client = self.client();
        let c = &client.credential;
        let mut out = vec![("client_id".to_owned(), c.key.clone())];
        if let Some(cb) = &client.app.callback_url {
            out.push(("redirection_uris".into(), cb.clone()));
        }
        let products = c.approved_products().collect::<Vec<_>>().join(",");
        app_vars(&client.app, &client.developer, products, &mut out);
        quota_vars(self.product(), &mut out);
        out
    }
}

/// Why an API key was refused (all 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// The key's variable did not resolve.
    #[error("no api key was sent")]
    FailedToResolve,
    /// No credential has this key.
    #[error("the api key is unknown")]
    InvalidApiKey,
    /// The credential, app or developer may not be used.
    #[error("{}", .0.description())]
    NotApproved(ClientRefusal),
    /// No approved product covers this proxy, path and environment.
    #[error(
        "no api product of this key covers proxy {proxy}, path {path} in environment {environment}"
    )]
    NoProductMatch {
        /// The proxy.
        proxy: String,
        /// The path suffix.
        path: String,
        /// The environment.
        environment: String,
    },
}

impl ApiKeyError {
    /// HTTP status (always 401).
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The Apigee fault name.
    pub fn fault_name(&self) -> &'static str {
        match self {
            Self::FailedToResolve => "FailedToResolveAPIKey",
            Self::InvalidApiKey => "InvalidApiKey",
            Self::NotApproved(ClientRefusal::CredentialExpired) => "consumer_key_expired",
            Self::NotApproved(ClientRefusal::CredentialNotApproved) => "ApiKeyNotApproved",
            // The name the reference page gives a revoked app's key.
            Self::NotApproved(ClientRefusal::AppNotApproved) => "invalid_client-app_not_approved",
            Self::NotApproved(ClientRefusal::DeveloperInactive) => "DeveloperStatusNotActive",
            Self::NoProductMatch { .. } => "InvalidApiKeyForGivenResource",
        }
    }

    /// The Apigee error code.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::FailedToResolve => "steps.oauth.v2.FailedToResolveAPIKey",
            Self::InvalidApiKey => "oauth.v2.InvalidApiKey",
            Self::NotApproved(ClientRefusal::CredentialExpired) => {
                "keymanagement.service.consumer_key_expired"
            }
            Self::NotApproved(ClientRefusal::CredentialNotApproved) => {
                "keymanagement.service.ApiKeyNotApproved"
            }
            Self::NotApproved(ClientRefusal::AppNotApproved) => {
                "keymanagement.service.invalid_client-app_not_approved"
            }
            Self::NotApproved(ClientRefusal::DeveloperInactive) => {
                "keymanagement.service.DeveloperStatusNotActive"
            }
            Self::NoProductMatch { .. } => "oauth.v2.InvalidApiKeyForGivenResource",
        }
    }

    /// Apigee's `faultstring`.
    pub fn faultstring(&self) -> String {
        match self {
            Self::InvalidApiKey => "Invalid ApiKey".to_owned(),
            Self::NoProductMatch { .. } => "Invalid ApiKey for given resource".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The first product named (a token's, in its order) that the client still has approved
/// and that covers the call.
impl ApiProduct {
    fn covers_call(&self, call: &ApiCall<'_>) -> bool {
        self.covers(call.proxy, call.path_suffix, call.environment)
    }
}

impl OAuthServer {
    /// Starts verifying the bearer token of `req` for `call`.
    pub fn verify_access_token<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        call: &ApiCall<'_>,
    ) -> VerifyStep {
        match bearer_bytes(req, call.locations) {
            Ok(token) => {
                VerifyStep::NeedsStore(StoreOp::GetToken(TokenHash::of(&token)), VerifyPending(()))
            }
            Err(e) => VerifyStep::Done(Err(e)),
        }
    }

    /// Finishes a bearer verification with the reply to its lookup.
    pub fn finish_verify(
        &self,
        _pending: VerifyPending,
        reply: StoreReply,
        call: &ApiCall<'_>,
    ) -> Result<VerifiedToken, VerifyError> {
        match reply {
            StoreReply::Token(t) => self.check_token(t, call),
            _ => Err(VerifyError::StoreUnavailable),
        }
    }

    /// Verifies a bearer token against a local store in one call.
    pub fn verify_access_token_inline<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        call: &ApiCall<'_>,
        store: &impl TokenStore,
    ) -> Result<VerifiedToken, VerifyError> {
        let token = bearer_bytes(req, call.locations)?;
        self.check_token(store.get_token(&TokenHash::of(&token)), call)
    }

    /// Verifies a token value (already extracted, e.g. from a flow variable) against a
    /// local store.
    pub fn verify_token_value(
        &self,
        token: &str,
        call: &ApiCall<'_>,
        store: &impl TokenStore,
    ) -> Result<VerifiedToken, VerifyError> {
        self.check_token(store.get_token(&TokenHash::of(token.as_bytes())), call)
    }

    /// Checks a looked-up token: exists, not revoked, not expired, client still approved,
    /// a product covers the call, required scopes present.
    pub fn check_token(
        &self,
        found: Option<Arc<TokenRecord>>,
        call: &ApiCall<'_>,
    ) -> Result<VerifiedToken, VerifyError> {
        let token = found
            .filter(|t| t.kind == TokenKind::Access)
            .ok_or(VerifyError::UnknownToken)?;
        if token.revoked_at.is_some() {
            return Err(VerifyError::Revoked);
        }
        if token.is_expired(call.now) {
            return Err(VerifyError::Expired);
        }
        let client =
            self.registry()
                .client(&token.client_id)
                .ok_or(VerifyError::ClientNotApproved(
                    ClientRefusal::CredentialNotApproved,
                ))?;
        Registry::check_client(&client, call.now).map_err(VerifyError::ClientNotApproved)?;
        let covered = Covered::named(client, token.product_names(), call).ok_or_else(|| {
            VerifyError::NoProductMatch {
                proxy: call.proxy.to_owned(),
                path: call.path_suffix.to_owned(),
                environment: call.environment.to_owned(),
            }
        })?;
        if !call.required_scopes.is_empty() {
            let ok = match call.scope_match {
                ScopeMatch::Any => call
                    .required_scopes
                    .iter()
                    .any(|s| scope_contains(&token.scope, s)),
                ScopeMatch::All => call
                    .required_scopes
                    .iter()
                    .all(|s| scope_contains(&token.scope, s)),
            };
            if !ok {
                return Err(VerifyError::InsufficientScope {
                    required: call.required_scopes.join(" "),
                });
            }
        }
        let expires_in = token.expires_in(call.now);
        Ok(VerifiedToken {
            token,
            covered,
            expires_in,
        })
    }

    /// Verifies an API key (Apigee `VerifyAPIKey`, spec/policies.md §6.2): the key exists,
    /// the credential is approved and not expired, the app approved, the developer
    /// active, and an approved product covers the call.
    pub fn verify_api_key(
        &self,
        key: Option<&str>,
        call: &ApiCall<'_>,
    ) -> Result<VerifiedApiKey, ApiKeyError> {
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or(ApiKeyError::FailedToResolve)?;
        let client = self
            .registry()
            .client(key)
            .ok_or(ApiKeyError::InvalidApiKey)?;
        Registry::check_client(&client, call.now).map_err(ApiKeyError::NotApproved)?;
        // A key may call through any of its approved products: the first that covers it.
        let covered = Covered::first(client, call).ok_or_else(|| ApiKeyError::NoProductMatch {
            proxy: call.proxy.to_owned(),
            path: call.path_suffix.to_owned(),
            environment: call.environment.to_owned(),
        })?;
        Ok(VerifiedApiKey { covered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64token_char_by_grammar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
    }

    /// RFC 6750's b64token, written out: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
    /// "+" / "/" ) *"="`.
    fn b64token_by_grammar(t: &[u8]) -> bool {
        let body_len = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
        body_len > 0 && t[..body_len].iter().all(|&b| b64token_char_by_grammar(b))
    }

    #[test]
    fn the_branch_free_character_check_follows_the_grammar() {
        for b in 0..=u8::MAX {
            assert_eq!(
                is_b64token_char(b),
                b64token_char_by_grammar(b),
                "byte {b:#04x}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_blocked_b64token_check_follows_the_grammar(
            t in proptest::collection::vec(
                proptest::sample::select(b"aZ09-._~+/= \"\x80\x00,@[`{".to_vec()), 0..70)
        ) {
            proptest::prop_assert_eq!(is_b64token(&t), b64token_by_grammar(&t));
        }
    }

    #[test]
    fn bearer_credentials_trim_spaces_only() {
        assert_eq!(bearer_credentials(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_credentials(b"bEARER   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer_credentials(b"Bearer \tabc"), Some(&b"\tabc"[..]));
        // Spaces only: a token that is there but empty (malformed, not missing).
        assert_eq!(bearer_credentials(b"Bearer    "), Some(&b""[..]));
        assert_eq!(bearer_credentials(b"Bearer "), None);
        assert_eq!(bearer_credentials(b"Basic abc"), None);
        assert_eq!(bearer_credentials(b"Bearerabc"), None);
    }
}
