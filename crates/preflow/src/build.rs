//! Building the compiled form from the loaded endpoint model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use preflow_oauth::Registry;
use preflow_policy::runtime::{PolicyRef, Settings, StateMode, Timeouts, TlsSettings};
use preflow_policy::{BuildCx, CompileError, CompiledPolicy, Diagnostic, Location};

use crate::compiled::{
    CBundle, CCompiled, CCond, CConn, CDefaultRule, CFaultRule, CFlow, CProxy, CRoute,
    CRouteTarget, CStep, CTarget,
};
use crate::endpoint::{
    Condition, ConditionForm, DefaultFaultRule, FaultRule, Flow, ProxyEndpoint, RouteTarget,
    Step as XmlStep, TargetConnection, TargetEndpoint,
};
use crate::environment::Environment;
use crate::provider::TargetAuth;
use crate::vars::Resolver;

/// Why a gateway could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The bundles have load errors (the first one is shown).
    #[error("the bundles have {count} error(s); the first: {first}")]
    Load {
        /// How many errors.
        count: usize,
        /// The first error, with its file, line and column.
        first: Box<Diagnostic>,
    },
    /// Two proxy endpoints share a base path.
    #[error("base path `{base_path}` is used by both `{first}` and `{second}`")]
    DuplicateBasePath {
        /// The base path.
        base_path: String,
        /// The first proxy endpoint (`proxy/endpoint`).
        first: String,
        /// The second.
        second: String,
    },
    /// A policy's configuration cannot run.
    #[error("{location}: policy `{policy}` of `{bundle}`: {error}")]
    Policy {
        /// The bundle.
        bundle: String,
        /// The policy.
        policy: String,
        /// Where the policy is.
        location: Location,
        /// What is wrong.
        #[source]
        error: CompileError,
    },
    /// A target endpoint's `<LoadBalancer>` cannot run in this environment.
    #[error("target endpoint `{target}` of `{bundle}`: {error}")]
    Balancer {
        /// The bundle.
        bundle: String,
        /// The target endpoint.
        target: String,
        /// What is wrong.
        #[source]
        error: crate::balance::BalancerError,
    },
}

struct Cx<'a> {
    bundle: usize,
    index: &'a HashMap<String, usize>,
    policies: &'a mut Vec<CompiledPolicy>,
    environment: &'a Environment,
}

impl Cx<'_> {
    fn cond(&self, c: Option<&Condition>) -> Option<CCond> {
        let c = c?;
        let r = Resolver {
            bundle: self.bundle,
            policies: self.index,
            reads_body: std::cell::Cell::new(false),
            reads_response_body: std::cell::Cell::new(false),
            reads_request_headers: std::cell::Cell::new(false),
        };
        let (compiled, guard) = match &c.form {
            ConditionForm::Valid { ast, .. } => match ast.compile(&c.text, &r) {
                Ok(compiled) => (CCompiled::Valid(compiled), crate::guard::guard(ast)),
                Err(e) => (
                    CCompiled::Invalid(e.message().to_owned()),
                    crate::guard::Guard::default(),
                ),
            },
            ConditionForm::Invalid { message } => (
                CCompiled::Invalid(message.clone()),
                crate::guard::Guard::default(),
            ),
        };
        Some(CCond {
            text: c.text.clone(),
            compiled,
            guard,
            // An invalid condition faults without reading anything.
            reads_body: r.reads_body.get(),
            reads_response_body: r.reads_response_body.get(),
            reads_request_headers: r.reads_request_headers.get(),
        })
    }

    fn steps(&mut self, steps: &[XmlStep]) -> Vec<CStep> {
        steps
            .iter()
            .map(|s| {
                let policy = match self.index.get(&s.policy) {
                    Some(&p) => p,
                    None => {
                        // A policy a build script would supply: a fault if reached.
                        self.policies.push(CompiledPolicy::missing(&s.policy));
                        self.policies.len() - 1
                    }
                };
                let cond = self.cond(s.condition.as_ref());
                let needs_body = cond.as_ref().is_some_and(|c| c.reads_body)
                    || self
                        .policies
                        .get(policy)
                        .is_some_and(CompiledPolicy::reads_request_body);
                let policy_ref = self.policies.get(policy);
                // A policy type that neither reads nor writes payloads (unless a ref names
                // a body variable, which `reads_request_body` reports for `message.*`).
                let body_free = policy_ref.is_some_and(|p| {
                    BODY_FREE_TYPES.contains(&p.type_name()) && !p.reads_request_body()
                });
                let touches_response_body = !body_free
                    || cond
                        .as_ref()
                        .is_some_and(|c| c.reads_body || c.reads_response_body);
                let calls_shared_flow = policy_ref.is_some_and(|p| p.type_name() == "FlowCallout");
                let reads_request_headers = calls_shared_flow
                    || cond.as_ref().is_some_and(|c| c.reads_request_headers)
                    || policy_ref.is_none_or(CompiledPolicy::reads_request_headers);
                CStep {
                    policy,
                    cond,
                    needs_body,
                    max_body: policy_ref.and_then(CompiledPolicy::max_request_body),
                    touches_response_body,
                    calls_shared_flow,
                    reads_request_headers,
                }
            })
            .collect()
    }

    fn flow(&mut self, f: &Flow, default: &str) -> CFlow {
        CFlow {
            name: if f.name.is_empty() {
                default.to_owned()
            } else {
                f.name.clone()
            },
            cond: self.cond(f.condition.as_ref()),
            request: self.steps(&f.request),
            response: self.steps(&f.response),
        }
    }

    fn rules(&mut self, rules: &[FaultRule]) -> Vec<CFaultRule> {
        rules
            .iter()
            .map(|r| CFaultRule {
                name: r.name.clone(),
                cond: self.cond(r.condition.as_ref()),
                steps: self.steps(&r.steps),
            })
            .collect()
    }

    fn default_rule(&mut self, d: Option<&DefaultFaultRule>) -> Option<CDefaultRule> {
        d.map(|d| CDefaultRule {
            name: d.name.clone(),
            cond: self.cond(d.condition.as_ref()),
            steps: self.steps(&d.steps),
            always_enforce: d.always_enforce,
        })
    }

    fn proxy(&mut self, p: &ProxyEndpoint, targets: &[TargetEndpoint]) -> CProxy {
        let pre = self.flow(&p.pre_flow, "PreFlow");
        let flows: Vec<CFlow> = p.flows.iter().map(|f| self.flow(f, "")).collect();
        CProxy {
            name: p.name.clone(),
            base_path: crate::path::normalize_base(p.base_path.as_deref().unwrap_or("/")),
            virtual_hosts: p
                .virtual_hosts
                .iter()
                .map(|v| v.trim().to_ascii_lowercase())
                .collect(),
            pre,
            flow_index: crate::select::FlowIndex::build(flows.iter().map(CFlow::guard_prefix)),
            flows,
            post: self.flow(&p.post_flow, "PostFlow"),
            post_client: p
                .post_client_flow
                .as_ref()
                .map(|f| self.flow(f, "PostClientFlow")),
            routes: p
                .route_rules
                .iter()
                .map(|r| CRoute {
                    name: r.name.clone(),
                    cond: self.cond(r.condition.as_ref()),
                    target: match &r.target {
                        RouteTarget::TargetEndpoint(t) => {
                            match targets.iter().position(|x| &x.name == t) {
                                Some(i) => CRouteTarget::Endpoint(i),
                                None => CRouteTarget::Missing(t.clone()),
                            }
                        }
                        RouteTarget::Url(u) => CRouteTarget::Url(u.clone()),
                        RouteTarget::Null => CRouteTarget::Null,
                    },
                })
                .collect(),
            fault_rules: self.rules(&p.fault_rules),
            default_rule: self.default_rule(p.default_fault_rule.as_ref()),
        }
    }

    /// A target URL: absolute, or `provider://NAME/path` through an API provider of
    /// the environment (its base URL, credentials and TLS settings).
    fn url_conn(&self, url: &str) -> (CConn, TargetAuth, Option<Arc<TlsSettings>>) {
        let mut auth = TargetAuth::None;
        let mut tls = None;
        let url = match url.strip_prefix("provider://") {
            None => url.to_owned(),
            Some(rest) => {
                let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let Some((i, p)) = self
                    .environment
                    .providers
                    .iter()
                    .enumerate()
                    .find(|(_, p)| p.name == name)
                else {
                    return (
                        CConn::Unusable(format!(
                            "the environment has no API provider named `{name}`"
                        )),
                        auth,
                        tls,
                    );
                };
                auth = TargetAuth::of(i, p);
                tls = p.tls.clone().map(Arc::new);
                format!("{}{path}", p.base_url.trim_end_matches('/'))
            }
        };
        let conn = match url.parse::<http::Uri>() {
            Ok(uri) => match (uri.scheme().cloned(), uri.authority().cloned()) {
                (Some(scheme), Some(authority)) => match crate::compiled::host_value(&authority) {
                    Some(host) => CConn::Url {
                        base: uri.path().trim_end_matches('/').to_owned(),
                        address: literal_address(&authority),
                        url,
                        scheme,
                        authority,
                        host,
                    },
                    None => CConn::Unusable(format!("the target url `{url}` has no valid host")),
                },
                _ => CConn::Unusable(format!("the target url `{url}` is not absolute")),
            },
            Err(_) => CConn::Unusable(format!("the target url `{url}` is not a valid uri")),
        };
        (conn, auth, tls)
    }

    fn target(&mut self, t: &TargetEndpoint) -> Result<CTarget, crate::balance::BalancerError> {
        let mut timeouts = Timeouts::default();
        let mut auth = TargetAuth::None;
        let mut provider_tls = None;
        let conn = match &t.connection {
            TargetConnection::Http(h) => {
                for (k, v) in &h.properties {
                    let ms = v.trim().parse::<u64>().ok().map(Duration::from_millis);
                    match k.as_str() {
                        "connect.timeout.millis" => timeouts.connect = ms,
                        "io.timeout.millis" => timeouts.io = ms,
                        _ => {}
                    }
                }
                match (&h.url, &h.load_balancer) {
                    (None, Some(lb)) => {
                        match crate::balance::CBalancer::build(lb, h, self.environment) {
                            Ok(b) => CConn::Balanced(Box::new(b)),
                            // What the environment lacks makes this target unusable (as an
                            // unknown provider does), not the whole gateway; `check` and
                            // `serve` warn about it.
                            Err(e @ crate::balance::BalancerError::UnknownServer(_)) => {
                                CConn::Unusable(e.to_string())
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    (Some(u), _) => {
                        let (conn, a, t) = self.url_conn(u.trim());
                        auth = a;
                        provider_tls = t;
                        conn
                    }
                    (None, None) => CConn::Unusable("the target has no url".to_owned()),
                }
            }
            TargetConnection::Local(l) => match (&l.path, &l.api_proxy) {
                (Some(path), _) => CConn::Local(crate::path::normalize_base(path)),
                (None, Some(proxy)) => CConn::LocalProxy {
                    proxy: proxy.trim().to_owned(),
                    endpoint: l.proxy_endpoint.as_deref().map(|e| e.trim().to_owned()),
                },
                (None, None) => CConn::Unusable(
                    "a LocalTargetConnection needs a `<Path>` or an `<APIProxy>`".to_owned(),
                ),
            },
            TargetConnection::Hosted => {
                CConn::Unusable("a hosted or script target is not supported".to_owned())
            }
            TargetConnection::None => {
                CConn::Unusable("the target endpoint has no connection".to_owned())
            }
        };
        let pre = self.flow(&t.pre_flow, "PreFlow");
        let flows: Vec<CFlow> = t.flows.iter().map(|f| self.flow(f, "")).collect();
        Ok(CTarget {
            name: t.name.clone(),
            name_arc: Arc::from(t.name.as_str()),
            pre,
            flow_index: crate::select::FlowIndex::build(flows.iter().map(CFlow::guard_prefix)),
            flows,
            post: self.flow(&t.post_flow, "PostFlow"),
            fault_rules: self.rules(&t.fault_rules),
            default_rule: self.default_rule(t.default_fault_rule.as_ref()),
            // The endpoint's own `<SSLInfo>` wins over the provider's settings.
            tls: match &t.connection {
                TargetConnection::Http(h) => h.ssl_info.clone().map(Arc::new),
                _ => None,
            }
            .or(provider_tls),
            auth,
            // Decided once every endpoint is compiled.
            stream_request: false,
            stream_response: false,
            move_request_headers: false,
            conn,
            timeouts,
        })
    }
}

/// Policy types that never read or replace a message body (unless a ref of theirs names
/// a body variable): a response-side step of any other type keeps the response buffered.
const BODY_FREE_TYPES: &[&str] = &[
    "SpikeArrest",
    "Quota",
    "VerifyAPIKey",
    "AccessControl",
    "BasicAuthentication",
    "CORS",
    "GetOAuthV2Info",
];

/// Whether bodies stream past the engine, for one target endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Streaming {
    pub request: bool,
    pub response: bool,
}

/// `request.streaming.enabled` / `response.streaming.enabled` among `props`: `Some(true)`,
/// `Some(false)` or unset.
fn streaming_property(props: &[(String, String)], name: &str) -> Option<bool> {
    props
        .iter()
        .rev()
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().eq_ignore_ascii_case("true"))
}

/// Decides, for target endpoint `t` of bundle `b`, whether the request body streams to
/// it and its response body streams back, given what the bundle's steps read:
/// a property set to `false` (on the TargetEndpoint or a ProxyEndpoint) buffers, `true`
/// streams whatever the policies need (they see an empty body), unset streams when no
/// step after the call reads the request body and no response-side step reads or
/// replaces the response body.
pub(crate) fn streaming(
    b: &crate::Bundle,
    t: &TargetEndpoint,
    after_call_reads_request: bool,
    response_body_touched: bool,
) -> Streaming {
    let target_props: &[(String, String)] = match &t.connection {
        TargetConnection::Http(h) => &h.properties,
        _ => &[],
    };
    let decide = |name: &str, needed: bool| {
        let from_target = streaming_property(target_props, name);
        let from_proxies: Vec<Option<bool>> = b
            .proxy_endpoints
            .iter()
            .map(|p| streaming_property(&p.properties, name))
            .collect();
        if from_target == Some(false) || from_proxies.contains(&Some(false)) {
            false
        } else if from_target == Some(true) || from_proxies.contains(&Some(true)) {
            true
        } else {
            !needed
        }
    };
    Streaming {
        request: decide("request.streaming.enabled", after_call_reads_request),
        response: decide("response.streaming.enabled", response_body_touched),
    }
}

/// What the bundle's steps after the target call need.
struct AfterCall {
    /// A step reads the request body (or may, through a shared flow).
    reads_request_body: bool,
    /// A response-side step reads or replaces the response body.
    touches_response_body: bool,
    /// A step or a fault rule's condition may read the request's headers (conditional
    /// flows' own conditions were evaluated before the call).
    reads_request_headers: bool,
}

/// An endpoint's fault rules, its default fault rule last, each as its condition and
/// its steps.
fn fault_rules<'a>(
    rules: &'a [CFaultRule],
    default: Option<&'a CDefaultRule>,
) -> impl Iterator<Item = (Option<&'a CCond>, &'a [CStep])> {
    let rules = rules.iter().map(|r| (r.cond.as_ref(), r.steps.as_slice()));
    rules.chain(default.map(|r| (r.cond.as_ref(), r.steps.as_slice())))
}

/// What the steps that may run after the target call need: response flows,
/// PostClientFlow, fault rules and default fault rules of every endpoint.
fn after_call_needs(proxies: &[CProxy], targets: &[CTarget]) -> AfterCall {
    fn flows<'a>(pre: &'a CFlow, flows: &'a [CFlow], post: &'a CFlow) -> Vec<&'a CStep> {
        std::iter::once(pre)
            .chain(flows.iter())
            .chain(std::iter::once(post))
            .flat_map(|f| f.response.iter())
            .collect()
    }
    let mut response_steps: Vec<&CStep> = Vec::new();
    let mut rules: Vec<(Option<&CCond>, &[CStep])> = Vec::new();
    for p in proxies {
        response_steps.extend(flows(&p.pre, &p.flows, &p.post));
        if let Some(pc) = &p.post_client {
            response_steps.extend(pc.response.iter());
        }
        rules.extend(fault_rules(&p.fault_rules, p.default_rule.as_ref()));
    }
    for t in targets {
        response_steps.extend(flows(&t.pre, &t.flows, &t.post));
        rules.extend(fault_rules(&t.fault_rules, t.default_rule.as_ref()));
    }
    let after = || {
        let fault_steps = rules.iter().flat_map(|(_, steps)| steps.iter());
        response_steps.iter().copied().chain(fault_steps)
    };
    AfterCall {
        reads_request_body: after().any(|s| s.needs_body || s.calls_shared_flow),
        touches_response_body: response_steps.iter().any(|s| s.touches_response_body),
        reads_request_headers: after().any(|s| s.reads_request_headers)
            || rules
                .iter()
                .any(|(cond, _)| cond.is_some_and(|c| c.reads_request_headers)),
    }
}

/// The socket address of an authority that names an IP literal (`[…]` for IPv6) and a
/// port. Without a port the host picks the default, which TLS settings can change.
fn literal_address(authority: &http::uri::Authority) -> Option<std::net::SocketAddr> {
    let host = authority.host();
    let ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse::<std::net::IpAddr>()
        .ok()?;
    Some(std::net::SocketAddr::new(ip, authority.port_u16()?))
}

/// Compiles bundle `b`, the `bi`th of the gateway.
/// What every bundle of a gateway is compiled against.
pub(crate) struct Common<'a> {
    pub settings: &'a Settings,
    pub registry: &'a Arc<Registry>,
    /// One failure throttle for every token endpoint of the gateway.
    pub throttle: &'a Arc<preflow_oauth::Throttle>,
    pub state: StateMode,
    /// Shared flows by name: their bundle index.
    pub shared: &'a HashMap<String, usize>,
    pub environment: &'a Environment,
}

pub(crate) fn compile_bundle(
    bi: usize,
    b: &crate::Bundle,
    common: &Common<'_>,
) -> Result<CBundle, BuildError> {
    let Common {
        settings,
        registry,
        throttle,
        state,
        shared,
        environment,
    } = *common;
    // The whole index first: a policy may resolve variables of any policy at build time.
    let index: HashMap<String, usize> = b
        .policies
        .keys()
        .enumerate()
        .map(|(i, name)| (name.clone(), i))
        .collect();
    let mut policies = Vec::with_capacity(b.policies.len());
    for (i, (name, p)) in b.policies.iter().enumerate() {
        let ctx = BuildCx {
            at: PolicyRef {
                bundle: bi,
                policy: i,
            },
            name,
            settings,
            registry,
            throttle,
            state,
            shared_flows: shared,
            policies: &index,
        };
        let compiled = CompiledPolicy::compile(p, &ctx).map_err(|error| BuildError::Policy {
            bundle: b.name.clone(),
            policy: name.clone(),
            location: p.location.clone(),
            error,
        })?;
        policies.push(compiled);
    }
    // Templates and refs of policies resolve by name at run time; conditions get slots.
    let mut cx = Cx {
        bundle: bi,
        index: &index,
        policies: &mut policies,
        environment,
    };
    let proxies: Vec<CProxy> = b
        .proxy_endpoints
        .iter()
        .map(|p| cx.proxy(p, &b.target_endpoints))
        .collect();
    let mut targets: Vec<CTarget> = b
        .target_endpoints
        .iter()
        .map(|t| {
            cx.target(t).map_err(|error| BuildError::Balancer {
                bundle: b.name.clone(),
                target: t.name.clone(),
                error,
            })
        })
        .collect::<Result<_, _>>()?;
    // What the steps after a call need decides whether bodies stream past the engine.
    let after = after_call_needs(&proxies, &targets);
    for (ct, t) in targets.iter_mut().zip(&b.target_endpoints) {
        // A local target is a chained exchange in this process: it takes whole bodies.
        if matches!(ct.conn, CConn::Local(_) | CConn::LocalProxy { .. }) {
            continue;
        }
        let s = streaming(b, t, after.reads_request_body, after.touches_response_body);
        ct.stream_request = s.request;
        ct.stream_response = s.response;
    }
    // A URL target without provider credentials is called once per exchange (no load
    // balancer retry, no second call with a new token): its request can take the
    // client's headers when nothing after the call reads them.
    for ct in &mut targets {
        ct.move_request_headers = !after.reads_request_headers
            && matches!(ct.conn, CConn::Url { .. })
            && matches!(ct.auth, crate::provider::TargetAuth::None);
    }
    let shared_steps = b
        .shared_flows
        .iter()
        .find(|s| s.name == "default")
        .or(b.shared_flows.first())
        .map(|s| cx.steps(&s.steps))
        .unwrap_or_default();
    let conditions_need_body = conditions_read_body(&proxies, &targets);
    Ok(CBundle {
        name: b.name.clone(),
        revision: b.revision.clone().unwrap_or_else(|| "1".to_owned()),
        policies,
        policy_index: index,
        proxies,
        targets,
        shared_steps,
        conditions_need_body,
    })
}

/// Whether a flow, route rule or fault rule condition of these endpoints reads the body.
fn conditions_read_body(proxies: &[CProxy], targets: &[CTarget]) -> bool {
    fn any(c: &Option<CCond>) -> bool {
        c.as_ref().is_some_and(|c| c.reads_body)
    }
    let rules = |rules: &[CFaultRule], default: &Option<CDefaultRule>| {
        fault_rules(rules, default.as_ref()).any(|(c, _)| c.is_some_and(|c| c.reads_body))
    };
    proxies.iter().any(|p| {
        p.flows.iter().any(|f| any(&f.cond))
            || p.routes.iter().any(|r| any(&r.cond))
            || rules(&p.fault_rules, &p.default_rule)
    }) || targets
        .iter()
        .any(|t| t.flows.iter().any(|f| any(&f.cond)) || rules(&t.fault_rules, &t.default_rule))
}
