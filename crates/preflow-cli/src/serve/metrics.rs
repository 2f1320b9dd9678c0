//! Prometheus metrics of `preflow serve`, counted from the engine's exchange summaries
//! ([`preflow::ExchangeSummary`]) and the store steps the gateway performs.
//!
//! Labels take their values from the deployed bundles (proxy and policy names), the
//! engine's fixed fault names and small fixed sets (status class, source, outcome), so
//! their cardinality is bounded by what is deployed, never by what clients send. An app
//! label, whose values grow with the apps registered, is kept only with
//! `--metrics-app-labels` (in a metric of its own); there is no developer label.
//!
//! One gateway runs per process, so the metrics live in a process-wide registry that the
//! listeners and the gateway handler report to; without `--admin` or `--metrics` nothing
//! is counted.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    proxy: String,
    status_class: &'static str,
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    proxy: String,
    app: String,
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    proxy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    proxy: String,
    policy: String,
    fault: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    proxy: String,
    policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    proxy: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployLabels {
    origin: &'static str,
    outcome: &'static str,
}

type Durations = Family<ProxyLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Durations,
    target_seconds: Durations,
    faults: Family<FaultLabels, Counter>,
    rate_limited: Family<PolicyLabels, Counter>,
    tokens: Family<OutcomeLabels, Counter>,
    store: Family<StoreLabels, Counter>,
    /// Requests by app (`--metrics-app-labels` only).
    apps: Option<Family<AppLabels, Counter>>,
    deployments: Family<DeployLabels, Counter>,
    revision: Gauge,
    /// Requests by app id for the portal's usage figures (not exported).
    usage: AppUsage,
}

/// One answered request, as the listener saw it.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The engine's summary; `None` when the listener refused the request itself.
    pub summary: Option<&'a preflow::ExchangeSummary>,
    /// The status sent.
    pub status: u16,
    /// Time from the request head to the response.
    pub elapsed: Duration,
    /// Time spent in target calls, when there were any.
    pub target: Option<Duration>,
}

impl Metrics {
    fn new(app_labels: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "preflow_requests",
            "Requests answered, by proxy, status class and source (policy, target, gateway)",
            requests.clone(),
        );
        let request_seconds: Durations = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "preflow_request_duration",
            "Time from the request head to the response, by proxy",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let target_seconds: Durations = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "preflow_target_duration",
            "Time spent calling targets and service callouts per request, by proxy",
            Unit::Seconds,
            target_seconds.clone(),
        );
        let faults = Family::<FaultLabels, Counter>::default();
        registry.register(
            "preflow_policy_faults",
            "Requests that ended with a policy's fault, by proxy, policy and fault name",
            faults.clone(),
        );
        let rate_limited = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "preflow_rate_limit_rejections",
            "Requests rejected by a Quota, SpikeArrest or ConcurrentRatelimit policy",
            rate_limited.clone(),
        );
        let tokens = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "preflow_oauth_tokens",
            "Token requests answered by an OAuthV2 policy, by outcome (issued, refused)",
            tokens.clone(),
        );
        let store = Family::<StoreLabels, Counter>::default();
        registry.register(
            "preflow_store_operations",
            "State store operations, by kind (ratelimit, token, kv) and outcome (ok, unavailable)",
            store.clone(),
        );
        let deployments = Family::<DeployLabels, Counter>::default();
        registry.register(
            "preflow_deployments",
            "Revisions deployed or refused, by origin (startup, upload, reload, activate) and outcome (deployed, refused)",
            deployments.clone(),
        );
        let revision = Gauge::default();
        registry.register(
            "preflow_active_revision",
            "The number of the revision serving requests",
            revision.clone(),
        );
        let apps = app_labels.then(|| {
            let apps = Family::<AppLabels, Counter>::default();
            registry.register(
                "preflow_app_requests",
                "Requests whose token or API key was verified, by proxy, app and status class (opt-in)",
                apps.clone(),
            );
            apps
        });
        Self {
            registry,
            apps,
            requests,
            request_seconds,
            target_seconds,
            faults,
            rate_limited,
            tokens,
            store,
            deployments,
            revision,
            usage: AppUsage::default(),
        }
    }

    /// What this gateway counted for app `app_id` since it started.
    pub fn app_usage(&self, app_id: &str) -> Usage {
        self.usage.get(app_id)
    }

    /// Counts a deploy from `origin` (`startup`, `upload`, `reload`, `activate`); `active` is the
    /// revision serving after it.
    pub fn deployed(&self, origin: &'static str, deployed: bool, active: u64) {
        self.deployments
            .get_or_create(&DeployLabels {
                origin,
                outcome: if deployed { "deployed" } else { "refused" },
            })
            .inc();
        self.revision.set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    /// The metrics in the OpenMetrics text format (which Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        out
    }

    /// Counts one answered request.
    pub fn observe(&self, o: &Observed<'_>) {
        let proxy = o.summary.and_then(|s| s.proxy.clone()).unwrap_or_default();
        let source = o
            .summary
            .and_then(|s| s.answered_by)
            .map_or("gateway", preflow::Answerer::as_str);
        self.requests
            .get_or_create(&RequestLabels {
                proxy: proxy.clone(),
                status_class: status_class(o.status),
                source,
            })
            .inc();
        let by_proxy = ProxyLabels {
            proxy: proxy.clone(),
        };
        self.request_seconds
            .get_or_create(&by_proxy)
            .observe(o.elapsed.as_secs_f64());
        if let Some(t) = o.target {
            self.target_seconds
                .get_or_create(&by_proxy)
                .observe(t.as_secs_f64());
        }
        let Some(s) = o.summary else { return };
        if let Some(app_id) = &s.app_id {
            self.usage.count(app_id, o.status >= 400, unix_secs());
        }
        if let (Some(apps), Some(app)) = (&self.apps, &s.app) {
            apps.get_or_create(&AppLabels {
                proxy: proxy.clone(),
                app: app.clone(),
                status_class: status_class(o.status),
            })
            .inc();
        }
        if let (Some(policy), Some(fault)) = (&s.fault_policy, &s.fault) {
            self.faults
                .get_or_create(&FaultLabels {
                    proxy: proxy.clone(),
                    policy: policy.clone(),
                    fault: fault.clone(),
                })
                .inc();
        }
        if let Some(policy) = &s.rate_limited_by {
            self.rate_limited
                .get_or_create(&PolicyLabels {
                    proxy: proxy.clone(),
                    policy: policy.clone(),
                })
                .inc();
        }
        if let Some(t) = s.token {
            self.tokens
                .get_or_create(&OutcomeLabels {
                    proxy,
                    outcome: match t {
                        preflow::TokenOutcome::Issued => "issued",
                        preflow::TokenOutcome::Refused => "refused",
                    },
                })
                .inc();
        }
    }

    /// Counts one store operation and its outcome.
    pub fn store(&self, op: &preflow::StoreOp, reply: &preflow::StoreReply) {
        let kind = match op {
            preflow::StoreOp::RateLimit(_) => "ratelimit",
            preflow::StoreOp::Token(_) => "token",
            preflow::StoreOp::Kv(_) => "kv",
            _ => "other",
        };
        let outcome = match reply {
            preflow::StoreReply::Unavailable => "unavailable",
            _ => "ok",
        };
        self.store
            .get_or_create(&StoreLabels { kind, outcome })
            .inc();
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The most apps whose usage is kept; requests of further apps are not counted (a
/// gateway with this many self-service apps reads usage from its metrics instead).
pub const MAX_USAGE_APPS: usize = 10_000;

/// Per-app request counts: totals and rolling windows (60 minutes, 48 hours, 62 days)
/// from which the portal shows how much of a quota an app used. About 700 bytes an app.
#[derive(Debug, Default)]
struct AppUsage(std::sync::Mutex<std::collections::HashMap<String, Usage>>);

impl AppUsage {
    fn count(&self, app_id: &str, error: bool, now: u64) {
        let Ok(mut map) = self.0.lock() else { return };
        if !map.contains_key(app_id) && map.len() >= MAX_USAGE_APPS {
            return;
        }
        let u = map.entry(app_id.to_owned()).or_default();
        u.requests += 1;
        u.errors += u64::from(error);
        u.minutes.add(now / 60);
        u.hours.add(now / 3600);
        u.days.add(now / 86_400);
    }

    fn get(&self, app_id: &str) -> Usage {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(app_id).cloned())
            .unwrap_or_default()
    }
}

/// One app's counted requests.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Requests whose credential was this app's.
    pub requests: u64,
    /// Those answered with a status of 400 or more.
    pub errors: u64,
    minutes: Ring<60>,
    hours: Ring<48>,
    days: Ring<62>,
}

impl Usage {
    /// Requests in the last `n` units (a rolling window) ending now; `None` when the
    /// window is longer than what is kept.
    pub fn last(&self, n: u64, unit: preflow_oauth::QuotaTimeUnit, now: u64) -> Option<u64> {
        use preflow_oauth::QuotaTimeUnit as U;
        match unit {
            U::Minute => self.minutes.sum(now / 60, n),
            U::Hour => self.hours.sum(now / 3600, n),
            U::Day => self.days.sum(now / 86_400, n),
            U::Week => self.days.sum(now / 86_400, n.checked_mul(7)?),
            U::Month => self.days.sum(now / 86_400, n.checked_mul(30)?),
        }
    }
}

/// Counts per time slot for the last `N` slots.
#[derive(Debug, Clone, Copy)]
struct Ring<const N: usize> {
    slots: [u32; N],
    /// The newest slot counted (slot numbers since the epoch).
    newest: u64,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self {
            slots: [0; N],
            newest: 0,
        }
    }
}

impl<const N: usize> Ring<N> {
    const LEN: u64 = N as u64;

    fn add(&mut self, slot: u64) {
        if slot > self.newest {
            // Clear the slots skipped since the newest (all of them after a long pause).
            for s in (self.newest + 1)..=slot.min(self.newest + Self::LEN) {
                if let Some(c) = self.slot_mut(s) {
                    *c = 0;
                }
            }
            self.newest = slot;
        }
        if self.newest - slot < Self::LEN
            && let Some(c) = self.slot_mut(slot)
        {
            *c = c.saturating_add(1);
        }
    }

    fn slot_mut(&mut self, slot: u64) -> Option<&mut u32> {
        let i = usize::try_from(slot % Self::LEN).ok()?;
        self.slots.get_mut(i)
    }

    /// The counts of the `n` slots ending at `now`.
    fn sum(&self, now: u64, n: u64) -> Option<u64> {
        if n == 0 || n > Self::LEN {
            return None;
        }
        let first = now.saturating_sub(n - 1);
        Some(
            (first..=now)
                .filter(|s| *s <= self.newest && self.newest - s < Self::LEN)
                .filter_map(|s| usize::try_from(s % Self::LEN).ok())
                .filter_map(|i| self.slots.get(i))
                .map(|c| u64::from(*c))
                .sum(),
        )
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Starts counting (once per process), with a per-app counter when `app_labels`; the
/// metrics.
pub fn install(app_labels: bool) -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(app_labels))
}

/// The metrics, when counting is on.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Whether requests are counted.
pub fn enabled() -> bool {
    METRICS.get().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflow_oauth::QuotaTimeUnit as U;

    #[test]
    fn app_usage_rolls_its_windows_and_is_bounded() {
        let u = AppUsage::default();
        let t = 60_000_000; // a minute's start, not an hour's
        u.count("a", false, t);
        u.count("a", true, t + 30);
        u.count("a", false, t + 61);
        let got = u.get("a");
        assert_eq!((got.requests, got.errors), (3, 1));
        assert_eq!(got.last(1, U::Minute, t + 61), Some(1));
        assert_eq!(got.last(2, U::Minute, t + 61), Some(3));
        assert_eq!(got.last(1, U::Hour, t + 61), Some(3));
        assert_eq!(got.last(1, U::Week, t + 61), Some(3));
        assert_eq!(got.last(60, U::Minute, t + 7200), Some(0));
        assert_eq!(got.last(61, U::Minute, t), None, "longer than kept");
        assert_eq!(got.last(3, U::Month, t), None, "longer than kept");
        // After a pause the old slots are cleared, not added to.
        u.count("a", false, t + 7200);
        assert_eq!(u.get("a").last(60, U::Minute, t + 7200), Some(1));
        assert_eq!(u.get("a").last(48, U::Hour, t + 7200), Some(4));
        // A request counted late (its slot older than the newest) still counts.
        u.count("a", false, t + 7200 - 60);
        assert_eq!(u.get("a").last(2, U::Minute, t + 7200), Some(2));
        for i in 0..MAX_USAGE_APPS {
            u.count(&i.to_string(), false, t);
        }
        assert_eq!(u.get("late").requests, 0);
        u.count("late", false, t);
        assert_eq!(u.get("late").requests, 0, "no more apps than the bound");
        assert_eq!(u.get("a").requests, 5);
    }
}
