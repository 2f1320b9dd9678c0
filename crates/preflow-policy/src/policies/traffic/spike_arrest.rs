//! `<SpikeArrest>`: smooths traffic to a rate, per identifier.

use std::sync::Arc;

use http::StatusCode;
use preflow_condition::Value;
use preflow_ratelimit::{SpikeArrest as Limiter, SpikeArrestConfig, Timestamp};

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime, StateMode, StoreOp, StoreReply, Waiting};
use crate::vars::{Slot, write_value};
use crate::xml::Element;

use super::{RateLimitReply, message_weight, rate_limit_reply, violation_status};

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
#[non_exhaustive]
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

fn parse(cx: &mut Cx<'_>, el: &Element) -> SpikeArrest {
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

/// A compiled SpikeArrest.
#[derive(Debug)]
pub(crate) struct CompiledSpikeArrest {
    name: String,
    limiter: Limiter,
    rate_text: String,
    rate_ref: Option<String>,
    /// The identifier's variable, resolved at build time.
    identifier: Option<Slot>,
    weight: Option<String>,
    /// Limiters for rates a `<Rate ref>` resolved to, by rate text.
    by_rate: dashmap::DashMap<String, Arc<Limiter>>,
    config: SpikeArrestConfig,
}

fn rate_text(r: &Rate) -> String {
    match r.period {
        RatePeriod::Second => format!("{}ps", r.count),
        RatePeriod::Minute => format!("{}pm", r.count),
    }
}

/// The SpikeArrest policy type.
#[derive(Debug)]
pub(crate) struct SpikeArrestPolicy;

impl PolicyType for SpikeArrestPolicy {
    type Config = SpikeArrest;
    type Compiled = Box<CompiledSpikeArrest>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> SpikeArrest {
        parse(cx, el)
    }

    fn compile(s: &SpikeArrest, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError> {
        let rate = s
            .rate
            .value
            .as_ref()
            .map(rate_text)
            .unwrap_or_else(|| "1ps".to_owned());
        let parsed: preflow_ratelimit::Rate = rate
            .parse()
            .map_err(|e| CompileError::new(format!("invalid rate `{rate}`: {e}")))?;
        let mut config = SpikeArrestConfig::new(parsed).with_behaviour(cx.settings.spike);
        if s.use_effective_count {
            config.use_effective_count = true;
        }
        Ok(Box::new(CompiledSpikeArrest {
            name: cx.name.to_owned(),
            limiter: Limiter::new(config),
            rate_text: rate,
            rate_ref: s.rate.reference.clone(),
            identifier: s.identifier.as_deref().map(|i| cx.resolve(i.trim())),
            weight: s.message_weight.clone(),
            by_rate: dashmap::DashMap::new(),
            config,
        }))
    }

    fn run<R: Runtime>(s: &Self::Compiled, rt: &mut R) -> Outcome {
        let weight = match message_weight(rt, s.weight.as_deref()) {
            Ok(w) => w,
            Err(f) => return Outcome::Fault(f),
        };
        // A Rate ref that resolves takes precedence over the literal.
        let mut limiter_owned = None;
        if let Some(r) = &s.rate_ref
            && let Some(text) = rt.variable(r)
        {
            let Ok(rate) = text.trim().parse::<preflow_ratelimit::Rate>() else {
                return Outcome::Fault(Fault::new(
                    "policies.ratelimit.FailedToResolveSpikeArrestRate",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Failed to resolve Spike Arrest Rate reference {r}: `{text}`"),
                ));
            };
            let entry = s
                .by_rate
                .entry(text.trim().to_owned())
                .or_insert_with(|| {
                    let mut c = s.config;
                    c.rate = rate;
                    Arc::new(Limiter::new(c))
                })
                .clone();
            limiter_owned = Some(entry);
        }
        let limiter: &Limiter = limiter_owned.as_deref().unwrap_or(&s.limiter);
        let now = Timestamp::from_nanos(rt.now_ns());
        let mut owned = String::new();
        let key: &str = match &s.identifier {
            None => "_default",
            Some(slot) => match rt.value(slot) {
                Value::String(v) => v,
                v => {
                    if write_value(v, &mut owned) {
                        owned.as_str()
                    } else {
                        "_default"
                    }
                }
            },
        };
        match rt.env().state {
            StateMode::Local => {
                let allowed = limiter.check(key, now, weight).allowed;
                verdict(s, rt, allowed)
            }
            StateMode::Remote => {
                let full = format!("spike:{}:{}:{key}", rt.bundle_name(), s.name);
                let op = limiter.store_op(&full, now, weight);
                Outcome::Store(
                    StoreOp::RateLimit(op.clone()),
                    Waiting::RateLimit { op, quota: None },
                )
            }
        }
    }

    fn resume<R: Runtime>(
        s: &Self::Compiled,
        rt: &mut R,
        waiting: Waiting,
        reply: StoreReply,
    ) -> Outcome {
        match rate_limit_reply(rt, waiting, reply) {
            RateLimitReply::Decision(preflow_ratelimit::Decision::Spike(d), _) => {
                verdict(s, rt, d.allowed)
            }
            RateLimitReply::Decision(..) => Outcome::Continue,
            RateLimitReply::Done(outcome) => *outcome,
        }
    }

    fn reads_request_body(s: &SpikeArrest) -> bool {
        [&s.identifier, &s.message_weight, &s.rate.reference]
            .into_iter()
            .flatten()
            .any(|v| crate::vars::reads_request_body(v))
    }
}

fn verdict<R: Runtime>(s: &CompiledSpikeArrest, rt: &R, allowed: bool) -> Outcome {
    if allowed {
        return Outcome::Continue;
    }
    Outcome::Fault(Fault::new(
        "policies.ratelimit.SpikeArrestViolation",
        violation_status(&rt.env().settings),
        format!("Spike arrest violation. Allowed rate : {}", s.rate_text),
    ))
}
