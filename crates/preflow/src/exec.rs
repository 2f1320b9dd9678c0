//! Executing one policy on an exchange.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use preflow_condition::{OwnedValue, Value};
use preflow_oauth::{
    ApiCall, OAuthServer, Registry, ResponseMode, ServerConfig, TokenHash, TokenStore,
};
use preflow_policy::message::{AssignTo, MessageOps, MessageType, Selection};
use preflow_policy::security::{OAuthOperation, OAuthV2};
use preflow_policy::template::{Part, Template};
use preflow_policy::{Policy, PolicyConfig};
use preflow_ratelimit::{SpikeArrest, SpikeArrestConfig, Timestamp};

use crate::exchange::{Exchange, Message, StoreOp, StoreReply};
use crate::fault::Fault;
use crate::gateway::{Inner, Profile, Settings, StateMode};
use crate::vars::{Field, Slot, View, Which, resolve_name, write_value};

/// What a policy's run comes to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Go on with the next step.
    Continue,
    /// Enter the error state (or, with continueOnError, mark the policy failed).
    Fault(Fault),
    /// Perform a store operation, then resume.
    Store(StoreOp, Waiting),
    /// Run a shared flow (bundle index) inline.
    Call(usize),
    /// Answer the client with this response now (a CORS preflight): the rest of the
    /// request path and the target are skipped.
    Respond(Message),
    /// Use this response (a ResponseCache hit): the target is skipped and the
    /// ProxyEndpoint response flows run.
    CacheHit(Message),
    /// Ask the host to perform this call (ServiceCallout), then resume the policy.
    Callout(crate::exchange::Target),
}

/// What a suspended policy waits for.
#[derive(Debug)]
pub(crate) enum Waiting {
    /// A SpikeArrest or Quota decision.
    RateLimit {
        op: preflow_ratelimit::StoreOp,
        quota: Option<(u64, String)>,
    },
    /// A token lookup for VerifyAccessToken or ValidateToken.
    Verify,
    /// The token endpoint's continuation.
    Token(preflow_oauth::Pending),
    /// A token lookup before revoking its grant (InvalidateToken with cascade).
    Invalidate { cascade: bool },
    /// A revocation or code store; then go on.
    Done,
}

/// Build-time context of one policy.
pub(crate) struct BuildCx<'a> {
    pub bundle: usize,
    pub bundle_name: &'a str,
    pub settings: &'a Settings,
    pub registry: &'a Arc<Registry>,
    pub state: StateMode,
    pub shared: &'a HashMap<String, usize>,
}

/// A policy ready to run.
#[derive(Debug)]
pub(crate) struct CPolicy {
    pub name: String,
    pub type_name: String,
    pub enabled: bool,
    pub continue_on_error: bool,
    pub exec: Exec,
}

#[derive(Debug)]
pub(crate) struct Spike {
    limiter: SpikeArrest,
    rate_text: String,
    rate_ref: Option<String>,
    identifier: Option<String>,
    weight: Option<String>,
    by_rate: dashmap::DashMap<String, Arc<SpikeArrest>>,
    config: SpikeArrestConfig,
}

#[derive(Debug)]
pub(crate) struct OAuth {
    server: OAuthServer,
    config: OAuthV2,
    scopes: Vec<String>,
    generate_response: bool,
    realm: String,
}

/// The executable form of a policy.
#[derive(Debug)]
pub(crate) enum Exec {
    Missing,
    Unsupported,
    RaiseFault(preflow_policy::message::RaiseFault),
    AssignMessage(preflow_policy::message::AssignMessage),
    SpikeArrest(Box<Spike>),
    OAuth(Box<OAuth>),
    VerifyApiKey(Box<(OAuthServer, preflow_policy::security::VerifyApiKey)>),
    FlowCallout(Option<usize>, preflow_policy::callout::FlowCallout),
    Quota(Box<crate::policies_more::CQuota>),
    ExtractVariables(Box<preflow_policy::extract::ExtractVariables>),
    Kvm(Box<preflow_policy::kvm::KeyValueMapOperations>),
    BasicAuthentication(Box<preflow_policy::security::BasicAuthentication>),
    AccessControl(Box<preflow_policy::security::AccessControl>),
    GetOAuthV2Info(Box<preflow_policy::security::GetOAuthV2Info>),
    SetOAuthV2Info(Box<preflow_policy::security::SetOAuthV2Info>),
    /// JWT, threat protection, CORS, caches, callouts, logging and format conversion.
    Family(crate::families::FamilyExec),
}

impl CPolicy {
    pub(crate) fn missing(name: &str) -> Self {
        CPolicy {
            name: name.to_owned(),
            type_name: "(missing)".to_owned(),
            enabled: true,
            continue_on_error: false,
            exec: Exec::Missing,
        }
    }
}

fn rate_text(r: &preflow_policy::traffic::Rate) -> String {
    match r.period {
        preflow_policy::traffic::RatePeriod::Second => format!("{}ps", r.count),
        preflow_policy::traffic::RatePeriod::Minute => format!("{}pm", r.count),
    }
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
        // A refresh policy in the same proxy uses the refresh grant.
        if matches!(cfg.operation, Some(OAuthOperation::RefreshAccessToken)) {
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

/// Compiles one policy.
pub(crate) fn compile(p: &Policy, cx: &BuildCx<'_>) -> Result<CPolicy, String> {
    let exec = match &p.config {
        PolicyConfig::RaiseFault(r) => Exec::RaiseFault(r.clone()),
        PolicyConfig::AssignMessage(a) => Exec::AssignMessage(a.clone()),
        PolicyConfig::SpikeArrest(s) => {
            let rate = s
                .rate
                .value
                .as_ref()
                .map(rate_text)
                .unwrap_or_else(|| "1ps".to_owned());
            let parsed: preflow_ratelimit::Rate = rate
                .parse()
                .map_err(|e| format!("invalid rate `{rate}`: {e}"))?;
            let mut config = SpikeArrestConfig::new(parsed).with_behaviour(cx.settings.spike);
            if s.use_effective_count {
                config.use_effective_count = true;
            }
            Exec::SpikeArrest(Box::new(Spike {
                limiter: SpikeArrest::new(config),
                rate_text: rate,
                rate_ref: s.rate.reference.clone(),
                identifier: s.identifier.clone(),
                weight: s.message_weight.clone(),
                by_rate: dashmap::DashMap::new(),
                config,
            }))
        }
        PolicyConfig::OAuthV2(o) => {
            let server = OAuthServer::new(Arc::clone(cx.registry), server_config(o, cx.settings));
            let scopes = match o.operation {
                Some(OAuthOperation::VerifyAccessToken) => o
                    .scope
                    .as_deref()
                    .map(|s| s.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            Exec::OAuth(Box::new(OAuth {
                server,
                config: o.clone(),
                scopes,
                generate_response: o.generate_response.unwrap_or(false),
                realm: "null".to_owned(),
            }))
        }
        PolicyConfig::VerifyApiKey(v) => Exec::VerifyApiKey(Box::new((
            OAuthServer::new(Arc::clone(cx.registry), ServerConfig::default()),
            v.clone(),
        ))),
        PolicyConfig::FlowCallout(f) => {
            let target = f
                .shared_flow_bundle
                .as_deref()
                .and_then(|n| cx.shared.get(n.trim()).copied());
            Exec::FlowCallout(target, f.clone())
        }
        PolicyConfig::Quota(q) => Exec::Quota(Box::new(crate::policies_more::compile_quota(q)?)),
        PolicyConfig::ExtractVariables(e) => Exec::ExtractVariables(Box::new(e.clone())),
        PolicyConfig::KeyValueMapOperations(k) => Exec::Kvm(Box::new(k.clone())),
        PolicyConfig::BasicAuthentication(b) => Exec::BasicAuthentication(Box::new(b.clone())),
        PolicyConfig::AccessControl(a) => Exec::AccessControl(Box::new(a.clone())),
        PolicyConfig::GetOAuthV2Info(i) => Exec::GetOAuthV2Info(Box::new(i.clone())),
        PolicyConfig::SetOAuthV2Info(i) => Exec::SetOAuthV2Info(Box::new(i.clone())),
        other => match crate::families::compile(other) {
            Some(f) => Exec::Family(f),
            None => Exec::Unsupported,
        },
    };
    let _ = (cx.bundle, cx.bundle_name, cx.state);
    Ok(CPolicy {
        name: p.name.clone(),
        type_name: p.type_name.clone(),
        enabled: p.enabled,
        continue_on_error: p.continue_on_error,
        exec,
    })
}

fn rate_status(g: &Inner) -> StatusCode {
    match g.settings.profile {
        Profile::Cloud => StatusCode::TOO_MANY_REQUESTS,
        Profile::PrivateCloud => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Reads variable `name` as text.
pub(crate) fn read_var(g: &Inner, ex: &Exchange, name: &str) -> Option<String> {
    crate::engine::variable_text(g, ex, name)
}

fn now_secs(ex: &Exchange) -> u64 {
    ex.now_ns / 1_000_000_000
}

/// Runs policy `policy` of bundle `bundle`.
pub(crate) fn execute(g: &Inner, ex: &mut Exchange, bundle: usize, policy: usize) -> Outcome {
    let Some(b) = g.bundles.get(bundle) else {
        return Outcome::Continue;
    };
    let Some(p) = b.policies.get(policy) else {
        return Outcome::Continue;
    };
    match &p.exec {
        Exec::Missing => Outcome::Fault(crate::fault::faults::policy_missing(&p.name)),
        Exec::Unsupported => {
            Outcome::Fault(crate::fault::faults::unsupported(&p.type_name, &p.name))
        }
        Exec::Family(f) => crate::families::execute(g, ex, bundle, &p.name, f),
        Exec::RaiseFault(r) => raise_fault(g, ex, bundle, &p.name, r),
        Exec::AssignMessage(a) => {
            match apply_ops(g, ex, bundle, &a.ops, a.ignore_unresolved_variables, None) {
                Ok(()) => Outcome::Continue,
                Err(f) => Outcome::Fault(f),
            }
        }
        Exec::SpikeArrest(s) => spike_arrest(g, ex, bundle, policy, s),
        Exec::OAuth(o) => oauth(g, ex, bundle, policy, o),
        Exec::VerifyApiKey(v) => verify_api_key(g, ex, bundle, policy, &v.0, &v.1),
        Exec::Quota(q) => crate::policies_more::quota(g, ex, bundle, policy, q),
        Exec::ExtractVariables(e) => crate::policies_more::extract_variables(g, ex, bundle, e),
        Exec::Kvm(k) => crate::policies_more::kvm(g, ex, bundle, &p.name, k),
        Exec::BasicAuthentication(b) => {
            crate::policies_more::basic_authentication(g, ex, bundle, b)
        }
        Exec::AccessControl(a) => crate::policies_more::access_control(g, ex, bundle, a),
        Exec::GetOAuthV2Info(i) => crate::policies_more::get_oauth_info(g, ex, bundle, &p.name, i),
        Exec::SetOAuthV2Info(i) => crate::policies_more::set_oauth_info(g, ex, bundle, i),
        Exec::FlowCallout(target, f) => {
            let Some(t) = target else {
                return Outcome::Fault(Fault::new(
                    "flow.SharedFlowNotFound",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Shared flow {} not found",
                        f.shared_flow_bundle.as_deref().unwrap_or("(none)")
                    ),
                ));
            };
            for param in &f.parameters {
                let value = param
                    .reference
                    .as_deref()
                    .and_then(|r| read_var(g, ex, r))
                    .or_else(|| param.value.clone());
                if let Some(v) = value {
                    ex.vars.insert(param.name.clone(), OwnedValue::String(v));
                }
            }
            Outcome::Call(*t)
        }
    }
}

/// Resumes a ServiceCallout with the host's result.
pub(crate) fn resume_callout(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    result: Result<http::Response<Bytes>, crate::exchange::TargetError>,
) -> Outcome {
    match g
        .bundles
        .get(bundle)
        .and_then(|b| b.policies.get(policy))
        .map(|p| (&p.name, &p.exec))
    {
        Some((name, Exec::Family(crate::families::FamilyExec::ServiceCallout(sc)))) => {
            crate::families::finish_callout(g, ex, bundle, name, sc, result)
        }
        _ => Outcome::Continue,
    }
}

/// Resumes a policy with the reply to its store operation.
pub(crate) fn resume(
    g: &Inner,
    ex: &mut Exchange,
    resume: crate::engine::Resume,
    reply: StoreReply,
) -> Outcome {
    let Some(p) = g
        .bundles
        .get(resume.bundle)
        .and_then(|b| b.policies.get(resume.policy))
    else {
        return Outcome::Continue;
    };
    match (resume.kind, reply, &p.exec) {
        (Waiting::RateLimit { op, quota }, StoreReply::RateLimit(r), _) => match op.resolve(&r) {
            Ok(preflow_ratelimit::Decision::Spike(d)) => spike_outcome(g, p, d.allowed),
            Ok(preflow_ratelimit::Decision::Quota(d)) => {
                let id = quota.map(|(_, id)| id).unwrap_or_default();
                crate::policies_more::outcome(g, ex, resume.bundle, resume.policy, d, id)
            }
            Err(e) => Outcome::Fault(crate::fault::faults::internal(e.to_string())),
        },
        (Waiting::RateLimit { .. }, _, _) => {
            // The counter store is unavailable: fail open, with the policy marked failed.
            ex.failed.push((resume.bundle, resume.policy));
            Outcome::Continue
        }
        (
            Waiting::Verify,
            StoreReply::Token(preflow_oauth::StoreReply::Token(found)),
            Exec::OAuth(o),
        ) => finish_verify(g, ex, o, found),
        (Waiting::Verify, _, Exec::OAuth(o)) => {
            let e = preflow_oauth::VerifyError::StoreUnavailable;
            Outcome::Fault(verify_fault(&e, &o.realm))
        }
        (Waiting::Token(pending), StoreReply::Token(r), Exec::OAuth(o)) => {
            let outcome = o.server.resume(pending, r);
            token_outcome(g, ex, resume.bundle, p, o, outcome)
        }
        (Waiting::Token(pending), _, Exec::OAuth(o)) => {
            let outcome = o
                .server
                .resume(pending, preflow_oauth::StoreReply::Unavailable);
            token_outcome(g, ex, resume.bundle, p, o, outcome)
        }
        (
            Waiting::Invalidate { cascade },
            StoreReply::Token(preflow_oauth::StoreReply::Token(found)),
            _,
        ) => match found {
            Some(rec) if cascade => Outcome::Store(
                StoreOp::Token(preflow_oauth::StoreOp::RevokeGrant {
                    grant: rec.grant_id,
                    at: now_secs(ex),
                }),
                Waiting::Done,
            ),
            _ => Outcome::Continue,
        },
        (Waiting::Done, StoreReply::Token(_), _) => Outcome::Continue,
        _ => Outcome::Fault(Fault::new(
            "steps.oauth.v2.FailedToResolveToken",
            StatusCode::SERVICE_UNAVAILABLE,
            "The token store is unavailable",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Templates, variables and messages

/// Renders `t`; an unresolved reference is an error.
pub(crate) fn render_for(
    g: &Inner,
    ex: &Exchange,
    bundle: usize,
    t: &Template,
) -> Result<String, Fault> {
    render(g, ex, bundle, t, false)
}

fn render(
    g: &Inner,
    ex: &Exchange,
    bundle: usize,
    t: &Template,
    ignore_unresolved: bool,
) -> Result<String, Fault> {
    let mut out = String::new();
    let empty = HashMap::new();
    let index = g.bundles.get(bundle).map_or(&empty, |b| &b.policy_index);
    let view = View { g, ex };
    let r = t.render_into(&mut out, |part, buf| match part {
        Part::Variable(name) => write_value(view.value(&resolve_name(name, bundle, index)), buf),
        Part::Function { name, args } => function(&view, bundle, index, name, args, buf),
        Part::Literal(_) => true,
    });
    match r {
        Ok(()) => Ok(out),
        Err(_) if ignore_unresolved => Ok(out),
        Err(u) => Err(Fault::new(
            "steps.assignmessage.UnresolvedVariable",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Unresolved variable : {}", u.0),
        )),
    }
}

/// Template functions: `firstnonnull`, `escapeJSON`, `escapeXML`, `toLowerCase`,
/// `toUpperCase`.
fn function(
    view: &View<'_>,
    bundle: usize,
    index: &HashMap<String, usize>,
    name: &str,
    args: &[String],
    out: &mut String,
) -> bool {
    let arg = |a: &str, buf: &mut String| {
        if let Some(lit) = a.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
            buf.push_str(lit);
            true
        } else {
            write_value(view.value(&resolve_name(a, bundle, index)), buf)
        }
    };
    match name {
        "firstnonnull" => args.iter().any(|a| arg(a, out)),
        "escapeJSON" | "escapeXML" | "toLowerCase" | "toUpperCase" => {
            let mut s = String::new();
            if !args.first().is_some_and(|a| arg(a, &mut s)) {
                return false;
            }
            let t = match name {
                "escapeJSON" => {
                    let q = serde_json::Value::String(s).to_string();
                    q.get(1..q.len().saturating_sub(1)).unwrap_or("").to_owned()
                }
                "escapeXML" => s
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&apos;"),
                "toLowerCase" => s.to_lowercase(),
                _ => s.to_uppercase(),
            };
            out.push_str(&t);
            true
        }
        _ => false,
    }
}

/// Sets variable `name`: message parts are written to the message, the rest is kept by
/// name.
pub(crate) fn set_variable(g: &Inner, ex: &mut Exchange, bundle: usize, name: &str, value: String) {
    let empty = HashMap::new();
    let index = g.bundles.get(bundle).map_or(&empty, |b| &b.policy_index);
    match resolve_name(name, bundle, index) {
        Slot::Msg(which, field) => {
            let response_side = ex.stage.is_response_side();
            let m = match which {
                Which::Request => Some(&mut ex.request),
                Which::Message if !response_side => Some(&mut ex.request),
                _ => ex.response.as_mut(),
            };
            if let Some(m) = m {
                match field {
                    Field::Header(h) => {
                        if let Ok(v) = HeaderValue::from_str(&value) {
                            m.headers.insert(h, v);
                        }
                    }
                    Field::Content => m.body = Bytes::from(value),
                    Field::StatusCode => {
                        if let Some(s) = value
                            .trim()
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| StatusCode::from_u16(s).ok())
                        {
                            m.status = s;
                        }
                    }
                    Field::ReasonPhrase => m.reason = Some(value),
                    Field::Verb => {
                        if let Ok(v) = http::Method::from_bytes(value.as_bytes()) {
                            m.method = v;
                        }
                    }
                    Field::Path => m.path = value,
                    Field::QueryString => m.query = Some(value),
                    _ => {
                        ex.vars.insert(name.to_owned(), OwnedValue::String(value));
                        return;
                    }
                }
                ex.invalidate_params();
            }
        }
        Slot::TargetUrl => ex.target_url = Some(value),
        _ => {
            ex.vars.insert(name.to_owned(), OwnedValue::String(value));
        }
    }
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Fault> {
    let n = HeaderName::from_bytes(name.trim().as_bytes());
    let v = HeaderValue::from_str(value);
    match (n, v) {
        (Ok(n), Ok(v)) => Ok((n, v)),
        _ => Err(Fault::new(
            "steps.assignmessage.SetVariableFailed",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot set header `{name}`"),
        )),
    }
}

fn params_of(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn encode_params(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn select(sel: &Selection, name: &str) -> bool {
    match sel {
        Selection::None => false,
        Selection::All => true,
        Selection::Named(n) => n.iter().any(|x| x.eq_ignore_ascii_case(name)),
    }
}

/// Where AssignMessage operations apply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Request,
    Response,
    /// A new message that is not the request or response: built, then dropped.
    Detached,
}

/// Applies Copy, Remove, Add, Set, AssignVariable in that order. With `raise`, the
/// operations build that message (RaiseFault's FaultResponse).
pub(crate) fn apply_ops(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    ops: &MessageOps,
    ignore: bool,
    mut raise: Option<&mut Message>,
) -> Result<(), Fault> {
    let target = match (&raise, &ops.assign_to) {
        (Some(_), _) => Target::Detached,
        (
            None,
            Some(AssignTo {
                variable,
                create_new,
                message_type,
            }),
        ) => match variable.as_deref().map(str::trim) {
            Some("request") => Target::Request,
            Some("response") => Target::Response,
            Some(_) => Target::Detached,
            None if *create_new => Target::Detached,
            None => match message_type {
                MessageType::Request => Target::Request,
                MessageType::Response => Target::Response,
            },
        },
        (None, None) => {
            if ex.stage.is_response_side() {
                Target::Response
            } else {
                Target::Request
            }
        }
    };
    // Render everything first (reads), then write.
    let mut scratch = Message::response(StatusCode::OK);
    if target == Target::Response && ex.response.is_none() {
        ex.response = Some(Message::response(StatusCode::OK));
    }
    macro_rules! msg {
        () => {
            match (&mut raise, target) {
                (Some(m), _) => &mut **m,
                (None, Target::Request) => &mut ex.request,
                (None, Target::Response) => ex.response.as_mut().unwrap_or(&mut scratch),
                (None, Target::Detached) => &mut scratch,
            }
        };
    }
    if let Some(copy) = &ops.copy {
        let source = match copy.source.as_deref().map(str::trim) {
            Some("response") => ex
                .response
                .clone()
                .unwrap_or_else(|| Message::response(StatusCode::OK)),
            _ => ex.request.clone(),
        };
        let m = msg!();
        for (k, v) in source.headers.iter() {
            if select(&copy.headers, k.as_str()) {
                m.headers.insert(k.clone(), v.clone());
            }
        }
        if !copy.query_params.is_none() {
            let mut mine = params_of(m.query.as_deref());
            for (k, v) in params_of(source.query.as_deref()) {
                if select(&copy.query_params, &k) {
                    mine.retain(|(x, _)| x != &k);
                    mine.push((k, v));
                }
            }
            m.query = Some(encode_params(&mine)).filter(|q| !q.is_empty());
        }
        if copy.payload {
            m.body = source.body.clone();
            if let Some(ct) = source.headers.get(CONTENT_TYPE) {
                m.headers.insert(CONTENT_TYPE, ct.clone());
            }
        }
        if copy.verb {
            m.method = source.method.clone();
        }
        if copy.path {
            m.path = source.path.clone();
        }
        if copy.version {
            m.version = source.version;
        }
        if copy.status_code {
            m.status = source.status;
        }
        if copy.reason_phrase {
            m.reason = source.reason.clone();
        }
    }
    if let Some(rm) = &ops.remove {
        let m = msg!();
        match &rm.headers {
            Selection::None => {}
            Selection::All => m.headers.clear(),
            Selection::Named(names) => {
                for n in names {
                    if let Ok(h) = HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes())
                    {
                        m.headers.remove(h);
                    }
                }
            }
        }
        if !rm.query_params.is_none() {
            let mut q = params_of(m.query.as_deref());
            q.retain(|(k, _)| !select(&rm.query_params, k));
            m.query = Some(encode_params(&q)).filter(|q| !q.is_empty());
        }
        if !rm.form_params.is_none() {
            let mut f = params_of(std::str::from_utf8(&m.body).ok());
            f.retain(|(k, _)| !select(&rm.form_params, k));
            m.body = Bytes::from(encode_params(&f));
        }
        if rm.payload {
            m.body = Bytes::new();
        }
    }
    if let Some(add) = &ops.add {
        let mut headers = Vec::new();
        for h in &add.headers {
            let n = render(g, ex, bundle, &h.name, ignore)?;
            let v = render(g, ex, bundle, &h.value, ignore)?;
            headers.push(header_pair(&n, &v)?);
        }
        let mut qs = Vec::new();
        for q in &add.query_params {
            qs.push((
                render(g, ex, bundle, &q.name, ignore)?,
                render(g, ex, bundle, &q.value, ignore)?,
            ));
        }
        let mut fs = Vec::new();
        for f in &add.form_params {
            fs.push((
                render(g, ex, bundle, &f.name, ignore)?,
                render(g, ex, bundle, &f.value, ignore)?,
            ));
        }
        let m = msg!();
        for (n, v) in headers {
            m.headers.append(n, v);
        }
        if !qs.is_empty() {
            let mut q = params_of(m.query.as_deref());
            q.extend(qs);
            m.query = Some(encode_params(&q));
        }
        if !fs.is_empty() {
            let mut f = params_of(std::str::from_utf8(&m.body).ok());
            f.extend(fs);
            m.body = Bytes::from(encode_params(&f));
        }
    }
    if let Some(set) = &ops.set {
        let mut headers = Vec::new();
        for h in &set.headers {
            let n = render(g, ex, bundle, &h.name, ignore)?;
            let v = render(g, ex, bundle, &h.value, ignore)?;
            headers.push(header_pair(&n, &v)?);
        }
        let mut qs = Vec::new();
        for q in &set.query_params {
            qs.push((
                render(g, ex, bundle, &q.name, ignore)?,
                render(g, ex, bundle, &q.value, ignore)?,
            ));
        }
        let mut fs = Vec::new();
        for f in &set.form_params {
            fs.push((
                render(g, ex, bundle, &f.name, ignore)?,
                render(g, ex, bundle, &f.value, ignore)?,
            ));
        }
        let payload = match &set.payload {
            Some(p) => Some((
                render(g, ex, bundle, &p.template, ignore)?,
                p.content_type.clone(),
            )),
            None => None,
        };
        let opt = |t: &Option<Template>| -> Result<Option<String>, Fault> {
            t.as_ref()
                .map(|t| render(g, ex, bundle, t, ignore))
                .transpose()
        };
        let verb = opt(&set.verb)?;
        let path = opt(&set.path)?;
        let status = opt(&set.status_code)?;
        let reason = opt(&set.reason_phrase)?;
        let m = msg!();
        for (n, v) in headers {
            m.headers.insert(n, v);
        }
        if !qs.is_empty() {
            let mut q = params_of(m.query.as_deref());
            for (k, v) in qs {
                q.retain(|(x, _)| x != &k);
                q.push((k, v));
            }
            m.query = Some(encode_params(&q));
        }
        if !fs.is_empty() {
            let mut f = params_of(std::str::from_utf8(&m.body).ok());
            for (k, v) in fs {
                f.retain(|(x, _)| x != &k);
                f.push((k, v));
            }
            m.body = Bytes::from(encode_params(&f));
        }
        if let Some((body, ct)) = payload {
            m.body = Bytes::from(body);
            if let Some(v) = ct.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
                m.headers.insert(CONTENT_TYPE, v);
            }
        }
        if let Some(v) = verb.and_then(|v| http::Method::from_bytes(v.trim().as_bytes()).ok()) {
            m.method = v;
        }
        if let Some(p) = path {
            m.path = p;
        }
        if let Some(s) = status {
            match s
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
            {
                Some(s) => m.status = s,
                None => {
                    return Err(Fault::new(
                        "steps.assignmessage.SetVariableFailed",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Invalid status code `{s}`"),
                    ));
                }
            }
        }
        if let Some(r) = reason {
            m.reason = Some(r);
        }
    }
    if target == Target::Request {
        ex.invalidate_params();
    }
    for av in &ops.assign_variables {
        let value = av
            .reference
            .as_deref()
            .and_then(|r| read_var(g, ex, r.trim()));
        let value = match value {
            Some(v) => Some(v),
            None => match &av.template {
                Some(t) => Some(render(g, ex, bundle, t, true)?),
                None => match av.template_ref.as_deref().and_then(|r| read_var(g, ex, r)) {
                    Some(t) => Some(render(g, ex, bundle, &Template::parse(&t), true)?),
                    None => av.value.clone(),
                },
            },
        };
        if let Some(v) = value {
            set_variable(g, ex, bundle, av.name.trim(), v);
        }
    }
    Ok(())
}

fn raise_fault(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    name: &str,
    r: &preflow_policy::message::RaiseFault,
) -> Outcome {
    let ops = &r.fault_response;
    let empty =
        ops.copy.is_none() && ops.remove.is_none() && ops.add.is_none() && ops.set.is_none();
    let mut fault = Fault::new(
        "steps.raisefault.RaiseFault",
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Raising fault. Fault name : {name}"),
    );
    fault.raised = true;
    let mut m = Message::response(StatusCode::INTERNAL_SERVER_ERROR);
    if let Err(f) = apply_ops(
        g,
        ex,
        bundle,
        ops,
        r.ignore_unresolved_variables,
        Some(&mut m),
    ) {
        return Outcome::Fault(f);
    }
    if !empty {
        fault.status = m.status;
        fault.response = Some(m);
    }
    Outcome::Fault(fault)
}

// ---------------------------------------------------------------------------------------
// Traffic

fn spike_outcome(g: &Inner, p: &CPolicy, allowed: bool) -> Outcome {
    if allowed {
        return Outcome::Continue;
    }
    let rate = match &p.exec {
        Exec::SpikeArrest(s) => s.rate_text.as_str(),
        _ => "",
    };
    Outcome::Fault(Fault::new(
        "policies.ratelimit.SpikeArrestViolation",
        rate_status(g),
        format!("Spike arrest violation. Allowed rate : {rate}"),
    ))
}

fn weight_of(g: &Inner, ex: &Exchange, var: Option<&str>) -> Result<u32, Fault> {
    let Some(v) = var else { return Ok(1) };
    match read_var(g, ex, v) {
        None => Ok(1),
        Some(t) => t.trim().parse::<u32>().map_err(|_| {
            Fault::new(
                "policies.ratelimit.InvalidMessageWeight",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Invalid message weight value {t}"),
            )
        }),
    }
}

fn spike_arrest(g: &Inner, ex: &mut Exchange, bundle: usize, policy: usize, s: &Spike) -> Outcome {
    let weight = match weight_of(g, ex, s.weight.as_deref()) {
        Ok(w) => w,
        Err(f) => return Outcome::Fault(f),
    };
    // A Rate ref that resolves takes precedence over the literal.
    let mut limiter_owned = None;
    if let Some(r) = &s.rate_ref
        && let Some(text) = read_var(g, ex, r)
    {
        {
            let Ok(rate) = text.trim().parse::<preflow_ratelimit::Rate>() else {
                return Outcome::Fault(Fault::new(
                    "policies.ratelimit.FailedToResolveSpikeArrestRate",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Failed to resolve Spike Arrest Rate reference {r}: `{text}`"),
                ));
            };
            let entry = s
                .by_rate
                .entry(text.trim().to_owned())
                .or_insert_with(|| {
                    let mut c = s.config;
                    c.rate = rate;
                    Arc::new(SpikeArrest::new(c))
                })
                .clone();
            limiter_owned = Some(entry);
        }
    }
    let limiter: &SpikeArrest = limiter_owned.as_deref().unwrap_or(&s.limiter);
    let now = Timestamp::from_nanos(ex.now_ns);
    let view = View { g, ex };
    let id_slot = s.identifier.as_deref().map(|i| {
        let empty = HashMap::new();
        let index = g.bundles.get(bundle).map_or(&empty, |b| &b.policy_index);
        resolve_name(i, bundle, index)
    });
    let mut owned = String::new();
    let key: &str = match &id_slot {
        None => "_default",
        Some(slot) => match view.value(slot) {
            Value::String(v) => v,
            v => {
                if write_value(v, &mut owned) {
                    owned.as_str()
                } else {
                    "_default"
                }
            }
        },
    };
    match g.state {
        StateMode::Local => {
            let d = limiter.check(key, now, weight);
            let p = g.bundles.get(bundle).and_then(|b| b.policies.get(policy));
            match p {
                Some(p) => spike_outcome(g, p, d.allowed),
                None => Outcome::Continue,
            }
        }
        StateMode::Remote => {
            let name = g.bundles.get(bundle).map_or("", |b| b.name.as_str());
            let pname = g
                .bundles
                .get(bundle)
                .and_then(|b| b.policies.get(policy))
                .map_or("", |p| p.name.as_str());
            let full = format!("spike:{name}:{pname}:{key}");
            let op = limiter.store_op(&full, now, weight);
            Outcome::Store(
                StoreOp::RateLimit(op.clone()),
                Waiting::RateLimit { op, quota: None },
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// Security

fn verify_fault(e: &preflow_oauth::VerifyError, realm: &str) -> Fault {
    let mut f = Fault::new(e.error_code(), e.status(), e.faultstring()).named(e.fault_name());
    let challenge = format!(
        "Bearer realm=\"{realm}\",error=\"{}\",error_description=\"{}: {}\"",
        e.rfc_error().unwrap_or("invalid_token"),
        e.error_code(),
        e.faultstring()
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        f = f.with_header(http::header::WWW_AUTHENTICATE, v);
    }
    f
}

fn call<'a>(g: &'a Inner, ex: &'a Exchange, scopes: &'a [&'a str]) -> ApiCall<'a> {
    ApiCall {
        proxy: g.bundles.get(ex.bundle).map_or("", |b| b.name.as_str()),
        path_suffix: ex.path_suffix(),
        environment: &g.settings.environment,
        required_scopes: scopes,
        scope_match: preflow_oauth::ScopeMatch::Any,
        locations: preflow_oauth::BearerLocations::default(),
        now: now_secs(ex),
    }
}

fn finish_verify(
    g: &Inner,
    ex: &mut Exchange,
    o: &OAuth,
    found: Option<Arc<preflow_oauth::TokenRecord>>,
) -> Outcome {
    let scopes: Vec<&str> = o.scopes.iter().map(String::as_str).collect();
    let result = o.server.check_token(found, &call(g, ex, &scopes));
    match result {
        Ok(v) => {
            ex.verified = Some(v);
            Outcome::Continue
        }
        Err(e) => Outcome::Fault(verify_fault(&e, &o.realm)),
    }
}

/// The access token a VerifyAccessToken reads: the `<AccessToken>` variable, else the
/// `Authorization` header with the `<AccessTokenPrefix>` (default `Bearer`).
fn presented_token(g: &Inner, ex: &Exchange, o: &OAuth) -> Option<String> {
    if let Some(var) = &o.config.access_token {
        return read_var(g, ex, var.trim()).filter(|t| !t.is_empty());
    }
    let prefix = o.config.access_token_prefix.as_deref().unwrap_or("Bearer");
    for v in ex.request.headers.get_all(http::header::AUTHORIZATION) {
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

fn verify_access_token(g: &Inner, ex: &mut Exchange, o: &OAuth) -> Outcome {
    // Hash the token straight from the header when possible: no allocation.
    let hash = if o.config.access_token.is_none() {
        let prefix = o.config.access_token_prefix.as_deref().unwrap_or("Bearer");
        let mut found = None;
        if let Some(v) = ex.request.headers.get(http::header::AUTHORIZATION) {
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
        presented_token(g, ex, o).map(|t| TokenHash::of(t.as_bytes()))
    };
    let Some(hash) = hash else {
        return Outcome::Fault(verify_fault(
            &preflow_oauth::VerifyError::MissingToken,
            &o.realm,
        ));
    };
    match g.state {
        StateMode::Local => {
            let found = g.tokens.get_token(&hash);
            finish_verify(g, ex, o, found)
        }
        StateMode::Remote => Outcome::Store(
            StoreOp::Token(preflow_oauth::StoreOp::GetToken(hash)),
            Waiting::Verify,
        ),
    }
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

fn token_outcome(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    p: &CPolicy,
    o: &OAuth,
    outcome: preflow_oauth::Outcome,
) -> Outcome {
    let resp = match outcome {
        preflow_oauth::Outcome::NeedsStore(op, pending) => match g.state {
            StateMode::Local => {
                let reply = g.tokens.execute(op);
                let next = o.server.resume(pending, reply);
                return token_outcome(g, ex, bundle, p, o, next);
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
                set_variable(
                    g,
                    ex,
                    bundle,
                    &format!("oauthv2accesstoken.{}.{k}", p.name),
                    text,
                );
            }
        }
        if o.generate_response {
            ex.response = Some(m);
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
    set_variable(
        g,
        ex,
        bundle,
        &format!("oauthV2.{}.fault.name", p.name),
        name.to_owned(),
    );
    Outcome::Fault(f)
}

fn token_endpoint(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    o: &OAuth,
) -> Outcome {
    let Some(p) = g.bundles.get(bundle).and_then(|b| b.policies.get(policy)) else {
        return Outcome::Continue;
    };
    let mut req = http::Request::new(ex.request.body.clone());
    *req.method_mut() = ex.request.method.clone();
    *req.uri_mut() = ex.original_uri.clone();
    *req.headers_mut() = ex.request.headers.clone();
    let mut ctx = preflow_oauth::RequestContext::at(now_secs(ex));
    ctx.client_ip = Some(ex.client.addr.ip());
    for a in &o.config.attributes {
        let v = a
            .reference
            .as_deref()
            .and_then(|r| read_var(g, ex, r))
            .or_else(|| a.value.clone());
        if let Some(v) = v {
            ctx.attributes.push((a.name.clone(), v));
        }
    }
    let outcome = o.server.token_request(&req, &ctx);
    token_outcome(g, ex, bundle, p, o, outcome)
}

fn oauth(g: &Inner, ex: &mut Exchange, bundle: usize, policy: usize, o: &OAuth) -> Outcome {
    match o.config.operation {
        Some(OAuthOperation::VerifyAccessToken) => verify_access_token(g, ex, o),
        Some(OAuthOperation::GenerateAccessToken | OAuthOperation::RefreshAccessToken) => {
            token_endpoint(g, ex, bundle, policy, o)
        }
        Some(OAuthOperation::InvalidateToken) => {
            let Some(t) = o.config.tokens.first() else {
                return Outcome::Continue;
            };
            let Some(value) = t.variable.as_deref().and_then(|v| read_var(g, ex, v)) else {
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
                        at: now_secs(ex),
                    },
                    Waiting::Done,
                )
            };
            run_token_op(g, ex, bundle, policy, op, waiting)
        }
        Some(OAuthOperation::ValidateToken) => {
            let value = o
                .config
                .tokens
                .first()
                .and_then(|t| t.variable.as_deref())
                .and_then(|v| read_var(g, ex, v))
                .or_else(|| presented_token(g, ex, o));
            let Some(value) = value else {
                return Outcome::Fault(verify_fault(
                    &preflow_oauth::VerifyError::MissingToken,
                    &o.realm,
                ));
            };
            let hash = TokenHash::of(value.as_bytes());
            match g.state {
                StateMode::Local => {
                    let found = g.tokens.get_token(&hash);
                    finish_verify(g, ex, o, found)
                }
                StateMode::Remote => Outcome::Store(
                    StoreOp::Token(preflow_oauth::StoreOp::GetToken(hash)),
                    Waiting::Verify,
                ),
            }
        }
        Some(OAuthOperation::GenerateAuthorizationCode) => {
            authorization_code(g, ex, bundle, policy, o)
        }
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

fn run_token_op(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    op: preflow_oauth::StoreOp,
    waiting: Waiting,
) -> Outcome {
    match g.state {
        StateMode::Remote => Outcome::Store(StoreOp::Token(op), waiting),
        StateMode::Local => {
            let mut op = op;
            let mut waiting = waiting;
            for _ in 0..4 {
                let reply = g.tokens.execute(op);
                let r = resume(
                    g,
                    ex,
                    crate::engine::Resume {
                        bundle,
                        policy,
                        op: StoreOp::Token(preflow_oauth::StoreOp::GetToken(TokenHash([0; 32]))),
                        kind: waiting,
                    },
                    StoreReply::Token(reply),
                );
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

fn authorization_code(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    o: &OAuth,
) -> Outcome {
    let var = |elem: &str, default: &str| -> Option<String> {
        let name = o
            .config
            .request_variables
            .iter()
            .find(|(k, _)| k == elem)
            .map_or(default, |(_, v)| v.as_str());
        read_var(g, ex, name)
    };
    let req = preflow_oauth::CodeRequest {
        client_id: var("ClientId", "request.queryparam.client_id").unwrap_or_default(),
        redirect_uri: var("RedirectUri", "request.queryparam.redirect_uri"),
        scope: var("Scope", "request.queryparam.scope"),
        code_challenge: read_var(g, ex, "request.queryparam.code_challenge"),
        code_challenge_method: read_var(g, ex, "request.queryparam.code_challenge_method"),
        username: var("AppEndUser", "request.queryparam.username"),
    };
    let state = var("State", "request.queryparam.state");
    match o.server.issue_code(&req, now_secs(ex)) {
        Ok(issued) => {
            let name = g
                .bundles
                .get(bundle)
                .and_then(|b| b.policies.get(policy))
                .map_or(String::new(), |p| p.name.clone());
            set_variable(
                g,
                ex,
                bundle,
                &format!("oauthv2authcode.{name}.code"),
                issued.code.clone(),
            );
            if o.generate_response {
                let base = req.redirect_uri.clone().or_else(|| {
                    g.registry
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
                ex.response = Some(m);
            }
            run_token_op(g, ex, bundle, policy, issued.store_op, Waiting::Done)
        }
        Err(e) => {
            let (name, code) = fault_name_for_error(e.code.as_str());
            Outcome::Fault(Fault::new(code, e.status, e.description).named(name))
        }
    }
}

fn verify_api_key(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    server: &OAuthServer,
    v: &preflow_policy::security::VerifyApiKey,
) -> Outcome {
    let key = v
        .api_key
        .reference
        .as_deref()
        .and_then(|r| read_var(g, ex, r.trim()))
        .or_else(|| v.api_key.value.clone());
    let result = server.verify_api_key(key.as_deref(), &call(g, ex, &[]));
    match result {
        Ok(k) => {
            ex.api_keys.push((bundle, policy, k));
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
