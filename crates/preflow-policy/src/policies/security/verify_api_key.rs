//! `<VerifyAPIKey>`: checks an API key against the registry.

use std::sync::Arc;

use preflow_oauth::{OAuthServer, ServerConfig};

use crate::Setting;
use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, PolicyRef, Runtime};
use crate::vars::Slot;
use crate::xml::Element;

use super::credentials::cred_field;

/// `<VerifyAPIKey>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyApiKey {
    /// `<APIKey ref>`: where the key is found (a ref, or a literal key).
    pub api_key: Setting<String>,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> VerifyApiKey {
    cx.known_policy(el, &["APIKey"]);
    let api_key = cx.string_setting(el.child("APIKey"));
    if api_key.is_empty() {
        cx.error_hint(
            el.child("APIKey").map_or(el.offset, |k| k.offset),
            "VerifyAPIKey needs an `<APIKey>` with a `ref` or a value",
            "add `<APIKey ref=\"request.queryparam.apikey\"/>`",
        );
    }
    VerifyApiKey { api_key }
}

fn verify<R: Runtime>(rt: &mut R, server: &OAuthServer, v: &VerifyApiKey) -> Outcome {
    let key = v
        .api_key
        .reference
        .as_deref()
        .and_then(|r| rt.variable(r.trim()))
        .or_else(|| v.api_key.value.clone());
    let result = server.verify_api_key(key.as_deref(), &super::api_call(rt, &[]));
    match result {
        Ok(k) => {
            let at = rt.policy();
            rt.state_mut().api_keys.push((at, k));
            Outcome::Continue
        }
        Err(e) => {
            let mut fs = e.faultstring();
            if matches!(e, preflow_oauth::ApiKeyError::FailedToResolve) {
                fs = format!(
                    "Failed to resolve API Key variable {}",
                    v.api_key.reference.as_deref().unwrap_or("")
                );
            }
            Outcome::Fault(Fault::new(e.error_code(), e.status(), fs).named(e.fault_name()))
        }
    }
}

/// The VerifyApiKey policy type.
#[derive(Debug)]
pub(crate) struct VerifyApiKeyPolicy;

impl PolicyType for VerifyApiKeyPolicy {
    type Config = VerifyApiKey;
    type Compiled = Box<(OAuthServer, VerifyApiKey)>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> VerifyApiKey {
        parse(cx, el)
    }

    fn compile(
        config: &VerifyApiKey,
        cx: &BuildCx<'_>,
    ) -> Result<Box<(OAuthServer, VerifyApiKey)>, CompileError> {
        Ok(Box::new((
            OAuthServer::new(Arc::clone(cx.registry), ServerConfig::default()),
            config.clone(),
        )))
    }

    fn run<R: Runtime>(c: &Box<(OAuthServer, VerifyApiKey)>, rt: &mut R) -> Outcome {
        verify(rt, &c.0, &c.1)
    }

    fn sets_token_variables(_: &VerifyApiKey) -> bool {
        true
    }

    fn variable(at: PolicyRef, field: &str) -> Option<Slot> {
        cred_field(field).map(|f| Slot::ApiKey(at, f))
    }

    fn reads_request_body(v: &VerifyApiKey) -> bool {
        v.api_key
            .reference
            .as_deref()
            .is_some_and(crate::vars::reads_request_body)
    }
}
