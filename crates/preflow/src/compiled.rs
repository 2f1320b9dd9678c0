//! The compiled form of a gateway: bundles with conditions compiled into slots, policies
//! into executable form, endpoints and route rules resolved to indices.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use preflow_condition::Compiled;
use preflow_policy::CompiledPolicy;
use preflow_policy::runtime::{Env, Timeouts};
use preflow_policy::vars::Slot;

use crate::exchange::{Exchange, Part, Seg};
use crate::select::Base;

/// A condition compiled into slots, with its guard (empty for an invalid condition).
#[derive(Debug)]
pub(crate) struct CCond {
    pub text: String,
    pub compiled: CCompiled,
    pub guard: crate::guard::Guard,
    /// Whether evaluating it reads the request body.
    pub reads_body: bool,
    /// Whether evaluating it reads the response body.
    pub reads_response_body: bool,
    /// Whether evaluating it may read the request's headers.
    pub reads_request_headers: bool,
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
    /// Whether its condition or policy reads the request body: the engine asks the host
    /// for the body before such a step, and only then.
    pub needs_body: bool,
    /// The largest request body its policy accepts, when it limits it: a larger
    /// declared body is refused before it is read.
    pub max_body: Option<usize>,
    /// Whether, on the response side, it may read or replace the response body (decides
    /// whether the back end's response body can stream to the client).
    pub touches_response_body: bool,
    /// Whether it may read the request body through a shared flow (a FlowCallout, whose
    /// steps are compiled with another bundle): after the call, that keeps the request
    /// body buffered.
    pub calls_shared_flow: bool,
    /// Whether its condition or policy may read the request's headers (a shared flow's
    /// steps may).
    pub reads_request_headers: bool,
}

#[derive(Debug)]
pub(crate) struct CFlow {
    pub name: String,
    pub cond: Option<CCond>,
    pub request: Vec<CStep>,
    pub response: Vec<CStep>,
}

impl CFlow {
    /// The path prefix its (valid) condition requires, for [`crate::select::FlowIndex`].
    pub fn guard_prefix(&self) -> Option<&str> {
        let c = self.cond.as_ref()?;
        if !matches!(c.compiled, CCompiled::Valid(_)) {
            return None;
        }
        c.guard.prefix.as_deref()
    }
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
    /// `<VirtualHost>`s, lower case; empty: every virtual host.
    pub virtual_hosts: Vec<String>,
    pub pre: CFlow,
    pub flows: Vec<CFlow>,
    /// `flows` bucketed for selection.
    pub flow_index: crate::select::FlowIndex,
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
        /// The authority as the target request's `Host`, made once.
        host: http::HeaderValue,
        base: String,
        /// The socket address, when the authority's host is an IP literal.
        address: Option<std::net::SocketAddr>,
    },
    /// A `<LoadBalancer>` over the environment's target servers.
    Balanced(Box<crate::balance::CBalancer>),
    /// A `<LocalTargetConnection>`: this base path on the same gateway, called in process.
    Local(String),
    /// A `<LocalTargetConnection>` naming an API proxy (and endpoint), resolved to
    /// [`CConn::Local`] once every bundle is compiled.
    LocalProxy {
        proxy: String,
        endpoint: Option<String>,
    },
    /// Cannot be called (hosted target…).
    Unusable(String),
}

#[derive(Debug)]
pub(crate) struct CTarget {
    pub name: String,
    pub name_arc: Arc<str>,
    pub pre: CFlow,
    pub flows: Vec<CFlow>,
    /// `flows` bucketed for selection.
    pub flow_index: crate::select::FlowIndex,
    pub post: CFlow,
    pub fault_rules: Vec<CFaultRule>,
    pub default_rule: Option<CDefaultRule>,
    pub conn: CConn,
    pub timeouts: Timeouts,
    /// `<SSLInfo>` (or the API provider's TLS settings), handed to the host with each call.
    pub tls: Option<Arc<preflow_policy::runtime::TlsSettings>>,
    /// Credentials an API provider puts on each call.
    pub auth: crate::provider::TargetAuth,
    /// The request body may stream to the back end (decided at build time).
    pub stream_request: bool,
    /// The back end's response body may stream to the client (decided at build time).
    pub stream_response: bool,
    /// The forwarded request takes the client request's headers instead of a copy:
    /// nothing after the call reads them (decided at build time).
    pub move_request_headers: bool,
}

#[derive(Debug)]
pub(crate) struct CBundle {
    pub name: String,
    pub revision: String,
    pub policies: Vec<CompiledPolicy>,
    pub policy_index: HashMap<String, usize>,
    pub proxies: Vec<CProxy>,
    pub targets: Vec<CTarget>,
    /// The steps of a shared flow bundle (`sharedflows/default.xml`, else the first).
    pub shared_steps: Vec<CStep>,
    /// Whether a flow, route rule or fault rule condition reads the request body: the
    /// body is then read before the request flows start.
    pub conditions_need_body: bool,
}

/// Everything a gateway holds, shared across threads.
#[derive(Debug)]
pub(crate) struct Inner {
    pub bundles: Vec<CBundle>,
    /// Normalised base paths, longest first.
    pub bases: Vec<Base>,
    /// `bases` as a segment trie: proxy selection without a scan.
    pub base_trie: crate::select::BaseTrie,
    /// Settings, registry, stores and resources the policies share; shared with the
    /// gateway's later revisions ([`Gateway::redeploy`](crate::Gateway::redeploy)).
    pub env: Arc<Env>,
    /// Message ids, continued by later revisions.
    pub ids: Arc<AtomicU64>,
    /// Target servers, providers and store names, as given to the builder.
    pub environment: crate::environment::Environment,
    /// The back-end tokens of the environment's OAuth providers.
    pub provider_tokens: Arc<crate::provider::ProviderTokens>,
    /// The token endpoints' client-authentication failure throttle.
    pub throttle: Arc<preflow_oauth::Throttle>,
}

impl Inner {
    pub(crate) fn proxy_endpoint(&self, ex: &Exchange) -> Option<&CProxy> {
        self.bundles.get(ex.bundle)?.proxies.get(ex.endpoint)
    }

    pub(crate) fn target_endpoint(&self, ex: &Exchange) -> Option<&CTarget> {
        self.bundles.get(ex.bundle)?.targets.get(ex.target?)
    }
}

pub(crate) fn flows_of<'g>(g: &'g Inner, ex: &Exchange, seg: Seg) -> Option<(&'g CFlow, bool)> {
    let b = g.bundles.get(ex.bundle)?;
    match seg {
        Seg::ProxyReq(p) | Seg::ProxyResp(p) => {
            let e = b.proxies.get(ex.endpoint)?;
            let f = match p {
                Part::Pre => &e.pre,
                Part::Post => &e.post,
                Part::Flow => e.flows.get(ex.proxy_flow?)?,
            };
            Some((f, matches!(seg, Seg::ProxyReq(_))))
        }
        Seg::TargetReq(p) | Seg::TargetResp(p) => {
            let t = b.targets.get(ex.target?)?;
            let f = match p {
                Part::Pre => &t.pre,
                Part::Post => &t.post,
                Part::Flow => t.flows.get(ex.target_flow?)?,
            };
            Some((f, matches!(seg, Seg::TargetReq(_))))
        }
    }
}

/// `target.url`: the URL set by a route rule or policy, else the target endpoint's URL
/// joined with the path suffix and query.
pub(crate) fn target_url<'a>(g: &'a Inner, ex: &'a Exchange) -> Option<&'a str> {
    if let Some(u) = &ex.target_url {
        return Some(u);
    }
    let url = match &g.target_endpoint(ex)?.conn {
        CConn::Url { url, .. } => url,
        // The chosen server's URL, once chosen.
        CConn::Balanced(_) => return ex.balance.as_ref().map(|c| c.url.as_str()),
        CConn::Local(_) | CConn::LocalProxy { .. } | CConn::Unusable(_) => return None,
    };
    Some(
        ex.target_url_cache
            .get_or_init(|| join_url(url, ex.path_suffix(), ex.req_query())),
    )
}

/// The `Host` header of a target request to `authority` (always a valid header value, as
/// an authority's characters are a subset of a header value's).
pub(crate) fn host_value(authority: &http::uri::Authority) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(authority.as_str()).ok()
}

pub(crate) fn join_url(base: &str, suffix: &str, query: Option<&str>) -> String {
    let mut u = String::with_capacity(base.len() + suffix.len() + query.map_or(0, |q| q.len() + 1));
    u.push_str(base.trim_end_matches('/'));
    if suffix.is_empty() && u.split("://").nth(1).is_some_and(|r| !r.contains('/')) {
        u.push('/');
    }
    u.push_str(suffix);
    if let Some(q) = query {
        u.push('?');
        u.push_str(q);
    }
    u
}
