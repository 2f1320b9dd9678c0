//! `<GetOAuthV2Info>`: reads the attributes of a token or client into variables.

use std::sync::Arc;

use http::StatusCode;
use preflow_oauth::{TokenHash, TokenRecord, TokenStore};

use crate::parse::Cx;
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime, StateMode, StoreOp, StoreReply, Waiting};
use crate::xml::Element;

/// `<GetOAuthV2Info>`: reads the attributes of a token, code or client into variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GetOAuthV2Info {
    /// `<AccessToken ref>`.
    pub access_token: Option<String>,
    /// `<ClientId ref>`.
    pub client_id: Option<String>,
    /// `<AuthorizationCode ref>`.
    pub authorization_code: Option<String>,
    /// `<RefreshToken ref>`.
    pub refresh_token: Option<String>,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> GetOAuthV2Info {
    cx.known_policy(
        el,
        &[
            "AccessToken",
            "ClientId",
            "AuthorizationCode",
            "RefreshToken",
            "IgnoreAccessTokenStatus",
        ],
    );
    let info = GetOAuthV2Info {
        access_token: el.child("AccessToken").and_then(variable_of),
        client_id: el.child("ClientId").and_then(variable_of),
        authorization_code: el.child("AuthorizationCode").and_then(variable_of),
        refresh_token: el.child("RefreshToken").and_then(variable_of),
    };
    if info == GetOAuthV2Info::default() {
        cx.error(
            el.offset,
            "GetOAuthV2Info needs one of `<AccessToken>`, `<ClientId>`, `<AuthorizationCode>`, `<RefreshToken>`",
        );
    }
    info
}

fn invalid_access_token() -> Outcome {
    Outcome::Fault(Fault::new(
        "steps.oauth.v2.invalid_access_token",
        StatusCode::UNAUTHORIZED,
        "Invalid Access Token",
    ))
}

fn invalid_refresh_token() -> Outcome {
    Outcome::Fault(Fault::new(
        "steps.oauth.v2.invalid_refresh_token",
        StatusCode::INTERNAL_SERVER_ERROR,
        "Invalid Refresh Token",
    ))
}

/// The token store did not answer (as the token endpoint's fault).
pub(super) fn token_store_unavailable() -> Outcome {
    Outcome::Fault(Fault::new(
        "steps.oauth.v2.FailedToResolveToken",
        StatusCode::SERVICE_UNAVAILABLE,
        "The token store is unavailable",
    ))
}

/// The steps of the policy, in order; the token lookups are store operations in
/// [`StateMode::Remote`].
const ACCESS: usize = 0;
const CLIENT: usize = 1;
const REFRESH: usize = 2;
const CODE: usize = 3;

fn run<R: Runtime>(rt: &mut R, policy: &str, i: &GetOAuthV2Info) -> Outcome {
    run_from(rt, policy, i, ACCESS)
}

/// Runs the steps from `step` on. A token step either looks the token up in the local
/// store inline, or (remote state) returns the lookup for the host, resumed in [`resume`].
fn run_from<R: Runtime>(rt: &mut R, policy: &str, i: &GetOAuthV2Info, step: usize) -> Outcome {
    for step in step..=CODE {
        let outcome = match step {
            ACCESS => match &i.access_token {
                None => Outcome::Continue,
                Some(r) => match rt.variable(r) {
                    None => invalid_access_token(),
                    Some(tok) => lookup(rt, policy, &tok, step, access_fields),
                },
            },
            CLIENT => client_fields(rt, policy, i),
            REFRESH => match i.refresh_token.as_deref().and_then(|r| rt.variable(r)) {
                None if i.refresh_token.is_some() => invalid_refresh_token(),
                None => Outcome::Continue,
                Some(tok) => lookup(rt, policy, &tok, step, refresh_fields),
            },
            _ if i.authorization_code.is_some() => Outcome::Fault(Fault::new(
                "steps.oauth.v2.UnsupportedOperation",
                StatusCode::INTERNAL_SERVER_ERROR,
                "GetOAuthV2Info <AuthorizationCode> is not supported: codes are single use",
            )),
            _ => Outcome::Continue,
        };
        if !matches!(outcome, Outcome::Continue) {
            return outcome;
        }
    }
    Outcome::Continue
}

type Apply<R> = fn(&mut R, &str, &str, Option<Arc<TokenRecord>>) -> Outcome;

/// Looks `token` up: inline in the local store, or as a store step.
fn lookup<R: Runtime>(
    rt: &mut R,
    policy: &str,
    token: &str,
    step: usize,
    apply: Apply<R>,
) -> Outcome {
    let hash = TokenHash::of(token.as_bytes());
    match rt.env().state {
        StateMode::Local => {
            let rec = rt.env().tokens.get_token(&hash);
            apply(rt, policy, token, rec)
        }
        StateMode::Remote => Outcome::Store(
            StoreOp::Token(preflow_oauth::StoreOp::GetToken(hash)),
            Waiting::Step(step),
        ),
    }
}

fn access_fields<R: Runtime>(
    rt: &mut R,
    policy: &str,
    tok: &str,
    rec: Option<Arc<TokenRecord>>,
) -> Outcome {
    let Some(rec) = rec.filter(|r| r.kind == preflow_oauth::TokenKind::Access) else {
        return invalid_access_token();
    };
    let now = rt.now_ns() / 1_000_000_000;
    if rec.is_expired(now) {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.access_token_expired",
            StatusCode::UNAUTHORIZED,
            "Access Token expired",
        ));
    }
    let p = format!("oauthv2accesstoken.{policy}");
    let fields = [
        ("client_id", rec.client_id.to_string()),
        ("access_token", tok.to_owned()),
        ("scope", rec.scope.to_string()),
        (
            "status",
            if rec.revoked_at.is_some() {
                "revoked"
            } else {
                "approved"
            }
            .to_owned(),
        ),
        ("issued_at", rec.issued_at.saturating_mul(1000).to_string()),
        (
            "expires_in",
            rec.expires_in(now)
                .map_or_else(|| "-1".to_owned(), |e| e.to_string()),
        ),
        ("developer.app.name", rec.app_name.to_string()),
        ("developer.email", rec.developer_email.to_string()),
    ];
    for (k, v) in fields {
        rt.set_variable(&format!("{p}.{k}"), v);
    }
    for (k, v) in rec.attributes.iter() {
        rt.set_variable(&format!("{p}.accesstoken.{k}"), v.clone());
    }
    Outcome::Continue
}

fn refresh_fields<R: Runtime>(
    rt: &mut R,
    policy: &str,
    _tok: &str,
    rec: Option<Arc<TokenRecord>>,
) -> Outcome {
    let Some(rec) = rec.filter(|r| r.kind == preflow_oauth::TokenKind::Refresh) else {
        return invalid_refresh_token();
    };
    let p = format!("oauthv2refreshtoken.{policy}");
    rt.set_variable(&format!("{p}.client_id"), rec.client_id.to_string());
    rt.set_variable(&format!("{p}.scope"), rec.scope.to_string());
    Outcome::Continue
}

fn client_fields<R: Runtime>(rt: &mut R, policy: &str, i: &GetOAuthV2Info) -> Outcome {
    let Some(r) = &i.client_id else {
        return Outcome::Continue;
    };
    let invalid = || {
        Outcome::Fault(Fault::new(
            "steps.oauth.v2.invalid_client-invalid_client_id",
            StatusCode::INTERNAL_SERVER_ERROR,
            "ClientId is Invalid",
        ))
    };
    let Some(id) = rt.variable(r) else {
        return invalid();
    };
    let Some(c) = rt.env().registry.client(&id) else {
        return invalid();
    };
    let p = format!("oauthv2client.{policy}");
    let fields = [
        ("client_id", c.credential.key.clone()),
        ("status", c.credential.status.as_str().to_owned()),
        ("developer.app.name", c.app.name.clone()),
        ("developer.email", c.developer.email.clone()),
        (
            "redirection_uris",
            c.app.callback_url.clone().unwrap_or_default(),
        ),
    ];
    for (k, v) in fields {
        rt.set_variable(&format!("{p}.{k}"), v);
    }
    Outcome::Continue
}

/// Takes the token found by the lookup of `step` and goes on with the next step.
fn resume<R: Runtime>(
    rt: &mut R,
    policy: &str,
    i: &GetOAuthV2Info,
    waiting: Waiting,
    reply: StoreReply,
) -> Outcome {
    let Waiting::Step(step) = waiting else {
        return Outcome::Continue;
    };
    let StoreReply::Token(preflow_oauth::StoreReply::Token(rec)) = reply else {
        return token_store_unavailable();
    };
    let (reference, apply): (&Option<String>, Apply<R>) = match step {
        ACCESS => (&i.access_token, access_fields),
        _ => (&i.refresh_token, refresh_fields),
    };
    let tok = reference
        .as_deref()
        .and_then(|r| rt.variable(r))
        .unwrap_or_default();
    let outcome = apply(rt, policy, &tok, rec);
    if !matches!(outcome, Outcome::Continue) {
        return outcome;
    }
    run_from(rt, policy, i, step.saturating_add(1))
}

/// The GetOAuthV2Info policy type.
#[derive(Debug)]
pub(crate) struct GetOAuthV2InfoPolicy;

impl PolicyType for GetOAuthV2InfoPolicy {
    type Config = GetOAuthV2Info;
    type Compiled = (String, GetOAuthV2Info);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> GetOAuthV2Info {
        parse(cx, el)
    }

    fn compile(
        config: &GetOAuthV2Info,
        cx: &BuildCx<'_>,
    ) -> Result<(String, GetOAuthV2Info), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, GetOAuthV2Info), rt: &mut R) -> Outcome {
        run(rt, &c.0, &c.1)
    }

    fn resume<R: Runtime>(
        c: &(String, GetOAuthV2Info),
        rt: &mut R,
        waiting: Waiting,
        reply: StoreReply,
    ) -> Outcome {
        resume(rt, &c.0, &c.1, waiting, reply)
    }

    fn sets_token_variables(_: &GetOAuthV2Info) -> bool {
        true
    }

    fn reads_request_body(i: &GetOAuthV2Info) -> bool {
        [
            &i.access_token,
            &i.client_id,
            &i.authorization_code,
            &i.refresh_token,
        ]
        .into_iter()
        .flatten()
        .any(|v| crate::vars::reads_request_body(v))
    }
}
