//! Targets reached through an API provider (`provider://NAME/path`, SAP `<provider_id>`):
//! the provider's credentials go on the request, and for OAuth 2.0 client credentials
//! the gateway obtains the back end's token itself (RFC 6749 §4.4, client authenticated
//! with HTTP Basic as §2.3.1 encodes it).
//!
//! The token request is a step like any other (`Step::Forward` to the token URL), so
//! every host performs it. One fetch per provider is in flight at a time: the other
//! exchanges that need the token meanwhile get [`Step::Pause`] and try again. The token
//! is cached until shortly before `expires_in`, and in [`StateMode::Remote`] also kept in
//! the state store so that other instances use it rather than fetching their own. A
//! target answering 401 makes the gateway drop the token and retry once with a new one.
//! The token and the secret never reach a log, a trace or an error message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use preflow_policy::runtime::{
    Fault, KvOp, KvReply, StateMode, StoreOp, StoreReply, Target, Timeouts,
};

use crate::compiled::Inner;
use crate::environment::{Provider, ProviderAuth};
use crate::exchange::{Exchange, Stage, Step};

/// How long the exchanges waiting for another one's token fetch pause between looks.
const PAUSE: Duration = Duration::from_millis(5);
/// A fetch that has not finished after this long is presumed lost (its exchange was
/// dropped); the next exchange fetches again.
const FETCH_LEASE_NS: u64 = 20_000_000_000;
/// The lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME_S: u64 = 300;
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// How a compiled target authenticates to its back end.
#[derive(Debug, Clone)]
pub(crate) enum TargetAuth {
    /// Nothing added.
    None,
    /// `Authorization: Basic …`, computed once.
    Basic(HeaderValue),
    /// A bearer token from the provider at this index of the environment.
    ClientCredentials(usize),
}

impl TargetAuth {
    /// The authentication `provider` asks for, as the provider at `index`.
    pub(crate) fn of(index: usize, provider: &Provider) -> Self {
        match &provider.auth {
            ProviderAuth::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                match HeaderValue::from_str(&format!("Basic {encoded}")) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        TargetAuth::Basic(v)
                    }
                    Err(_) => TargetAuth::None,
                }
            }
            ProviderAuth::ClientCredentials { .. } => TargetAuth::ClientCredentials(index),
            _ => TargetAuth::None,
        }
    }
}

/// A cached token of one provider.
#[derive(Debug, Default)]
struct Slot {
    /// `Bearer …` and when to stop using it (ns since the epoch).
    token: Option<(HeaderValue, u64)>,
    /// Counts tokens received, so a 401 drops only the token it was given.
    generation: u64,
    /// When the fetch in flight started, if one is.
    fetching_since: Option<u64>,
    /// Which claim the fetch in flight belongs to.
    claim: u64,
}

/// An exchange's claim on fetching a provider's token: dropping it (the exchange got its
/// answer, failed, or was dropped by the host) lets the next exchange fetch.
#[derive(Debug)]
pub(crate) struct Lease {
    slot: Arc<Mutex<Slot>>,
    claim: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slot.lock()
            && s.claim == self.claim
        {
            s.fetching_since = None;
        }
    }
}

/// The tokens of the environment's providers, one slot each.
#[derive(Debug, Default)]
pub(crate) struct ProviderTokens {
    slots: Vec<Arc<Mutex<Slot>>>,
}

impl ProviderTokens {
    /// Slots for `n` providers.
    pub(crate) fn new(n: usize) -> Self {
        ProviderTokens {
            slots: (0..n).map(|_| Arc::default()).collect(),
        }
    }
}

/// What the exchange waits for, for the provider at this index of the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwaitToken {
    /// The state store's copy of the token ([`StateMode::Remote`]).
    Lookup(usize),
    /// The token endpoint's answer.
    Fetch(usize),
    /// The state store's acknowledgement of the new token.
    Save(usize),
}

/// The state store's namespace of back-end tokens (keyed by provider name).
const NAMESPACE: &str = "provider-token";

/// What a target call needs before it can go.
pub(crate) enum Authorized {
    /// The request carries what it needs.
    Ready,
    /// The host must do this first (fetch the token, or pause while another exchange
    /// does); the exchange stays where it is.
    Step(Step),
    /// The token cannot be had.
    Failed(Fault),
}

/// Puts the provider's credentials on `request`, or says what must happen first.
pub(crate) fn authorize(
    g: &Inner,
    ex: &mut Exchange,
    auth: &TargetAuth,
    headers: &mut http::HeaderMap,
) -> Authorized {
    match auth {
        TargetAuth::None => Authorized::Ready,
        TargetAuth::Basic(v) => {
            headers.insert(header::AUTHORIZATION, v.clone());
            Authorized::Ready
        }
        TargetAuth::ClientCredentials(p) => bearer(g, ex, *p, headers),
    }
}

fn bearer(g: &Inner, ex: &mut Exchange, p: usize, headers: &mut http::HeaderMap) -> Authorized {
    let (Some(slot), Some(provider)) = (
        g.provider_tokens.slots.get(p),
        g.environment.providers.get(p),
    ) else {
        return Authorized::Failed(crate::fault::faults::target_unusable(
            "the API provider is not in the environment",
        ));
    };
    let Ok(mut s) = slot.lock() else {
        return Authorized::Failed(crate::fault::faults::internal("provider token lock"));
    };
    let now = ex.now_ns;
    if let Some((token, until)) = &s.token
        && now < *until
    {
        headers.insert(header::AUTHORIZATION, token.clone());
        ex.provider_generation = Some(s.generation);
        return Authorized::Ready;
    }
    if let Some(since) = s.fetching_since
        && now.saturating_sub(since) < FETCH_LEASE_NS
    {
        // Another exchange is fetching: look again shortly.
        return Authorized::Step(Step::Pause(PAUSE));
    }
    s.fetching_since = Some(now);
    s.claim = s.claim.wrapping_add(1);
    let lease = Lease {
        slot: Arc::clone(slot),
        claim: s.claim,
    };
    drop(s);
    ex.provider_lease = Some(lease);
    if g.env.state == StateMode::Remote && !ex.provider_retried && !ex.provider_looked_up {
        // Another instance may hold a token already.
        ex.provider_looked_up = true;
        ex.provider_wait = Some(AwaitToken::Lookup(p));
        ex.stage = Stage::AwaitToken;
        return Authorized::Step(Step::Store(StoreOp::Kv(KvOp::Get {
            namespace: NAMESPACE.to_owned(),
            key: provider.name.clone(),
            now,
        })));
    }
    match token_request(provider) {
        Ok(target) => {
            ex.provider_wait = Some(AwaitToken::Fetch(p));
            ex.stage = Stage::AwaitToken;
            Authorized::Step(Step::Forward(target))
        }
        Err(f) => {
            ex.provider_lease = None;
            Authorized::Failed(f)
        }
    }
}

/// The token request of `provider` (RFC 6749 §4.4.2, client authentication §2.3.1).
fn token_request(provider: &Provider) -> Result<Target, Fault> {
    let ProviderAuth::ClientCredentials {
        token_url,
        client_id,
        client_secret,
        scope,
    } = &provider.auth
    else {
        return Err(crate::fault::faults::internal(
            "not a client-credentials provider",
        ));
    };
    let unusable = || {
        crate::fault::faults::target_unusable(&format!(
            "the token URL of API provider `{}` is not an absolute http(s) URL",
            provider.name
        ))
    };
    let uri: http::Uri = token_url.parse().map_err(|_| unusable())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(unusable());
    }
    // §2.3.1: id and secret are form-encoded before they are joined for Basic.
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        enc(client_id),
        enc(client_secret.expose())
    ));
    let mut authorization = HeaderValue::from_str(&format!("Basic {basic}"))
        .map_err(|_| crate::fault::faults::internal("provider credentials"))?;
    authorization.set_sensitive(true);
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope.as_deref().filter(|s| !s.is_empty()) {
        body.append_pair("scope", scope);
    }
    let body = Bytes::from(body.finish());
    let mut request = http::Request::new(body.clone());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let h = request.headers_mut();
    h.insert(header::AUTHORIZATION, authorization);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(Target {
        request,
        // Within the fetch lease: a hung token endpoint holds the others up no longer.
        timeouts: Timeouts {
            connect: Some(Duration::from_secs(5)),
            io: Some(Duration::from_secs(15)),
        },
        endpoint: Arc::from(format!("provider-token:{}", provider.name)),
        tls: provider.tls.clone().map(Arc::new),
        server: None,
        stream_request_body: false,
        stream_response_body: false,
    })
}

/// Takes what the exchange waited for: the store's copy of the token, the token
/// endpoint's answer (cached, and saved to the store in [`StateMode::Remote`]), or the
/// store's acknowledgement; then back to the target call. A token endpoint that fails
/// ends the exchange in a fault that says why (never with the endpoint's body).
pub(crate) fn token_response(g: &Inner, ex: &mut Exchange) -> Result<Option<Step>, Fault> {
    match ex.provider_wait.take() {
        Some(AwaitToken::Lookup(p)) => {
            let reply = ex.reply.take().map(|r| *r);
            let stored = match reply {
                Some(StoreReply::Kv(KvReply::Value(Some(v)))) => decode(&v),
                _ => None,
            };
            match stored {
                Some((token, until)) if ex.now_ns < until => {
                    cache(g, p, token, until);
                }
                // Not there (or unreadable): this exchange fetches.
                _ => {}
            }
            ex.provider_lease = None;
            ex.stage = Stage::Forward;
            Ok(None)
        }
        Some(AwaitToken::Save(_)) => {
            // The store's answer changes nothing: the token is cached here already.
            ex.reply = None;
            ex.stage = Stage::Forward;
            Ok(None)
        }
        Some(AwaitToken::Fetch(p)) => fetched(g, ex, p),
        None => Err(crate::fault::faults::internal("no token fetch in flight")),
    }
}

fn fetched(g: &Inner, ex: &mut Exchange, p: usize) -> Result<Option<Step>, Fault> {
    let result = ex.target_result.take();
    let provider = g.environment.providers.get(p);
    let name = provider.map_or("", |x| x.name.as_str());
    let parsed = match result.map(|r| *r) {
        None => Err("the exchange was stepped before the token response was given".to_owned()),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(resp)) => parse_token(resp.status(), resp.body()),
    };
    ex.provider_lease = None;
    let (token, lifetime_s) = parsed.map_err(|why| {
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.ProviderTokenFailed",
            StatusCode::BAD_GATEWAY,
            format!("Could not obtain the back end's token from API provider `{name}`: {why}"),
        );
        f.source = "target";
        f
    })?;
    // Stop using it a little before it expires: a tenth of its life, at most 60 s.
    let margin = (lifetime_s / 10).min(60);
    let until = ex.now_ns.saturating_add(
        lifetime_s
            .saturating_sub(margin)
            .saturating_mul(1_000_000_000),
    );
    let stored = encode(&token, until);
    cache(g, p, token, until);
    ex.stage = Stage::Forward;
    if g.env.state == StateMode::Remote
        && let (Some(provider), Some(value)) = (provider, stored)
    {
        ex.provider_wait = Some(AwaitToken::Save(p));
        ex.stage = Stage::AwaitToken;
        return Ok(Some(Step::Store(StoreOp::Kv(KvOp::Put {
            namespace: NAMESPACE.to_owned(),
            key: provider.name.clone(),
            value,
            expires_at: Some(until),
            overwrite: true,
            now: ex.now_ns,
        }))));
    }
    Ok(None)
}

fn cache(g: &Inner, p: usize, token: HeaderValue, until: u64) {
    if let Some(Ok(mut s)) = g.provider_tokens.slots.get(p).map(|s| s.lock()) {
        s.generation = s.generation.wrapping_add(1);
        s.token = Some((token, until));
    }
}

/// The store's form of a token: `UNTIL_NS Bearer …`.
fn encode(token: &HeaderValue, until: u64) -> Option<String> {
    token.to_str().ok().map(|t| format!("{until} {t}"))
}

fn decode(value: &str) -> Option<(HeaderValue, u64)> {
    let (until, token) = value.split_once(' ')?;
    let mut header = HeaderValue::from_str(token).ok()?;
    header.set_sensitive(true);
    Some((header, until.parse().ok()?))
}

/// `Bearer …` and its lifetime in seconds, from a token response.
fn parse_token(status: StatusCode, body: &[u8]) -> Result<(HeaderValue, u64), String> {
    if !status.is_success() {
        return Err(format!("the token endpoint answered {}", status.as_u16()));
    }
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err("the token response is too large".to_owned());
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the token response is not JSON".to_owned())?;
    let token = v
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no access_token")?;
    if let Some(kind) = v.get("token_type").and_then(serde_json::Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!("the token type `{kind}` is not Bearer"));
    }
    let lifetime = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(DEFAULT_LIFETIME_S);
    let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the access token is not a valid header value".to_owned())?;
    header.set_sensitive(true);
    Ok((header, lifetime))
}

/// After a target answered `status`: whether to drop the token it was sent with and
/// call again with a new one (once per exchange, on 401 only).
pub(crate) fn retry_on(
    g: &Inner,
    ex: &mut Exchange,
    auth: &TargetAuth,
    status: StatusCode,
) -> bool {
    let TargetAuth::ClientCredentials(p) = auth else {
        return false;
    };
    // A body already streamed to the back end cannot be sent again.
    if status != StatusCode::UNAUTHORIZED || ex.provider_retried || ex.request_streamed {
        return false;
    }
    ex.provider_retried = true;
    if let Some(Ok(mut s)) = g.provider_tokens.slots.get(*p).map(|s| s.lock())
        && ex.provider_generation == Some(s.generation)
    {
        s.token = None;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_are_checked() {
        let ok = br#"{"access_token":"abc","token_type":"bearer","expires_in":120}"#;
        let (h, life) = parse_token(StatusCode::OK, ok).unwrap();
        assert_eq!(h.to_str().unwrap(), "Bearer abc");
        assert!(h.is_sensitive());
        assert_eq!(life, 120);
        let text = br#"{"access_token":"abc","expires_in":"90"}"#;
        assert_eq!(parse_token(StatusCode::OK, text).unwrap().1, 90);
        let none = br#"{"access_token":"abc"}"#;
        assert_eq!(
            parse_token(StatusCode::OK, none).unwrap().1,
            DEFAULT_LIFETIME_S
        );
        assert!(parse_token(StatusCode::UNAUTHORIZED, ok).is_err());
        assert!(parse_token(StatusCode::OK, b"{}").is_err());
        assert!(parse_token(StatusCode::OK, b"not json").is_err());
        let mac = br#"{"access_token":"abc","token_type":"mac"}"#;
        assert!(parse_token(StatusCode::OK, mac).is_err());
        let bad = br#"{"access_token":"a\nb"}"#;
        assert!(parse_token(StatusCode::OK, bad).is_err());
    }

    #[test]
    fn the_token_request_encodes_the_client_as_rfc_6749_says() {
        let p = Provider::new("p", "https://backend.example").with_auth(
            ProviderAuth::ClientCredentials {
                token_url: "https://auth.example/oauth/token".to_owned(),
                client_id: "id:1 +".to_owned(),
                client_secret: crate::Secret::new("s&c/r=t"),
                scope: Some("a b".to_owned()),
            },
        );
        let t = token_request(&p).unwrap();
        assert_eq!(t.request.method(), Method::POST);
        let auth = t.request.headers()[header::AUTHORIZATION].to_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"id%3A1+%2B:s%26c%2Fr%3Dt");
        assert_eq!(
            t.request.body().as_ref(),
            b"grant_type=client_credentials&scope=a+b"
        );
        // The secret is nowhere in the target's debug form.
        assert!(!format!("{t:?}").contains("s&c/r=t"));
    }
}
