//! `<Quota>`: counts requests per window and identifier.

use std::num::NonZeroU32;
use std::sync::Arc;

use http::StatusCode;
use preflow_condition::Value;
use preflow_ratelimit::{Quota as Limiter, QuotaCheck, QuotaConfig, QuotaDecision, Timestamp};

pub use preflow_ratelimit::TimeUnit;

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, PolicyRef, Runtime, StateMode, StoreOp, StoreReply, Waiting};
use crate::vars::Slot;
use crate::xml::Element;

use super::{RateLimitReply, message_weight, rate_limit_reply, violation_status};

/// A time unit name in any case.
fn parse_time_unit(text: &str) -> Option<TimeUnit> {
    text.parse().ok()
}

/// The `type` attribute of a Quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuotaType {
    /// No type: windows aligned to the clock.
    #[default]
    Default,
    /// `calendar`: windows start at `StartTime`.
    Calendar,
    /// `flexi`: each identifier's window starts at its first request.
    Flexi,
    /// `rollingwindow`: a sliding window.
    RollingWindow,
}

/// The allowed count: a literal, a ref, or per-class counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Allow {
    /// `count`; [`Allow::DEFAULT_COUNT`] applies when neither count nor ref resolves.
    pub count: Option<u64>,
    /// `countRef`, which takes precedence over `count`.
    pub count_ref: Option<String>,
    /// `<Class ref>` with per-class `<Allow class count>`.
    pub classes: Option<QuotaClasses>,
}

impl Allow {
    /// The count used when nothing else is set.
    pub const DEFAULT_COUNT: u64 = 2000;
}

/// Per-class allowed counts, selected by the value of a variable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QuotaClasses {
    /// The variable whose value names the class.
    pub reference: Option<String>,
    /// `(class, count)` pairs.
    pub counts: Vec<(String, u64)>,
}

/// `<UseQuotaConfigInAPIProduct>` (Apigee X): take the settings from the API product
/// found by a verification step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProductQuotaConfig {
    /// `stepName`: the VerifyAPIKey or OAuthV2 policy that found the product.
    pub step_name: Option<String>,
    /// `<DefaultConfig><Allow>`.
    pub default_allow: Option<u64>,
    /// `<DefaultConfig><Interval>`.
    pub default_interval: Option<u64>,
    /// `<DefaultConfig><TimeUnit>`.
    pub default_time_unit: Option<TimeUnit>,
}

/// `<Quota>`: counts requests per window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quota {
    /// `type`.
    pub quota_type: QuotaType,
    /// `<Allow>`.
    pub allow: Allow,
    /// `<Interval ref>n</Interval>`.
    pub interval: Setting<u64>,
    /// `<TimeUnit ref>unit</TimeUnit>`.
    pub time_unit: Setting<TimeUnit>,
    /// `<StartTime>` (calendar only), `yyyy-MM-dd HH:mm:ss` UTC, as written.
    pub start_time: Option<String>,
    /// `<Identifier ref>`: a counter per value.
    pub identifier: Option<String>,
    /// `<MessageWeight ref>`.
    pub message_weight: Option<String>,
    /// `<Distributed>`, default false.
    pub distributed: bool,
    /// `<Synchronous>`, default false.
    pub synchronous: bool,
    /// `<AsynchronousConfiguration><SyncIntervalInSeconds>`.
    pub sync_interval_seconds: Option<u64>,
    /// `<AsynchronousConfiguration><SyncMessageCount>`.
    pub sync_message_count: Option<u64>,
    /// `<SharedName>`: a counter shared by several policies.
    pub shared_name: Option<String>,
    /// `<CountOnly>`: count without enforcing.
    pub count_only: bool,
    /// `<EnforceOnly>`: enforce without counting.
    pub enforce_only: bool,
    /// `<UseQuotaConfigInAPIProduct>`.
    pub product_config: Option<ProductQuotaConfig>,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> Quota {
    cx.known_policy(
        el,
        &[
            "Allow",
            "Interval",
            "TimeUnit",
            "StartTime",
            "Identifier",
            "MessageWeight",
            "Distributed",
            "Synchronous",
            "AsynchronousConfiguration",
            "PreciseAtSecondsLevel",
            "SharedName",
            "CountOnly",
            "EnforceOnly",
            "UseQuotaConfigInAPIProduct",
            "DataStoreFailureModeOpen",
        ],
    );
    let quota_type = match el.attribute("type") {
        None => QuotaType::Default,
        Some(a) => match a.value.trim().to_ascii_lowercase().as_str() {
            "" | "default" => QuotaType::Default,
            "calendar" => QuotaType::Calendar,
            "flexi" => QuotaType::Flexi,
            "rollingwindow" => QuotaType::RollingWindow,
            other => {
                cx.error_hint(
                    a.offset,
                    format!("invalid Quota type `{other}`"),
                    "use `calendar`, `flexi` or `rollingwindow`, or leave `type` out",
                );
                QuotaType::Default
            }
        },
    };
    let allow = match el.child("Allow") {
        None => Allow::default(),
        Some(a) => {
            let count = cx
                .attr_number(a, "count")
                .or_else(|| a.non_empty_text().and_then(|t| t.parse().ok()));
            let count_ref = a
                .attr("countRef")
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned);
            let classes = a.child("Class").map(|class| {
                let mut counts = Vec::new();
                for allow in class.children_named("Allow") {
                    if let (Some(name), Some(n)) =
                        (allow.attr("class"), cx.attr_number(allow, "count"))
                    {
                        counts.push((name.to_owned(), n));
                    }
                }
                QuotaClasses {
                    reference: ref_attr(class),
                    counts,
                }
            });
            cx.known(a, &["Class"]);
            Allow {
                count,
                count_ref,
                classes,
            }
        }
    };
    let interval = cx.setting(el.child("Interval"), "a whole number", |t| t.parse().ok());
    let time_unit = cx.setting(
        el.child("TimeUnit"),
        "`second`, `minute`, `hour`, `day`, `week` or `month`",
        parse_time_unit,
    );
    let start_time = cx.child_text(el, "StartTime");
    if start_time.is_some() && quota_type != QuotaType::Calendar {
        cx.warning(
            el.child("StartTime").map_or(el.offset, |s| s.offset),
            "`<StartTime>` applies only to a Quota of type `calendar`",
        );
    }
    let distributed = cx.child_bool(el, "Distributed", false);
    if distributed && time_unit.value == Some(TimeUnit::Second) {
        cx.error(
            el.child("TimeUnit").map_or(el.offset, |t| t.offset),
            "time unit `second` is not allowed for a distributed Quota",
        );
    }
    let asynchronous = el.child("AsynchronousConfiguration");
    let product_config = el.child("UseQuotaConfigInAPIProduct").map(|u| {
        let default = u.child("DefaultConfig");
        ProductQuotaConfig {
            step_name: u.attr("stepName").map(str::to_owned),
            default_allow: default
                .and_then(|d| d.child("Allow"))
                .and_then(|a| cx.number(a)),
            default_interval: default
                .and_then(|d| d.child("Interval"))
                .and_then(|a| cx.number(a)),
            default_time_unit: default
                .and_then(|d| d.child("TimeUnit"))
                .and_then(|t| parse_time_unit(t.text())),
        }
    });
    Quota {
        quota_type,
        allow,
        interval,
        time_unit,
        start_time,
        identifier: el.child("Identifier").and_then(variable_of),
        message_weight: el.child("MessageWeight").and_then(ref_attr),
        distributed,
        synchronous: cx.child_bool(el, "Synchronous", false),
        sync_interval_seconds: asynchronous
            .and_then(|a| a.child("SyncIntervalInSeconds"))
            .and_then(|s| cx.number(s)),
        sync_message_count: asynchronous
            .and_then(|a| a.child("SyncMessageCount"))
            .and_then(|s| cx.number(s)),
        shared_name: cx.child_text(el, "SharedName"),
        count_only: cx.child_bool(el, "CountOnly", false),
        enforce_only: cx.child_bool(el, "EnforceOnly", false),
        product_config,
    }
}

/// A compiled Quota.
#[derive(Debug)]
pub(crate) struct CompiledQuota {
    base: QuotaConfig,
    limiter: Arc<Limiter>,
    by_window: dashmap::DashMap<(u32, u8), Arc<Limiter>>,
    config: Quota,
    name: String,
}

fn unit_code(u: TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Minute => 1,
        TimeUnit::Hour => 2,
        TimeUnit::Day => 3,
        TimeUnit::Week => 4,
        TimeUnit::Month => 5,
    }
}

/// Compiles a Quota. Refs resolve per request; the literals (or Apigee's defaults: 2000
/// per 1 hour) make the base window.
fn compile(q: &Quota, name: &str) -> Result<CompiledQuota, CompileError> {
    let allow = q.allow.count.unwrap_or(Allow::DEFAULT_COUNT);
    let interval = q
        .interval
        .value
        .and_then(|i| u32::try_from(i).ok())
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN);
    let time_unit = q.time_unit.value.unwrap_or(TimeUnit::Hour);
    let mut base = QuotaConfig::new(allow, interval, time_unit).with_type(match q.quota_type {
        QuotaType::Default => preflow_ratelimit::QuotaType::Default,
        QuotaType::Calendar => preflow_ratelimit::QuotaType::Calendar,
        QuotaType::Flexi => preflow_ratelimit::QuotaType::Flexi,
        QuotaType::RollingWindow => preflow_ratelimit::QuotaType::RollingWindow,
    });
    // A StartTime only means something to a calendar quota; elsewhere it is ignored.
    if let (Some(st), QuotaType::Calendar) = (&q.start_time, q.quota_type) {
        base = base.with_start_time(
            preflow_ratelimit::parse_start_time(st)
                .map_err(|e| CompileError::new(e.to_string()))?,
        );
    }
    if let Some(classes) = &q.allow.classes {
        for (class, count) in &classes.counts {
            base = base.with_class(class.clone(), *count);
        }
    }
    let limiter =
        Arc::new(Limiter::new(base.clone()).map_err(|e| CompileError::new(e.to_string()))?);
    Ok(CompiledQuota {
        base,
        limiter,
        by_window: dashmap::DashMap::new(),
        config: q.clone(),
        name: name.to_owned(),
    })
}

fn run<R: Runtime>(q: &CompiledQuota, rt: &mut R) -> Outcome {
    let cfg = &q.config;
    let weight = match message_weight(rt, cfg.message_weight.as_deref()) {
        Ok(w) => w,
        Err(f) => return Outcome::Fault(f),
    };
    // countRef takes precedence over count when it resolves.
    let allow = cfg
        .allow
        .count_ref
        .as_deref()
        .and_then(|r| rt.variable(r))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let interval = match cfg.interval.reference.as_deref() {
        Some(r) => match rt.variable(r) {
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
        Some(r) => match rt.variable(r) {
            Some(v) => match parse_time_unit(&v) {
                Some(u) => Some(u),
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
                        match Limiter::new(c) {
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
        .and_then(|i| rt.variable(i))
        .unwrap_or_else(|| "_default".to_owned());
    let class = cfg
        .allow
        .classes
        .as_ref()
        .and_then(|c| c.reference.as_deref())
        .and_then(|r| rt.variable(r));
    let now = Timestamp::from_nanos(rt.now_ns());
    match rt.env().state {
        StateMode::Local => {
            let mut check = QuotaCheck::new(&identifier, now, weight);
            if let Some(c) = &class {
                check = check.with_class(c);
            }
            if let Some(a) = allow {
                check = check.with_allow(a);
            }
            let d = limiter.check_with(&check);
            verdict(rt, d, identifier)
        }
        StateMode::Remote => {
            let key = format!("quota:{}:{}:{identifier}", rt.bundle_name(), q.name);
            let mut check = QuotaCheck::new(&key, now, weight);
            if let Some(c) = &class {
                check = check.with_class(c);
            }
            if let Some(a) = allow {
                check = check.with_allow(a);
            }
            let op = limiter.store_op(&check);
            Outcome::Store(
                StoreOp::RateLimit(op.clone()),
                Waiting::RateLimit {
                    op,
                    quota: Some(identifier),
                },
            )
        }
    }
}

/// Records a Quota decision and faults when it was refused.
fn verdict<R: Runtime>(rt: &mut R, d: QuotaDecision, id: String) -> Outcome {
    let allowed = d.allowed;
    let shown = if allowed { String::new() } else { id.clone() };
    let at = rt.policy();
    rt.state_mut().quotas.push((at, d, id));
    if allowed {
        Outcome::Continue
    } else {
        Outcome::Fault(Fault::new(
            "policies.ratelimit.QuotaViolation",
            violation_status(&rt.env().settings),
            format!("Rate limit quota violation. Quota limit  exceeded. Identifier : {shown}"),
        ))
    }
}

/// The Quota policy type.
#[derive(Debug)]
pub(crate) struct QuotaPolicy;

impl PolicyType for QuotaPolicy {
    type Config = Quota;
    type Compiled = Box<CompiledQuota>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Quota {
        parse(cx, el)
    }

    fn compile(q: &Quota, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError> {
        compile(q, cx.name).map(Box::new)
    }

    fn run<R: Runtime>(q: &Self::Compiled, rt: &mut R) -> Outcome {
        run(q, rt)
    }

    fn advice(q: &Quota) -> Vec<crate::Advice> {
        if q.distributed {
            return Vec::new();
        }
        vec![crate::Advice::new(
            "POL004",
            Some("Distributed"),
            "Quota is not distributed: each gateway node counts on its own, so clients get \
             the limit once per node; add `<Distributed>true</Distributed>`",
        )]
    }

    fn resume<R: Runtime>(
        _: &Self::Compiled,
        rt: &mut R,
        waiting: Waiting,
        reply: StoreReply,
    ) -> Outcome {
        match rate_limit_reply(rt, waiting, reply) {
            RateLimitReply::Decision(preflow_ratelimit::Decision::Quota(d), id) => {
                verdict(rt, d, id.unwrap_or_default())
            }
            RateLimitReply::Decision(..) => Outcome::Continue,
            RateLimitReply::Done(outcome) => *outcome,
        }
    }

    fn variable(at: PolicyRef, field: &str) -> Option<Slot> {
        let f = match field {
            "allowed.count" => QuotaField::Allowed,
            "used.count" => QuotaField::Used,
            "available.count" => QuotaField::Available,
            "exceed.count" => QuotaField::Exceed,
            "total.exceed.count" => QuotaField::TotalExceed,
            "expiry.time" => QuotaField::ExpiryTime,
            "identifier" => QuotaField::Identifier,
            _ => return None,
        };
        Some(Slot::Quota(at, f))
    }

    fn reads_request_body(q: &Quota) -> bool {
        [
            &q.identifier,
            &q.message_weight,
            &q.allow.count_ref,
            &q.interval.reference,
            &q.time_unit.reference,
        ]
        .into_iter()
        .flatten()
        .chain(q.allow.classes.as_ref().and_then(|c| c.reference.as_ref()))
        .any(|v| crate::vars::reads_request_body(v))
    }
}

/// The Quota variables `ratelimit.{policy}.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaField {
    /// `allowed.count`.
    Allowed,
    /// `used.count`.
    Used,
    /// `available.count`.
    Available,
    /// `exceed.count`.
    Exceed,
    /// `total.exceed.count`.
    TotalExceed,
    /// `expiry.time`.
    ExpiryTime,
    /// `identifier`.
    Identifier,
}

/// The value of `field` for decision `d` of identifier `id`.
pub(crate) fn value<'a>(field: QuotaField, d: &QuotaDecision, id: &'a str) -> Value<'a> {
    let n = |v: u64| Value::Long(i64::try_from(v).unwrap_or(i64::MAX));
    match field {
        QuotaField::Allowed => n(d.allowed_count),
        QuotaField::Used => n(d.used_count),
        QuotaField::Available => n(d.available_count),
        QuotaField::Exceed => n(d.exceed_count),
        QuotaField::TotalExceed => n(d.total_exceed_count),
        QuotaField::ExpiryTime => d.expires_at.map_or(Value::Null, |t| n(t.as_millis())),
        QuotaField::Identifier => Value::String(id),
    }
}
