//! Quota, ExtractVariables, KeyValueMapOperations, BasicAuthentication, AccessControl,
//! GetOAuthV2Info and SetOAuthV2Info.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine as _;
use http::StatusCode;
use preflow_oauth::{TokenHash, TokenStore};
use preflow_policy::extract::{ExtractVariables, Pattern};
use preflow_policy::kvm::{Key, KeyValueMapOperations, KvmOperation, KvmScope};
use preflow_policy::security::{
    AccessControl, Action, BasicAuthOperation, BasicAuthentication, GetOAuthV2Info, SetOAuthV2Info,
    ValidateBasedOn,
};
use preflow_policy::template::Part;
use preflow_policy::traffic::{QuotaType, TimeUnit};
use preflow_ratelimit::{Quota, QuotaCheck, QuotaConfig, Timestamp};

use crate::exchange::{Exchange, StoreOp};
use crate::exec::{Outcome, Waiting, read_var, set_variable};
use crate::fault::Fault;
use crate::gateway::{Inner, StateMode};

// ---------------------------------------------------------------------------------------
// Quota

/// A compiled Quota.
#[derive(Debug)]
pub(crate) struct CQuota {
    base: QuotaConfig,
    limiter: Arc<Quota>,
    by_window: dashmap::DashMap<(u32, u8), Arc<Quota>>,
    config: preflow_policy::traffic::Quota,
}

fn unit(u: TimeUnit) -> preflow_ratelimit::TimeUnit {
    match u {
        TimeUnit::Second => preflow_ratelimit::TimeUnit::Second,
        TimeUnit::Minute => preflow_ratelimit::TimeUnit::Minute,
        TimeUnit::Hour => preflow_ratelimit::TimeUnit::Hour,
        TimeUnit::Day => preflow_ratelimit::TimeUnit::Day,
        TimeUnit::Week => preflow_ratelimit::TimeUnit::Week,
        TimeUnit::Month => preflow_ratelimit::TimeUnit::Month,
    }
}

fn unit_code(u: preflow_ratelimit::TimeUnit) -> u8 {
    match u {
        preflow_ratelimit::TimeUnit::Second => 0,
        preflow_ratelimit::TimeUnit::Minute => 1,
        preflow_ratelimit::TimeUnit::Hour => 2,
        preflow_ratelimit::TimeUnit::Day => 3,
        preflow_ratelimit::TimeUnit::Week => 4,
        preflow_ratelimit::TimeUnit::Month => 5,
    }
}

/// Compiles a Quota. Refs resolve per request; the literals (or Apigee's defaults: 2000
/// per 1 hour) make the base window.
pub(crate) fn compile_quota(q: &preflow_policy::traffic::Quota) -> Result<CQuota, String> {
    let allow = q
        .allow
        .count
        .unwrap_or(preflow_policy::traffic::Allow::DEFAULT_COUNT);
    let interval = q
        .interval
        .value
        .and_then(|i| u32::try_from(i).ok())
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN);
    let time_unit = q
        .time_unit
        .value
        .map_or(preflow_ratelimit::TimeUnit::Hour, unit);
    let mut base = QuotaConfig::new(allow, interval, time_unit).with_type(match q.quota_type {
        QuotaType::Default => preflow_ratelimit::QuotaType::Default,
        QuotaType::Calendar => preflow_ratelimit::QuotaType::Calendar,
        QuotaType::Flexi => preflow_ratelimit::QuotaType::Flexi,
        QuotaType::RollingWindow => preflow_ratelimit::QuotaType::RollingWindow,
    });
    if let Some(st) = &q.start_time {
        base = base
            .with_start_time(preflow_ratelimit::parse_start_time(st).map_err(|e| e.to_string())?);
    }
    if let Some(classes) = &q.allow.classes {
        for (class, count) in &classes.counts {
            base = base.with_class(class.clone(), *count);
        }
    }
    let limiter = Arc::new(Quota::new(base.clone()).map_err(|e| e.to_string())?);
    Ok(CQuota {
        base,
        limiter,
        by_window: dashmap::DashMap::new(),
        config: q.clone(),
    })
}

fn rate_status(g: &Inner) -> StatusCode {
    match g.settings.profile {
        crate::Profile::Cloud => StatusCode::TOO_MANY_REQUESTS,
        crate::Profile::PrivateCloud => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn quota(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    q: &CQuota,
) -> Outcome {
    let cfg = &q.config;
    let weight = match cfg
        .message_weight
        .as_deref()
        .and_then(|v| read_var(g, ex, v))
    {
        None => 1,
        Some(t) => match t.trim().parse::<u32>() {
            Ok(w) => w,
            Err(_) => {
                return Outcome::Fault(Fault::new(
                    "policies.ratelimit.InvalidMessageWeight",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Invalid message weight value {t}"),
                ));
            }
        },
    };
    // countRef takes precedence over count when it resolves.
    let allow = cfg
        .allow
        .count_ref
        .as_deref()
        .and_then(|r| read_var(g, ex, r))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let interval = match cfg.interval.reference.as_deref() {
        Some(r) => match read_var(g, ex, r) {
            Some(v) => match v.trim().parse::<u32>().ok().and_then(NonZeroU32::new) {
                Some(i) => Some(i),
                None => {
                    return Outcome::Fault(Fault::new(
                        "policies.ratelimit.FailedToResolveQuotaIntervalReference",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Failed to resolve quota interval reference {r}: `{v}`"),
                    ));
                }
            },
            None => None,
        },
        None => None,
    };
    let time_unit = match cfg.time_unit.reference.as_deref() {
        Some(r) => match read_var(g, ex, r) {
            Some(v) => match TimeUnit::parse(&v) {
                Some(u) => Some(unit(u)),
                None => {
                    return Outcome::Fault(Fault::new(
                        "policies.ratelimit.FailedToResolveQuotaIntervalTimeUnitReference",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Failed to resolve quota time unit reference {r}: `{v}`"),
                    ));
                }
            },
            None => None,
        },
        None => None,
    };
    let limiter = match (interval, time_unit) {
        (None, None) => Arc::clone(&q.limiter),
        (i, u) => {
            let i = i.unwrap_or(q.base.interval);
            let u = u.unwrap_or(q.base.time_unit);
            if i == q.base.interval && u == q.base.time_unit {
                Arc::clone(&q.limiter)
            } else {
                let key = (i.get(), unit_code(u));
                match q.by_window.get(&key).map(|e| Arc::clone(&e)) {
                    Some(l) => l,
                    None => {
                        let mut c = q.base.clone();
                        c.interval = i;
                        c.time_unit = u;
                        match Quota::new(c) {
                            Ok(l) => {
                                let l = Arc::new(l);
                                q.by_window.insert(key, Arc::clone(&l));
                                l
                            }
                            Err(_) => Arc::clone(&q.limiter),
                        }
                    }
                }
            }
        }
    };
    let identifier = cfg
        .identifier
        .as_deref()
        .and_then(|i| read_var(g, ex, i))
        .unwrap_or_else(|| "_default".to_owned());
    let class = cfg
        .allow
        .classes
        .as_ref()
        .and_then(|c| c.reference.as_deref())
        .and_then(|r| read_var(g, ex, r));
    let now = Timestamp::from_nanos(ex.now_ns);
    match g.state {
        StateMode::Local => {
            let mut check = QuotaCheck::new(&identifier, now, weight);
            if let Some(c) = &class {
                check = check.with_class(c);
            }
            if let Some(a) = allow {
                check = check.with_allow(a);
            }
            let d = limiter.check_with(&check);
            outcome(g, ex, bundle, policy, d, identifier)
        }
        StateMode::Remote => {
            let names = g.bundles.get(bundle).map(|b| {
                (
                    b.name.as_str(),
                    b.policies.get(policy).map_or("", |p| p.name.as_str()),
                )
            });
            let (bn, pn) = names.unwrap_or(("", ""));
            let key = format!("quota:{bn}:{pn}:{identifier}");
            let mut check = QuotaCheck::new(&key, now, weight);
            if let Some(c) = &class {
                check = check.with_class(c);
            }
            if let Some(a) = allow {
                check = check.with_allow(a);
            }
            let op = limiter.store_op(&check);
            let limit = limiter.limit(&check);
            Outcome::Store(
                StoreOp::RateLimit(op.clone()),
                Waiting::RateLimit {
                    op,
                    quota: Some((limit, identifier)),
                },
            )
        }
    }
}

/// Records a Quota decision and faults when it was refused.
pub(crate) fn outcome(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: usize,
    d: preflow_ratelimit::QuotaDecision,
    id: String,
) -> Outcome {
    let allowed = d.allowed;
    let shown = if allowed { String::new() } else { id.clone() };
    ex.quotas.push((bundle, policy, d, id));
    if allowed {
        Outcome::Continue
    } else {
        Outcome::Fault(Fault::new(
            "policies.ratelimit.QuotaViolation",
            rate_status(g),
            format!("Rate limit quota violation. Quota limit  exceeded. Identifier : {shown}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// ExtractVariables

/// Matches `text` against a pattern of literals and `{name}` captures; returns the
/// captures. A capture is non-greedy: it takes the shortest text before the next literal.
fn match_pattern(p: &Pattern, text: &str) -> Option<Vec<(String, String)>> {
    let parts = p.pattern.parts();
    let mut out = Vec::new();
    let lower;
    let (text, fold) = if p.ignore_case {
        lower = text.to_lowercase();
        (lower.as_str(), true)
    } else {
        (text, false)
    };
    let mut rest = text;
    let mut i = 0;
    while let Some(part) = parts.get(i) {
        match part {
            Part::Literal(l) => {
                let l = if fold { l.to_lowercase() } else { l.clone() };
                rest = rest.strip_prefix(l.as_str())?;
            }
            Part::Variable(name) | Part::Function { name, .. } => match parts.get(i + 1) {
                Some(Part::Literal(next)) => {
                    let next = if fold {
                        next.to_lowercase()
                    } else {
                        next.clone()
                    };
                    let at = rest.find(next.as_str())?;
                    out.push((name.clone(), rest.get(..at)?.to_owned()));
                    rest = rest.get(at..)?;
                }
                _ => {
                    out.push((name.clone(), rest.to_owned()));
                    rest = "";
                }
            },
        }
        i += 1;
    }
    rest.is_empty().then_some(out)
}

fn json_path<'v>(v: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    let p = path.trim();
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut cur = v;
    let mut rest = p;
    let mut steps = 0;
    while !rest.is_empty() {
        steps += 1;
        if steps > 64 {
            return None;
        }
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = r.get(..end)?;
            cur = cur.get(key)?;
            rest = r.get(end..)?;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r.get(..end)?.trim();
            cur = if let Ok(i) = inner.parse::<usize>() {
                cur.get(i)?
            } else {
                cur.get(inner.trim_matches(|c| c == '\'' || c == '"'))?
            };
            rest = r.get(end + 1..)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

pub(crate) fn extract_variables(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    e: &ExtractVariables,
) -> Outcome {
    let mut out: Vec<(String, String)> = Vec::new();
    let response_side = ex.stage.is_response_side();
    let source = e.source.trim();
    let use_response = source == "response" || (source == "message" && response_side);
    for p in &e.uri_paths {
        if let Some(c) = match_pattern(p, ex.path_suffix()) {
            out.extend(c);
            break;
        }
    }
    let prefix = if use_response { "response" } else { "request" };
    for (list, kind) in [
        (&e.query_params, "queryparam"),
        (&e.headers, "header"),
        (&e.form_params, "formparam"),
    ] {
        for np in list {
            let Some(value) = read_var(g, ex, &format!("{prefix}.{kind}.{}", np.name)) else {
                continue;
            };
            for p in &np.patterns {
                if let Some(c) = match_pattern(p, &value) {
                    out.extend(c);
                    break;
                }
            }
        }
    }
    for np in &e.variables {
        let Some(value) = read_var(g, ex, &np.name) else {
            continue;
        };
        for p in &np.patterns {
            if let Some(c) = match_pattern(p, &value) {
                out.extend(c);
                break;
            }
        }
    }
    if let Some(j) = &e.json_payload {
        let body = if use_response {
            ex.response
                .as_ref()
                .map(|m| m.body.clone())
                .unwrap_or_default()
        } else {
            ex.request.body.clone()
        };
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(doc) => {
                for v in &j.variables {
                    if let Some(found) = json_path(&doc, &v.path) {
                        let text = match found {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push((v.name.clone(), text));
                    }
                }
            }
            Err(_) if e.ignore_unresolved_variables || body.is_empty() => {}
            Err(err) => {
                return Outcome::Fault(Fault::new(
                    "steps.extractvariables.ExecutionFailed",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Failed to execute the ExtractVariables: the payload is not JSON: {err}"
                    ),
                ));
            }
        }
    }
    if let Some(x) = &e.xml_payload {
        let body = if use_response {
            ex.response
                .as_ref()
                .map(|m| m.body.clone())
                .unwrap_or_default()
        } else {
            ex.request.body.clone()
        };
        match crate::families::extract_xml(x, &body, e.ignore_unresolved_variables) {
            Ok(found) => out.extend(found),
            Err(f) => return Outcome::Fault(*f),
        }
    }
    for (name, value) in out {
        let full = e.output_name(&name);
        set_variable(g, ex, bundle, &full, value);
    }
    Outcome::Continue
}

// ---------------------------------------------------------------------------------------
// KeyValueMapOperations

fn kvm_key(g: &Inner, ex: &Exchange, key: &Key) -> Option<String> {
    let mut parts = Vec::with_capacity(key.parameters.len());
    for p in &key.parameters {
        let v = p
            .reference
            .as_deref()
            .and_then(|r| read_var(g, ex, r))
            .or_else(|| p.value.clone())?;
        parts.push(v);
    }
    Some(parts.join("__"))
}

fn kvm_map(
    g: &Inner,
    ex: &Exchange,
    bundle: usize,
    policy: &str,
    k: &KeyValueMapOperations,
) -> String {
    let map = k
        .map_name
        .reference
        .as_deref()
        .and_then(|r| read_var(g, ex, r))
        .or_else(|| k.map_name.value.clone())
        .or_else(|| k.map_identifier.clone())
        .unwrap_or_else(|| "kvmap".to_owned());
    let bundle_name = g.bundles.get(bundle).map_or("", |b| b.name.as_str());
    match k.scope {
        KvmScope::Organization => format!("org\u{1}{map}"),
        KvmScope::Environment => format!("env\u{1}{}\u{1}{map}", g.settings.environment),
        KvmScope::ApiProxy => format!("proxy\u{1}{bundle_name}\u{1}{map}"),
        KvmScope::Policy => format!("policy\u{1}{bundle_name}\u{1}{policy}\u{1}{map}"),
    }
}

fn kvm_fault(name: &'static str, why: String) -> Outcome {
    Outcome::Fault(Fault::new(
        format!("steps.keyvaluemapoperations.{name}"),
        StatusCode::INTERNAL_SERVER_ERROR,
        why,
    ))
}

/// Runs the operations on the gateway's in-memory maps. Initial entries are written on
/// first use of the map.
pub(crate) fn kvm(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: &str,
    k: &KeyValueMapOperations,
) -> Outcome {
    let map = kvm_map(g, ex, bundle, policy, k);
    let seeded = format!("{map}\u{2}seeded");
    if !g.kvm.contains_key(&seeded) {
        for e in &k.initial_entries {
            let parts: Option<Vec<String>> =
                e.key.parameters.iter().map(|p| p.value.clone()).collect();
            if let Some(parts) = parts {
                let full = format!("{map}\u{2}{}", parts.join("__"));
                g.kvm.entry(full).or_insert_with(|| e.values.clone());
            }
        }
        g.kvm.insert(seeded, Vec::new());
    }
    for op in &k.operations {
        match op {
            KvmOperation::Get {
                assign_to,
                index,
                key,
            } => {
                let Some(key) = kvm_key(g, ex, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                let values = g.kvm.get(&format!("{map}\u{2}{key}")).map(|v| v.clone());
                let Some(values) = values else { continue };
                let value = match index {
                    Some(i) => match values.get(usize::try_from(*i).unwrap_or(0).saturating_sub(1))
                    {
                        Some(v) => v.clone(),
                        None => {
                            return kvm_fault("InvalidIndex", format!("Invalid index {i}"));
                        }
                    },
                    None => values.join(","),
                };
                set_variable(g, ex, bundle, assign_to.trim(), value);
            }
            KvmOperation::Put {
                override_existing,
                key,
                values,
            } => {
                let Some(key) = kvm_key(g, ex, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                let mut vals = Vec::new();
                for v in values {
                    match v
                        .reference
                        .as_deref()
                        .and_then(|r| read_var(g, ex, r))
                        .or_else(|| v.value.clone())
                    {
                        Some(x) => vals.push(x),
                        None => return kvm_fault("ValueIsMissing", "Value is missing".to_owned()),
                    }
                }
                let full = format!("{map}\u{2}{key}");
                if *override_existing || !g.kvm.contains_key(&full) {
                    g.kvm.insert(full, vals);
                }
            }
            KvmOperation::Delete { key } => {
                let Some(key) = kvm_key(g, ex, key) else {
                    return kvm_fault("KeyIsMissing", "Key is missing".to_owned());
                };
                g.kvm.remove(&format!("{map}\u{2}{key}"));
            }
        }
    }
    Outcome::Continue
}

// ---------------------------------------------------------------------------------------
// BasicAuthentication

pub(crate) fn basic_authentication(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    b: &BasicAuthentication,
) -> Outcome {
    let unresolved = |v: &str| {
        Outcome::Fault(Fault::new(
            "steps.basicauthentication.UnresolvedVariable",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Unresolved variable : {v}"),
        ))
    };
    match b.operation {
        Some(BasicAuthOperation::Encode) => {
            let user_var = b.user.as_deref().unwrap_or("");
            let pass_var = b.password.as_deref().unwrap_or("");
            let user = read_var(g, ex, user_var);
            let pass = read_var(g, ex, pass_var);
            let (user, pass) = match (user, pass) {
                (Some(u), Some(p)) => (u, p),
                (u, p) if b.ignore_unresolved_variables => {
                    (u.unwrap_or_default(), p.unwrap_or_default())
                }
                (None, _) => return unresolved(user_var),
                (_, None) => return unresolved(pass_var),
            };
            let encoded = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            let target = b
                .assign_to
                .as_ref()
                .map_or("request.header.Authorization", |a| a.variable.as_str());
            set_variable(g, ex, bundle, target.trim(), encoded);
            Outcome::Continue
        }
        Some(BasicAuthOperation::Decode) => {
            let source = b
                .source
                .as_deref()
                .unwrap_or("request.header.Authorization");
            let invalid = || {
                Outcome::Fault(Fault::new(
                    "steps.basicauthentication.InvalidBasicAuthenticationSource",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Source variable : {source} for basic authentication decode policy is not valid"
                    ),
                ))
            };
            let Some(value) = read_var(g, ex, source.trim()) else {
                return invalid();
            };
            let v = value.trim();
            let Some(encoded) = v
                .get(..6)
                .filter(|p| p.eq_ignore_ascii_case("basic "))
                .and_then(|_| v.get(6..))
            else {
                return invalid();
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
                return invalid();
            };
            let Ok(text) = String::from_utf8(bytes) else {
                return invalid();
            };
            let Some((user, pass)) = text.split_once(':') else {
                return invalid();
            };
            if let Some(u) = &b.user {
                set_variable(g, ex, bundle, u.trim(), user.to_owned());
            }
            if let Some(p) = &b.password {
                set_variable(g, ex, bundle, p.trim(), pass.to_owned());
            }
            Outcome::Continue
        }
        None => Outcome::Fault(Fault::new(
            "steps.basicauthentication.InvalidOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            "BasicAuthentication has no valid Operation",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// AccessControl

fn in_cidr(ip: IpAddr, net: IpAddr, mask: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if mask == 0 {
                0
            } else {
                u32::MAX.checked_shl(32 - mask.min(32)).unwrap_or(0)
            };
            (u32::from(a) & m) == (u32::from(b) & m)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if mask == 0 {
                0
            } else {
                u128::MAX.checked_shl(128 - mask.min(128)).unwrap_or(0)
            };
            (u128::from(a) & m) == (u128::from(b) & m)
        }
        _ => false,
    }
}

pub(crate) fn access_control(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    a: &AccessControl,
) -> Outcome {
    // The addresses checked: True-Client-IP, else X-Forwarded-For per ValidateBasedOn,
    // else the connection's peer.
    let header = |name: &str| -> Vec<String> {
        ex.request
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut candidates: Vec<String> = Vec::new();
    if !a.ignore_true_client_ip_header {
        candidates = header("true-client-ip");
        candidates.truncate(1);
    }
    if candidates.is_empty() {
        let xff = header("x-forwarded-for");
        candidates = match a.validate_based_on {
            ValidateBasedOn::FirstIp => xff.into_iter().take(1).collect(),
            ValidateBasedOn::LastIp => xff.into_iter().last().into_iter().collect(),
            ValidateBasedOn::AllIp => xff,
        };
    }
    if candidates.is_empty() {
        candidates.push(ex.client.addr.ip().to_string());
    }
    let mut ips = Vec::new();
    for c in &candidates {
        match c.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                return Outcome::Fault(Fault::new(
                    "steps.accesscontrol.InvalidIPAddress",
                    StatusCode::FORBIDDEN,
                    format!("Invalid IP address : {c}"),
                ));
            }
        }
    }
    for ip in ips {
        let mut decision = None;
        for rule in &a.rules {
            let mut hit = false;
            for addr in &rule.addresses {
                let Ok(net) = crate::exec::render_for(g, ex, bundle, &addr.address) else {
                    continue;
                };
                let mask = crate::exec::render_for(g, ex, bundle, &addr.mask)
                    .ok()
                    .and_then(|m| m.trim().parse::<u32>().ok())
                    .unwrap_or(if net.contains(':') { 128 } else { 32 });
                if let Ok(net) = net.trim().parse::<IpAddr>()
                    && in_cidr(ip, net, mask)
                {
                    hit = true;
                    break;
                }
            }
            if hit {
                decision = Some(rule.action);
                break;
            }
        }
        if decision.unwrap_or(a.no_rule_match_action) == Action::Deny {
            return Outcome::Fault(Fault::new(
                "steps.accesscontrol.IPDeniedAccess",
                StatusCode::FORBIDDEN,
                format!("Access Denied for client ip : {ip}"),
            ));
        }
    }
    Outcome::Continue
}

// ---------------------------------------------------------------------------------------
// GetOAuthV2Info / SetOAuthV2Info

pub(crate) fn get_oauth_info(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    policy: &str,
    i: &GetOAuthV2Info,
) -> Outcome {
    let prefix = |kind: &str| format!("oauthv2{kind}.{policy}");
    if let Some(r) = &i.access_token {
        let Some(tok) = read_var(g, ex, r) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_access_token",
                StatusCode::UNAUTHORIZED,
                "Invalid Access Token",
            ));
        };
        let rec = lookup(g, &tok);
        let Some(rec) = rec.filter(|r| r.kind == preflow_oauth::TokenKind::Access) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_access_token",
                StatusCode::UNAUTHORIZED,
                "Invalid Access Token",
            ));
        };
        let now = ex.now_ns / 1_000_000_000;
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
            set_variable(g, ex, bundle, &format!("{p}.{k}"), v);
        }
        for (k, v) in rec.attributes.iter() {
            set_variable(g, ex, bundle, &format!("{p}.accesstoken.{k}"), v.clone());
        }
    }
    if let Some(r) = &i.client_id {
        let Some(id) = read_var(g, ex, r) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_client-invalid_client_id",
                StatusCode::INTERNAL_SERVER_ERROR,
                "ClientId is Invalid",
            ));
        };
        let Some(c) = g.registry.client(&id) else {
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
            set_variable(g, ex, bundle, &format!("{p}.{k}"), v);
        }
    }
    if let Some(r) = &i.refresh_token {
        let rec = read_var(g, ex, r).and_then(|t| lookup(g, &t));
        let Some(rec) = rec.filter(|r| r.kind == preflow_oauth::TokenKind::Refresh) else {
            return Outcome::Fault(Fault::new(
                "steps.oauth.v2.invalid_refresh_token",
                StatusCode::INTERNAL_SERVER_ERROR,
                "Invalid Refresh Token",
            ));
        };
        let p = prefix("refreshtoken");
        set_variable(
            g,
            ex,
            bundle,
            &format!("{p}.client_id"),
            rec.client_id.to_string(),
        );
        set_variable(g, ex, bundle, &format!("{p}.scope"), rec.scope.to_string());
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

fn lookup(g: &Inner, token: &str) -> Option<Arc<preflow_oauth::TokenRecord>> {
    g.tokens.get_token(&TokenHash::of(token.as_bytes()))
}

pub(crate) fn set_oauth_info(
    g: &Inner,
    ex: &mut Exchange,
    _bundle: usize,
    i: &SetOAuthV2Info,
) -> Outcome {
    if g.state == StateMode::Remote {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.UnsupportedOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            "SetOAuthV2Info needs local token state",
        ));
    }
    let Some(tok) = i.access_token.as_deref().and_then(|r| read_var(g, ex, r)) else {
        return Outcome::Fault(Fault::new(
            "steps.oauth.v2.invalid_access_token",
            StatusCode::UNAUTHORIZED,
            "Invalid Access Token",
        ));
    };
    let hash = TokenHash::of(tok.as_bytes());
    let Some(rec) = g.tokens.get_token(&hash) else {
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
            .and_then(|r| read_var(g, ex, r))
            .or_else(|| a.value.clone());
        if let Some(v) = v {
            attrs.retain(|(k, _)| k != &a.name);
            attrs.push((a.name.clone(), v));
        }
    }
    let mut updated = (*rec).clone();
    updated.attributes = attrs.into();
    g.tokens.put_tokens(&[(hash, Arc::new(updated))]);
    Outcome::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflow_policy::Template;

    fn pat(p: &str) -> Pattern {
        Pattern {
            pattern: Template::parse(p),
            ignore_case: false,
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(
            match_pattern(&pat("/a/{id}/b/{x}"), "/a/12/b/zz"),
            Some(vec![("id".into(), "12".into()), ("x".into(), "zz".into())])
        );
        assert_eq!(match_pattern(&pat("/a/{id}/b"), "/a/12/c"), None);
        assert_eq!(
            match_pattern(&pat("Bearer {tok}"), "Bearer abc"),
            Some(vec![("tok".into(), "abc".into())])
        );
    }

    #[test]
    fn json_paths() {
        let v: serde_json::Value = serde_json::json!({"a":{"b":[1,{"c":"x"}]}});
        assert_eq!(json_path(&v, "$.a.b[1].c"), Some(&serde_json::json!("x")));
        assert_eq!(json_path(&v, "$.a.b[0]"), Some(&serde_json::json!(1)));
        assert_eq!(json_path(&v, "$.a.z"), None);
    }

    #[test]
    fn cidr() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("10.1.2.3"), ip("10.1.2.0"), 24));
        assert!(!in_cidr(ip("10.1.3.3"), ip("10.1.2.0"), 24));
        assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(in_cidr(ip("::1"), ip("::1"), 128));
    }
}
