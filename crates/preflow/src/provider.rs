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
//!
//! This module holds the credentials, the token cache and the token request; how an
//! exchange goes through them is `engine::provider`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use preflow_policy::runtime::{Fault, Target, Timeouts};

use crate::environment::{Provider, ProviderAuth};

/// How long the exchanges waiting for another one's token fetch pause between looks.
pub(crate) const PAUSE: Duration = Duration::from_millis(5);
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

/// What the token cache says to an exchange that needs provider `p`'s token.
pub(crate) enum Claim {
    /// A live token (`Bearer …`) and its generation.
    Token(HeaderValue, u64),
    /// Another exchange is fetching it.
    Busy,
    /// This exchange fetches it, holding the lease.
    Fetch(Lease),
    /// No such provider.
    Unknown,
}

impl ProviderTokens {
    /// Slots for `n` providers.
    pub(crate) fn new(n: usize) -> Self {
        ProviderTokens {
            slots: (0..n).map(|_| Arc::default()).collect(),
        }
    }

    /// Provider `p`'s token at `now`, or who fetches it.
    pub(crate) fn claim(&self, p: usize, now: u64) -> Claim {
        let Some(Ok(mut s)) = self.slots.get(p).map(|s| s.lock()) else {
            return Claim::Unknown;
        };
        if let Some((token, until)) = &s.token
            && now < *until
        {
            return Claim::Token(token.clone(), s.generation);
        }
        if let Some(since) = s.fetching_since
            && now.saturating_sub(since) < FETCH_LEASE_NS
        {
            return Claim::Busy;
        }
        s.fetching_since = Some(now);
        s.claim = s.claim.wrapping_add(1);
        let claim = s.claim;
        drop(s);
        match self.slots.get(p) {
            Some(slot) => Claim::Fetch(Lease {
                slot: Arc::clone(slot),
                claim,
            }),
            None => Claim::Unknown,
        }
    }

    /// Keeps `token` for provider `p` until `until`.
    pub(crate) fn cache(&self, p: usize, token: HeaderValue, until: u64) {
        if let Some(Ok(mut s)) = self.slots.get(p).map(|s| s.lock()) {
            s.generation = s.generation.wrapping_add(1);
            s.token = Some((token, until));
        }
    }

    /// Drops provider `p`'s token if it is still the one of `generation` (a back end
    /// refused it); a newer one stays.
    pub(crate) fn refused(&self, p: usize, generation: Option<u64>) {
        if let Some(Ok(mut s)) = self.slots.get(p).map(|s| s.lock())
            && generation == Some(s.generation)
        {
            s.token = None;
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
pub(crate) const NAMESPACE: &str = "provider-token";

/// The token request of `provider` (RFC 6749 §4.4.2, client authentication §2.3.1).
pub(crate) fn token_request(provider: &Provider) -> Result<Target, Fault> {
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
        address: None,
        stream_request_body: false,
        stream_response_body: false,
    })
}

/// The store's form of a token: `UNTIL_NS Bearer …`.
pub(crate) fn encode(token: &HeaderValue, until: u64) -> Option<String> {
    token.to_str().ok().map(|t| format!("{until} {t}"))
}

pub(crate) fn decode(value: &str) -> Option<(HeaderValue, u64)> {
    let (until, token) = value.split_once(' ')?;
    let mut header = HeaderValue::from_str(token).ok()?;
    header.set_sensitive(true);
    Some((header, until.parse().ok()?))
}

/// `Bearer …` and its lifetime in seconds, from a token response.
pub(crate) fn parse_token(status: StatusCode, body: &[u8]) -> Result<(HeaderValue, u64), String> {
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
