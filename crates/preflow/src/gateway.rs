//! The gateway: bundles compiled for execution, and the per-request entry points.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow_condition::Compiled;
use preflow_oauth::{Registry, ResponseMode};
use preflow_ratelimit::SpikeBehaviour;

use crate::bundle::{BundleKind, LoadOptions, Loaded, load_path};
use crate::endpoint::{
    Condition, ConditionForm, DefaultFaultRule, FaultRule, Flow, ProxyEndpoint, RouteTarget,
    Step as XmlStep, TargetConnection, TargetEndpoint,
};
use crate::exchange::{Client, Exchange, Message, Step, Timeouts};
use crate::exec::{self, CPolicy};
use crate::vars::{Resolver, Slot};

/// Which platform's fault statuses to follow (DESIGN.md: compatibility is explicit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Apigee X and Edge cloud: rate-limit violations answer 429 (the default).
    #[default]
    Cloud,
    /// Edge private cloud and SAP API Management: rate-limit violations answer 500.
    PrivateCloud,
}

/// Where SpikeArrest, Quota and token state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateMode {
    /// In-memory stores owned by the gateway, answered inline.
    #[default]
    Local,
    /// Every rate-limit and token-store operation is surfaced as
    /// [`Step::Store`](crate::Step::Store) for the host to run.
    Remote,
}

/// Gateway settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Fault statuses: 429 or 500 for rate-limit violations.
    pub profile: Profile,
    /// SpikeArrest algorithm: Edge smoothing (default) or the Apigee X token bucket.
    pub spike: SpikeBehaviour,
    /// `environment.name`, also used for API product checks. Default `prod`.
    pub environment: String,
    /// `organization.name`. Default `preflow`.
    pub organization: String,
    /// Shape of token-endpoint responses. Default strict RFC 6749; an OAuthV2 policy
    /// with `<RFCCompliantRequestResponse>true` is always RFC.
    pub token_response: ResponseMode,
    /// After a fault in a TargetEndpoint, run the ProxyEndpoint's DefaultFaultRule too
    /// when it has `AlwaysEnforce` (default true).
    pub proxy_default_rule_on_target_fault: bool,
    /// Deepest nesting of FlowCallouts (default 8).
    pub max_callout_depth: usize,
    /// Default target connect timeout, when the target endpoint sets none.
    pub connect_timeout: Option<Duration>,
    /// Default target I/O timeout, when the target endpoint sets none.
    pub io_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profile: Profile::Cloud,
            spike: SpikeBehaviour::Edge,
            environment: "prod".to_owned(),
            organization: "preflow".to_owned(),
            token_response: ResponseMode::Rfc,
            proxy_default_rule_on_target_fault: true,
            max_callout_depth: 8,
            connect_timeout: None,
            io_timeout: None,
        }
    }
}

/// Why a gateway could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The bundles have load errors (the first one is shown).
    #[error("the bundles have {count} error(s); the first: {first}")]
    Load {
        /// How many errors.
        count: usize,
        /// The first error, rendered.
        first: String,
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
    #[error("policy `{policy}` of `{bundle}`: {message}")]
    Policy {
        /// The bundle.
        bundle: String,
        /// The policy.
        policy: String,
        /// What is wrong.
        message: String,
    },
}

/// Builds a [`Gateway`].
#[derive(Debug, Default)]
pub struct GatewayBuilder {
    loaded: Vec<Loaded>,
    paths: Vec<PathBuf>,
    registry: Option<Arc<Registry>>,
    settings: Settings,
    state: StateMode,
    resources: Option<crate::families::PolicyResources>,
}

impl GatewayBuilder {
    /// The cache, log sink and JWKS documents of the cache, MessageLogging and VerifyJWT
    /// policies (default: an empty cache with default limits, no sink, no JWKS).
    pub fn resources(mut self, resources: crate::families::PolicyResources) -> Self {
        self.resources = Some(resources);
        self
    }

    /// Adds loaded bundles (from [`load_path`], [`load_files`](crate::load_files)…).
    pub fn bundles(mut self, loaded: Loaded) -> Self {
        self.loaded.push(loaded);
        self
    }

    /// Adds the bundles at `path`, loaded with default options at [`build`](Self::build).
    pub fn bundle_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// The developers, apps, products and credentials that OAuthV2 and VerifyAPIKey
    /// check. Default: an empty registry.
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Settings; default [`Settings::default`].
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Where state lives; default [`StateMode::Local`].
    pub fn state(mut self, state: StateMode) -> Self {
        self.state = state;
        self
    }

    /// Compiles every bundle: conditions into slots, policies into executable form.
    ///
    /// # Errors
    /// A [`BuildError`] when a bundle has load errors, base paths collide or a policy
    /// cannot run as configured.
    pub fn build(self) -> Result<Gateway, BuildError> {
        let mut all = self.loaded;
        for p in &self.paths {
            all.push(load_path(p, &LoadOptions::default()));
        }
        let mut errors = all.iter().flat_map(Loaded::errors);
        if let Some(first) = errors.next() {
            return Err(BuildError::Load {
                count: 1 + errors.count(),
                first: first.to_string(),
            });
        }
        let registry = self.registry.unwrap_or_default();
        let bundles: Vec<&crate::Bundle> = all.iter().flat_map(|l| &l.bundles).collect();
        let shared: HashMap<String, usize> = bundles
            .iter()
            .enumerate()
            .filter(|(_, b)| b.kind == BundleKind::SharedFlow)
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let mut compiled = Vec::with_capacity(bundles.len());
        for (bi, b) in bundles.iter().enumerate() {
            compiled.push(compile_bundle(
                bi,
                b,
                &self.settings,
                &registry,
                self.state,
                &shared,
            )?);
        }
        let mut bases: Vec<(String, usize, usize)> = Vec::new();
        for (bi, b) in compiled.iter().enumerate() {
            for (ei, e) in b.proxies.iter().enumerate() {
                if let Some((_, ob, oe)) = bases.iter().find(|(p, _, _)| *p == e.base_path) {
                    let name = |b: usize, e: usize| {
                        let bundle = compiled.get(b);
                        format!(
                            "{}/{}",
                            bundle.map_or("", |x| x.name.as_str()),
                            bundle
                                .and_then(|x| x.proxies.get(e))
                                .map_or("", |x| x.name.as_str())
                        )
                    };
                    return Err(BuildError::DuplicateBasePath {
                        base_path: e.base_path.clone(),
                        first: name(*ob, *oe),
                        second: name(bi, ei),
                    });
                }
                bases.push((e.base_path.clone(), bi, ei));
            }
        }
        bases.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        Ok(Gateway {
            inner: Arc::new(Inner {
                bundles: compiled,
                bases,
                settings: self.settings,
                state: self.state,
                registry,
                tokens: preflow_oauth::MemoryStore::new(),
                kvm: dashmap::DashMap::new(),
                ids: AtomicU64::new(1),
                resources: self.resources.unwrap_or_default(),
            }),
        })
    }
}

/// A condition compiled into slots, with its guard (empty for an invalid condition).
#[derive(Debug)]
pub(crate) struct CCond {
    pub text: String,
    pub compiled: CCompiled,
    pub guard: crate::guard::Guard,
}

/// What evaluating a condition runs: the compiled form, or, for a condition that does not
/// parse or compile, the reason, and evaluating it raises `ConditionInvalid`.
#[derive(Debug)]
pub(crate) enum CCompiled {
    Valid(Compiled<Slot>),
    Invalid(String),
}

#[derive(Debug)]
pub(crate) struct CStep {
    pub policy: usize,
    pub cond: Option<CCond>,
}

#[derive(Debug)]
pub(crate) struct CFlow {
    pub name: String,
    pub cond: Option<CCond>,
    pub request: Vec<CStep>,
    pub response: Vec<CStep>,
}

#[derive(Debug)]
pub(crate) enum CRouteTarget {
    Endpoint(usize),
    Missing(String),
    Url(String),
    Null,
}

#[derive(Debug)]
pub(crate) struct CRoute {
    pub name: String,
    pub cond: Option<CCond>,
    pub target: CRouteTarget,
}

#[derive(Debug)]
pub(crate) struct CFaultRule {
    pub name: String,
    pub cond: Option<CCond>,
    pub steps: Vec<CStep>,
}

#[derive(Debug)]
pub(crate) struct CDefaultRule {
    pub name: String,
    pub cond: Option<CCond>,
    pub steps: Vec<CStep>,
    pub always_enforce: bool,
}

#[derive(Debug)]
pub(crate) struct CProxy {
    pub name: String,
    pub base_path: String,
    pub pre: CFlow,
    pub flows: Vec<CFlow>,
    pub post: CFlow,
    pub post_client: Option<CFlow>,
    pub routes: Vec<CRoute>,
    pub fault_rules: Vec<CFaultRule>,
    pub default_rule: Option<CDefaultRule>,
}

#[derive(Debug)]
pub(crate) enum CConn {
    /// A URL, with its scheme, authority and path taken apart once.
    Url {
        url: String,
        scheme: http::uri::Scheme,
        authority: http::uri::Authority,
        base: String,
    },
    /// Cannot be called (load balancer, hosted target, local target…).
    Unusable(String),
}

#[derive(Debug)]
pub(crate) struct CTarget {
    pub name: String,
    pub name_arc: Arc<str>,
    pub pre: CFlow,
    pub flows: Vec<CFlow>,
    pub post: CFlow,
    pub fault_rules: Vec<CFaultRule>,
    pub default_rule: Option<CDefaultRule>,
    pub conn: CConn,
    pub timeouts: Timeouts,
}

#[derive(Debug)]
pub(crate) struct CBundle {
    pub name: String,
    pub revision: String,
    pub policies: Vec<CPolicy>,
    pub policy_index: HashMap<String, usize>,
    pub proxies: Vec<CProxy>,
    pub targets: Vec<CTarget>,
    /// The steps of a shared flow bundle (`sharedflows/default.xml`, else the first).
    pub shared_steps: Vec<CStep>,
}

/// Everything a gateway holds, shared across threads.
#[derive(Debug)]
pub(crate) struct Inner {
    pub bundles: Vec<CBundle>,
    /// Normalised base paths, longest first: (base path, bundle, proxy endpoint).
    pub bases: Vec<(String, usize, usize)>,
    pub settings: Settings,
    pub state: StateMode,
    pub registry: Arc<Registry>,
    pub tokens: preflow_oauth::MemoryStore,
    pub kvm: dashmap::DashMap<String, Vec<String>>,
    pub ids: AtomicU64,
    pub resources: crate::families::PolicyResources,
}

impl Inner {
    pub(crate) fn proxy_endpoint(&self, ex: &Exchange) -> Option<&CProxy> {
        self.bundles.get(ex.bundle)?.proxies.get(ex.endpoint)
    }

    pub(crate) fn target_endpoint(&self, ex: &Exchange) -> Option<&CTarget> {
        self.bundles.get(ex.bundle)?.targets.get(ex.target?)
    }
}

/// A set of compiled API proxies and shared flows, ready to serve requests. Cheap to
/// clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

struct Cx<'a> {
    bundle: usize,
    index: &'a HashMap<String, usize>,
    policies: &'a mut Vec<CPolicy>,
}

impl Cx<'_> {
    fn cond(&self, c: Option<&Condition>) -> Option<CCond> {
        let c = c?;
        let r = Resolver {
            bundle: self.bundle,
            policies: self.index,
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
                        self.policies.push(CPolicy::missing(&s.policy));
                        self.policies.len() - 1
                    }
                };
                CStep {
                    policy,
                    cond: self.cond(s.condition.as_ref()),
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
        CProxy {
            name: p.name.clone(),
            base_path: crate::path::normalize_base(p.base_path.as_deref().unwrap_or("/")),
            pre: self.flow(&p.pre_flow, "PreFlow"),
            flows: p.flows.iter().map(|f| self.flow(f, "")).collect(),
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

    fn target(&mut self, t: &TargetEndpoint) -> CTarget {
        let mut timeouts = Timeouts::default();
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
                match &h.url {
                    Some(u) => {
                        let url = u.trim().to_owned();
                        match url.parse::<http::Uri>() {
                            Ok(uri) => match (uri.scheme().cloned(), uri.authority().cloned()) {
                                (Some(scheme), Some(authority)) => CConn::Url {
                                    base: uri.path().trim_end_matches('/').to_owned(),
                                    url,
                                    scheme,
                                    authority,
                                },
                                _ => CConn::Unusable(format!(
                                    "the target url `{url}` is not absolute"
                                )),
                            },
                            Err(_) => CConn::Unusable(format!(
                                "the target url `{url}` is not a valid uri"
                            )),
                        }
                    }
                    None => CConn::Unusable(
                        "a load balancer over target servers is not supported".to_owned(),
                    ),
                }
            }
            TargetConnection::Local(_) => {
                CConn::Unusable("a LocalTargetConnection is not supported".to_owned())
            }
            TargetConnection::Hosted => {
                CConn::Unusable("a hosted or script target is not supported".to_owned())
            }
            TargetConnection::None => {
                CConn::Unusable("the target endpoint has no connection".to_owned())
            }
        };
        CTarget {
            name: t.name.clone(),
            name_arc: Arc::from(t.name.as_str()),
            pre: self.flow(&t.pre_flow, "PreFlow"),
            flows: t.flows.iter().map(|f| self.flow(f, "")).collect(),
            post: self.flow(&t.post_flow, "PostFlow"),
            fault_rules: self.rules(&t.fault_rules),
            default_rule: self.default_rule(t.default_fault_rule.as_ref()),
            conn,
            timeouts,
        }
    }
}

fn compile_bundle(
    bi: usize,
    b: &crate::Bundle,
    settings: &Settings,
    registry: &Arc<Registry>,
    state: StateMode,
    shared: &HashMap<String, usize>,
) -> Result<CBundle, BuildError> {
    let mut index = HashMap::new();
    let mut policies = Vec::with_capacity(b.policies.len());
    for (name, p) in &b.policies {
        index.insert(name.clone(), policies.len());
        let ctx = exec::BuildCx {
            bundle: bi,
            bundle_name: &b.name,
            settings,
            registry,
            state,
            shared,
        };
        let compiled = exec::compile(p, &ctx).map_err(|message| BuildError::Policy {
            bundle: b.name.clone(),
            policy: name.clone(),
            message,
        })?;
        policies.push(compiled);
    }
    // Templates and refs of policies resolve by name at run time; conditions get slots.
    let mut cx = Cx {
        bundle: bi,
        index: &index,
        policies: &mut policies,
    };
    let proxies = b
        .proxy_endpoints
        .iter()
        .map(|p| cx.proxy(p, &b.target_endpoints))
        .collect();
    let targets = b.target_endpoints.iter().map(|t| cx.target(t)).collect();
    let shared_steps = b
        .shared_flows
        .iter()
        .find(|s| s.name == "default")
        .or(b.shared_flows.first())
        .map(|s| cx.steps(&s.steps))
        .unwrap_or_default();
    Ok(CBundle {
        name: b.name.clone(),
        revision: b.revision.clone().unwrap_or_else(|| "1".to_owned()),
        policies,
        policy_index: index,
        proxies,
        targets,
        shared_steps,
    })
}

impl Gateway {
    /// Starts building a gateway.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The registry OAuthV2 and VerifyAPIKey policies check.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The in-memory token store used in [`StateMode::Local`].
    pub fn token_store(&self) -> &preflow_oauth::MemoryStore {
        &self.inner.tokens
    }

    /// The base paths served, longest first, with their API proxy's name.
    pub fn base_paths(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner.bases.iter().map(|(p, b, _)| {
            (
                p.as_str(),
                self.inner.bundles.get(*b).map_or("", |b| b.name.as_str()),
            )
        })
    }

    /// Begins an exchange for `request`, received from `client` at `now`. Nothing runs
    /// until [`step`](Self::step).
    pub fn begin(
        &self,
        request: http::Request<Bytes>,
        client: Client,
        now: SystemTime,
    ) -> Exchange {
        let (parts, body) = request.into_parts();
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Exchange {
            request: Message {
                method: parts.method,
                path: String::new(),
                query: None,
                version: parts.version,
                status: http::StatusCode::OK,
                reason: None,
                headers: parts.headers,
                body,
            },
            original_uri: parts.uri,
            response: None,
            client,
            now,
            now_ns,
            bundle: usize::MAX,
            endpoint: usize::MAX,
            base_len: 0,
            target: None,
            target_url: None,
            route: None,
            proxy_flow: None,
            target_flow: None,
            current_flow: "",
            current_flow_name: None,
            stage: crate::engine::Stage::Start,
            resume: None,
            reply: None,
            target_result: None,
            fault: None,
            vars: HashMap::new(),
            failed: Vec::new(),
            verified: None,
            api_keys: Vec::new(),
            quotas: Vec::new(),
            trace: None,
            message_id: self.inner.ids.fetch_add(1, Ordering::Relaxed),
            query_cache: std::sync::OnceLock::new(),
            form_cache: std::sync::OnceLock::new(),
            client_ip_cache: std::sync::OnceLock::new(),
            target_url_cache: std::sync::OnceLock::new(),
            callouts: Vec::new(),
            rule_raised: false,
            callout: None,
            path_lazy: true,
            query_lazy: true,
            final_response: None,
        }
    }

    /// Runs the exchange until the host has something to do: send a response, call a
    /// target, or (in [`StateMode::Remote`]) perform a store operation.
    pub fn step(&self, ex: &mut Exchange) -> Step {
        crate::engine::run(&self.inner, ex)
    }

    /// The value of flow variable `name` in `ex`, as text; `None` when unset.
    pub fn variable(&self, ex: &Exchange, name: &str) -> Option<String> {
        crate::engine::variable_text(&self.inner, ex, name)
    }
}
