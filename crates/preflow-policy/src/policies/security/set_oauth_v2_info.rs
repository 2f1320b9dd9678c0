//! `<SetOAuthV2Info>`: adds or changes custom attributes of an access token.

use http::StatusCode;
use preflow_oauth::{TokenHash, TokenStore};

use crate::parse::{Cx, ref_attr};
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime, StateMode, StoreOp, StoreReply, Waiting};
use crate::xml::Element;

use super::TokenAttribute;

/// `<SetOAuthV2Info>`: adds or changes custom attributes of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SetOAuthV2Info {
    /// `<AccessToken ref>`.
    pub access_token: Option<String>,
    /// `<Attributes><Attribute>`.
    pub attributes: Vec<TokenAttribute>,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> SetOAuthV2Info {
    cx.known_policy(el, &["AccessToken", "Attributes"]);
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
    SetOAuthV2Info {
        access_token: el.child("AccessToken").and_then(variable_of),
        attributes,
    }
}

fn invalid_access_token() -> Outcome {
    Outcome::Fault(Fault::new(
        "steps.oauth.v2.invalid_access_token",
        StatusCode::UNAUTHORIZED,
        "Invalid Access Token",
    ))
}

/// Changes the token's attributes in one store operation
/// ([`preflow_oauth::StoreOp::SetAttributes`]): inline on the local store, or as a store
/// step with remote state, atomic in every store.
fn run<R: Runtime>(rt: &mut R, i: &SetOAuthV2Info) -> Outcome {
    let Some(tok) = i.access_token.as_deref().and_then(|r| rt.variable(r)) else {
        return invalid_access_token();
    };
    let hash = TokenHash::of(tok.as_bytes());
    let mut set = Vec::with_capacity(i.attributes.len());
    for a in &i.attributes {
        let v = a
            .reference
            .as_deref()
            .and_then(|r| rt.variable(r))
            .or_else(|| a.value.clone());
        if let Some(v) = v {
            set.push((a.name.clone(), v));
        }
    }
    match rt.env().state {
        StateMode::Local => match rt.env().tokens.set_attributes(&hash, &set) {
            Some(_) => Outcome::Continue,
            None => invalid_access_token(),
        },
        StateMode::Remote => Outcome::Store(
            StoreOp::Token(preflow_oauth::StoreOp::SetAttributes { hash, set }),
            Waiting::Step(0),
        ),
    }
}

fn resume(reply: StoreReply) -> Outcome {
    match reply {
        StoreReply::Token(preflow_oauth::StoreReply::Token(Some(_))) => Outcome::Continue,
        StoreReply::Token(preflow_oauth::StoreReply::Token(None)) => invalid_access_token(),
        _ => super::get_oauth_v2_info::token_store_unavailable(),
    }
}

/// The SetOAuthV2Info policy type.
#[derive(Debug)]
pub(crate) struct SetOAuthV2InfoPolicy;

impl PolicyType for SetOAuthV2InfoPolicy {
    type Config = SetOAuthV2Info;
    type Compiled = SetOAuthV2Info;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> SetOAuthV2Info {
        parse(cx, el)
    }

    fn compile(config: &SetOAuthV2Info, cx: &BuildCx<'_>) -> Result<SetOAuthV2Info, CompileError> {
        let _ = cx;
        Ok(config.clone())
    }

    fn run<R: Runtime>(c: &SetOAuthV2Info, rt: &mut R) -> Outcome {
        run(rt, c)
    }

    fn resume<R: Runtime>(_: &SetOAuthV2Info, _: &mut R, _: Waiting, reply: StoreReply) -> Outcome {
        resume(reply)
    }
}
