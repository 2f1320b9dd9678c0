//! How an exchange calls through an API provider: credentials on the request, the
//! token fetched, looked up in or saved to the state store, and a refused token replaced
//! once (see [`crate::provider`] for the cache and the token request).

use http::{HeaderMap, StatusCode, header};
use preflow_policy::runtime::{Fault, KvOp, KvReply, StateMode, StoreOp, StoreReply};

use crate::compiled::Inner;
use crate::exchange::{Exchange, Stage, Step};
use crate::provider::{
    AwaitToken, Claim, NAMESPACE, PAUSE, TargetAuth, decode, encode, parse_token, token_request,
};

/// What a target call needs before it can go.
pub(super) enum Authorized {
    /// The request carries what it needs.
    Ready,
    /// The host must do this first (fetch the token, or pause while another exchange
    /// does); the exchange stays where it is.
    Step(Step),
    /// The token cannot be had.
    Failed(Fault),
}

/// Puts the provider's credentials on `request`, or says what must happen first.
pub(super) fn authorize(
    g: &Inner,
    ex: &mut Exchange,
    auth: &TargetAuth,
    headers: &mut HeaderMap,
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

fn bearer(g: &Inner, ex: &mut Exchange, p: usize, headers: &mut HeaderMap) -> Authorized {
    let Some(provider) = g.environment.providers.get(p) else {
        return Authorized::Failed(crate::fault::faults::target_unusable(
            "the API provider is not in the environment",
        ));
    };
    let now = ex.now_ns;
    match g.provider_tokens.claim(p, now) {
        Claim::Token(token, generation) => {
            headers.insert(header::AUTHORIZATION, token);
            ex.provider_generation = Some(generation);
            return Authorized::Ready;
        }
        // Another exchange is fetching: look again shortly.
        Claim::Busy => return Authorized::Step(Step::Pause(PAUSE)),
        Claim::Fetch(lease) => ex.provider_lease = Some(lease),
        Claim::Unknown => {
            return Authorized::Failed(crate::fault::faults::internal("provider token slot"));
        }
    }
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

/// Takes what the exchange waited for: the store's copy of the token, the token
/// endpoint's answer (cached, and saved to the store in [`StateMode::Remote`]), or the
/// store's acknowledgement; then back to the target call. A token endpoint that fails
/// ends the exchange in a fault that says why (never with the endpoint's body).
pub(super) fn token_response(g: &Inner, ex: &mut Exchange) -> Result<Option<Step>, Fault> {
    match ex.provider_wait.take() {
        Some(AwaitToken::Lookup(p)) => {
            let reply = ex.reply.take().map(|r| *r);
            let stored = match reply {
                Some(StoreReply::Kv(KvReply::Value(Some(v)))) => decode(&v),
                _ => None,
            };
            match stored {
                Some((token, until)) if ex.now_ns < until => {
                    g.provider_tokens.cache(p, token, until);
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
    g.provider_tokens.cache(p, token, until);
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

/// After a target answered `status`: whether to drop the token it was sent with and
/// call again with a new one (once per exchange, on 401 only).
pub(super) fn retry_on(
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
    g.provider_tokens.refused(*p, ex.provider_generation);
    true
}
