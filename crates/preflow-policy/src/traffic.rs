//! Traffic management policies: SpikeArrest and Quota.

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::policy::variable_of;
use crate::xml::Element;

/// The unit of a SpikeArrest rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePeriod {
    /// `ps`: per second.
    Second,
    /// `pm`: per minute.
    Minute,
}

/// A SpikeArrest rate such as `30ps` or `12pm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages per period, at least 1.
    pub count: u32,
    /// The period.
    pub period: RatePeriod,
}

impl Rate {
    /// Parses `<int>ps` or `<int>pm`.
    pub fn parse(text: &str) -> Option<Rate> {
        let t = text.trim();
        let (digits, period) = if let Some(d) = t.strip_suffix("ps") {
            (d, RatePeriod::Second)
        } else if let Some(d) = t.strip_suffix("pm") {
            (d, RatePeriod::Minute)
        } else {
            return None;
        };
        let count: u32 = digits.trim().parse().ok()?;
        (count > 0).then_some(Rate { count, period })
    }
}

/// `<SpikeArrest>`: smooths traffic to a rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpikeArrest {
    /// `<Rate ref>30ps</Rate>`: the ref takes precedence over the literal.
    pub rate: Setting<Rate>,
    /// `<Identifier ref>`: a separate bucket per value.
    pub identifier: Option<String>,
    /// `<MessageWeight ref>`: an integer weight per message.
    pub message_weight: Option<String>,
    /// `<UseEffectiveCount>`, default false.
    pub use_effective_count: bool,
}

pub(crate) fn spike_arrest(cx: &mut Cx<'_>, el: &Element) -> SpikeArrest {
    cx.known_policy(
        el,
        &["Rate", "Identifier", "MessageWeight", "UseEffectiveCount"],
    );
    let rate = cx.setting(
        el.child("Rate"),
        "a rate such as `30ps` or `12pm`",
        Rate::parse,
    );
    let written = el.child("Rate").and_then(|r| r.non_empty_text()).is_some();
    if rate.is_empty() && !written {
        cx.error_hint(
            el.child("Rate").map_or(el.offset, |r| r.offset),
            "SpikeArrest needs a `<Rate>`",
            "add `<Rate>10ps</Rate>` or `<Rate ref=\"variable\"/>`",
        );
    }
    SpikeArrest {
        rate,
        identifier: el.child("Identifier").and_then(ref_attr),
        message_weight: el.child("MessageWeight").and_then(ref_attr),
        use_effective_count: cx.child_bool(el, "UseEffectiveCount", false),
    }
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

/// A Quota time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// `second` (not with a distributed quota).
    Second,
    /// `minute`.
    Minute,
    /// `hour`.
    Hour,
    /// `day`.
    Day,
    /// `week`.
    Week,
    /// `month`.
    Month,
}

impl TimeUnit {
    /// Parses a unit name in any case.
    pub fn parse(text: &str) -> Option<TimeUnit> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "second" => TimeUnit::Second,
            "minute" => TimeUnit::Minute,
            "hour" => TimeUnit::Hour,
            "day" => TimeUnit::Day,
            "week" => TimeUnit::Week,
            "month" => TimeUnit::Month,
            _ => return None,
        })
    }
}

/// The allowed count: a literal, a ref, or per-class counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
pub struct QuotaClasses {
    /// The variable whose value names the class.
    pub reference: Option<String>,
    /// `(class, count)` pairs.
    pub counts: Vec<(String, u64)>,
}

/// `<UseQuotaConfigInAPIProduct>` (Apigee X): take the settings from the API product
/// found by a verification step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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

pub(crate) fn quota(cx: &mut Cx<'_>, el: &Element) -> Quota {
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
        TimeUnit::parse,
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
                .and_then(|t| TimeUnit::parse(t.text())),
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
