//! `<OAuthV2>`: the OAuth 2.0 authorization server (token endpoint, authorization codes,
//! invalidation) and access-token verification, over preflow-oauth.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use preflow_oauth::{OAuthServer, ResponseMode, ServerConfig, TokenHash, TokenStore};

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{
    Fault, Message, Outcome, Runtime, Settings, StateMode, StoreOp, StoreReply, Waiting,
};
use crate::xml::Element;

/// The `<Operation>` of an OAuthV2 policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthOperation {
    /// Issue an access token (token endpoint).
    GenerateAccessToken,
    /// Issue an access token for the implicit grant.
    GenerateAccessTokenImplicitGrant,
    /// Issue an authorization code.
    GenerateAuthorizationCode,
    /// Exchange a refresh token for a new access token.
    RefreshAccessToken,
    /// Check a bearer token on an API call.
    VerifyAccessToken,
    /// Revoke tokens.
    InvalidateToken,
    /// Re-approve revoked tokens.
    ValidateToken,
    /// Issue a JWT access token (Apigee X).
    GenerateJwtAccessToken,
    /// Verify a JWT access token (Apigee X).
    VerifyJwtAccessToken,
    /// Refresh a JWT access token (Apigee X).
    RefreshJwtAccessToken,
}

impl OAuthOperation {
    /// Parses an operation name as Apigee spells it.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "GenerateAccessToken" => Self::GenerateAccessToken,
            "GenerateAccessTokenImplicitGrant" => Self::GenerateAccessTokenImplicitGrant,
            "GenerateAuthorizationCode" => Self::GenerateAuthorizationCode,
            "RefreshAccessToken" => Self::RefreshAccessToken,
            "VerifyAccessToken" => Self::VerifyAccessToken,
            "InvalidateToken" => Self::InvalidateToken,
            "ValidateToken" => Self::ValidateToken,
            "GenerateJWTAccessToken" => Self::GenerateJwtAccessToken,
            "VerifyJWTAccessToken" => Self::VerifyJwtAccessToken,
            "RefreshJWTAccessToken" => Self::RefreshJwtAccessToken,
            _ => return None,
        })
    }
}

/// A custom token attribute: `<Attribute name ref display>value</Attribute>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenAttribute {
    /// Attribute name.
    pub name: String,
    /// Variable holding the value.
    pub reference: Option<String>,
    /// Literal value, used when the ref does not resolve.
    pub value: Option<String>,
    /// `display` (default true): false hides it from the token response.
    pub display: bool,
}

/// Which token a `<Tokens><Token>` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// `accesstoken`.
    AccessToken,
    /// `refreshtoken`.
    RefreshToken,
}

/// `<Token type cascade>variable</Token>` of InvalidateToken and ValidateToken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRef {
    /// The token type.
    pub token_type: TokenType,
    /// `cascade`: also act on the paired token.
    pub cascade: bool,
    /// The variable holding the token.
    pub variable: Option<String>,
}

/// `<OAuthV2>`: the OAuth 2.0 authorization server and token verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthV2 {
    /// `<Operation>`; `None` when missing or invalid (both errors).
    pub operation: Option<OAuthOperation>,
    /// `<GrantType>`: the variable holding the grant type.
    pub grant_type: Option<String>,
    /// `<SupportedGrantTypes><GrantType>`; empty means authorization_code and implicit.
    pub supported_grant_types: Vec<String>,
    /// `<ExpiresIn ref>` in milliseconds, `-1` never expires.
    pub expires_in: Setting<i64>,
    /// `<RefreshTokenExpiresIn ref>` in milliseconds.
    pub refresh_token_expires_in: Setting<i64>,
    /// `<GenerateResponse enabled>`: `None` when absent (only variables are set); an
    /// element without `enabled` counts as enabled.
    pub generate_response: Option<bool>,
    /// `<GenerateErrorResponse enabled>`.
    pub generate_error_response: Option<bool>,
    /// `<Scope>`: a variable holding requested scopes (generate), or the literal required
    /// scopes (verify).
    pub scope: Option<String>,
    /// `<Tokens><Token>`.
    pub tokens: Vec<TokenRef>,
    /// `<ExternalAuthorization>`, default false.
    pub external_authorization: bool,
    /// `<ExternalAccessToken>`.
    pub external_access_token: Option<String>,
    /// `<ExternalRefreshToken>`.
    pub external_refresh_token: Option<String>,
    /// `<ExternalAuthorizationCode>`.
    pub external_authorization_code: Option<String>,
    /// `<StoreToken>`, default false.
    pub store_token: bool,
    /// `<ReuseRefreshToken>`, default false.
    pub reuse_refresh_token: bool,
    /// `<Attributes><Attribute>`.
    pub attributes: Vec<TokenAttribute>,
    /// `<AccessToken>`: variable holding the token to verify (default the Authorization
    /// header).
    pub access_token: Option<String>,
    /// `<AccessTokenPrefix>`, default `Bearer`.
    pub access_token_prefix: Option<String>,
    /// `<ClientId>`, `<Code>`, `<RedirectUri>`, `<State>`, `<ResponseType>`,
    /// `<AppEndUser>`, `<UserName>`, `<PassWord>`, `<RefreshToken>`: variables where the
    /// request values are found, as `(element, variable)`.
    pub request_variables: Vec<(String, String)>,
    /// `<RFCCompliantRequestResponse>` (Apigee X), default false.
    pub rfc_compliant: bool,
}

const OAUTH_VARIABLE_ELEMENTS: &[&str] = &[
    "ClientId",
    "Code",
    "RedirectUri",
    "State",
    "ResponseType",
    "AppEndUser",
    "UserName",
    "PassWord",
    "RefreshToken",
];

fn parse(cx: &mut Cx<'_>, el: &Element) -> OAuthV2 {
    let mut known = vec![
        "Operation",
        "GrantType",
        "SupportedGrantTypes",
        "ExpiresIn",
        "RefreshTokenExpiresIn",
        "GenerateResponse",
        "GenerateErrorResponse",
        "Scope",
        "Tokens",
        "ExternalAuthorization",
        "ExternalAccessToken",
        "ExternalRefreshToken",
        "ExternalAuthorizationCode",
        "StoreToken",
        "ReuseRefreshToken",
        "Attributes",
        "AccessToken",
        "AccessTokenPrefix",
        "RFCCompliantRequestResponse",
        // JWT access tokens (Apigee X): recognised, not modelled.
        "Algorithm",
        "PublicKey",
        "SecretKey",
        "PrivateKey",
        "CacheExpiryInSeconds",
    ];
    known.extend_from_slice(OAUTH_VARIABLE_ELEMENTS);
    cx.known_policy(el, &known);
    let operation = match el.child("Operation") {
        None => {
            cx.warning_hint(
                el.offset,
                "OAuthV2 has no `<Operation>`; running it raises fault `OperationRequired`",
                "add for example `<Operation>GenerateAccessToken</Operation>`",
            );
            None
        }
        Some(op) => {
            let parsed = OAuthOperation::parse(op.text());
            if parsed.is_none() {
                cx.error_hint(
                    op.text_offset(),
                    format!("invalid OAuthV2 operation `{}`", op.text()),
                    "use GenerateAccessToken, GenerateAuthorizationCode, RefreshAccessToken, \
                     VerifyAccessToken, InvalidateToken or ValidateToken",
                );
            }
            parsed
        }
    };
    let ms = |t: &str| t.trim().parse::<i64>().ok();
    let expires_in = cx.setting(el.child("ExpiresIn"), "milliseconds", ms);
    let refresh_token_expires_in =
        cx.setting(el.child("RefreshTokenExpiresIn"), "milliseconds", ms);
    // `<GenerateResponse enabled="true"/>`, or the element's text as SAP's page writes
    // it (`<GenerateResponse>false</GenerateResponse>`).
    let switch = |cx: &mut Cx<'_>, g: &Element| match g.attr("enabled") {
        Some(_) => cx.attr_bool(g, "enabled", true),
        None => match g.text().trim() {
            "" => true,
            t => !t.eq_ignore_ascii_case("false"),
        },
    };
    let generate_response = el.child("GenerateResponse").map(|g| switch(cx, g));
    let generate_error_response = el.child("GenerateErrorResponse").map(|g| switch(cx, g));
    let mut tokens = Vec::new();
    if let Some(t) = el.child("Tokens") {
        for token in t.children_named("Token") {
            let token_type = match token.attr("type").map(str::trim) {
                Some("refreshtoken") => TokenType::RefreshToken,
                Some("accesstoken") | None => TokenType::AccessToken,
                Some(other) => {
                    cx.error(token.offset, format!("invalid token type `{other}`"));
                    TokenType::AccessToken
                }
            };
            tokens.push(TokenRef {
                token_type,
                cascade: cx.attr_bool(token, "cascade", false),
                variable: variable_of(token),
            });
        }
    }
    let mut attributes = Vec::new();
    if let Some(a) = el.child("Attributes") {
        for attr in a.children_named("Attribute") {
            attributes.push(TokenAttribute {
                name: attr.attr("name").unwrap_or_default().to_owned(),
                reference: ref_attr(attr),
                value: attr.non_empty_text().map(str::to_owned),
                display: cx.attr_bool(attr, "display", true),
            });
        }
    }
    let request_variables = OAUTH_VARIABLE_ELEMENTS
        .iter()
        .filter_map(|name| {
            el.child(name)
                .and_then(variable_of)
                .map(|v| ((*name).to_owned(), v))
        })
        .collect();
    OAuthV2 {
        operation,
        grant_type: el.child("GrantType").and_then(variable_of),
        supported_grant_types: el
            .child("SupportedGrantTypes")
            .map(|s| {
                s.children_named("GrantType")
                    .filter_map(|g| g.non_empty_text().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        expires_in,
        refresh_token_expires_in,
        generate_response,
        generate_error_response,
        scope: el.child("Scope").and_then(variable_of),
        tokens,
        external_authorization: cx.child_bool(el, "ExternalAuthorization", false),
        external_access_token: el.child("ExternalAccessToken").and_then(variable_of),
        external_refresh_token: el.child("ExternalRefreshToken").and_then(variable_of),
        external_authorization_code: el.child("ExternalAuthorizationCode").and_then(variable_of),
        store_token: cx.child_bool(el, "StoreToken", false),
        reuse_refresh_token: cx.child_bool(el, "ReuseRefreshToken", false),
        attributes,
        access_token: el.child("AccessToken").and_then(variable_of),
        access_token_prefix: cx.child_text(el, "AccessTokenPrefix"),
        request_variables,
        rfc_compliant: cx.child_bool(el, "RFCCompliantRequestResponse", false),
    }
}

// ---------------------------------------------------------------------------------------
// Running

#[derive(Debug)]
pub(crate) struct OAuth {
    name: String,
    server: OAuthServer,
    config: OAuthV2,
    scopes: Vec<String>,
    generate_response: bool,
    realm: String,
}

fn server_config(cfg: &OAuthV2, settings: &Settings) -> ServerConfig {
    let mut c = ServerConfig::default();
    let grants: Vec<preflow_oauth::GrantType> = cfg
        .supported_grant_types
        .iter()
        .filter_map(|g| preflow_oauth::GrantType::parse(g.trim()))
        .collect();
    if !grants.is_empty() {
        c.grant_types = grants;
        // Apigee issues refresh tokens with the authorization-code and password grants;
        // the server issues them when the refresh grant is on.
        let refreshable = c.grant_types.iter().any(|g| {
            matches!(
                g,
                preflow_oauth::GrantType::AuthorizationCode | preflow_oauth::GrantType::Password
            )
        });
        if refreshable || matches!(cfg.operation, Some(OAuthOperation::RefreshAccessToken)) {
            c.grant_types.push(preflow_oauth::GrantType::RefreshToken);
        }
    }
    if let Some(ms) = cfg.expires_in.value {
        c.access_token_lifetime = u64::try_from(ms).ok().map(|ms| (ms / 1000).max(1));
    }
    if let Some(ms) = cfg.refresh_token_expires_in.value {
        c.refresh_token_lifetime = u64::try_from(ms).ok().map(|ms| (ms / 1000).max(1));
    }
    c.reuse_refresh_token = cfg.reuse_refresh_token;
    c.response_mode = if cfg.rfc_compliant {
        ResponseMode::Rfc
    } else {
        settings.token_response
    };
    if cfg
        .grant_type
        .as_deref()
        .is_some_and(|g| g.starts_with("request.queryparam."))
    {
        c.grant_type_in_query = true;
    }
    c
}

/// The OAuthV2 policy type.
#[derive(Debug)]
pub(crate) struct OAuthV2Policy;

impl PolicyType for OAuthV2Policy {
    type Config = OAuthV2;
    type Compiled = Box<OAuth>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> OAuthV2 {
        parse(cx, el)
    }

    fn compile(o: &OAuthV2, cx: &BuildCx<'_>) -> Result<Box<OAuth>, CompileError> {
        let mut config = server_config(o, cx.settings);
        // A response that only fills variables carries Apigee's members too, so that
        // `oauthv2accesstoken.{policy}.client_id`, `.issued_at`, `.status`… are set
        // whatever shape the client would get.
        if !o.generate_response.unwrap_or(false) && config.response_mode == ResponseMode::Rfc {
            config.response_mode = ResponseMode::RfcPlusApigee;
        }
        // With remote state the throttle's counts live in the store, shared by every
        // instance on it.
        config.throttle_in_store = cx.state == StateMode::Remote;
        let server =
            OAuthServer::with_throttle(Arc::clone(cx.registry), config, Arc::clone(cx.throttle));
        let scopes = match o.operation {
            Some(OAuthOperation::VerifyAccessToken) => o
                .scope
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(Box::new(OAuth {
            name: cx.name.to_owned(),
            server,
            config: o.clone(),
            scopes,
            generate_response: o.generate_response.unwrap_or(false),
            // No realm is configurable: the challenge names the API proxy (never "null").
            realm: String::new(),
        }))
    }

    fn run<R: Runtime>(o: &Box<OAuth>, rt: &mut R) -> Outcome {
        run(rt, o)
    }

    fn resume<R: Runtime>(
        o: &Box<OAuth>,
        rt: &mut R,
        waiting: Waiting,
        reply: StoreReply,
    ) -> Outcome {
        resume(rt, o, waiting, reply)
    }

    fn sets_token_variables(o: &OAuthV2) -> bool {
        matches!(
            o.operation,
            Some(OAuthOperation::VerifyAccessToken | OAuthOperation::VerifyJwtAccessToken)
        )
    }

    fn reads_request_body(o: &OAuthV2) -> bool {
        // Verification reads a header or a named variable; the token endpoint and
        // authorization codes read the form.
        match o.operation {
            Some(
                OAuthOperation::VerifyAccessToken
                | OAuthOperation::ValidateToken
                | OAuthOperation::InvalidateToken,
            ) => o
                .access_token
                .iter()
                .chain(o.tokens.iter().filter_map(|t| t.variable.as_ref()))
                .any(|v| crate::vars::reads_request_body(v)),
            _ => true,
        }
    }

    fn max_request_body(o: &OAuthV2) -> Option<usize> {
        // The token endpoint and authorization codes read a form: no larger than the
        // form decoder takes, refused before it is read. Verification reads the API's
        // own request, whose body is the back end's business.
        match o.operation {
            Some(
                OAuthOperation::VerifyAccessToken
                | OAuthOperation::ValidateToken
                | OAuthOperation::InvalidateToken
                | OAuthOperation::VerifyJwtAccessToken,
            ) => None,
            _ => Some(preflow_oauth::form::MAX_BODY),
        }
    }
}

fn verify_fault(e: &preflow_oauth::VerifyError, realm: &str) -> Fault {
    challenge_fault(e, realm, None)
}

/// The fault of a failed verification with its RFC 6750 §3 challenge. A request without
/// credentials gets a bare challenge (§3.1: no error code); `hint` says where a token was
/// seen but not accepted. The realm is named only when one is configured.
fn challenge_fault(e: &preflow_oauth::VerifyError, realm: &str, hint: Option<&str>) -> Fault {
    use preflow_oauth::VerifyError;
    let faultstring = match (e, hint) {
        (VerifyError::InsufficientScope { required }, _) => {
            format!("{} (required: {required})", e.faultstring())
        }
        (_, Some(hint)) => format!("{}: {hint}", e.faultstring()),
        _ => e.faultstring().to_owned(),
    };
    let mut f = Fault::new(e.error_code(), e.status(), faultstring.clone()).named(e.fault_name());
    let mut params: Vec<String> = Vec::new();
    if !realm.is_empty() {
        params.push(format!("realm=\"{}\"", quoted(realm)));
    }
    let code = match (e, hint) {
        (VerifyError::MissingToken, None) => None,
        (VerifyError::MissingToken, Some(_)) => Some("invalid_request"),
        _ => Some(e.rfc_error().unwrap_or("invalid_token")),
    };
    if let Some(code) = code {
        params.push(format!("error=\"{code}\""));
        params.push(format!(
            "error_description=\"{}: {}\"",
            e.error_code(),
            quoted(&faultstring)
        ));
    }
    if let VerifyError::InsufficientScope { required } = e {
        params.push(format!("scope=\"{}\"", quoted(required)));
    }
    let challenge = if params.is_empty() {
        "Bearer".to_owned()
    } else {
        format!("Bearer {}", params.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        f = f.with_header(http::header::WWW_AUTHENTICATE, v);
    }
    f
}

/// The challenge's realm: the configured one, else the API proxy's name.
fn realm<R: Runtime>(rt: &R, o: &OAuth) -> String {
    if o.realm.is_empty() {
        rt.variable("apiproxy.name").unwrap_or_default()
    } else {
        o.realm.clone()
    }
}

/// `s` fit for a quoted-string: no quote, backslash or control character.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// The fault for a request whose Authorization header carries no token: it says so
/// when the token was sent as an `access_token` parameter instead (RFC 6750 §2.2–2.3
/// forms the gateway does not read).
fn missing_token_fault<R: Runtime>(rt: &R, o: &OAuth) -> Fault {
    let in_query = rt.query_params().iter().any(|(k, _)| k == "access_token");
    let in_body = !in_query && rt.form_params().iter().any(|(k, _)| k == "access_token");
    let hint = if in_query {
        Some(
            "access_token was sent in the query string; send it in the Authorization header (Bearer)",
        )
    } else if in_body {
        Some(
            "access_token was sent in the request body; send it in the Authorization header (Bearer)",
        )
    } else {
        None
    };
    challenge_fault(
        &preflow_oauth::VerifyError::MissingToken,
        &realm(rt, o),
        hint,
    )
}

fn finish_verify<R: Runtime>(
    rt: &mut R,
    o: &OAuth,
    found: Option<Arc<preflow_oauth::TokenRecord>>,
) -> Outcome {
    let scopes: Vec<&str> = o.scopes.iter().map(String::as_str).collect();
    let result = o.server.check_token(found, &super::api_call(rt, &scopes));
    match result {
        Ok(v) => {
            rt.state_mut().verified = Some(v);
            // The documented `access_token` flow variable: the token just verified. A
            // bearer token is read from its header when asked for (no copy here).
            let bearer = o.config.access_token.is_none()
                && o.config
                    .access_token_prefix
                    .as_deref()
                    .is_none_or(|p| p.eq_ignore_ascii_case("Bearer"));
            if !bearer && let Some(t) = presented_token(rt, o) {
                rt.set_variable("access_token", t);
            }
            Outcome::Continue
        }
        Err(e) => verify_failed(rt, o, verify_fault(&e, &realm(rt, o))),
    }
}

/// A failed verification: the fault, with `oauthV2.{policy}.fault.name` (prefixed
/// `keymanagement.service.` as the reference page shows for VerifyAccessToken) and
/// `oauthV2.{policy}.fault.cause`.
fn verify_failed<R: Runtime>(rt: &mut R, o: &OAuth, f: Fault) -> Outcome {
    set_fault_variables(
        rt,
        o,
        &format!("keymanagement.service.{}", f.name),
        &f.faultstring,
    );
    Outcome::Fault(f)
}

fn set_fault_variables<R: Runtime>(rt: &mut R, o: &OAuth, name: &str, cause: &str) {
    rt.set_variable(&format!("oauthV2.{}.fault.name", o.name), name.to_owned());
    rt.set_variable(&format!("oauthV2.{}.fault.cause", o.name), cause.to_owned());
}

/// The access token a VerifyAccessToken reads: the `<AccessToken>` variable, else the
/// `Authorization` header with the `<AccessTokenPrefix>` (default `Bearer`).
fn presented_token<R: Runtime>(rt: &R, o: &OAuth) -> Option<String> {
    if let Some(var) = &o.config.access_token {
        return rt.variable(var.trim()).filter(|t| !t.is_empty());
    }
    let prefix = o.config.access_token_prefix.as_deref().unwrap_or("Bearer");
    for v in rt.request().headers.get_all(http::header::AUTHORIZATION) {
        let Ok(s) = v.to_str() else { continue };
        let s = s.trim();
        if s.len() > prefix.len()
            && s.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            && s.get(prefix.len()..prefix.len() + 1) == Some(" ")
        {
            let t = s.get(prefix.len() + 1..).unwrap_or("").trim();
            if !t.is_empty() {
                return Some(t.to_owned());
            }
        }
    }
    None
}

/// Looks the token up (inline, or as a store step) and verifies it.
fn look_up_and_verify<R: Runtime>(rt: &mut R, o: &OAuth, hash: TokenHash) -> Outcome {
    match rt.env().state {
        StateMode::Local => {
            let found = rt.env().tokens.get_token(&hash);
            finish_verify(rt, o, found)
        }
        StateMode::Remote => Outcome::Store(
            StoreOp::Token(preflow_oauth::StoreOp::GetToken(hash)),
            Waiting::Verify,
        ),
    }
}

fn verify_access_token<R: Runtime>(rt: &mut R, o: &OAuth) -> Outcome {
    // Hash the token straight from the header when possible: no allocation.
    let hash = if o.config.access_token.is_none() {
        let prefix = o.config.access_token_prefix.as_deref().unwrap_or("Bearer");
        let mut found = None;
        if let Some(v) = rt.request().headers.get(http::header::AUTHORIZATION) {
            let b = v.as_bytes();
            if b.len() > prefix.len() + 1
                && b.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
                && b.get(prefix.len()) == Some(&b' ')
            {
                let t = b.get(prefix.len() + 1..).unwrap_or(&[]).trim_ascii();
                if !t.is_empty() {
                    found = Some(TokenHash::of(t));
                }
            }
        }
        found
    } else {
        presented_token(rt, o).map(|t| TokenHash::of(t.as_bytes()))
    };
    let Some(hash) = hash else {
        let f = missing_token_fault(rt, o);
        return verify_failed(rt, o, f);
    };
    look_up_and_verify(rt, o, hash)
}

fn fault_name_for_error(error: &str) -> (&'static str, &'static str) {
    match error {
        "invalid_client" => (
            "InvalidClientIdentifier",
            "steps.oauth.v2.InvalidClientIdentifier",
        ),
        "unsupported_grant_type" => (
            "UnSupportedGrantType",
            "steps.oauth.v2.UnSupportedGrantType",
        ),
        "invalid_grant" => ("invalid_grant", "steps.oauth.v2.invalid_grant"),
        "invalid_scope" => ("InvalidScope", "steps.oauth.v2.InvalidScope"),
        "unauthorized_client" => ("unauthorized_client", "steps.oauth.v2.unauthorized_client"),
        "temporarily_unavailable" => (
            "FailedToResolveToken",
            "steps.oauth.v2.FailedToResolveToken",
        ),
        "server_error" => ("server_error", "steps.oauth.v2.server_error"),
        _ => ("invalid_request", "steps.oauth.v2.invalid_request"),
    }
}

fn token_outcome<R: Runtime>(rt: &mut R, o: &OAuth, outcome: preflow_oauth::Outcome) -> Outcome {
    let resp = match outcome {
        preflow_oauth::Outcome::NeedsStore(op, pending) => match rt.env().state {
            StateMode::Local => {
                let reply = rt.env().tokens.execute(op);
                let next = o.server.resume(pending, reply);
                return token_outcome(rt, o, next);
            }
            StateMode::Remote => {
                return Outcome::Store(StoreOp::Token(op), Waiting::Token(pending));
            }
        },
        preflow_oauth::Outcome::Respond(r) => r,
    };
    let (parts, body) = resp.into_parts();
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let m = Message {
        method: http::Method::GET,
        path: String::new(),
        query: None,
        version: parts.version,
        status: parts.status,
        reason: None,
        headers: parts.headers,
        body: Bytes::from(body),
    };
    if m.status.is_success() || m.status.is_redirection() {
        if let Some(serde_json::Value::Object(map)) = &json {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                rt.set_variable(&format!("oauthv2accesstoken.{}.{k}", o.name), text);
            }
        }
        if o.generate_response {
            *rt.response_mut() = Some(m);
        }
        return Outcome::Continue;
    }
    let error = json
        .as_ref()
        .and_then(|j| j.get("error").or_else(|| j.get("ErrorCode")))
        .and_then(|e| e.as_str())
        .unwrap_or("invalid_request")
        .to_owned();
    let description = json
        .as_ref()
        .and_then(|j| j.get("error_description").or_else(|| j.get("Error")))
        .and_then(|e| e.as_str())
        .unwrap_or(&error)
        .to_owned();
    let (name, code) = fault_name_for_error(&error);
    let mut f = Fault::new(code, m.status, description).named(name);
    if o.generate_response || o.config.generate_error_response.unwrap_or(false) {
        f = f.with_response(m);
    }
    set_fault_variables(rt, o, name, &f.faultstring.clone());
    Outcome::Fault(f)
}

fn token_endpoint<R: Runtime>(rt: &mut R, o: &OAuth) -> Outcome {
    let mut req = http::Request::new(rt.request().body.clone());
    *req.method_mut() = rt.request().method.clone();
    *req.uri_mut() = rt.original_uri().clone();
    *req.headers_mut() = rt.request().headers.clone();
    let mut ctx = preflow_oauth::RequestContext::at(rt.now_secs());
    ctx.client_ip = Some(rt.client().addr.ip());
    for a in &o.config.attributes {
        let v = a
            .reference
            .as_deref()
            .and_then(|r| rt.variable(r))
            .or_else(|| a.value.clone());
        if let Some(v) = v {
            ctx.attributes.push((a.name.clone(), v));
        }
    }
    let outcome = o.server.token_request(&req, &ctx);
    token_outcome(rt, o, outcome)
}

fn run<R: Runtime>(rt: &mut R, o: &OAuth) -> Outcome {
    match o.config.operation {
        Some(OAuthOperation::VerifyAccessToken) => verify_access_token(rt, o),
        Some(OAuthOperation::GenerateAccessToken | OAuthOperation::RefreshAccessToken) => {
            token_endpoint(rt, o)
        }
        Some(OAuthOperation::InvalidateToken) => {
            let Some(t) = o.config.tokens.first() else {
                return Outcome::Continue;
            };
            let Some(value) = t.variable.as_deref().and_then(|v| rt.variable(v)) else {
                return Outcome::Fault(Fault::new(
                    "steps.oauth.v2.FailedToResolveToken",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Failed to resolve token",
                ));
            };
            let hash = TokenHash::of(value.as_bytes());
            let (op, waiting) = if t.cascade {
                (
                    preflow_oauth::StoreOp::GetToken(hash),
                    Waiting::Invalidate { cascade: true },
                )
            } else {
                (
                    preflow_oauth::StoreOp::RevokeToken {
                        hash,
                        at: rt.now_secs(),
                    },
                    Waiting::Done,
                )
            };
            run_token_op(rt, o, op, waiting)
        }
        Some(OAuthOperation::ValidateToken) => {
            let value = o
                .config
                .tokens
                .first()
                .and_then(|t| t.variable.as_deref())
                .and_then(|v| rt.variable(v))
                .or_else(|| presented_token(rt, o));
            let Some(value) = value else {
                return Outcome::Fault(verify_fault(
                    &preflow_oauth::VerifyError::MissingToken,
                    &realm(rt, o),
                ));
            };
            let hash = TokenHash::of(value.as_bytes());
            look_up_and_verify(rt, o, hash)
        }
        Some(OAuthOperation::GenerateAuthorizationCode) => authorization_code(rt, o),
        Some(other) => Outcome::Fault(Fault::new(
            "steps.oauth.v2.InvalidOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("OAuthV2 operation {other:?} is not supported"),
        )),
        None => Outcome::Fault(Fault::new(
            "steps.oauth.v2.OperationRequired",
            StatusCode::INTERNAL_SERVER_ERROR,
            "OAuthV2 policy has no Operation",
        )),
    }
}

fn run_token_op<R: Runtime>(
    rt: &mut R,
    o: &OAuth,
    op: preflow_oauth::StoreOp,
    waiting: Waiting,
) -> Outcome {
    match rt.env().state {
        StateMode::Remote => Outcome::Store(StoreOp::Token(op), waiting),
        StateMode::Local => {
            let mut op = op;
            let mut waiting = waiting;
            for _ in 0..4 {
                let reply = rt.env().tokens.execute(op);
                let r = resume(rt, o, waiting, StoreReply::Token(reply));
                match r {
                    Outcome::Store(StoreOp::Token(next), w) => {
                        op = next;
                        waiting = w;
                    }
                    other => return other,
                }
            }
            Outcome::Continue
        }
    }
}

fn authorization_code<R: Runtime>(rt: &mut R, o: &OAuth) -> Outcome {
    let var = |elem: &str, default: &str| -> Option<String> {
        let name = o
            .config
            .request_variables
            .iter()
            .find(|(k, _)| k == elem)
            .map_or(default, |(_, v)| v.as_str());
        rt.variable(name)
    };
    let req = preflow_oauth::CodeRequest {
        client_id: var("ClientId", "request.queryparam.client_id").unwrap_or_default(),
        redirect_uri: var("RedirectUri", "request.queryparam.redirect_uri"),
        scope: var("Scope", "request.queryparam.scope"),
        code_challenge: rt.variable("request.queryparam.code_challenge"),
        code_challenge_method: rt.variable("request.queryparam.code_challenge_method"),
        username: var("AppEndUser", "request.queryparam.username"),
    };
    let state = var("State", "request.queryparam.state");
    match o.server.issue_code(&req, rt.now_secs()) {
        Ok(issued) => {
            rt.set_variable(
                &format!("oauthv2authcode.{}.code", o.name),
                issued.code.clone(),
            );
            if o.generate_response {
                let base = req.redirect_uri.clone().or_else(|| {
                    rt.env()
                        .registry
                        .client(&req.client_id)
                        .and_then(|c| c.app.callback_url.clone())
                });
                let mut ser = form_urlencoded::Serializer::new(String::new());
                ser.append_pair("code", &issued.code);
                if let Some(s) = &state {
                    ser.append_pair("state", s);
                }
                let loc = match base {
                    Some(b) if b.contains('?') => format!("{b}&{}", ser.finish()),
                    Some(b) => format!("{b}?{}", ser.finish()),
                    None => format!("?{}", ser.finish()),
                };
                let mut m = Message::response(StatusCode::FOUND);
                if let Ok(v) = HeaderValue::from_str(&loc) {
                    m.headers.insert(http::header::LOCATION, v);
                }
                *rt.response_mut() = Some(m);
            }
            run_token_op(rt, o, issued.store_op, Waiting::Done)
        }
        Err(e) => {
            let (name, code) = fault_name_for_error(e.code.as_str());
            Outcome::Fault(Fault::new(code, e.status, e.description).named(name))
        }
    }
}

/// Resumes with the reply to a token-store operation.
fn resume<R: Runtime>(rt: &mut R, o: &OAuth, waiting: Waiting, reply: StoreReply) -> Outcome {
    match (waiting, reply) {
        (Waiting::Verify, StoreReply::Token(preflow_oauth::StoreReply::Token(found))) => {
            finish_verify(rt, o, found)
        }
        (Waiting::Verify, _) => {
            let e = preflow_oauth::VerifyError::StoreUnavailable;
            Outcome::Fault(verify_fault(&e, &realm(rt, o)))
        }
        (Waiting::Token(pending), StoreReply::Token(r)) => {
            let outcome = o.server.resume(pending, r);
            token_outcome(rt, o, outcome)
        }
        (Waiting::Token(pending), _) => {
            let outcome = o
                .server
                .resume(pending, preflow_oauth::StoreReply::Unavailable);
            token_outcome(rt, o, outcome)
        }
        (
            Waiting::Invalidate { cascade },
            StoreReply::Token(preflow_oauth::StoreReply::Token(found)),
        ) => match found {
            Some(rec) if cascade => Outcome::Store(
                StoreOp::Token(preflow_oauth::StoreOp::RevokeGrant {
                    grant: rec.grant_id,
                    at: rt.now_secs(),
                }),
                Waiting::Done,
            ),
            _ => Outcome::Continue,
        },
        (Waiting::Done, StoreReply::Token(_)) => Outcome::Continue,
        _ => Outcome::Fault(Fault::new(
            "steps.oauth.v2.FailedToResolveToken",
            StatusCode::SERVICE_UNAVAILABLE,
            "The token store is unavailable",
        )),
    }
}
