//! `<SetOAuthV2Info>`: adds or changes custom attributes of an access token.

use std::sync::Arc;

use http::StatusCode;
use preflow_oauth::{TokenHash, TokenStore};

use crate::parse::{Cx, ref_attr};
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime, StateMode};
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

fn run<R: Runtime>(rt: &mut R, i: &SetOAuthV2Info) -> Outcome {
    if rt.env().state == StateMode::Remote {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.UnsupportedOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            "SetOAuthV2Info needs local token state",
        ));
    }
    let Some(tok) = i.access_token.as_deref().and_then(|r| rt.variable(r)) else {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.invalid_access_token",
            StatusCode::UNAUTHORIZED,
            "Invalid Access Token",
        ));
    };
    let hash = TokenHash::of(tok.as_bytes());
    let Some(rec) = rt.env().tokens.get_token(&hash) else {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.invalid_access_token",
            StatusCode::UNAUTHORIZED,
            "Invalid Access Token",
        ));
    };
    let mut attrs: Vec<(String, String)> = rec.attributes.to_vec();
    for a in &i.attributes {
        let v = a
            .reference
            .as_deref()
            .and_then(|r| rt.variable(r))
            .or_else(|| a.value.clone());
        if let Some(v) = v {
            attrs.retain(|(k, _)| k != &a.name);
            attrs.push((a.name.clone(), v));
        }
    }
    let mut updated = (*rec).clone();
    updated.attributes = attrs.into();
    rt.env().tokens.put_tokens(&[(hash, Arc::new(updated))]);
    Outcome::Continue
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
}
