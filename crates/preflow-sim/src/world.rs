//! The simulated world: gateways, a store behind a faulty network, clients, an admin, and
//! the invariants checked after every event.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use preflow::{Exchange, Gateway, StateMode, Step, StoreOp, StoreReply};
use preflow_oauth::{
    ApiProduct, App, Approval, Developer, NewCredential, Registry, SecretHash, SecretSpec,
};
use preflow_store::{MemoryState, StateStore as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::{Stats, Violation};

/// Simulated time starts here (seconds since the epoch).
const EPOCH_SECS: u64 = 1_750_000_000;
const MS: u64 = 1_000_000;

/// The parameters of one run, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Params {
    /// Gateways.
    pub gateways: usize,
    /// Apps (one client each).
    pub apps: usize,
    /// Client requests in the run.
    pub requests: usize,
    /// One-way latency between a gateway and the store, in ms (min, max).
    pub latency_ms: (u64, u64),
    /// Probability that a message is lost.
    pub loss: f64,
    /// How long a gateway waits for a store reply (ms) before answering `Unavailable`.
    pub timeout_ms: u64,
    /// The synchronous Quota limit (one window spans the run).
    pub quota_limit: u64,
    /// The largest delay of a registry change reaching a gateway (ms).
    pub propagation_ms: u64,
    /// The asynchronous Quota limit.
    pub async_limit: u64,
    /// The flush interval of asynchronous counters (ms).
    pub flush_ms: u64,
}

impl Params {
    fn draw(rng: &mut StdRng) -> Self {
        let min = rng.random_range(0..5);
        Params {
            gateways: rng.random_range(2..=4),
            apps: rng.random_range(2..=4),
            requests: rng.random_range(60..=160),
            latency_ms: (min, min + rng.random_range(0..20)),
            loss: if rng.random_bool(0.5) {
                rng.random_range(0.0..0.15)
            } else {
                0.0
            },
            timeout_ms: rng.random_range(20..=60),
            quota_limit: rng.random_range(5..=30),
            propagation_ms: rng.random_range(1..=100),
            async_limit: rng.random_range(5..=30),
            flush_ms: rng.random_range(5..=50),
        }
    }
}

#[derive(Debug)]
enum Event {
    /// A client sends its next request.
    Client {
        client: usize,
    },
    /// A store operation reaches the store.
    AtStore {
        ex: u64,
        attempt: u32,
        op: StoreOp,
    },
    /// A store reply reaches its gateway.
    Reply {
        ex: u64,
        attempt: u32,
        reply: StoreReply,
    },
    /// No reply in time.
    Timeout {
        ex: u64,
        attempt: u32,
    },
    /// The admin revokes an app.
    Revoke {
        app: usize,
    },
    /// A revocation reaches a gateway's registry.
    Apply {
        gateway: usize,
        app: usize,
    },
    /// The admin creates an app.
    Create {
        app: usize,
    },
    /// A new app reaches a gateway's registry.
    ApplyCreate {
        gateway: usize,
        app: usize,
    },
    /// A gateway's asynchronous counters flush (every `flush_ms`).
    Flush {
        gateway: usize,
    },
    /// A flush reaches the store.
    FlushAtStore {
        gateway: usize,
        attempt: u32,
        weight: u64,
        sent: u64,
    },
    /// The store's count reaches the gateway.
    FlushReply {
        gateway: usize,
        attempt: u32,
        weight: u64,
        used: u64,
        sent: u64,
    },
    /// A flush got no reply in time.
    FlushTimeout {
        gateway: usize,
        attempt: u32,
    },
    /// The store crashes (its durable state survives) / comes back.
    StoreDown,
    StoreUp,
    /// A gateway is cut off from the store / reconnected.
    Partition {
        gateway: usize,
    },
    Heal {
        gateway: usize,
    },
}

/// An event as traced (without the store operation's contents).
struct TraceEvent<'a>(&'a Event);

impl std::fmt::Debug for TraceEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Event::AtStore { ex, attempt, op } => {
                let what = match op {
                    StoreOp::Token(t) => format!("{t:?}").chars().take(40).collect::<String>(),
                    StoreOp::Kv(_) => "key-value".to_owned(),
                    _ => "rate limit".to_owned(),
                };
                write!(f, "AtStore ex={ex} attempt={attempt} {what}")
            }
            Event::Reply { ex, attempt, .. } => write!(f, "Reply ex={ex} attempt={attempt}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    Api {
        token: usize,
    },
    Metered,
    /// The asynchronous Quota.
    Async,
    /// A KVM put of a fresh key.
    Kv {
        key: u64,
    },
    /// A token request with a wrong secret from an attacker's address.
    Attack,
}

/// A gateway's asynchronous counter of the `/async` Quota, as `preflow_redis::Counters`
/// keeps it: the shared count last read, what it admitted since its last flush.
#[derive(Default)]
struct AsyncCounter {
    incr: Option<preflow::preflow_ratelimit::store::QuotaIncr>,
    remote: u64,
    pending: u64,
    /// The flush in flight, if any (one at a time, as the flusher awaits each).
    flushing: Option<u32>,
    attempts: u32,
    /// When this gateway admitted each request (simulated ns).
    admitted: Vec<u64>,
}

struct InFlight {
    gateway: usize,
    client: usize,
    kind: Kind,
    exchange: Exchange,
    /// Number of the last store operation sent.
    attempt: u32,
    /// Whether that operation still waits for its reply (a late reply or a timeout after
    /// the reply is then ignored).
    waiting: bool,
    /// The event during which the request began (a logical time: several events may
    /// share one simulated instant).
    began: u64,
    /// Whether a store operation of this exchange went unanswered (rate limits then fail
    /// open, as documented).
    unanswered: bool,
    started: u64,
}

struct Client {
    app: usize,
    tokens: Vec<usize>,
}

struct Token {
    value: String,
    app: usize,
}

/// One run.
pub struct World {
    rng: StdRng,
    options: crate::Options,
    params: Params,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    gateways: Vec<Gateway>,
    registries: Vec<Arc<Registry>>,
    store: MemoryState,
    store_up: bool,
    partitioned: Vec<bool>,
    in_flight: BTreeMap<u64, InFlight>,
    next_ex: u64,
    clients: Vec<Client>,
    tokens: Vec<Token>,
    /// Per app: the event at which its revocation was acknowledged (every gateway
    /// applied it).
    revoked_at: Vec<Option<u64>>,
    applied: Vec<Vec<bool>>,
    metered_admitted: u64,
    requests_left: usize,
    stats: Stats,
    counters: Vec<AsyncCounter>,
    /// Whether a flush ever failed (lost, timed out, store down): the bound then grows
    /// by the outage and only the `k·L` bound is checked.
    flush_failed: bool,
    /// The longest flush round trip (ns).
    flush_rtt: u64,
    /// KVM keys whose put was acknowledged.
    kv_acknowledged: Vec<u64>,
    next_kv: u64,
    /// Per app: the event at which its creation was acknowledged (every gateway has it);
    /// apps of the initial registry count as created at 0.
    created_at: Vec<Option<u64>>,
    created_applied: Vec<Vec<bool>>,
    /// Per app: whether the admin began revoking it (gateways may refuse it from then).
    revoking: Vec<bool>,
}

/// `/async` (a distributed, asynchronous Quota) and `/kv` (KVM put and get).
const STATE_OPS_BUNDLES: &[(&str, &str)] = &[
    ("async/apiproxy/async.xml", r#"<APIProxy name="async"/>"#),
    (
        "async/apiproxy/proxies/default.xml",
        r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Quota</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/async</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
    ),
    ("kv/apiproxy/kv.xml", r#"<APIProxy name="kv"/>"#),
    (
        "kv/apiproxy/proxies/default.xml",
        r#"<ProxyEndpoint name="default">
  <Flows>
    <Flow name="put"><Condition>proxy.pathsuffix = "/put"</Condition>
      <Request><Step><Name>Put</Name></Step></Request></Flow>
    <Flow name="get"><Condition>proxy.pathsuffix = "/get"</Condition>
      <Request><Step><Name>Get</Name></Step></Request>
      <Response><Step><Name>Say</Name></Step></Response></Flow>
  </Flows>
  <HTTPProxyConnection><BasePath>/kv</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
    ),
    (
        "kv/apiproxy/policies/Put.xml",
        r#"<KeyValueMapOperations name="Put" mapIdentifier="m"><Put override="true">
  <Key><Parameter ref="request.queryparam.k"/></Key><Value ref="request.queryparam.v"/>
</Put></KeyValueMapOperations>"#,
    ),
    (
        "kv/apiproxy/policies/Get.xml",
        r#"<KeyValueMapOperations name="Get" mapIdentifier="m"><Get assignTo="kv.value">
  <Key><Parameter ref="request.queryparam.k"/></Key>
</Get></KeyValueMapOperations>"#,
    ),
    (
        "kv/apiproxy/policies/Say.xml",
        r#"<AssignMessage name="Say"><Set><Payload contentType="text/plain">{kv.value}</Payload></Set>
  <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>
  <AssignTo createNew="false" type="response"/></AssignMessage>"#,
    ),
];

/// The rate-limit keys of the `/async` Quota start with this.
const ASYNC_KEY: &str = "quota:async:";

/// Where the attacker sends wrong secrets from.
const ATTACKER: [u8; 4] = [198, 51, 100, 7];

fn bundles(limit: u64, async_limit: u64) -> preflow::Loaded {
    let async_quota = format!(
        r#"<Quota name="Quota"><Allow count="{async_limit}"/><Interval>1</Interval><TimeUnit>day</TimeUnit>
  <Distributed>true</Distributed><Synchronous>false</Synchronous></Quota>"#
    );
    let quota = format!(
        r#"<Quota name="Quota"><Allow count="{limit}"/><Interval>1</Interval><TimeUnit>day</TimeUnit>
  <Distributed>true</Distributed><Synchronous>true</Synchronous></Quota>"#
    );
    let files: Vec<(&str, String)> = [
        ("oauth/apiproxy/oauth.xml", r#"<APIProxy name="oauth"/>"#),
        (
            "oauth/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <Flows><Flow name="token">
    <Condition>(proxy.pathsuffix MatchesPath "/token") and (request.verb = "POST")</Condition>
    <Request><Step><Name>Generate</Name></Step></Request>
  </Flow></Flows>
  <HTTPProxyConnection><BasePath>/oauth</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
        ),
        (
            "oauth/apiproxy/policies/Generate.xml",
            r#"<OAuthV2 name="Generate">
  <Operation>GenerateAccessToken</Operation>
  <ExpiresIn>36000000</ExpiresIn>
  <SupportedGrantTypes><GrantType>client_credentials</GrantType></SupportedGrantTypes>
  <GrantType>request.formparam.grant_type</GrantType>
  <GenerateResponse enabled="true"/>
</OAuthV2>"#,
        ),
        ("api/apiproxy/api.xml", r#"<APIProxy name="api"/>"#),
        (
            "api/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Verify</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection>
  <RouteRule name="backend"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#,
        ),
        (
            "api/apiproxy/targets/default.xml",
            r#"<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>http://backend.internal/</URL></HTTPTargetConnection>
</TargetEndpoint>"#,
        ),
        (
            "api/apiproxy/policies/Verify.xml",
            r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        ),
        (
            "metered/apiproxy/metered.xml",
            r#"<APIProxy name="metered"/>"#,
        ),
        (
            "metered/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Quota</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/metered</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
        ),
    ]
    .into_iter()
    .chain(STATE_OPS_BUNDLES.iter().copied())
    .map(|(p, b): (&str, &str)| (p, b.to_owned()))
    .chain([
        ("metered/apiproxy/policies/Quota.xml", quota),
        ("async/apiproxy/policies/Quota.xml", async_quota),
    ])
    .collect();
    preflow::load_files(files, &preflow::LoadOptions::default())
}

fn client_id(app: usize) -> String {
    format!("client-{app}")
}

fn secret(app: usize) -> String {
    format!("secret-of-app-{app}-0123456789abcdefghijklmnopqrstuvwxyz")
}

fn registry(apps: usize) -> Result<Registry, Violation> {
    let setup = |e: preflow_oauth::RegistryError| Violation::Setup(e.to_string());
    let registry = Registry::new();
    registry.put_developer(Developer::new("dev@example.com"));
    registry.put_product(
        ApiProduct::new("p")
            .with_proxies(["oauth", "api", "metered", "async", "kv"])
            .with_resources(["/**"])
            .map_err(setup)?,
    );
    for app in 0..apps {
        add_app(&registry, app)?;
    }
    Ok(registry)
}

/// Adds app `app` with its client to `registry`.
fn add_app(registry: &Registry, app: usize) -> Result<(), Violation> {
    let setup = |e: preflow_oauth::RegistryError| Violation::Setup(e.to_string());
    let mut a = App::new(format!("app-{app}"));
    a.id = format!("app-{app}");
    let id = registry.add_app("dev@example.com", a).map_err(setup)?;
    registry
        .add_credential(
            &id,
            NewCredential {
                key: Some(client_id(app)),
                secret: SecretSpec::Hashed(SecretHash::generated(&secret(app))),
                products: vec!["p".into()],
                expires_at: None,
                issued_at: EPOCH_SECS,
            },
        )
        .map_err(setup)?;

    Ok(())
}

impl World {
    /// A world drawn from `seed`.
    pub fn new(seed: u64, options: crate::Options) -> Result<Self, Violation> {
        let mut rng = StdRng::seed_from_u64(seed);
        let params = Params::draw(&mut rng);
        let mut gateways = Vec::new();
        let mut registries = Vec::new();
        for _ in 0..params.gateways {
            let registry = Arc::new(registry(params.apps)?);
            let loaded = bundles(params.quota_limit, params.async_limit);
            if loaded.has_errors() {
                let errors: Vec<String> = loaded.errors().map(|e| e.to_string()).collect();
                return Err(Violation::Setup(errors.join("; ")));
            }
            let gateway = Gateway::builder()
                .bundles(loaded)
                .registry(Arc::clone(&registry))
                .state(StateMode::Remote)
                .build()
                .map_err(|e| Violation::Setup(e.to_string()))?;
            gateways.push(gateway);
            registries.push(registry);
        }
        let clients = (0..params.apps)
            .map(|app| Client {
                app,
                tokens: Vec::new(),
            })
            .collect();
        let n = params.gateways;
        let apps = params.apps;
        let requests = params.requests;
        let mut world = World {
            rng,
            options,
            params,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            gateways,
            registries,
            store: MemoryState::new(),
            store_up: true,
            partitioned: vec![false; n],
            in_flight: BTreeMap::new(),
            next_ex: 0,
            clients,
            tokens: Vec::new(),
            revoked_at: vec![None; apps],
            applied: vec![vec![false; n]; apps],
            metered_admitted: 0,
            requests_left: requests,
            stats: Stats::default(),
            counters: (0..n).map(|_| AsyncCounter::default()).collect(),
            flush_failed: false,
            flush_rtt: 0,
            kv_acknowledged: Vec::new(),
            next_kv: 0,
            created_at: vec![Some(0); apps],
            created_applied: vec![vec![true; n]; apps],
            revoking: vec![false; apps],
        };
        world.plan();
        Ok(world)
    }

    fn at(&mut self, delay_ns: u64, event: Event) {
        let id = self.seq;
        self.seq += 1;
        self.queue
            .push(Reverse((self.now.saturating_add(delay_ns), id)));
        self.events.insert(id, event);
    }

    fn ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.random_range(lo..=hi.max(lo)) * MS
    }

    /// The faults and admin actions of the run, and each client's first request.
    fn plan(&mut self) {
        for client in 0..self.clients.len() {
            let d = self.ms(0, 20);
            self.at(d, Event::Client { client });
        }
        let span = u64::try_from(self.params.requests).unwrap_or(100) * 10;
        if self.rng.random_bool(0.5) {
            let down = self.ms(0, span);
            let up = down + self.ms(10, 300);
            self.at(down, Event::StoreDown);
            self.at(up, Event::StoreUp);
        }
        for gateway in 0..self.gateways.len() {
            if self.rng.random_bool(0.3) {
                let cut = self.ms(0, span);
                let heal = cut + self.ms(10, 300);
                self.at(cut, Event::Partition { gateway });
                self.at(heal, Event::Heal { gateway });
            }
        }
        for gateway in 0..self.gateways.len() {
            let phase = self.ms(0, self.params.flush_ms);
            self.at(phase, Event::Flush { gateway });
        }
        if self.rng.random_bool(0.5) {
            let when = self.ms(0, span);
            self.at(
                when,
                Event::Create {
                    app: self.params.apps,
                },
            );
        }
        // Revoke one app (never all, so the end-of-run check has tokens to verify).
        if self.params.apps > 1 && self.rng.random_bool(0.7) {
            let app = self.rng.random_range(0..self.params.apps);
            let when = self.ms(0, span);
            self.at(when, Event::Revoke { app });
        }
    }

    fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + Duration::from_nanos(self.now)
    }

    /// Runs every event, checking the invariants after each; then heals every fault and
    /// checks that every acknowledged token of an app still approved is accepted.
    pub fn run(mut self) -> Result<Stats, Violation> {
        while let Some(Reverse((at, id))) = self.queue.pop() {
            self.now = at;
            let Some(event) = self.events.remove(&id) else {
                continue;
            };
            self.stats.events += 1;
            if self.options.trace {
                eprintln!("t={}ms {:?}", self.now / MS, TraceEvent(&event));
            }
            self.handle(event)?;
            self.check()?;
        }
        if !self.in_flight.is_empty() {
            return Err(Violation::Stuck(self.in_flight.len()));
        }
        self.check_async_bound()?;
        self.recovery()?;
        Ok(self.stats)
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Client { client } => self.client_request(client),
            Event::AtStore { ex, attempt, op } => {
                self.at_store(ex, attempt, &op);
                Ok(())
            }
            Event::Reply { ex, attempt, reply } => self.resume(ex, attempt, reply),
            Event::Timeout { ex, attempt } => self.resume(ex, attempt, StoreReply::Unavailable),
            Event::Revoke { app } => {
                if let Some(r) = self.revoking.get_mut(app) {
                    *r = true;
                }
                for gateway in 0..self.gateways.len() {
                    let d = self.ms(0, self.params.propagation_ms);
                    self.at(d, Event::Apply { gateway, app });
                }
                Ok(())
            }
            Event::Apply { gateway, app } => {
                if let Some(r) = self.registries.get(gateway) {
                    r.set_app_status(&format!("app-{app}"), Approval::Revoked)
                        .map_err(|e| Violation::Setup(e.to_string()))?;
                }
                if let Some(done) = self.applied.get_mut(app) {
                    if let Some(g) = done.get_mut(gateway) {
                        *g = true;
                    }
                    // Acknowledged once every gateway applied it (as `RegistrySync`
                    // answers after every instance confirmed).
                    let acknowledged = if self.options.acknowledge_on_first_apply {
                        done.iter().any(|g| *g)
                    } else {
                        done.iter().all(|g| *g)
                    };
                    if acknowledged
                        && self.revoked_at.get(app).copied().flatten().is_none()
                        && let Some(at) = self.revoked_at.get_mut(app)
                    {
                        *at = Some(self.stats.events);
                    }
                }
                Ok(())
            }
            Event::Create { app } => {
                for gateway in 0..self.gateways.len() {
                    let d = self.ms(0, self.params.propagation_ms);
                    self.at(d, Event::ApplyCreate { gateway, app });
                }
                self.created_at.push(None);
                self.created_applied.push(vec![false; self.gateways.len()]);
                self.revoked_at.push(None);
                self.revoking.push(false);
                self.applied.push(vec![false; self.gateways.len()]);
                Ok(())
            }
            Event::ApplyCreate { gateway, app } => {
                if let Some(r) = self.registries.get(gateway) {
                    add_app(r, app)?;
                }
                let done = self
                    .created_applied
                    .get_mut(app)
                    .ok_or(Violation::Stuck(1))?;
                if let Some(g) = done.get_mut(gateway) {
                    *g = true;
                }
                if done.iter().all(|g| *g)
                    && let Some(at) = self.created_at.get_mut(app)
                    && at.is_none()
                {
                    // Acknowledged: its client starts.
                    *at = Some(self.stats.events);
                    self.stats.apps_created += 1;
                    self.clients.push(Client {
                        app,
                        tokens: Vec::new(),
                    });
                    let d = self.ms(0, 20);
                    self.at(
                        d,
                        Event::Client {
                            client: self.clients.len() - 1,
                        },
                    );
                }
                Ok(())
            }
            Event::Flush { gateway } => {
                self.flush(gateway);
                let every = self.params.flush_ms * MS;
                if self.requests_left > 0 || !self.in_flight.is_empty() {
                    self.at(every, Event::Flush { gateway });
                }
                Ok(())
            }
            Event::FlushAtStore {
                gateway,
                attempt,
                weight,
                sent,
            } => {
                self.flush_at_store(gateway, attempt, weight, sent);
                Ok(())
            }
            Event::FlushReply {
                gateway,
                attempt,
                weight,
                used,
                sent,
            } => {
                if let Some(c) = self.counters.get_mut(gateway)
                    && c.flushing == Some(attempt)
                {
                    c.flushing = None;
                    c.pending = c.pending.saturating_sub(weight);
                    c.remote = used;
                    self.flush_rtt = self.flush_rtt.max(self.now.saturating_sub(sent));
                }
                Ok(())
            }
            Event::FlushTimeout { gateway, attempt } => {
                if let Some(c) = self.counters.get_mut(gateway)
                    && c.flushing == Some(attempt)
                {
                    c.flushing = None;
                    self.flush_failed = true;
                }
                Ok(())
            }
            Event::StoreDown => {
                self.store_up = false;
                self.stats.store_restarts += 1;
                Ok(())
            }
            Event::StoreUp => {
                self.store_up = true;
                Ok(())
            }
            Event::Partition { gateway } => {
                if let Some(p) = self.partitioned.get_mut(gateway) {
                    *p = true;
                }
                Ok(())
            }
            Event::Heal { gateway } => {
                if let Some(p) = self.partitioned.get_mut(gateway) {
                    *p = false;
                }
                Ok(())
            }
        }
    }

    /// Sends a gateway's admitted weight to the store, forced past the limit (as
    /// `Counters::flush` does), to learn the shared count.
    fn flush(&mut self, gateway: usize) {
        let Some(c) = self.counters.get_mut(gateway) else {
            return;
        };
        if c.flushing.is_some() || c.incr.is_none() {
            return;
        }
        c.attempts += 1;
        let attempt = c.attempts;
        c.flushing = Some(attempt);
        let weight = c.pending;
        let cut = self.partitioned.get(gateway).copied().unwrap_or(false);
        let lost = self.params.loss > 0.0 && self.rng.random_bool(self.params.loss);
        if !cut && !lost {
            let d = self.ms(self.params.latency_ms.0, self.params.latency_ms.1);
            let sent = self.now;
            self.at(
                d,
                Event::FlushAtStore {
                    gateway,
                    attempt,
                    weight,
                    sent,
                },
            );
        }
        let t = self.params.timeout_ms * MS;
        self.at(t, Event::FlushTimeout { gateway, attempt });
    }

    fn flush_at_store(&mut self, gateway: usize, attempt: u32, weight: u64, sent: u64) {
        if !self.store_up {
            return;
        }
        let Some(incr) = self.counters.get(gateway).and_then(|c| c.incr) else {
            return;
        };
        let op = preflow::preflow_ratelimit::StoreOp::QuotaIncr {
            key: format!("{ASYNC_KEY}shared"),
            incr: preflow::preflow_ratelimit::store::QuotaIncr {
                now: preflow::preflow_ratelimit::Timestamp::from_system_time(self.system_time()),
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
                limit: u64::MAX,
                ..incr
            },
        };
        let StoreReply::RateLimit(preflow::preflow_ratelimit::StoreReply::Quota(reply)) =
            self.store.run(&StoreOp::RateLimit(op))
        else {
            return;
        };
        let cut = self.partitioned.get(gateway).copied().unwrap_or(false);
        let lost = self.params.loss > 0.0 && self.rng.random_bool(self.params.loss);
        if !cut && !lost {
            let d = self.ms(self.params.latency_ms.0, self.params.latency_ms.1);
            self.at(
                d,
                Event::FlushReply {
                    gateway,
                    attempt,
                    weight,
                    used: reply.used,
                    sent,
                },
            );
        }
    }

    /// Answers a check of the asynchronous Quota at once from the gateway's view, as
    /// `Counters` does in asynchronous mode.
    fn async_check(&mut self, gateway: usize, op: &StoreOp) -> Option<StoreReply> {
        let StoreOp::RateLimit(preflow::preflow_ratelimit::StoreOp::QuotaIncr { key, incr }) = op
        else {
            return None;
        };
        if !key.starts_with(ASYNC_KEY) {
            return None;
        }
        let c = self.counters.get_mut(gateway)?;
        c.incr.get_or_insert(*incr);
        let weight = u64::from(incr.weight);
        let used = c.remote.saturating_add(c.pending);
        let allowed = used.saturating_add(weight) <= incr.limit;
        if allowed {
            c.pending = c.pending.saturating_add(weight);
        }
        Some(StoreReply::RateLimit(
            preflow::preflow_ratelimit::StoreReply::Quota(
                preflow::preflow_ratelimit::store::QuotaReply {
                    allowed,
                    used: c.remote.saturating_add(c.pending),
                    total_exceeded: 0,
                    expires_at: Some(incr.expires_at),
                },
            ),
        ))
    }

    fn client_request(&mut self, client: usize) -> Result<(), Violation> {
        if self.requests_left == 0 {
            return Ok(());
        }
        self.requests_left -= 1;
        let gateway = self.rng.random_range(0..self.gateways.len());
        let Some(c) = self.clients.get(client) else {
            return Ok(());
        };
        let app = c.app;
        let roll = self.rng.random_range(0..20);
        let kind = if roll == 19 {
            Kind::Attack
        } else if roll == 18 {
            self.next_kv += 1;
            Kind::Kv { key: self.next_kv }
        } else if roll >= 16 {
            Kind::Async
        } else if roll >= 13 {
            Kind::Metered
        } else if roll < 6 || c.tokens.is_empty() {
            Kind::Token
        } else {
            let i = self.rng.random_range(0..c.tokens.len());
            Kind::Api {
                token: c.tokens.get(i).copied().unwrap_or(0),
            }
        };
        let request = match kind {
            Kind::Token => {
                let body = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}",
                    client_id(app),
                    secret(app)
                );
                http::Request::post("/oauth/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Bytes::from(body))
            }
            Kind::Api { token } => {
                let value = self.tokens.get(token).map_or("", |t| t.value.as_str());
                http::Request::get("/api/items")
                    .header("authorization", format!("Bearer {value}"))
                    .body(Bytes::new())
            }
            Kind::Metered => http::Request::get("/metered/x").body(Bytes::new()),
            Kind::Async => http::Request::get("/async/x").body(Bytes::new()),
            Kind::Kv { key } => {
                http::Request::get(format!("/kv/put?k=k{key}&v=v{key}")).body(Bytes::new())
            }
            Kind::Attack => {
                let body = format!(
                    "grant_type=client_credentials&client_id={}&client_secret=wrong",
                    client_id(app)
                );
                http::Request::post("/oauth/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Bytes::from(body))
            }
        }
        .map_err(|e| Violation::Setup(e.to_string()))?;
        let port = 40_000 + u16::try_from(client).unwrap_or(0);
        let addr = if kind == Kind::Attack {
            SocketAddr::from((ATTACKER, port))
        } else {
            SocketAddr::from(([192, 0, 2, 1], port))
        };
        let Some(gw) = self.gateways.get(gateway) else {
            return Ok(());
        };
        let exchange = gw.begin(request, preflow::Client::http(addr), self.system_time());
        let ex = self.next_ex;
        if self.options.trace {
            eprintln!("  ex={ex} client={client} app={app} gateway={gateway} {kind:?}");
        }
        self.next_ex += 1;
        self.in_flight.insert(
            ex,
            InFlight {
                gateway,
                client,
                kind,
                exchange,
                attempt: 0,
                waiting: false,
                began: self.stats.events,
                unanswered: false,
                started: self.now,
            },
        );
        self.stats.requests += 1;
        let think = self.ms(0, 15);
        self.at(think, Event::Client { client });
        self.drive(ex)
    }

    /// Steps an exchange until it answers or waits for the store.
    fn drive(&mut self, ex: u64) -> Result<(), Violation> {
        for _ in 0..64 {
            let Some(f) = self.in_flight.get_mut(&ex) else {
                return Ok(());
            };
            let Some(gw) = self.gateways.get(f.gateway) else {
                return Ok(());
            };
            match gw.step(&mut f.exchange) {
                Step::Respond(response) => {
                    let Some(f) = self.in_flight.remove(&ex) else {
                        return Ok(());
                    };
                    return self.answered(&f, &response);
                }
                Step::Forward(_) => {
                    f.exchange
                        .target_response(Ok(http::Response::new(Bytes::from_static(b"ok"))));
                }
                // `begin` gave the whole request: asking for it again is an engine fault.
                Step::ReadBody | Step::Pause(_) => return Err(Violation::Stuck(1)),
                Step::Store(op) => {
                    let gateway = f.gateway;
                    if let Some(reply) = self.async_check(gateway, &op) {
                        if let Some(f) = self.in_flight.get_mut(&ex) {
                            f.exchange.store_reply(reply);
                        }
                        continue;
                    }
                    let Some(f) = self.in_flight.get_mut(&ex) else {
                        return Ok(());
                    };
                    f.attempt += 1;
                    f.waiting = true;
                    let attempt = f.attempt;
                    self.stats.store_ops += 1;
                    let cut = self.partitioned.get(gateway).copied().unwrap_or(false);
                    let lost = self.params.loss > 0.0 && self.rng.random_bool(self.params.loss);
                    if !cut && !lost {
                        let d = self.ms(self.params.latency_ms.0, self.params.latency_ms.1);
                        self.at(d, Event::AtStore { ex, attempt, op });
                    }
                    let t = self.params.timeout_ms * MS;
                    self.at(t, Event::Timeout { ex, attempt });
                    return Ok(());
                }
            }
        }
        Err(Violation::Stuck(1))
    }

    fn at_store(&mut self, ex: u64, attempt: u32, op: &StoreOp) {
        if !self.store_up {
            return;
        }
        let reply = self.store.run(op);
        let gateway = self.in_flight.get(&ex).map(|f| f.gateway);
        let cut = gateway
            .and_then(|g| self.partitioned.get(g).copied())
            .unwrap_or(false);
        let lost = self.params.loss > 0.0 && self.rng.random_bool(self.params.loss);
        if !cut && !lost {
            let d = self.ms(self.params.latency_ms.0, self.params.latency_ms.1);
            self.at(d, Event::Reply { ex, attempt, reply });
        }
    }

    fn resume(&mut self, ex: u64, attempt: u32, reply: StoreReply) -> Result<(), Violation> {
        let Some(f) = self.in_flight.get_mut(&ex) else {
            return Ok(());
        };
        // A late reply or a timeout after the reply: the exchange has moved on.
        if f.attempt != attempt || !f.waiting {
            return Ok(());
        }
        f.waiting = false;
        if reply == StoreReply::Unavailable {
            self.stats.unavailable += 1;
            f.unanswered = true;
        }
        f.exchange.store_reply(reply);
        self.drive(ex)
    }

    /// Records an answer and checks what it may not be.
    fn answered(
        &mut self,
        f: &InFlight,
        response: &http::Response<Bytes>,
    ) -> Result<(), Violation> {
        let ok = response.status() == http::StatusCode::OK;
        if self.options.trace {
            eprintln!(
                "  answered gateway={} client={} {:?} started={}ms status={}",
                f.gateway,
                f.client,
                f.kind,
                f.started / MS,
                response.status()
            );
        }
        let app = self.clients.get(f.client).map_or(0, |c| c.app);
        let created_before_start = self
            .created_at
            .get(app)
            .copied()
            .flatten()
            .is_some_and(|at| at < f.began);
        let revoked_before_start = self
            .revoked_at
            .get(app)
            .copied()
            .flatten()
            .is_some_and(|at| at < f.began);
        match f.kind {
            Kind::Token if ok => {
                if revoked_before_start {
                    return Err(Violation::IssuedAfterRevoke { app, at: self.now });
                }
                let value = serde_json::from_slice::<serde_json::Value>(response.body())
                    .ok()
                    .and_then(|v| v.get("access_token")?.as_str().map(str::to_owned))
                    .ok_or(Violation::Malformed)?;
                self.tokens.push(Token { value, app });
                let id = self.tokens.len() - 1;
                if let Some(c) = self.clients.get_mut(f.client) {
                    c.tokens.push(id);
                }
                self.stats.tokens += 1;
            }
            // A client that never failed is never throttled, whatever the attacker does.
            Kind::Token if response.status() == http::StatusCode::TOO_MANY_REQUESTS => {
                return Err(Violation::LegitimateThrottled { app, at: self.now });
            }
            // An app whose creation was acknowledged is known everywhere.
            Kind::Token
                if created_before_start
                    && !self.revoking.get(app).copied().unwrap_or(true)
                    && response.status() == http::StatusCode::UNAUTHORIZED =>
            {
                return Err(Violation::AppLost {
                    app,
                    gateway: f.gateway,
                    status: 401,
                });
            }
            Kind::Attack if ok => return Err(Violation::Malformed),
            Kind::Async if ok => {
                if let Some(c) = self.counters.get_mut(f.gateway) {
                    c.admitted.push(self.now);
                }
            }
            Kind::Kv { key } if ok => self.kv_acknowledged.push(key),
            Kind::Api { .. } if ok && revoked_before_start => {
                return Err(Violation::RevokedTokenAccepted { app, at: self.now });
            }
            // Admitted by the store's count; a check the store never answered fails open.
            Kind::Metered if ok && !f.unanswered => self.metered_admitted += 1,
            Kind::Metered if ok => self.stats.failed_open += 1,
            _ => {}
        }
        if response.status().is_server_error() {
            self.stats.server_errors += 1;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Violation> {
        // No instance admits beyond the limit on its own view: at most k·L in all.
        let admitted: usize = self.counters.iter().map(|c| c.admitted.len()).sum();
        let admitted = u64::try_from(admitted).unwrap_or(u64::MAX);
        let k = u64::try_from(self.gateways.len()).unwrap_or(u64::MAX);
        let cap = self.params.async_limit.saturating_mul(k);
        if admitted > cap {
            return Err(Violation::AsyncQuotaExceeded {
                admitted,
                bound: cap,
            });
        }
        if self.metered_admitted > self.params.quota_limit {
            return Err(Violation::QuotaExceeded {
                admitted: self.metered_admitted,
                limit: self.params.quota_limit,
            });
        }
        Ok(())
    }

    /// The README's bound of asynchronous mode, `L + (k−1)·min(L, r·(2T+τ))`, with
    /// `r·(2T+τ)` measured: the most one gateway admitted within any span of `2T + τ`,
    /// `τ` the longest flush round trip of the run. It holds when flushes succeed; after a
    /// failed flush only `k·L` (checked after every event) applies, as the README says an
    /// outage adds to `T`.
    fn check_async_bound(&mut self) -> Result<(), Violation> {
        let admitted: usize = self.counters.iter().map(|c| c.admitted.len()).sum();
        let admitted = u64::try_from(admitted).unwrap_or(u64::MAX);
        self.stats.async_overshoot += admitted.saturating_sub(self.params.async_limit);
        self.stats.kv_acknowledged += u64::try_from(self.kv_acknowledged.len()).unwrap_or(0);
        if self.flush_failed {
            return Ok(());
        }
        self.stats.async_bound_checked += 1;
        let t = self.params.flush_ms * MS;
        let window = (2 * t).saturating_add(self.flush_rtt);
        let limit = self.params.async_limit;
        let mut most = 0u64;
        for c in &self.counters {
            let times = &c.admitted;
            let mut lo = 0;
            for (hi, &at) in times.iter().enumerate() {
                while times
                    .get(lo)
                    .is_some_and(|&t0| at.saturating_sub(t0) > window)
                {
                    lo += 1;
                }
                most = most.max(u64::try_from(hi + 1 - lo).unwrap_or(u64::MAX));
            }
        }
        let k = u64::try_from(self.gateways.len()).unwrap_or(u64::MAX);
        let bound = limit.saturating_add(k.saturating_sub(1).saturating_mul(limit.min(most)));
        let admitted: usize = self.counters.iter().map(|c| c.admitted.len()).sum();
        let admitted = u64::try_from(admitted).unwrap_or(u64::MAX);
        if admitted > bound {
            return Err(Violation::AsyncQuotaExceeded { admitted, bound });
        }
        Ok(())
    }

    /// Faults healed, every acknowledged token of an app not revoked is accepted by every
    /// gateway, and every token of a revoked app refused.
    fn recovery(&mut self) -> Result<(), Violation> {
        self.store_up = true;
        self.partitioned.iter_mut().for_each(|p| *p = false);
        self.params.loss = 0.0;
        for token in 0..self.tokens.len() {
            for gateway in 0..self.gateways.len() {
                let (value, app) = match self.tokens.get(token) {
                    Some(t) => (t.value.clone(), t.app),
                    None => continue,
                };
                let status = self.call_api(gateway, &value)?;
                let revoked = self.revoked_at.get(app).copied().flatten().is_some();
                match (revoked, status) {
                    (false, http::StatusCode::OK) | (true, http::StatusCode::UNAUTHORIZED) => {}
                    (false, status) => {
                        return Err(Violation::TokenLost {
                            gateway,
                            status: status.as_u16(),
                        });
                    }
                    (true, _) => return Err(Violation::RevokedTokenAccepted { app, at: self.now }),
                }
            }
        }
        self.recovery_state()
    }

    /// Every acknowledged KVM put is read back, and every acknowledged app (not revoked)
    /// gets a token from every gateway.
    fn recovery_state(&mut self) -> Result<(), Violation> {
        for key in self.kv_acknowledged.clone() {
            let (status, body) = self.call(0, &format!("/kv/get?k=k{key}"), None)?;
            if status != http::StatusCode::OK || body != format!("v{key}") {
                return Err(Violation::KvLost { key });
            }
        }
        for app in 0..self.created_at.len() {
            let created = self.created_at.get(app).copied().flatten().is_some();
            let revoked = self.revoked_at.get(app).copied().flatten().is_some();
            if !created || revoked {
                continue;
            }
            for gateway in 0..self.gateways.len() {
                let body = format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}",
                    client_id(app),
                    secret(app)
                );
                let (status, _) = self.call(gateway, "/oauth/token", Some(body))?;
                if status != http::StatusCode::OK {
                    return Err(Violation::AppLost {
                        app,
                        gateway,
                        status: status.as_u16(),
                    });
                }
            }
        }
        Ok(())
    }

    /// One request with no faults, driven to its answer: a GET, or a token POST.
    fn call(
        &mut self,
        gateway: usize,
        path: &str,
        form: Option<String>,
    ) -> Result<(http::StatusCode, String), Violation> {
        let request = match form {
            None => http::Request::get(path).body(Bytes::new()),
            Some(body) => http::Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Bytes::from(body)),
        }
        .map_err(|e| Violation::Setup(e.to_string()))?;
        let time = self.system_time();
        let Some(gw) = self.gateways.get(gateway) else {
            return Err(Violation::Stuck(1));
        };
        let mut ex = gw.begin(
            request,
            preflow::Client::http(SocketAddr::from(([192, 0, 2, 9], 2))),
            time,
        );
        for _ in 0..64 {
            match gw.step(&mut ex) {
                Step::Respond(r) => {
                    let body = String::from_utf8_lossy(r.body()).into_owned();
                    return Ok((r.status(), body));
                }
                Step::Forward(_) => {
                    ex.target_response(Ok(http::Response::new(Bytes::from_static(b"ok"))))
                }
                Step::Store(op) => ex.store_reply(self.store.run(&op)),
                Step::ReadBody | Step::Pause(_) => return Err(Violation::Stuck(1)),
            }
        }
        Err(Violation::Stuck(1))
    }

    /// One API call with no faults, driven to its answer.
    fn call_api(&mut self, gateway: usize, token: &str) -> Result<http::StatusCode, Violation> {
        let request = http::Request::get("/api/items")
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .map_err(|e| Violation::Setup(e.to_string()))?;
        let time = self.system_time();
        let Some(gw) = self.gateways.get(gateway) else {
            return Err(Violation::Stuck(1));
        };
        let mut ex = gw.begin(
            request,
            preflow::Client::http(SocketAddr::from(([192, 0, 2, 9], 1))),
            time,
        );
        for _ in 0..64 {
            match gw.step(&mut ex) {
                Step::Respond(r) => return Ok(r.status()),
                Step::Forward(_) => {
                    ex.target_response(Ok(http::Response::new(Bytes::from_static(b"ok"))))
                }
                Step::Store(op) => ex.store_reply(self.store.run(&op)),
                Step::ReadBody | Step::Pause(_) => return Err(Violation::Stuck(1)),
            }
        }
        Err(Violation::Stuck(1))
    }
}
