//! `<GetOAuthV2Info>`: reads the attributes of a token or client into variables.

use std::sync::Arc;

use http::StatusCode;
use preflow_oauth::{TokenHash, TokenStore};

use crate::parse::Cx;
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime, StateMode};
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

fn run<R: Runtime>(rt: &mut R, policy: &str, i: &GetOAuthV2Info) -> Outcome {
    let prefix = |kind: &str| format!("oauthv2{kind}.{policy}");
    if rt.env().state == StateMode::Remote
        && (i.access_token.is_some() || i.refresh_token.is_some())
    {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.UnsupportedOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            "GetOAuthV2Info on tokens needs local token state",
        ));
    }
    if let Some(r) = &i.access_token {
        let Some(tok) = rt.variable(r) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_access_token",
                StatusCode::UNAUTHORIZED,
                "Invalid Access Token",
            ));
        };
        let rec = lookup(rt, &tok);
        let Some(rec) = rec.filter(|r| r.kind == preflow_oauth::TokenKind::Access) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_access_token",
                StatusCode::UNAUTHORIZED,
                "Invalid Access Token",
            ));
        };
        let now = rt.now_ns() / 1_000_000_000;
        if rec.is_expired(now) {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.access_token_expired",
                StatusCode::UNAUTHORIZED,
                "Access Token expired",
            ));
        }
        let p = prefix("accesstoken");
        let fields = [
            ("client_id", rec.client_id.to_string()),
            ("access_token", tok.clone()),
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
    }
    if let Some(r) = &i.client_id {
        let Some(id) = rt.variable(r) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_client-invalid_client_id",
                StatusCode::INTERNAL_SERVER_ERROR,
                "ClientId is Invalid",
            ));
        };
        let Some(c) = rt.env().registry.client(&id) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_client-invalid_client_id",
                StatusCode::INTERNAL_SERVER_ERROR,
                "ClientId is Invalid",
            ));
        };
        let p = prefix("client");
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
    }
    if let Some(r) = &i.refresh_token {
        let rec = rt.variable(r).and_then(|t| lookup(rt, &t));
        let Some(rec) = rec.filter(|r| r.kind == preflow_oauth::TokenKind::Refresh) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_refresh_token",
                StatusCode::INTERNAL_SERVER_ERROR,
                "Invalid Refresh Token",
            ));
        };
        let p = prefix("refreshtoken");
        rt.set_variable(&format!("{p}.client_id"), rec.client_id.to_string());
        rt.set_variable(&format!("{p}.scope"), rec.scope.to_string());
    }
    if i.authorization_code.is_some() {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.UnsupportedOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            "GetOAuthV2Info <AuthorizationCode> is not supported: codes are single use",
        ));
    }
    Outcome::Continue
}

fn lookup<R: Runtime>(rt: &R, token: &str) -> Option<Arc<preflow_oauth::TokenRecord>> {
    rt.env().tokens.get_token(&TokenHash::of(token.as_bytes()))
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
