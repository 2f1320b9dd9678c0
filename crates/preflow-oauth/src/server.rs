//! The authorization server: token endpoint (RFC 6749), introspection (RFC 7662) and
//! revocation (RFC 7009), as sans-IO state machines over the token store.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::http_util::{
    ClientAuth, ClientRequest, EndpointError, ErrorCode, Params, ParseOptions, ResponseMode,
    empty_response, error_response, json_response, parse_client_request,
};
use crate::registry::{ClientRecord, Registry};
use crate::scope::{join_scope, parse_scope};
use crate::secret::{
    DEFAULT_TOKEN_BYTES, MAX_TOKEN_BYTES, MIN_TOKEN_BYTES, TokenHash, pkce_s256_matches,
    random_token,
};
use crate::store::{CodeTake, StoreOp, StoreReply, TokenStore};
use crate::throttle::{Lockout, Throttle, ThrottleConfig, ThrottleKeys};
use crate::token::{CodeRecord, GrantId, GrantType, TokenKind, TokenRecord};

/// Longest authorization-code lifetime (RFC 6749 §4.1.2 recommends ten minutes).
pub const MAX_CODE_LIFETIME: u64 = 600;

/// How many store round trips one request may take before it is abandoned.
const MAX_STEPS: usize = 8;

/// Settings of the authorization server. `Default` is secure: strict RFC 6749, 256-bit
/// tokens, one-hour access tokens, rotating refresh tokens, PKCE required, password grant
/// off, no raw-Basic fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Grant types the token endpoint accepts.
    pub grant_types: Vec<GrantType>,
    /// Random bytes per access token, refresh token and code (16 to 64; default 32).
    pub token_bytes: usize,
    /// Access-token lifetime in seconds; `None` never expires. Default 3600.
    pub access_token_lifetime: Option<u64>,
    /// Refresh-token lifetime in seconds; `None` never expires. Default 30 days.
    pub refresh_token_lifetime: Option<u64>,
    /// Apigee `ReuseRefreshToken`: keep the refresh token on refresh instead of rotating.
    pub reuse_refresh_token: bool,
    /// Authorization-code lifetime in seconds (at most 600).
    pub code_lifetime: u64,
    /// Whether authorization codes require PKCE S256.
    pub require_pkce: bool,
    /// Opt-in RFC 7617 fallback for legacy Basic senders (spec/oauth.md §1a step 5).
    pub raw_basic_fallback: bool,
    /// Response shape.
    pub response_mode: ResponseMode,
    /// Apigee compatibility: accept GET at the token endpoint.
    pub allow_get: bool,
    /// Apigee compatibility: read `grant_type` from the query when the body has none.
    pub grant_type_in_query: bool,
    /// Realm of `WWW-Authenticate` challenges.
    pub realm: String,
    /// Brute-force limits.
    pub throttle: ThrottleConfig,
    /// Count failed client authentications in the store ([`StoreOp::ThrottleCheck`]
    /// before the secret is checked, [`StoreOp::ThrottleFail`] or
    /// [`StoreOp::ThrottleSuccess`] after), so that every instance on a shared store
    /// counts together, instead of in this process's [`Throttle`]. Keys stay keyed
    /// digests under the throttle's MAC key, which the instances must share
    /// ([`Throttle::with_key`]). Default false.
    pub throttle_in_store: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grant_types: vec![
                GrantType::ClientCredentials,
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
            ],
            token_bytes: DEFAULT_TOKEN_BYTES,
            access_token_lifetime: Some(3600),
            refresh_token_lifetime: Some(30 * 24 * 3600),
            reuse_refresh_token: false,
            code_lifetime: MAX_CODE_LIFETIME,
            require_pkce: true,
            raw_basic_fallback: false,
            response_mode: ResponseMode::Rfc,
            allow_get: false,
            grant_type_in_query: false,
            realm: "oauth".to_owned(),
            throttle: ThrottleConfig::default(),
            throttle_in_store: false,
        }
    }
}

impl ServerConfig {
    /// Sets the access-token lifetime from an Apigee `<ExpiresIn>` value, which is in
    /// milliseconds with `-1` meaning "never expires" (other negative values are treated
    /// the same). Sub-second remainders round up to a whole second.
    pub fn with_apigee_expires_in(mut self, millis: i64) -> Self {
        self.access_token_lifetime = u64::try_from(millis).ok().map(|ms| ms.div_ceil(1000));
        self
    }

    /// Sets the refresh-token lifetime from an Apigee `<RefreshTokenExpiresIn>` value
    /// (milliseconds, `-1` never expires).
    pub fn with_apigee_refresh_expires_in(mut self, millis: i64) -> Self {
        self.refresh_token_lifetime = u64::try_from(millis).ok().map(|ms| ms.div_ceil(1000));
        self
    }
}

/// What the host knows about a request besides the request itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Current time, seconds since the epoch.
    pub now: u64,
    /// The client's address, for brute-force throttling.
    pub client_ip: Option<IpAddr>,
    /// Custom attributes to bind to issued tokens (Apigee `<Attributes>`).
    pub attributes: Vec<(String, String)>,
}

impl RequestContext {
    /// A context at `now` with no address and no attributes.
    pub fn at(now: u64) -> Self {
        Self {
            now,
            ..Self::default()
        }
    }
}

/// The next step of an endpoint.
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// Send this response.
    Respond(Response<Vec<u8>>),
    /// Perform this store operation and pass its reply to [`OAuthServer::resume`].
    NeedsStore(StoreOp, Pending),
}

impl Outcome {
    /// Drives the outcome to a response, performing store operations inline on a local
    /// store such as [`crate::MemoryStore`].
    pub fn run(self, server: &OAuthServer, store: &impl TokenStore) -> Response<Vec<u8>> {
        let mut outcome = self;
        for _ in 0..MAX_STEPS {
            match outcome {
                Self::Respond(r) => return r,
                Self::NeedsStore(op, pending) => {
                    outcome = server.resume(pending, store.execute(op))
                }
            }
        }
        match outcome {
            Self::Respond(r) => r,
            Self::NeedsStore(..) => server.error(&EndpointError::new(
                ErrorCode::ServerError,
                "too many store operations",
            )),
        }
    }
}

/// A suspended endpoint, waiting for the reply to a [`StoreOp`]. It owns everything it
/// needs, so it can be moved across tasks while a remote store works.
#[derive(Debug)]
pub struct Pending(Box<State>);

impl Pending {
    fn new(state: State) -> Self {
        Self(Box::new(state))
    }
}

#[derive(Debug)]
enum State {
    /// The throttle entries of a client authentication were read (store-kept throttle):
    /// check the secret, then go on with `next`.
    Authenticate {
        attempt: Attempt,
        ctx: RequestContext,
        next: Next,
    },
    /// A throttle count was written: go on whatever the reply (a count the store missed
    /// must not turn a decided answer into an error).
    Chain(Box<Outcome>),
    /// Run the remaining operations, then respond.
    Then {
        remaining: Vec<StoreOp>,
        response: Response<Vec<u8>>,
    },
    /// An authorization code was taken.
    Code {
        client: Arc<ClientRecord>,
        redirect_uri: Option<String>,
        verifier: Option<String>,
        ctx: RequestContext,
    },
    /// A refresh token was looked up.
    Refresh {
        client: Arc<ClientRecord>,
        scope: Option<String>,
        presented: String,
        ctx: RequestContext,
    },
    /// A token was looked up for introspection by `client_id`, which may see other
    /// clients' tokens when `any`.
    Introspect {
        client_id: String,
        any: bool,
        now: u64,
    },
    /// A token was looked up for revocation.
    Revoke {
        client_id: String,
        hash: TokenHash,
        now: u64,
    },
}

/// A client authentication, parsed: the (id, secret) readings to try and its throttle keys.
#[derive(Clone)]
struct Attempt {
    candidates: Vec<(String, String)>,
    try_count: usize,
    via_post: bool,
    strict_ok: bool,
    keys: ThrottleKeys,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Attempt")
            .field("candidates", &self.candidates.len())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What a request does once its client is authenticated.
enum Next {
    Token { params: Params, grant: GrantType },
    Introspect { token: String },
    Revoke { token: String },
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the parameters (secrets, passwords) or the token.
        match self {
            Next::Token { grant, .. } => write!(f, "Token({})", grant.as_str()),
            Next::Introspect { .. } => f.write_str("Introspect"),
            Next::Revoke { .. } => f.write_str("Revoke"),
        }
    }
}

const TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "username",
    "password",
    "client_id",
    "client_secret",
];

const TOKEN_ADMIN_PARAMS: &[&str] = &["token", "token_type_hint", "client_id", "client_secret"];

/// An authorization request already approved by the resource owner, from which the
/// server issues a code (Apigee `GenerateAuthorizationCode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    /// The client.
    pub client_id: String,
    /// The redirect URI; must equal the app's callback URL when the app has one.
    pub redirect_uri: Option<String>,
    /// Requested scope (space-separated); `None` grants all the client's product scopes.
    pub scope: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// PKCE method; only `S256` is accepted.
    pub code_challenge_method: Option<String>,
    /// The resource owner who approved.
    pub username: Option<String>,
}

/// An issued authorization code and the store operation that saves it.
#[derive(Debug)]
pub struct IssuedCode {
    /// The code, to send to the redirect URI. Never stored.
    pub code: String,
    /// Perform this to store the code's record.
    pub store_op: StoreOp,
}

/// The OAuth 2.0 authorization server and resource-server checks over one registry.
#[derive(Debug)]
pub struct OAuthServer {
    registry: Arc<Registry>,
    config: ServerConfig,
    throttle: Arc<Throttle>,
}

impl OAuthServer {
    /// A server over `registry` with `config`.
    pub fn new(registry: Arc<Registry>, config: ServerConfig) -> Self {
        let throttle = Arc::new(Throttle::new(config.throttle));
        Self::with_throttle(registry, config, throttle)
    }

    /// A server over `registry` with `config` counting failed client authentications in
    /// `throttle`, which several servers (e.g. every token policy of a gateway) may
    /// share, so that a guesser gets its free failures once, not once per server. The
    /// throttle's own limits apply (`config.throttle` is not used).
    pub fn with_throttle(
        registry: Arc<Registry>,
        config: ServerConfig,
        throttle: Arc<Throttle>,
    ) -> Self {
        Self {
            registry,
            config,
            throttle,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The brute-force throttle (its state is observable).
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    pub(crate) fn error(&self, err: &EndpointError) -> Response<Vec<u8>> {
        error_response(err, self.config.response_mode, &self.config.realm)
    }

    fn fail(&self, err: EndpointError) -> Outcome {
        Outcome::Respond(self.error(&err))
    }

    /// A store answered an operation with a reply of another kind: a store bug, answered
    /// as a server error.
    fn unexpected_reply(&self) -> Outcome {
        self.fail(EndpointError::new(
            ErrorCode::ServerError,
            "unexpected store reply",
        ))
    }

    fn token_bytes(&self) -> usize {
        self.config
            .token_bytes
            .clamp(MIN_TOKEN_BYTES, MAX_TOKEN_BYTES)
    }

    /// Parses a client authentication (RFC 6749 §2.3, spec/oauth.md §1a) into the
    /// readings to try and the throttle keys.
    fn attempt(&self, auth: &ClientAuth, ctx: &RequestContext) -> Result<Attempt, EndpointError> {
        let (candidates, via_post) = match auth {
            ClientAuth::None => {
                return Err(EndpointError::new(
                    ErrorCode::InvalidClient,
                    "client authentication is required",
                ));
            }
            ClientAuth::IdOnly => {
                return Err(EndpointError::new(
                    ErrorCode::InvalidClient,
                    "client authentication is required: client_id was sent without a secret",
                ));
            }
            ClientAuth::Post { client_id, secret } => {
                (vec![(client_id.clone(), secret.clone())], true)
            }
            ClientAuth::Basic(decoded) => {
                let mut c: Vec<(String, String)> = Vec::new();
                if let Ok(s) = &decoded.strict {
                    c.push((s.client_id.clone(), s.secret.clone()));
                }
                if self.config.raw_basic_fallback || c.is_empty() {
                    // Without the fallback the raw readings only name the client for
                    // throttling; they are not tried.
                    for r in decoded.raw_readings() {
                        c.push((r.client_id, r.secret));
                    }
                }
                (c, false)
            }
        };
        let strict_ok = match auth {
            ClientAuth::Basic(d) => d.strict.is_ok(),
            _ => true,
        };
        let try_count = if self.config.raw_basic_fallback || via_post {
            candidates.len()
        } else if strict_ok {
            1
        } else {
            0
        };
        // The first reading names the client for throttling; a request naming none
        // counts under the empty id.
        let throttle_id = candidates.first().map_or("", |(id, _)| id.as_str());
        let keys = self.throttle.keys(throttle_id, ctx.client_ip);
        Ok(Attempt {
            candidates,
            try_count,
            via_post,
            strict_ok,
            keys,
        })
    }

    fn lockout_error(lock: Lockout) -> EndpointError {
        // Answered without checking the secret, whether or not the id exists.
        let mut e = EndpointError::new(
            ErrorCode::InvalidClient,
            format!(
                "too many failed client authentications; retry in {} seconds",
                lock.retry_after()
            ),
        );
        e.status = StatusCode::TOO_MANY_REQUESTS;
        e.retry_after = Some(lock.retry_after());
        e
    }

    /// Checks the secret of an attempt that may go ahead: the client, or the error of a
    /// failed authentication (which the caller counts).
    fn verify_secret(&self, a: &Attempt) -> Result<Arc<ClientRecord>, EndpointError> {
        for (id, secret) in a.candidates.iter().take(a.try_count) {
            let client = self.registry.client(id);
            match client {
                Some(client) if client.credential.secret.verify(secret.as_bytes()) => {
                    return Ok(client);
                }
                // Every rejection does the same work, whether the id exists and however
                // its secret is stored.
                other => self.registry.pad_rejection(
                    other.as_ref().map(|c| &c.credential.secret),
                    secret.as_bytes(),
                ),
            }
        }
        let why = if a.strict_ok || self.config.raw_basic_fallback {
            "client authentication failed: unknown client or wrong secret"
        } else {
            "client authentication failed: the basic credentials are not form-urlencoded per rfc 6749 section 2.3.1"
        };
        Err(EndpointError::new(ErrorCode::InvalidClient, why))
    }

    /// The checks after the secret matched.
    fn admit(
        &self,
        a: &Attempt,
        client: Arc<ClientRecord>,
        ctx: &RequestContext,
    ) -> Result<Arc<ClientRecord>, EndpointError> {
        if a.via_post && !client.app.allow_client_secret_post {
            return Err(EndpointError::new(
                ErrorCode::InvalidClient,
                "this client may not authenticate with client_secret_post; use basic",
            ));
        }
        Registry::check_client(&client, ctx.now)
            .map_err(|r| EndpointError::new(ErrorCode::InvalidClient, r.description()))?;
        Ok(client)
    }

    /// Authenticates the client of a parsed request with the in-process throttle.
    fn authenticate(
        &self,
        auth: &ClientAuth,
        ctx: &RequestContext,
    ) -> Result<Arc<ClientRecord>, EndpointError> {
        let a = self.attempt(auth, ctx)?;
        if let Err(lock) = self.throttle.check(&a.keys, ctx.now) {
            return Err(Self::lockout_error(lock));
        }
        let client = match self.verify_secret(&a) {
            Ok(client) => client,
            Err(e) => {
                self.throttle.record_failure(&a.keys, ctx.now);
                return Err(e);
            }
        };
        self.throttle.record_success(&a.keys);
        self.admit(&a, client, ctx)
    }

    /// With the store-kept throttle: asks for the attempt's throttle entries, then
    /// continues in [`State::Authenticate`].
    fn authenticate_in_store(
        &self,
        auth: &ClientAuth,
        ctx: &RequestContext,
        next: Next,
    ) -> Result<Outcome, EndpointError> {
        let attempt = self.attempt(auth, ctx)?;
        Ok(Outcome::NeedsStore(
            StoreOp::ThrottleCheck {
                keys: attempt.keys,
                now: ctx.now,
            },
            Pending::new(State::Authenticate {
                attempt,
                ctx: ctx.clone(),
                next,
            }),
        ))
    }

    /// Counts a failure in the store, then answers `e`.
    fn fail_counted(&self, keys: ThrottleKeys, now: u64, e: &EndpointError) -> Outcome {
        Outcome::NeedsStore(
            StoreOp::ThrottleFail {
                keys,
                now,
                config: *self.throttle.config(),
            },
            Pending::new(State::Chain(Box::new(Outcome::Respond(self.error(e))))),
        )
    }

    /// The reply to [`StoreOp::ThrottleCheck`]: refuse a waiting attempt, else check the
    /// secret, count the result and go on with `next`.
    fn after_throttle_check(
        &self,
        attempt: Attempt,
        ctx: RequestContext,
        next: Next,
        reply: StoreReply,
    ) -> Outcome {
        match reply {
            StoreReply::Throttle(None) => {}
            StoreReply::Throttle(Some(lock)) => return self.fail(Self::lockout_error(lock)),
            StoreReply::Unavailable => return self.fail(EndpointError::store_unavailable()),
            _ => return self.unexpected_reply(),
        }
        let client = match self.verify_secret(&attempt) {
            Ok(client) => client,
            Err(e) => return self.fail_counted(attempt.keys, ctx.now, &e),
        };
        let then = match self.admit(&attempt, client, &ctx) {
            Ok(client) => self.next(client, next, &ctx),
            Err(e) => self.fail(e),
        };
        Outcome::NeedsStore(
            StoreOp::ThrottleSuccess(attempt.keys),
            Pending::new(State::Chain(Box::new(then))),
        )
    }

    /// What an authenticated request does.
    fn next(&self, client: Arc<ClientRecord>, next: Next, ctx: &RequestContext) -> Outcome {
        let result = match next {
            Next::Token { params, grant } => self.grant(client, grant, &params, ctx),
            Next::Introspect { token } => Ok(self.introspect(&token, &client, ctx)),
            Next::Revoke { token } => Ok(self.revoke(&token, &client, ctx)),
        };
        result.unwrap_or_else(|e| self.fail(e))
    }

    /// Handles a token request (RFC 6749 §3.2, §4, §6). `req` carries the head and the
    /// whole body.
    pub fn token_request<B: AsRef<[u8]>>(&self, req: &Request<B>, ctx: &RequestContext) -> Outcome {
        match self.token_request_inner(req, ctx) {
            Ok(o) => o,
            Err(e) => self.fail(e),
        }
    }

    fn token_request_inner<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        ctx: &RequestContext,
    ) -> Result<Outcome, EndpointError> {
        let ClientRequest {
            params,
            query,
            auth,
        } = parse_client_request(
            req,
            ParseOptions {
                known: TOKEN_PARAMS,
                allow_get: self.config.allow_get,
            },
        )?;
        let grant = params
            .get("grant_type")
            .or_else(|| {
                if self.config.grant_type_in_query {
                    query.get("grant_type")
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                let missing = if self.config.response_mode == ResponseMode::Apigee {
                    "Required param : grant_type"
                } else {
                    "missing required parameter grant_type"
                };
                if query.get("grant_type").is_some() {
                    // The SAP tutorials put it in the query: say where it was seen.
                    EndpointError::invalid_request(format!(
                        "{missing} (grant_type was sent in the query string: send it in the \
                         form body, or set <GrantType>request.queryparam.grant_type</GrantType> \
                         in the OAuthV2 policy)"
                    ))
                } else {
                    EndpointError::invalid_request(missing)
                }
            })?;
        let grant = GrantType::parse(grant)
            .filter(|g| self.config.grant_types.contains(g))
            .ok_or_else(|| {
                EndpointError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant type {grant} is not supported"),
                )
            })?;
        if self.config.throttle_in_store {
            return self.authenticate_in_store(&auth, ctx, Next::Token { params, grant });
        }
        let client = self.authenticate(&auth, ctx)?;
        self.grant(client, grant, &params, ctx)
    }

    /// A token request of an authenticated client.
    fn grant(
        &self,
        client: Arc<ClientRecord>,
        grant: GrantType,
        params: &Params,
        ctx: &RequestContext,
    ) -> Result<Outcome, EndpointError> {
        if let Some(allowed) = &client.app.grant_types
            && !allowed.contains(&grant)
        {
            return Err(EndpointError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use the {} grant", grant.as_str()),
            ));
        }
        match grant {
            GrantType::ClientCredentials => {
                let scope = self.grant_scope(&client, params.get("scope"))?;
                let issued = self.issue(
                    &client,
                    grant,
                    scope,
                    None,
                    GrantId::random(),
                    0,
                    ctx,
                    false,
                );
                Ok(issued)
            }
            GrantType::Password => {
                let username = params.get("username").ok_or_else(|| {
                    EndpointError::invalid_request("missing required parameter username")
                })?;
                let password = params.get("password").ok_or_else(|| {
                    EndpointError::invalid_request("missing required parameter password")
                })?;
                if !self.registry.verify_resource_owner(username, password) {
                    let keys = self.throttle.keys(&client.credential.key, ctx.client_ip);
                    let e = EndpointError::new(
                        ErrorCode::InvalidGrant,
                        "the resource owner credentials are invalid",
                    );
                    if self.config.throttle_in_store {
                        return Ok(self.fail_counted(keys, ctx.now, &e));
                    }
                    self.throttle.record_failure(&keys, ctx.now);
                    return Err(e);
                }
                let scope = self.grant_scope(&client, params.get("scope"))?;
                Ok(self.issue(
                    &client,
                    grant,
                    scope,
                    Some(username.to_owned()),
                    GrantId::random(),
                    0,
                    ctx,
                    true,
                ))
            }
            GrantType::AuthorizationCode => {
                let code = params.get("code").ok_or_else(|| {
                    EndpointError::invalid_request("missing required parameter code")
                })?;
                Ok(Outcome::NeedsStore(
                    StoreOp::TakeCode(TokenHash::of(code.as_bytes())),
                    Pending::new(State::Code {
                        client,
                        redirect_uri: params.get("redirect_uri").map(str::to_owned),
                        verifier: params.get("code_verifier").map(str::to_owned),
                        ctx: ctx.clone(),
                    }),
                ))
            }
            GrantType::RefreshToken => {
                let presented = params.get("refresh_token").ok_or_else(|| {
                    EndpointError::invalid_request("missing required parameter refresh_token")
                })?;
                Ok(Outcome::NeedsStore(
                    StoreOp::GetToken(TokenHash::of(presented.as_bytes())),
                    Pending::new(State::Refresh {
                        client,
                        scope: params.get("scope").map(str::to_owned),
                        presented: presented.to_owned(),
                        ctx: ctx.clone(),
                    }),
                ))
            }
        }
    }

    /// The union of the scopes of the client's approved products.
    fn product_scopes(&self, client: &ClientRecord) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in client.approved_products() {
            for s in &p.scopes {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Scope of a new grant: the requested scopes, each of which must be granted by one of
    /// the client's approved products; with no request, all of them (documented default,
    /// as Apigee does).
    fn grant_scope(
        &self,
        client: &ClientRecord,
        requested: Option<&str>,
    ) -> Result<String, EndpointError> {
        let available = self.product_scopes(client);
        match requested {
            None => Ok(join_scope(&available)),
            Some(req) => {
                let wanted = parse_scope(req).ok_or_else(|| {
                    EndpointError::new(ErrorCode::InvalidScope, "the scope parameter is malformed")
                })?;
                if let Some(missing) = wanted.iter().find(|w| !available.contains(w)) {
                    return Err(EndpointError::new(
                        ErrorCode::InvalidScope,
                        format!(
                            "scope {missing} is not granted to this client by any of its api products"
                        ),
                    ));
                }
                Ok(join_scope(&wanted))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        kind: TokenKind,
        client: &ClientRecord,
        grant: GrantType,
        scope: &str,
        username: Option<&str>,
        grant_id: GrantId,
        refresh_count: u32,
        ctx: &RequestContext,
        lifetime: Option<u64>,
    ) -> TokenRecord {
        let products: Vec<Arc<str>> = client
            .credential
            .approved_products()
            .map(Arc::from)
            .collect();
        TokenRecord {
            kind,
            client_id: Arc::from(client.credential.key.as_str()),
            app_id: Arc::from(client.app.id.as_str()),
            app_name: Arc::from(client.app.name.as_str()),
            developer_email: Arc::from(client.developer.email.as_str()),
            products: Arc::from(products),
            scope: Arc::from(scope),
            grant_type: grant,
            username: username.map(Arc::from),
            issued_at: ctx.now,
            expires_at: lifetime.map(|l| ctx.now.saturating_add(l)),
            revoked_at: None,
            grant_id,
            refresh_count,
            attributes: Arc::from(ctx.attributes.clone()),
        }
    }

    /// Issues an access token (and a refresh token when `with_refresh` and the refresh
    /// grant is enabled): the store operation, then the success response.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        client: &ClientRecord,
        grant: GrantType,
        scope: String,
        username: Option<String>,
        grant_id: GrantId,
        refresh_count: u32,
        ctx: &RequestContext,
        with_refresh: bool,
    ) -> Outcome {
        let access = random_token(self.token_bytes());
        let access_rec = Arc::new(self.record(
            TokenKind::Access,
            client,
            grant,
            &scope,
            username.as_deref(),
            grant_id,
            refresh_count,
            ctx,
            self.config.access_token_lifetime,
        ));
        let mut tokens = vec![(TokenHash::of(access.as_bytes()), Arc::clone(&access_rec))];
        let mut refresh = None;
        if with_refresh && self.config.grant_types.contains(&GrantType::RefreshToken) {
            let r = random_token(self.token_bytes());
            let rec = Arc::new(self.record(
                TokenKind::Refresh,
                client,
                grant,
                &scope,
                username.as_deref(),
                grant_id,
                refresh_count,
                ctx,
                self.config.refresh_token_lifetime,
            ));
            tokens.push((TokenHash::of(r.as_bytes()), Arc::clone(&rec)));
            refresh = Some((r, rec));
        }
        let response = self.success(
            &access,
            &access_rec,
            refresh.as_ref().map(|(r, rec)| (r.as_str(), &**rec)),
            ctx.now,
        );
        Outcome::NeedsStore(
            StoreOp::PutTokens(tokens),
            Pending::new(State::Then {
                remaining: Vec::new(),
                response,
            }),
        )
    }

    /// Renders a token response (RFC 6749 §5.1, or Apigee's shape when configured).
    fn success(
        &self,
        access: &str,
        rec: &TokenRecord,
        refresh: Option<(&str, &TokenRecord)>,
        now: u64,
    ) -> Response<Vec<u8>> {
        use serde_json::Value;
        let mode = self.config.response_mode;
        let mut m = serde_json::Map::new();
        m.insert("access_token".into(), access.into());
        let expires_in = rec.expires_in(now);
        let products: Vec<&str> = rec.product_names().collect();
        if mode == ResponseMode::Apigee {
            m.insert("token_type".into(), "BearerToken".into());
            m.insert(
                "expires_in".into(),
                expires_in.unwrap_or(0).to_string().into(),
            );
        } else {
            m.insert("token_type".into(), "Bearer".into());
            if let Some(e) = expires_in {
                m.insert("expires_in".into(), e.into());
            }
        }
        if !rec.scope.is_empty() || mode != ResponseMode::Rfc {
            m.insert("scope".into(), Value::from(&*rec.scope));
        }
        if let Some((r, rrec)) = refresh {
            m.insert("refresh_token".into(), r.into());
            if mode != ResponseMode::Rfc {
                let rexp = rrec.expires_in(now).unwrap_or(0);
                m.insert("refresh_token_expires_in".into(), rexp.to_string().into());
                m.insert(
                    "refresh_token_issued_at".into(),
                    (rrec.issued_at * 1000).to_string().into(),
                );
                m.insert("refresh_token_status".into(), "approved".into());
            }
        }
        if mode != ResponseMode::Rfc {
            m.insert(
                "issued_at".into(),
                (rec.issued_at.saturating_mul(1000)).to_string().into(),
            );
            m.insert("client_id".into(), Value::from(&*rec.client_id));
            m.insert("application_name".into(), Value::from(&*rec.app_name));
            m.insert("developer.email".into(), Value::from(&*rec.developer_email));
            m.insert(
                "api_product_list".into(),
                format!("[{}]", products.join(", ")).into(),
            );
            m.insert("api_product_list_json".into(), products.clone().into());
            m.insert("status".into(), "approved".into());
            m.insert("refresh_count".into(), rec.refresh_count.to_string().into());
        }
        json_response(StatusCode::OK, &Value::Object(m))
    }

    /// Resumes a suspended endpoint with the reply to its store operation.
    pub fn resume(&self, pending: Pending, reply: StoreReply) -> Outcome {
        let pending = match *pending.0 {
            State::Chain(then) => return *then,
            State::Authenticate { attempt, ctx, next } => {
                return self.after_throttle_check(attempt, ctx, next, reply);
            }
            other => Pending::new(other),
        };
        if reply == StoreReply::Unavailable {
            return self.fail(EndpointError::store_unavailable());
        }
        match *pending.0 {
            State::Chain(then) => *then,
            State::Authenticate { attempt, ctx, next } => {
                self.after_throttle_check(attempt, ctx, next, reply)
            }
            State::Then {
                mut remaining,
                response,
            } => {
                if remaining.is_empty() {
                    Outcome::Respond(response)
                } else {
                    let op = remaining.remove(0);
                    Outcome::NeedsStore(
                        op,
                        Pending::new(State::Then {
                            remaining,
                            response,
                        }),
                    )
                }
            }
            State::Code {
                client,
                redirect_uri,
                verifier,
                ctx,
            } => {
                let StoreReply::Code(take) = reply else {
                    return self.unexpected_reply();
                };
                self.after_code(client, redirect_uri, verifier, &ctx, take)
            }
            State::Refresh {
                client,
                scope,
                presented,
                ctx,
            } => {
                let StoreReply::Token(found) = reply else {
                    return self.unexpected_reply();
                };
                self.after_refresh(client, scope, presented, &ctx, found)
            }
            State::Introspect {
                client_id,
                any,
                now,
            } => {
                let StoreReply::Token(found) = reply else {
                    return self.unexpected_reply();
                };
                // Another client's token is inactive to a client without the
                // introspection role (RFC 7662 §4): the same answer as for an unknown
                // token, so the endpoint tells nothing about it.
                let visible = found.filter(|rec| any || *rec.client_id == *client_id);
                Outcome::Respond(introspection_body(visible.as_deref(), now))
            }
            State::Revoke {
                client_id,
                hash,
                now,
            } => {
                let StoreReply::Token(found) = reply else {
                    return self.unexpected_reply();
                };
                let ok = empty_response(StatusCode::OK);
                match found {
                    // Tokens of other clients are left alone, with the same answer as for
                    // unknown tokens, so the endpoint is no token-existence oracle.
                    Some(rec) if *rec.client_id == *client_id => {
                        let op = match rec.kind {
                            TokenKind::Refresh => StoreOp::RevokeGrant {
                                grant: rec.grant_id,
                                at: now,
                            },
                            TokenKind::Access => StoreOp::RevokeToken { hash, at: now },
                        };
                        Outcome::NeedsStore(
                            op,
                            Pending::new(State::Then {
                                remaining: Vec::new(),
                                response: ok,
                            }),
                        )
                    }
                    _ => Outcome::Respond(ok),
                }
            }
        }
    }

    fn after_code(
        &self,
        client: Arc<ClientRecord>,
        redirect_uri: Option<String>,
        verifier: Option<String>,
        ctx: &RequestContext,
        take: CodeTake,
    ) -> Outcome {
        let code = match take {
            CodeTake::Unknown => {
                return self.fail(EndpointError::new(
                    ErrorCode::InvalidGrant,
                    "the authorization code is unknown",
                ));
            }
            CodeTake::Reused(code) => {
                let response = self.error(&EndpointError::new(
                    ErrorCode::InvalidGrant,
                    "the authorization code was already used; the tokens issued with it are revoked",
                ));
                return Outcome::NeedsStore(
                    StoreOp::RevokeGrant {
                        grant: code.grant_id,
                        at: ctx.now,
                    },
                    Pending::new(State::Then {
                        remaining: Vec::new(),
                        response,
                    }),
                );
            }
            CodeTake::Fresh(code) => code,
        };
        let invalid = |d: &str| self.fail(EndpointError::new(ErrorCode::InvalidGrant, d));
        if code.client_id != client.credential.key {
            return invalid("the authorization code was issued to another client");
        }
        if ctx.now >= code.expires_at {
            return invalid("the authorization code has expired");
        }
        if let Some(expected) = &code.redirect_uri {
            match &redirect_uri {
                None => {
                    return self.fail(EndpointError::invalid_request(
                        "missing required parameter redirect_uri",
                    ));
                }
                Some(given) if given != expected => {
                    return invalid(
                        "redirect_uri differs from the one in the authorization request",
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(challenge) = &code.code_challenge {
            match &verifier {
                None => return invalid("code_verifier is required for this authorization code"),
                Some(v) if !pkce_s256_matches(v, challenge) => {
                    return invalid("code_verifier does not match the code challenge");
                }
                Some(_) => {}
            }
        }
        self.issue(
            &client,
            GrantType::AuthorizationCode,
            code.scope.clone(),
            code.username.clone(),
            code.grant_id,
            0,
            ctx,
            true,
        )
    }

    fn after_refresh(
        &self,
        client: Arc<ClientRecord>,
        scope: Option<String>,
        presented: String,
        ctx: &RequestContext,
        found: Option<Arc<TokenRecord>>,
    ) -> Outcome {
        let invalid = |d: &str| self.fail(EndpointError::new(ErrorCode::InvalidGrant, d));
        let Some(old) = found.filter(|r| r.kind == TokenKind::Refresh) else {
            return invalid("the refresh token is unknown");
        };
        if *old.client_id != *client.credential.key {
            return invalid("the refresh token was issued to another client");
        }
        if old.revoked_at.is_some() {
            // A revoked (e.g. rotated) refresh token presented again may be stolen:
            // revoke the whole grant (RFC 9700 §4.14.2).
            let response = self.error(&EndpointError::new(
                ErrorCode::InvalidGrant,
                "the refresh token has been revoked",
            ));
            return Outcome::NeedsStore(
                StoreOp::RevokeGrant {
                    grant: old.grant_id,
                    at: ctx.now,
                },
                Pending::new(State::Then {
                    remaining: Vec::new(),
                    response,
                }),
            );
        }
        if old.is_expired(ctx.now) {
            return invalid("the refresh token has expired");
        }
        let new_scope = match scope {
            None => old.scope.to_string(),
            Some(req) => {
                let Some(wanted) = parse_scope(&req) else {
                    return self.fail(EndpointError::new(
                        ErrorCode::InvalidScope,
                        "the scope parameter is malformed",
                    ));
                };
                if let Some(extra) = wanted
                    .iter()
                    .find(|w| !old.scope.split(' ').any(|s| s == w.as_str()))
                {
                    return self.fail(EndpointError::new(
                        ErrorCode::InvalidScope,
                        format!("scope {extra} was not granted originally"),
                    ));
                }
                join_scope(&wanted)
            }
        };
        let count = old.refresh_count.saturating_add(1);
        let access = random_token(self.token_bytes());
        let access_rec = Arc::new(self.record(
            TokenKind::Access,
            &client,
            old.grant_type,
            &new_scope,
            old.username.as_deref(),
            old.grant_id,
            count,
            ctx,
            self.config.access_token_lifetime,
        ));
        let mut tokens = vec![(TokenHash::of(access.as_bytes()), Arc::clone(&access_rec))];
        let mut remaining = Vec::new();
        let (refresh_value, refresh_rec) = if self.config.reuse_refresh_token {
            (presented, old)
        } else {
            let r = random_token(self.token_bytes());
            // The new refresh token keeps the original scope (RFC 6749 §6).
            let mut rec = self.record(
                TokenKind::Refresh,
                &client,
                old.grant_type,
                &old.scope,
                old.username.as_deref(),
                old.grant_id,
                count,
                ctx,
                self.config.refresh_token_lifetime,
            );
            rec.attributes = Arc::clone(&old.attributes);
            let rec = Arc::new(rec);
            tokens.push((TokenHash::of(r.as_bytes()), Arc::clone(&rec)));
            remaining.push(StoreOp::RevokeToken {
                hash: TokenHash::of(presented.as_bytes()),
                at: ctx.now,
            });
            (r, rec)
        };
        let response = self.success(
            &access,
            &access_rec,
            Some((&refresh_value, &refresh_rec)),
            ctx.now,
        );
        Outcome::NeedsStore(
            StoreOp::PutTokens(tokens),
            Pending::new(State::Then {
                remaining,
                response,
            }),
        )
    }

    /// Issues an authorization code for an approved authorization request (the
    /// authorization endpoint's user interaction is the host's). The code lives at most
    /// ten minutes, is single use, is bound to the client, the redirect URI and (when
    /// given, and required by default) a PKCE S256 challenge.
    pub fn issue_code(&self, req: &CodeRequest, now: u64) -> Result<IssuedCode, EndpointError> {
        let client = self
            .registry
            .client(&req.client_id)
            .ok_or_else(|| EndpointError::new(ErrorCode::InvalidClient, "unknown client"))?;
        Registry::check_client(&client, now)
            .map_err(|r| EndpointError::new(ErrorCode::InvalidClient, r.description()))?;
        if let Some(allowed) = &client.app.grant_types
            && !allowed.contains(&GrantType::AuthorizationCode)
        {
            return Err(EndpointError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use the authorization_code grant",
            ));
        }
        if let (Some(given), Some(cb)) = (&req.redirect_uri, &client.app.callback_url)
            && given != cb
        {
            return Err(EndpointError::invalid_request(
                "redirect_uri does not match the app's callback url",
            ));
        }
        let redirect_uri = req
            .redirect_uri
            .clone()
            .or_else(|| client.app.callback_url.clone());
        match (&req.code_challenge, req.code_challenge_method.as_deref()) {
            (Some(_), Some("S256")) => {}
            (Some(_), _) => {
                return Err(EndpointError::invalid_request(
                    "code_challenge_method must be S256",
                ));
            }
            (None, _) if self.config.require_pkce => {
                return Err(EndpointError::invalid_request(
                    "a pkce code_challenge is required",
                ));
            }
            (None, _) => {}
        }
        let scope = self.grant_scope(&client, req.scope.as_deref())?;
        let code = random_token(self.token_bytes());
        let record = CodeRecord {
            client_id: client.credential.key.clone(),
            redirect_uri,
            scope,
            code_challenge: req.code_challenge.clone(),
            username: req.username.clone(),
            issued_at: now,
            expires_at: now.saturating_add(self.config.code_lifetime.min(MAX_CODE_LIFETIME)),
            grant_id: GrantId::random(),
        };
        let store_op = StoreOp::PutCode {
            hash: TokenHash::of(code.as_bytes()),
            record,
        };
        Ok(IssuedCode { code, store_op })
    }

    /// Handles an introspection request (RFC 7662). The caller must authenticate as a
    /// registered client. It is told about tokens issued to itself; tokens of other
    /// clients answer `{"active":false}` unless its app has the introspection role
    /// ([`crate::App::introspect_any_token`]), as RFC 7662 §4 allows.
    pub fn introspection_request<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        ctx: &RequestContext,
    ) -> Outcome {
        self.admin_request(req, ctx, |token| Next::Introspect { token })
    }

    fn introspect(&self, token: &str, client: &ClientRecord, ctx: &RequestContext) -> Outcome {
        Outcome::NeedsStore(
            StoreOp::GetToken(TokenHash::of(token.as_bytes())),
            Pending::new(State::Introspect {
                client_id: client.credential.key.clone(),
                any: client.app.introspect_any_token,
                now: ctx.now,
            }),
        )
    }

    /// Handles a revocation request (RFC 7009). Revoking a refresh token revokes every
    /// token of its grant; revoking an access token revokes that token. Unknown tokens and
    /// tokens of other clients get `200` without effect: RFC 7009 §2.1 has the server
    /// check that the token was issued to the caller, and §2.2 answers tokens the caller
    /// cannot act on like invalid ones, so an error here would only tell the caller that
    /// someone else's token exists. The introspection role does not widen revocation. `token_type_hint` is ignored
    /// (both kinds share one namespace).
    pub fn revocation_request<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        ctx: &RequestContext,
    ) -> Outcome {
        self.admin_request(req, ctx, |token| Next::Revoke { token })
    }

    fn revoke(&self, token: &str, client: &ClientRecord, ctx: &RequestContext) -> Outcome {
        let hash = TokenHash::of(token.as_bytes());
        Outcome::NeedsStore(
            StoreOp::GetToken(hash),
            Pending::new(State::Revoke {
                client_id: client.credential.key.clone(),
                hash,
                now: ctx.now,
            }),
        )
    }

    fn admin_request<B: AsRef<[u8]>>(
        &self,
        req: &Request<B>,
        ctx: &RequestContext,
        next: impl FnOnce(String) -> Next,
    ) -> Outcome {
        let parsed = match parse_client_request(
            req,
            ParseOptions {
                known: TOKEN_ADMIN_PARAMS,
                allow_get: false,
            },
        ) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        let Some(token) = parsed.params.get("token").map(str::to_owned) else {
            return self.fail(EndpointError::invalid_request(
                "missing required parameter token",
            ));
        };
        let next = next(token);
        if self.config.throttle_in_store {
            return self
                .authenticate_in_store(&parsed.auth, ctx, next)
                .unwrap_or_else(|e| self.fail(e));
        }
        match self.authenticate(&parsed.auth, ctx) {
            Ok(client) => self.next(client, next, ctx),
            Err(e) => self.fail(e),
        }
    }
}

/// The RFC 7662 §2.2 response for a token record (exactly `{"active":false}` when the
/// token is unknown, expired or revoked).
fn introspection_body(rec: Option<&TokenRecord>, now: u64) -> Response<Vec<u8>> {
    let Some(rec) = rec.filter(|r| r.is_active(now)) else {
        return json_response(StatusCode::OK, &serde_json::json!({ "active": false }));
    };
    let mut m = serde_json::Map::new();
    m.insert("active".into(), true.into());
    m.insert("client_id".into(), (*rec.client_id).into());
    m.insert("scope".into(), (*rec.scope).into());
    m.insert(
        "token_type".into(),
        match rec.kind {
            TokenKind::Access => "Bearer",
            TokenKind::Refresh => "refresh_token",
        }
        .into(),
    );
    m.insert("iat".into(), rec.issued_at.into());
    if let Some(exp) = rec.expires_at {
        m.insert("exp".into(), exp.into());
    }
    if let Some(u) = &rec.username {
        m.insert("username".into(), (**u).into());
        m.insert("sub".into(), (**u).into());
    } else {
        m.insert("sub".into(), (*rec.client_id).into());
    }
    m.insert("application_name".into(), (*rec.app_name).into());
    m.insert("developer.email".into(), (*rec.developer_email).into());
    let products: Vec<&str> = rec.product_names().collect();
    m.insert("api_product_list".into(), products.into());
    json_response(StatusCode::OK, &serde_json::Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ApiProduct, App, Developer, NewCredential, SecretSpec};
    use crate::secret::{ARGON2_VERIFICATIONS, PasswordHashCost};
    use crate::store::MemoryStore;

    fn argon2_count() -> usize {
        ARGON2_VERIFICATIONS.with(std::cell::Cell::get)
    }

    fn basic(id: &str, secret: &str) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    }

    /// Argon2id verifications one rejected token request costs, from a fresh address.
    fn rejection_work(server: &OAuthServer, id: &str, n: u8) -> usize {
        let req = Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic(id, "wrong-secret"))
            .body(b"grant_type=client_credentials".to_vec())
            .unwrap();
        let mut ctx = RequestContext::at(1_700_000_000);
        ctx.client_ip = Some(IpAddr::from([10, 0, 0, n]));
        let before = argon2_count();
        let resp = server
            .token_request(&req, &ctx)
            .run(server, &MemoryStore::new());
        assert_eq!(resp.status(), 401);
        argon2_count() - before
    }

    fn server(with_chosen: bool) -> OAuthServer {
        let registry = Arc::new(Registry::with_password_hash_cost(
            PasswordHashCost::insecure_for_tests(),
        ));
        registry.put_developer(Developer::new("d@example.com"));
        registry.put_product(ApiProduct::new("p"));
        let app = registry.add_app("d@example.com", App::new("a")).unwrap();
        let cred = |key: &str, secret| NewCredential {
            key: Some(key.into()),
            secret,
            products: vec!["p".into()],
            ..Default::default()
        };
        registry
            .add_credential(&app, cred("generated", SecretSpec::Generated { bytes: 32 }))
            .unwrap();
        if with_chosen {
            registry
                .add_credential(&app, cred("chosen", SecretSpec::Custom("s3cret".into())))
                .unwrap();
        }
        OAuthServer::new(registry, ServerConfig::default())
    }

    // Issue 12 item 4: every rejection does the same work, counted rather than timed
    // (the timing itself is measured by the `oauth` bench).
    #[test]
    fn every_rejection_costs_one_argon2_verification_once_chosen_secrets_exist() {
        let s = server(true);
        assert_eq!(rejection_work(&s, "unknown", 1), 1);
        assert_eq!(rejection_work(&s, "generated", 2), 1);
        assert_eq!(rejection_work(&s, "chosen", 3), 1);
    }

    #[test]
    fn servers_sharing_a_throttle_share_counts() {
        let a = server(false);
        let throttle = Arc::new(Throttle::new(ThrottleConfig::default()));
        let b = OAuthServer::with_throttle(
            Arc::clone(&a.registry),
            ServerConfig::default(),
            Arc::clone(&throttle),
        );
        let c = OAuthServer::with_throttle(
            Arc::clone(&a.registry),
            ServerConfig::default(),
            Arc::clone(&throttle),
        );
        rejection_work(&b, "generated", 9);
        rejection_work(&c, "generated", 9);
        let ip = Some(IpAddr::from([10, 0, 0, 9]));
        assert_eq!(throttle.pair_entry("generated", ip).failures, 2);
        assert_eq!(a.throttle().pair_entry("generated", ip).failures, 0);
    }

    #[test]
    fn without_chosen_secrets_rejections_stay_cheap() {
        let s = server(false);
        assert_eq!(rejection_work(&s, "unknown", 1), 0);
        assert_eq!(rejection_work(&s, "generated", 2), 0);
    }

    /// A token request for `id` with `secret` from 10.0.0.`n` at `now` on `server`,
    /// with its store operations run on `store`.
    fn attempt_on(
        server: &OAuthServer,
        store: &MemoryStore,
        id: &str,
        secret: &str,
        n: u8,
        now: u64,
    ) -> u16 {
        let req = Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic(id, secret))
            .body(b"grant_type=client_credentials".to_vec())
            .unwrap();
        let mut ctx = RequestContext::at(now);
        ctx.client_ip = Some(IpAddr::from([10, 0, 0, n]));
        server
            .token_request(&req, &ctx)
            .run(server, store)
            .as_u16_status()
    }

    trait Status {
        fn as_u16_status(&self) -> u16;
    }

    impl Status for Response<Vec<u8>> {
        fn as_u16_status(&self) -> u16 {
            self.status().as_u16()
        }
    }

    /// Two instances (two servers with their own in-process throttles, the same MAC
    /// key) whose throttle lives in one store.
    fn instances() -> (OAuthServer, OAuthServer) {
        let one = server(true);
        let key = [7u8; 32];
        let config = ServerConfig {
            throttle_in_store: true,
            ..ServerConfig::default()
        };
        let make = || {
            OAuthServer::with_throttle(
                Arc::clone(&one.registry),
                config.clone(),
                Arc::new(Throttle::with_key(ThrottleConfig::default(), key)),
            )
        };
        (make(), make())
    }

    #[test]
    fn with_the_throttle_in_the_store_instances_count_failures_together() {
        let (a, b) = instances();
        let store = MemoryStore::new();
        let now = 1_700_000_000;
        let free = ThrottleConfig::default().free_pair_failures;
        // The free failures, spread over both instances, then the one that starts the wait.
        for i in 0..=free {
            let on = if i % 2 == 0 { &a } else { &b };
            assert_eq!(
                attempt_on(on, &store, "chosen", "wrong", 1, now),
                401,
                "failure {i}"
            );
        }
        // Both instances now make the pair wait, even for the right secret.
        assert_eq!(attempt_on(&a, &store, "chosen", "s3cret", 1, now), 429);
        assert_eq!(attempt_on(&b, &store, "chosen", "wrong", 1, now), 429);
        // The in-process throttles counted nothing.
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(a.throttle().pair_entry("chosen", ip).failures, 0);
        // The legitimate client from another address is checked and served, on both.
        assert_eq!(attempt_on(&a, &store, "chosen", "s3cret", 2, now), 200);
        assert_eq!(attempt_on(&b, &store, "chosen", "s3cret", 2, now), 200);
        // After the wait the pair may try again.
        assert_eq!(attempt_on(&b, &store, "chosen", "s3cret", 1, now + 2), 200);
    }

    #[test]
    fn with_the_throttle_in_the_store_every_rejection_does_the_same_work() {
        let (a, _) = instances();
        let store = MemoryStore::new();
        let work = |id: &str, n: u8| {
            let before = argon2_count();
            assert_eq!(attempt_on(&a, &store, id, "wrong", n, 1_700_000_000), 401);
            argon2_count() - before
        };
        assert_eq!(work("unknown", 3), 1);
        assert_eq!(work("generated", 4), 1);
        assert_eq!(work("chosen", 5), 1);
    }
}
