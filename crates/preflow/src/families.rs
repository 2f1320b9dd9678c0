//! Execution of the JWT, threat protection, CORS, cache, callout, logging, statistics,
//! data capture, assertion and format-conversion policies.
//!
//! The logic lives in `preflow-policy` as pure functions; this module feeds them the
//! exchange (variables, messages, the time), writes their results back as flow variables
//! and messages, and turns their errors into Apigee faults.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use preflow_condition::{Compiled, Names, ParseOptions, Value, Variables};
use preflow_policy::PolicyConfig;
use preflow_policy::cache::{
    self, CacheCommon, CacheLimits, CachedValue, InvalidateCache, LookupCache, MemoryCache,
    PopulateCache, ResponseCache, ScopeContext,
};
use preflow_policy::cors::{self, Cors, CorsOutcome, CorsRequest};
use preflow_policy::format::{self, JsonToXml, XmlToJson};
use preflow_policy::jwt::{self, Jwt, JwtInputs, JwtOperation};
use preflow_policy::protect::{
    self, JsonThreatProtection, RegexInputs, RegularExpressionProtection, XmlThreatProtection,
};
use preflow_policy::service::{
    self, CalloutConnection, CaptureInputs, DataCapture, LogSink, MessageLogging, ServiceCallout,
    StatisticsCollector,
};

use crate::exchange::{Exchange, Message, Target, TargetError, Timeouts};
use crate::exec::{Outcome, read_var, set_variable};
use crate::fault::Fault;
use crate::gateway::Inner;
use crate::vars::{View, resolve_name};

/// State the family policies share across exchanges: the response and lookup cache, the
/// log sink MessageLogging writes to, and JWKS documents by URI.
#[derive(Debug, Default)]
pub struct PolicyResources {
    pub(crate) cache: MemoryCache,
    pub(crate) log_sink: Option<Arc<dyn LogSink>>,
    pub(crate) jwks: HashMap<String, String>,
}

impl PolicyResources {
    /// Resources with a cache bounded by `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            cache: MemoryCache::new(limits),
            log_sink: None,
            jwks: HashMap::new(),
        }
    }

    /// Sends MessageLogging records to `sink` (without one they are dropped).
    pub fn with_log_sink(mut self, sink: Arc<dyn LogSink>) -> Self {
        self.log_sink = Some(sink);
        self
    }

    /// The JWKS document VerifyJWT uses for `<JWKS uri="uri">` (the gateway never fetches).
    pub fn with_jwks(mut self, uri: impl Into<String>, document: impl Into<String>) -> Self {
        self.jwks.insert(uri.into(), document.into());
        self
    }
}

/// A condition written inside a policy (AssertCondition, ResponseCache skips), compiled
/// with names resolved at run time.
#[derive(Debug)]
pub(crate) struct NamedCondition {
    text: String,
    compiled: Option<Compiled<Box<str>>>,
}

impl NamedCondition {
    fn new(text: &str) -> Self {
        NamedCondition {
            text: text.to_owned(),
            compiled: preflow_condition::compile(text, &ParseOptions::default(), &Names).ok(),
        }
    }

    fn eval(&self, g: &Inner, ex: &Exchange) -> Result<bool, Box<Fault>> {
        let Some(c) = &self.compiled else {
            return Err(Box::new(Fault::new(
                "messaging.runtime.InvalidCondition",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("invalid condition `{}`", self.text),
            )));
        };
        Ok(c.eval(&ByName { g, ex }))
    }
}

struct ByName<'a> {
    g: &'a Inner,
    ex: &'a Exchange,
}

impl Variables for ByName<'_> {
    type Handle = Box<str>;
    fn get(&self, handle: &Box<str>) -> Value<'_> {
        let empty = HashMap::new();
        let index = self
            .g
            .bundles
            .get(self.ex.bundle)
            .map_or(&empty, |b| &b.policy_index);
        let slot = resolve_name(handle, self.ex.bundle, index);
        View {
            g: self.g,
            ex: self.ex,
        }
        .value(&slot)
    }
}

/// The executable form of a family policy.
#[derive(Debug)]
pub(crate) enum FamilyExec {
    Jwt(Box<Jwt>),
    JsonThreat(JsonThreatProtection),
    XmlThreat(XmlThreatProtection),
    Regex(Box<RegularExpressionProtection>),
    Cors(Cors),
    Assert(NamedCondition),
    Statistics(StatisticsCollector),
    DataCapture(DataCapture),
    Logging(MessageLogging),
    JsonToXml(JsonToXml),
    XmlToJson(XmlToJson),
    LookupCache(LookupCache),
    PopulateCache(PopulateCache),
    InvalidateCache(InvalidateCache),
    ResponseCache(
        Box<(
            ResponseCache,
            Option<NamedCondition>,
            Option<NamedCondition>,
        )>,
    ),
    ServiceCallout(Box<ServiceCallout>),
}

/// Compiles a family policy; `None` for other policy types.
pub(crate) fn compile(config: &PolicyConfig) -> Option<FamilyExec> {
    Some(match config {
        PolicyConfig::Jwt(j) => FamilyExec::Jwt(j.clone()),
        PolicyConfig::JsonThreatProtection(j) => FamilyExec::JsonThreat(j.clone()),
        PolicyConfig::XmlThreatProtection(x) => FamilyExec::XmlThreat(x.clone()),
        PolicyConfig::RegularExpressionProtection(r) => FamilyExec::Regex(r.clone()),
        PolicyConfig::Cors(c) => FamilyExec::Cors(c.clone()),
        PolicyConfig::AssertCondition(a) => FamilyExec::Assert(NamedCondition::new(&a.condition)),
        PolicyConfig::StatisticsCollector(s) => FamilyExec::Statistics(s.clone()),
        PolicyConfig::DataCapture(d) => FamilyExec::DataCapture(d.clone()),
        PolicyConfig::MessageLogging(m) => FamilyExec::Logging(m.clone()),
        PolicyConfig::JsonToXml(j) => FamilyExec::JsonToXml(j.clone()),
        PolicyConfig::XmlToJson(x) => FamilyExec::XmlToJson(x.clone()),
        PolicyConfig::LookupCache(l) => FamilyExec::LookupCache(l.clone()),
        PolicyConfig::PopulateCache(p) => FamilyExec::PopulateCache(p.clone()),
        PolicyConfig::InvalidateCache(i) => FamilyExec::InvalidateCache(i.clone()),
        PolicyConfig::ResponseCache(r) => FamilyExec::ResponseCache(Box::new((
            r.clone(),
            r.skip_cache_lookup.as_deref().map(NamedCondition::new),
            r.skip_cache_population.as_deref().map(NamedCondition::new),
        ))),
        PolicyConfig::ServiceCallout(s) => FamilyExec::ServiceCallout(s.clone()),
        _ => return None,
    })
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn now_secs(ex: &Exchange) -> u64 {
    ex.now_ns / 1_000_000_000
}

/// The message a `<Source>` names: `request`, `response`, or the current message.
fn source_message<'a>(ex: &'a Exchange, source: Option<&str>) -> Option<&'a Message> {
    match source.map(str::trim) {
        Some("request") => Some(&ex.request),
        Some("response") => ex.response.as_ref(),
        _ if ex.stage.is_response_side() => ex.response.as_ref(),
        _ => Some(&ex.request),
    }
}

/// The body of the message `<Source>` names; a message variable set by a callout
/// (`{name}.content`) is read too.
fn source_body(g: &Inner, ex: &Exchange, source: Option<&str>) -> Option<Bytes> {
    match source.map(str::trim) {
        None | Some("request" | "response" | "message") => {
            source_message(ex, source).map(|m| m.body.clone())
        }
        Some(var) => read_var(g, ex, &format!("{var}.content")).map(Bytes::from),
    }
}

/// Whether the source message's `Content-Type` mentions `kind` (`json`, `xml`). A message
/// variable other than the request or response counts as matching.
fn content_type_has(ex: &Exchange, source: Option<&str>, kind: &str) -> bool {
    if !matches!(
        source.map(str::trim),
        None | Some("request" | "response" | "message")
    ) {
        return true;
    }
    source_message(ex, source).is_some_and(|m| {
        m.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains(kind))
    })
}

fn header_list(m: &Message) -> Vec<(String, String)> {
    m.headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Runs a family policy.
pub(crate) fn execute(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    name: &str,
    f: &FamilyExec,
) -> Outcome {
    match f {
        FamilyExec::Jwt(j) => run_jwt(g, ex, bundle, name, j),
        FamilyExec::JsonThreat(cfg) => {
            let Some(body) = source_body(g, ex, Some(&cfg.source)) else {
                return Outcome::Fault(source_unavailable("jsonthreatprotection", &cfg.source));
            };
            // As in Apigee, only a JSON payload is checked: an empty body or another
            // content type passes.
            if body.is_empty() || !content_type_has(ex, Some(&cfg.source), "json") {
                return Outcome::Continue;
            }
            match protect::scan_json(cfg, name, &body) {
                Ok(()) => Outcome::Continue,
                Err(t) => Outcome::Fault(
                    Fault::new(
                        "steps.jsonthreatprotection.ExecutionFailed",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "JSONThreatProtection[{name}]: Execution failed. reason: {}",
                            t.message
                        ),
                    )
                    .named(t.fault_name()),
                ),
            }
        }
        FamilyExec::XmlThreat(cfg) => {
            let Some(body) = source_body(g, ex, Some(&cfg.source)) else {
                return Outcome::Fault(source_unavailable("xmlthreatprotection", &cfg.source));
            };
            if body.is_empty() || !content_type_has(ex, Some(&cfg.source), "xml") {
                return Outcome::Continue;
            }
            match protect::scan_xml(cfg, name, &body) {
                Ok(()) => Outcome::Continue,
                Err(t) => Outcome::Fault(
                    Fault::new(
                        "steps.xmlthreatprotection.ExecutionFailed",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "XMLThreatProtection[{name}]: Execution failed. reason: {}",
                            t.message
                        ),
                    )
                    .named(t.fault_name()),
                ),
            }
        }
        FamilyExec::Regex(cfg) => {
            let m = source_message(ex, Some(&cfg.source)).unwrap_or(&ex.request);
            let headers = header_list(m);
            let needs_body = !cfg.json_paths.is_empty() || !cfg.xpaths.is_empty();
            let body = needs_body.then(|| m.body.clone());
            let path = m.path.clone();
            let query = ex.query_params().to_vec();
            let form = ex.form_params().to_vec();
            let inputs = RegexInputs {
                path: &path,
                query: &query,
                headers: &headers,
                form: &form,
                payload: body.as_deref(),
            };
            let lookup = |n: &str| read_var(g, ex, n);
            match protect::check_regex(cfg, name, &inputs, &lookup) {
                Ok(()) => Outcome::Continue,
                Err(e) => {
                    let code = format!("steps.regexprotection.{}", e.fault_name());
                    let st = match e {
                        protect::RegexThreat::ThreatDetected { .. } => StatusCode::BAD_REQUEST,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    Outcome::Fault(Fault::new(code, st, e.to_string()))
                }
            }
        }
        FamilyExec::Cors(cfg) => run_cors(g, ex, bundle, cfg),
        FamilyExec::Assert(c) => match c.eval(g, ex) {
            Ok(true) => Outcome::Continue,
            Ok(false) => Outcome::Fault(Fault::new(
                format!("steps.assertcondition.{}", service::ASSERTION_FAILED.0),
                status(service::ASSERTION_FAILED.1),
                format!("AssertCondition[{name}]: condition `{}` is false", c.text),
            )),
            Err(f) => Outcome::Fault(*f),
        },
        FamilyExec::Statistics(cfg) => {
            let values = service::collect_statistics(cfg, &|n| read_var(g, ex, n));
            for (k, v) in values {
                set_variable(g, ex, bundle, &k, v);
            }
            Outcome::Continue
        }
        FamilyExec::DataCapture(cfg) => {
            let m = if ex.stage.is_response_side() {
                ex.response.as_ref().unwrap_or(&ex.request)
            } else {
                &ex.request
            };
            let headers = header_list(m);
            let body = m.body.clone();
            let suffix = ex.path_suffix().to_owned();
            let query = ex.query_params().to_vec();
            let inputs = CaptureInputs {
                path_suffix: &suffix,
                query: &query,
                headers: &headers,
                payload: Some(&body),
            };
            let values = service::capture_values(cfg, &inputs, &|n| read_var(g, ex, n));
            for (k, v) in values {
                set_variable(g, ex, bundle, &k, v);
            }
            Outcome::Continue
        }
        FamilyExec::Logging(cfg) => {
            let records = service::log_records(cfg, name, &|n| read_var(g, ex, n));
            if let Some(sink) = &g.resources.log_sink {
                for r in records {
                    sink.log(r);
                }
            }
            Outcome::Continue
        }
        FamilyExec::JsonToXml(cfg) => convert(
            g,
            ex,
            bundle,
            name,
            cfg.source.as_deref(),
            cfg.output_variable.as_deref(),
            true,
            |b| format::json_to_xml_text(b, &cfg.options),
        ),
        FamilyExec::XmlToJson(cfg) => convert(
            g,
            ex,
            bundle,
            name,
            cfg.source.as_deref(),
            cfg.output_variable.as_deref(),
            false,
            |b| format::xml_to_json_text(b, &cfg.options),
        ),
        FamilyExec::LookupCache(cfg) => {
            let key = match key_of(g, ex, &cfg.common, &[]) {
                Ok(k) => k,
                Err(f) => return Outcome::Fault(*f),
            };
            let hit = g
                .resources
                .cache
                .get(resource(&cfg.common), &key, now_secs(ex));
            let prefix = format!("lookupcache.{name}");
            set_variable(g, ex, bundle, &format!("{prefix}.cachekey"), key);
            set_variable(
                g,
                ex,
                bundle,
                &format!("{prefix}.cachename"),
                resource(&cfg.common).to_owned(),
            );
            match hit {
                Some(CachedValue::Text(v)) => {
                    set_variable(g, ex, bundle, &format!("{prefix}.cachehit"), "true".into());
                    set_variable(g, ex, bundle, &cfg.assign_to, v);
                }
                _ => set_variable(g, ex, bundle, &format!("{prefix}.cachehit"), "false".into()),
            }
            Outcome::Continue
        }
        FamilyExec::PopulateCache(cfg) => {
            let key = match key_of(g, ex, &cfg.common, &[]) {
                Ok(k) => k,
                Err(f) => return Outcome::Fault(*f),
            };
            if let Some(v) = read_var(g, ex, &cfg.source) {
                let now = now_secs(ex);
                let until = cfg.expiry.expires_at(now, &|n| read_var(g, ex, n));
                g.resources.cache.put(
                    resource(&cfg.common),
                    &key,
                    CachedValue::Text(v),
                    until,
                    now,
                );
            }
            Outcome::Continue
        }
        FamilyExec::InvalidateCache(cfg) => {
            let key = match key_of(g, ex, &cfg.common, &[]) {
                Ok(k) => k,
                Err(f) => return Outcome::Fault(*f),
            };
            g.resources
                .cache
                .invalidate(resource(&cfg.common), &key, cfg.purge_child_entries);
            Outcome::Continue
        }
        FamilyExec::ResponseCache(rc) => run_response_cache(g, ex, bundle, name, rc),
        FamilyExec::ServiceCallout(sc) => start_callout(g, ex, bundle, name, sc),
    }
}

fn source_unavailable(prefix: &str, source: &str) -> Fault {
    Fault::new(
        format!("steps.{prefix}.SourceUnavailable"),
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the source message `{source}` is not available"),
    )
}

// ---------------------------------------------------------------------------------------
// JWT

fn run_jwt(g: &Inner, ex: &mut Exchange, bundle: usize, name: &str, cfg: &Jwt) -> Outcome {
    let prefix = format!("jwt.{name}");
    let now = now_secs(ex);
    let result = {
        let lookup = |n: &str| read_var(g, ex, n);
        let jwks = |uri: &str| g.resources.jwks.get(uri).cloned();
        let inputs = JwtInputs {
            lookup: &lookup,
            jwks_for_uri: &jwks,
            now,
        };
        match cfg.operation {
            JwtOperation::Generate => {
                let id = format!("{:032x}", rand::random::<u128>());
                jwt::generate(cfg, &inputs, &id).map(|out| (out.decoded, Some(out.token)))
            }
            JwtOperation::Verify => jwt::source_token(cfg, &lookup)
                .and_then(|t| jwt::verify(cfg, &t, &inputs))
                .map(|d| (Some(d), None)),
            JwtOperation::Decode => jwt::source_token(cfg, &lookup)
                .and_then(|t| jwt::decode(&t))
                .map(|d| (Some(d), None)),
        }
    };
    match result {
        Ok((decoded, token)) => {
            if let Some(d) = decoded {
                for (k, v) in d.variables(now) {
                    set_variable(g, ex, bundle, &format!("{prefix}.{k}"), v);
                }
            }
            if let Some(t) = token {
                let out = cfg
                    .output_variable
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}.generated_jwt"));
                set_variable(g, ex, bundle, &out, t);
            }
            set_variable(g, ex, bundle, &format!("{prefix}.valid"), "true".into());
            set_variable(g, ex, bundle, "JWT.failed", "false".into());
            Outcome::Continue
        }
        Err(e) => {
            set_variable(g, ex, bundle, &format!("{prefix}.valid"), "false".into());
            set_variable(g, ex, bundle, &format!("{prefix}.error"), e.message.clone());
            // Every JWT policy sets the same `JWT.failed` on failure.
            set_variable(g, ex, bundle, "JWT.failed", "true".into());
            Outcome::Fault(Fault::new(
                e.fault.error_code(),
                status(e.fault.status()),
                e.message,
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// CORS

/// The variable holding CORS headers to add to the final response.
const CORS_PENDING: &str = "preflow.cors.headers";

fn run_cors(g: &Inner, ex: &mut Exchange, bundle: usize, cfg: &Cors) -> Outcome {
    let h = |n: &str| {
        ex.request
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (origin, method_h, headers_h) = (
        h("origin"),
        h("access-control-request-method"),
        h("access-control-request-headers"),
    );
    let method = ex.request.method.as_str().to_owned();
    let req = CorsRequest {
        method: &method,
        origin: origin.as_deref(),
        request_method: method_h.as_deref(),
        request_headers: headers_h.as_deref(),
    };
    let outcome = cors::evaluate(cfg, &req, &|n| read_var(g, ex, n));
    let preflight = matches!(
        outcome,
        CorsOutcome::Preflight(_)
            | CorsOutcome::Denied {
                preflight: true,
                ..
            }
    );
    set_variable(g, ex, bundle, "cors.isPreflight", preflight.to_string());
    set_variable(
        g,
        ex,
        bundle,
        "cors.isCorsRequest",
        (!matches!(outcome, CorsOutcome::NotCors)).to_string(),
    );
    match outcome {
        CorsOutcome::NotCors => Outcome::Continue,
        CorsOutcome::Preflight(headers) => {
            set_variable(g, ex, bundle, "cors.allowed", "true".into());
            let mut m = Message::response(StatusCode::OK);
            add_headers(&mut m, &headers);
            Outcome::Respond(m)
        }
        CorsOutcome::Allowed(headers) => {
            set_variable(g, ex, bundle, "cors.allowed", "true".into());
            let json = serde_json::to_string(&headers).unwrap_or_default();
            ex.vars.insert(
                CORS_PENDING.to_owned(),
                preflow_condition::OwnedValue::String(json),
            );
            Outcome::Continue
        }
        CorsOutcome::Denied { preflight, .. } => {
            set_variable(g, ex, bundle, "cors.allowed", "false".into());
            if preflight && cfg.generate_preflight_response {
                Outcome::Respond(Message::response(StatusCode::OK))
            } else {
                Outcome::Continue
            }
        }
    }
}

fn add_headers(m: &mut Message, headers: &[(String, String)]) {
    for (k, v) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            m.headers.insert(n, v);
        }
    }
}

/// Adds what family policies left for the final response (CORS headers of an allowed
/// cross-origin request).
pub(crate) fn finish_response(ex: &Exchange, m: &mut Message) {
    if let Some(preflow_condition::OwnedValue::String(json)) = ex.vars.get(CORS_PENDING)
        && let Ok(headers) = serde_json::from_str::<Vec<(String, String)>>(json)
    {
        add_headers(m, &headers);
    }
}

// ---------------------------------------------------------------------------------------
// JSONToXML / XMLToJSON

#[allow(clippy::too_many_arguments)]
fn convert(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    name: &str,
    source: Option<&str>,
    output: Option<&str>,
    to_xml: bool,
    f: impl Fn(&[u8]) -> Result<String, format::ConvertError>,
) -> Outcome {
    let prefix = if to_xml { "json2xml" } else { "xml2json" };
    let Some(body) = source_body(g, ex, source) else {
        return Outcome::Fault(source_unavailable(prefix, source.unwrap_or("message")));
    };
    let text = match f(&body) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                format!("steps.{prefix}.ExecutionFailed"),
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{}[{name}]: Execution failed. reason: {e}",
                    if to_xml { "JSONToXML" } else { "XMLToJSON" }
                ),
            ));
        }
    };
    let content_type = if to_xml {
        "application/xml"
    } else {
        "application/json"
    };
    let target = output.or(source).map(str::trim);
    let m = match target {
        Some("request") => Some(&mut ex.request),
        Some("response") => {
            if ex.response.is_none() {
                ex.response = Some(Message::response(StatusCode::OK));
            }
            ex.response.as_mut()
        }
        None | Some("message") => {
            if ex.stage.is_response_side() {
                ex.response.as_mut()
            } else {
                Some(&mut ex.request)
            }
        }
        Some(var) => {
            set_variable(g, ex, bundle, var, text);
            return Outcome::Continue;
        }
    };
    if let Some(m) = m {
        m.body = Bytes::from(text);
        m.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    Outcome::Continue
}

// ---------------------------------------------------------------------------------------
// Caches

fn resource(c: &CacheCommon) -> &str {
    c.resource.as_deref().unwrap_or("")
}

fn key_of(
    g: &Inner,
    ex: &Exchange,
    c: &CacheCommon,
    extra: &[String],
) -> Result<String, Box<Fault>> {
    let b = g.bundles.get(ex.bundle);
    let proxy_endpoint = g.proxy_endpoint(ex).map(|p| p.name.as_str()).unwrap_or("");
    let target = g.target_endpoint(ex).map(|t| t.name.as_str());
    let scope = ScopeContext {
        organization: &g.settings.organization,
        environment: &g.settings.environment,
        proxy: b.map(|b| b.name.as_str()).unwrap_or(""),
        revision: b.map(|b| b.revision.as_str()).unwrap_or(""),
        proxy_endpoint,
        target_endpoint: target,
    };
    cache::build_key(c, &scope, &|n| read_var(g, ex, n), extra).map_err(|e| {
        Box::new(Fault::new(
            "steps.cache.InvalidCacheKey",
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })
}

fn run_response_cache(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    name: &str,
    rc: &(
        ResponseCache,
        Option<NamedCondition>,
        Option<NamedCondition>,
    ),
) -> Outcome {
    let (cfg, skip_lookup, skip_populate) = rc;
    let prefix = format!("responsecache.{name}");
    let extra: Vec<String> = if cfg.use_accept_header {
        [
            "accept",
            "accept-encoding",
            "accept-language",
            "accept-charset",
        ]
        .iter()
        .filter_map(|h| {
            ex.request
                .headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
    } else {
        Vec::new()
    };
    let key = match key_of(g, ex, &cfg.common, &extra) {
        Ok(k) => k,
        Err(f) => return Outcome::Fault(*f),
    };
    let now = now_secs(ex);
    if !ex.stage.is_response_side() {
        if let Some(c) = skip_lookup {
            match c.eval(g, ex) {
                Ok(true) => return Outcome::Continue,
                Ok(false) => {}
                Err(f) => return Outcome::Fault(*f),
            }
        }
        set_variable(g, ex, bundle, &format!("{prefix}.cachekey"), key.clone());
        set_variable(
            g,
            ex,
            bundle,
            &format!("{prefix}.cachename"),
            resource(&cfg.common).to_owned(),
        );
        match g.resources.cache.get(resource(&cfg.common), &key, now) {
            Some(CachedValue::Response {
                status: st,
                headers,
                body,
            }) => {
                set_variable(g, ex, bundle, &format!("{prefix}.cachehit"), "true".into());
                let mut m = Message::response(status(st));
                add_headers(&mut m, &headers);
                m.body = Bytes::from(body);
                Outcome::CacheHit(m)
            }
            _ => {
                set_variable(g, ex, bundle, &format!("{prefix}.cachehit"), "false".into());
                Outcome::Continue
            }
        }
    } else {
        if let Some(c) = skip_populate {
            match c.eval(g, ex) {
                Ok(true) => return Outcome::Continue,
                Ok(false) => {}
                Err(f) => return Outcome::Fault(*f),
            }
        }
        if read_var(g, ex, &format!("{prefix}.cachehit")).as_deref() == Some("true") {
            return Outcome::Continue;
        }
        let Some(resp) = ex.response.as_ref() else {
            return Outcome::Continue;
        };
        let st = resp.status.as_u16();
        if cfg.exclude_error_response && st >= 400 {
            return Outcome::Continue;
        }
        let headers = header_list(resp);
        let mut until = cfg.expiry.expires_at(now, &|n| read_var(g, ex, n));
        if cfg.use_response_cache_headers
            && let Some(ttl) = cache::response_header_ttl(&headers)
        {
            until = until.min(now.saturating_add(ttl));
        }
        let value = CachedValue::Response {
            status: st,
            headers,
            body: resp.body.to_vec(),
        };
        g.resources
            .cache
            .put(resource(&cfg.common), &key, value, until, now);
        Outcome::Continue
    }
}

// ---------------------------------------------------------------------------------------
// ServiceCallout

fn start_callout(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    name: &str,
    sc: &ServiceCallout,
) -> Outcome {
    // An HTTP callout names its URL; a local one (proxy chaining) only a path, which the
    // host resolves against its own proxies.
    let (base, local) = match &sc.connection {
        Some(CalloutConnection::Http { url, .. }) => (url.render(|n| read_var(g, ex, n)), false),
        Some(CalloutConnection::Local { path, .. }) => (path.clone().unwrap_or_default(), true),
        None => {
            return Outcome::Fault(Fault::new(
                "steps.servicecallout.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ServiceCallout[{name}]: no connection is configured"),
            ));
        }
    };
    let mut m = Message::response(StatusCode::OK);
    m.method = http::Method::GET;
    if let Some(req) = &sc.request {
        if let Err(f) = crate::exec::apply_ops(
            g,
            ex,
            bundle,
            &req.ops,
            req.ignore_unresolved_variables,
            Some(&mut m),
        ) {
            return Outcome::Fault(f);
        }
        if let Some(var) = &req.variable {
            set_variable(
                g,
                ex,
                bundle,
                &format!("{var}.content"),
                String::from_utf8_lossy(&m.body).into_owned(),
            );
        }
    }
    let mut uri = base.trim_end_matches('/').to_owned();
    if !m.path.is_empty() {
        if !m.path.starts_with('/') {
            uri.push('/');
        }
        uri.push_str(&m.path);
    } else if base.ends_with('/') {
        uri.push('/');
    }
    if let Some(q) = m.query.as_deref().filter(|q| !q.is_empty()) {
        uri.push(if uri.contains('?') { '&' } else { '?' });
        uri.push_str(q);
    }
    let mut builder = http::Request::builder().method(m.method.clone()).uri(&uri);
    if let Some(h) = builder.headers_mut() {
        *h = m.headers.clone();
    }
    let request = match builder.body(m.body.clone()) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                "steps.servicecallout.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ServiceCallout[{name}]: invalid callout URL `{uri}`: {e}"),
            ));
        }
    };
    let timeouts = Timeouts {
        connect: None,
        io: sc.timeout_ms.map(std::time::Duration::from_millis),
    };
    Outcome::Callout(Target {
        request,
        timeouts,
        endpoint: if local {
            format!("servicecallout-local:{name}").into()
        } else {
            format!("servicecallout:{name}").into()
        },
    })
}

/// A ServiceCallout asks the host for its call with [`Step::Forward`](crate::Step::Forward):
/// the [`Target`]'s `endpoint` is `servicecallout:{policy}` for an HTTP callout, and
/// `servicecallout-local:{policy}` for a `<LocalTargetConnection>`, whose request URI is
/// only a path the host resolves against its own proxies.
///
/// Finishes a ServiceCallout with the host's result: the response goes to the
/// `<Response>` variable (`{var}.content`, `{var}.status.code`, `{var}.header.{name}`).
pub(crate) fn finish_callout(
    g: &Inner,
    ex: &mut Exchange,
    bundle: usize,
    name: &str,
    sc: &ServiceCallout,
    result: Result<http::Response<Bytes>, TargetError>,
) -> Outcome {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                "steps.servicecallout.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Execution of ServiceCallout {name} failed. Reason: {e}"),
            ));
        }
    };
    let code = resp.status().as_u16();
    if let Some(var) = &sc.response {
        set_variable(
            g,
            ex,
            bundle,
            &format!("{var}.status.code"),
            code.to_string(),
        );
        if let Some(r) = resp.status().canonical_reason() {
            set_variable(g, ex, bundle, &format!("{var}.reason.phrase"), r.to_owned());
        }
        for (k, v) in resp.headers() {
            set_variable(
                g,
                ex,
                bundle,
                &format!("{var}.header.{}", k.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
        }
        set_variable(
            g,
            ex,
            bundle,
            &format!("{var}.content"),
            String::from_utf8_lossy(resp.body()).into_owned(),
        );
    }
    if code >= 400 {
        return Outcome::Fault(Fault::new(
            "steps.servicecallout.ExecutionFailed",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Execution of ServiceCallout {name} failed. Reason: ResponseCode {code} is treated as error"
            ),
        ));
    }
    Outcome::Continue
}

// ---------------------------------------------------------------------------------------
// ExtractVariables <XMLPayload>

/// The values of ExtractVariables' `<XMLPayload><Variable><XPath>`s over `body`: for each
/// variable, the string value of the first node (or the value of a non-node-set
/// expression); a variable whose path selects nothing is left unset. An empty body
/// extracts nothing.
pub(crate) fn extract_xml(
    x: &preflow_policy::extract::XmlPayload,
    body: &[u8],
    ignore_errors: bool,
) -> Result<Vec<(String, String)>, Box<Fault>> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let fail = |why: String| {
        Box::new(Fault::new(
            "steps.extractvariables.ExecutionFailed",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to execute the ExtractVariables: {why}"),
        ))
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return if ignore_errors {
            Ok(Vec::new())
        } else {
            Err(fail("the payload is not UTF-8".into()))
        };
    };
    let mut out = Vec::new();
    for v in &x.variables {
        match preflow_policy::xpath::evaluate(text, &v.path, &x.namespaces) {
            Ok(value) => {
                let nodeset = v.value_type.as_deref() == Some("nodeset");
                let found = if nodeset {
                    let all = value.strings();
                    (!all.is_empty()).then(|| all.join(","))
                } else {
                    value.first()
                };
                if let Some(f) = found {
                    out.push((v.name.clone(), f));
                }
            }
            Err(_) if ignore_errors => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// What the family policies set, for `preflow check`

/// The variables a family policy sets besides those under its own prefix (`jwt.`,
/// `lookupcache.`, `responsecache.`, `cors.`), for the lint that reports conditions
/// reading variables nothing sets.
pub(crate) fn variables_set(config: &PolicyConfig) -> Vec<String> {
    let message_output = |v: &Option<String>| {
        v.iter()
            .filter(|v| !matches!(v.as_str(), "request" | "response" | "message"))
            .cloned()
            .collect::<Vec<_>>()
    };
    match config {
        PolicyConfig::Jwt(j) => j
            .output_variable
            .iter()
            .cloned()
            .chain(std::iter::once("JWT.failed".to_owned()))
            .collect(),
        PolicyConfig::LookupCache(l) => vec![l.assign_to.clone()],
        PolicyConfig::ServiceCallout(s) => s
            .response
            .iter()
            .cloned()
            .chain(s.request.as_ref().and_then(|r| r.variable.clone()))
            .collect(),
        PolicyConfig::StatisticsCollector(s) => s
            .statistics
            .iter()
            .map(|st| format!("{}{}", service::STATISTICS_PREFIX, st.name))
            .collect(),
        PolicyConfig::DataCapture(d) => d
            .captures
            .iter()
            .map(|c| c.data_collector.clone())
            .collect(),
        PolicyConfig::JsonToXml(j) => message_output(&j.output_variable),
        PolicyConfig::XmlToJson(x) => message_output(&x.output_variable),
        _ => Vec::new(),
    }
}
