//! The gateway: bundles compiled for execution, and the per-request entry points.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use bytes::Bytes;
use preflow_oauth::Registry;
use preflow_policy::runtime::{Client, Env, PolicyResources, Settings, StateMode};

pub use crate::build::BuildError;
use crate::build::{Common, compile_bundle};
use crate::bundle::{BundleKind, LoadOptions};
use crate::compiled::Inner;
use crate::environment::Environment;
use crate::exchange::{Exchange, Step};
use crate::load::{Loaded, load_path};
use crate::select::Base;

/// Builds a [`Gateway`].
#[derive(Debug, Default)]
pub struct GatewayBuilder {
    loaded: Vec<Loaded>,
    paths: Vec<PathBuf>,
    registry: Option<Arc<Registry>>,
    settings: Settings,
    state: StateMode,
    resources: Option<PolicyResources>,
    environment: Environment,
}

impl GatewayBuilder {
    /// The cache, log sink and JWKS documents of the cache, MessageLogging and VerifyJWT
    /// policies (default: an empty cache with default limits, no sink, no JWKS).
    pub fn resources(mut self, resources: PolicyResources) -> Self {
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

    /// The target servers, API providers and store and virtual-host names bundles refer
    /// to; default: empty.
    pub fn environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
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
        let registry = self.registry.unwrap_or_default();
        // One failure throttle for every token endpoint of the gateway.
        let throttle = Arc::new(
            match self
                .resources
                .as_ref()
                .and_then(PolicyResources::throttle_key)
            {
                Some(key) => preflow_oauth::Throttle::with_key(Default::default(), key),
                None => preflow_oauth::Throttle::default(),
            },
        );
        assemble(
            &all,
            Kept {
                env: Arc::new(Env::new(
                    self.settings,
                    self.state,
                    registry,
                    self.resources.unwrap_or_default(),
                )),
                ids: Arc::new(AtomicU64::new(1)),
                provider_tokens: Arc::new(crate::provider::ProviderTokens::new(
                    self.environment.providers.len(),
                )),
                throttle,
                environment: self.environment,
            },
        )
    }
}

/// What a gateway's revisions share: settings, registry, stores, resources, the
/// environment, message ids, provider tokens and the failure throttle.
struct Kept {
    env: Arc<Env>,
    ids: Arc<AtomicU64>,
    provider_tokens: Arc<crate::provider::ProviderTokens>,
    throttle: Arc<preflow_oauth::Throttle>,
    environment: Environment,
}

/// Compiles `all` against `kept`.
fn assemble(all: &[Loaded], kept: Kept) -> Result<Gateway, BuildError> {
    let mut errors = all.iter().flat_map(Loaded::errors);
    if let Some(first) = errors.next() {
        return Err(BuildError::Load {
            count: 1 + errors.count(),
            first: Box::new(first.clone()),
        });
    }
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
            &Common {
                settings: &kept.env.settings,
                registry: &kept.env.registry,
                throttle: &kept.throttle,
                state: kept.env.state,
                shared: &shared,
                environment: &kept.environment,
            },
        )?);
    }
    resolve_local_targets(&mut compiled);
    let mut bases: Vec<Base> = compiled
        .iter()
        .enumerate()
        .flat_map(|(bi, b)| {
            b.proxies.iter().enumerate().map(move |(ei, e)| Base {
                path: e.base_path.clone(),
                bundle: bi,
                endpoint: ei,
                hosts: e.virtual_hosts.clone(),
            })
        })
        .collect();
    // Longest first (stable: declaration order among equals), for `base_paths`.
    bases.sort_by_key(|b| std::cmp::Reverse(b.path.len()));
    let base_trie = match crate::select::BaseTrie::build(&bases) {
        Ok(t) => t,
        Err((first, second)) => {
            let name = |i: usize| {
                let Some(base) = bases.get(i) else {
                    return String::new();
                };
                let bundle = compiled.get(base.bundle);
                format!(
                    "{}/{}",
                    bundle.map_or("", |x| x.name.as_str()),
                    bundle
                        .and_then(|x| x.proxies.get(base.endpoint))
                        .map_or("", |x| x.name.as_str())
                )
            };
            // Bases of one path keep their declaration order: `first` came first.
            let (a, b) = (first, second);
            return Err(BuildError::DuplicateBasePath {
                base_path: bases.get(a).map(|b| b.path.clone()).unwrap_or_default(),
                first: name(a),
                second: name(b),
            });
        }
    };
    Ok(Gateway {
        inner: Arc::new(Inner {
            bundles: compiled,
            bases,
            base_trie,
            env: kept.env,
            ids: kept.ids,
            provider_tokens: kept.provider_tokens,
            throttle: kept.throttle,
            environment: kept.environment,
        }),
    })
}

/// A set of compiled API proxies and shared flows, ready to serve requests. Cheap to
/// clone; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

impl Gateway {
    /// Starts building a gateway.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The environment the gateway was built with.
    pub fn environment(&self) -> &Environment {
        &self.inner.environment
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.env.settings
    }

    /// The registry OAuthV2 and VerifyAPIKey policies check.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.env.registry
    }

    /// The in-memory token store used in [`StateMode::Local`].
    pub fn token_store(&self) -> &preflow_oauth::MemoryStore {
        &self.inner.env.tokens
    }

    /// The base paths served, longest first, with their API proxy's name.
    pub fn base_paths(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner.bases.iter().map(|b| {
            (
                b.path.as_str(),
                self.inner
                    .bundles
                    .get(b.bundle)
                    .map_or("", |x| x.name.as_str()),
            )
        })
    }

    /// The virtual host names the ProxyEndpoints name (lower case, each once).
    pub fn virtual_hosts(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .inner
            .bases
            .iter()
            .flat_map(|b| b.hosts.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Begins an exchange for `request`, received from `client` at `now`. Nothing runs
    /// until [`step`](Self::step).
    pub fn begin(
        &self,
        request: http::Request<Bytes>,
        client: Client,
        now: SystemTime,
    ) -> Exchange {
        crate::engine::begin_in(&self.inner, request, client, now)
    }

    /// Begins an exchange from the request head alone. The engine asks for the body with
    /// [`Step::ReadBody`] when a policy, condition or the target call needs it, so a
    /// request the proxy rejects early (no token, a spike arrest) is answered without
    /// its body being read.
    pub fn begin_head(
        &self,
        head: http::request::Parts,
        client: Client,
        now: SystemTime,
    ) -> Exchange {
        let mut ex = self.begin(http::Request::from_parts(head, Bytes::new()), client, now);
        ex.body_pending = true;
        ex
    }

    /// Runs the exchange until the host has something to do: send a response, call a
    /// target, or (in [`StateMode::Remote`]) perform a store operation.
    pub fn step(&self, ex: &mut Exchange) -> Step {
        crate::engine::run(&self.inner, ex)
    }

    /// For a host that streams ([`Exchange::enable_streaming`]) and has the back end's
    /// response head of a [`Step::Forward`] whose `stream_response_body` holds: whether
    /// that head goes to the client unchanged, with the back end's body after it. It does
    /// when nothing of the engine would touch the response: a status below 400, no step
    /// in any response segment of the flows the request chose, no PostClientFlow, no
    /// header a policy left for the response, no trace, no load balancer or API provider
    /// waiting on the outcome (decided without reading a header).
    ///
    /// When it returns true the exchange is done, as if the empty response flows had
    /// run on the head: [`variable`](Self::variable) reads the response's status (not
    /// its headers), and the host sends the head as it came (the hop-by-hop headers are
    /// the host's to handle, as for any streamed answer). When it returns false nothing
    /// changed: give the head with [`Exchange::target_response_head`] and step.
    pub fn pass_response(&self, ex: &mut Exchange, status: http::StatusCode) -> bool {
        crate::engine::pass_response(&self.inner, ex, status)
    }

    /// The health checks the host runs for the load balancers' `<HealthMonitor>`s: one
    /// per server and monitor, each with its interval. Report each result with
    /// [`report_health`](Self::report_health).
    pub fn health_checks(&self) -> Vec<crate::HealthCheck> {
        health_checks(&self.inner)
    }

    /// Reports a health probe of target server `server`: a success brings it back into
    /// rotation (and clears its failures), a failure takes it out. Returns whether a load
    /// balancer names the server.
    pub fn report_health(&self, server: &str, ok: bool) -> bool {
        report_health(&self.inner, server, ok)
    }

    /// A new revision of this gateway serving the bundles of `loaded` instead of its
    /// own: the same settings, registry, environment and state (tokens, codes, key value
    /// maps, caches, provider tokens, the failure throttle) carry over; rate limiters
    /// held by policies start afresh, as a new revision's policies do in Apigee.
    /// Exchanges begun on this revision finish on it.
    ///
    /// # Errors
    /// As [`GatewayBuilder::build`]; this gateway is untouched.
    pub fn redeploy(&self, loaded: &Loaded) -> Result<Gateway, BuildError> {
        assemble(
            std::slice::from_ref(loaded),
            Kept {
                env: Arc::clone(&self.inner.env),
                ids: Arc::clone(&self.inner.ids),
                provider_tokens: Arc::clone(&self.inner.provider_tokens),
                throttle: Arc::clone(&self.inner.throttle),
                environment: self.inner.environment.clone(),
            },
        )
    }

    /// The value of flow variable `name` in `ex`, as text; `None` when unset.
    ///
    /// Once the final response has been handed to the host (with no PostClientFlow or
    /// trace to read it), its headers and body belong to the host: `response.header.*`
    /// and `response.content` read as unset then, its status line stays readable.
    pub fn variable(&self, ex: &Exchange, name: &str) -> Option<String> {
        crate::vars::variable_text(&self.inner, ex, name)
    }
}

/// Points `<LocalTargetConnection><APIProxy>` targets at the base path of the proxy
/// (and ProxyEndpoint) they name.
fn resolve_local_targets(bundles: &mut [crate::compiled::CBundle]) {
    use crate::compiled::CConn;
    // Proxy name to its endpoints' (name, base path), in order: one lookup per target.
    let mut bases: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for b in bundles.iter() {
        for p in &b.proxies {
            bases
                .entry(b.name.clone())
                .or_default()
                .push((p.name.clone(), p.base_path.clone()));
        }
    }
    for t in bundles.iter_mut().flat_map(|b| b.targets.iter_mut()) {
        let CConn::LocalProxy { proxy, endpoint } = &t.conn else {
            continue;
        };
        let found = bases.get(proxy).and_then(|eps| {
            eps.iter()
                .find(|(e, _)| endpoint.as_ref().is_none_or(|want| want == e))
        });
        t.conn = match found {
            Some((_, base)) => CConn::Local(base.clone()),
            None => CConn::Unusable(format!(
                "the LocalTargetConnection names API proxy `{proxy}`{}, which is not deployed",
                endpoint
                    .as_ref()
                    .map(|e| format!(" (ProxyEndpoint `{e}`)"))
                    .unwrap_or_default()
            )),
        };
    }
}

/// Every load balancer's health checks.
fn health_checks(g: &Inner) -> Vec<crate::HealthCheck> {
    let mut out: Vec<crate::HealthCheck> = Vec::new();
    for lb in balancers(g) {
        for c in lb.checks() {
            // The same server probed the same way by two endpoints: once.
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// Applies a health probe's result to every load balancer naming `server`; returns
/// whether any does.
fn report_health(g: &Inner, server: &str, ok: bool) -> bool {
    let mut any = false;
    for lb in balancers(g) {
        any |= lb.report(server, ok);
    }
    any
}

fn balancers(g: &Inner) -> impl Iterator<Item = &crate::balance::CBalancer> {
    g.bundles
        .iter()
        .flat_map(|b| &b.targets)
        .filter_map(|t| match &t.conn {
            crate::compiled::CConn::Balanced(lb) => Some(&**lb),
            _ => None,
        })
}
