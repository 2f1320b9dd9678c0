//! Traffic management policies: SpikeArrest and Quota, and what they share: the message
//! weight, the violation status and resuming with a counter-store reply.

mod quota;
mod spike_arrest;

use http::StatusCode;

use crate::runtime::{Fault, Outcome, Profile, Runtime, Settings, StoreReply, Waiting, faults};

pub use quota::{Allow, ProductQuotaConfig, Quota, QuotaClasses, QuotaType, TimeUnit};
pub(crate) use quota::{QuotaField, QuotaPolicy, value as quota_value};
pub(crate) use spike_arrest::SpikeArrestPolicy;
pub use spike_arrest::{Rate, RatePeriod, SpikeArrest};

/// The status of a rate-limit violation: 429, or 500 on Edge private cloud and SAP.
fn violation_status(settings: &Settings) -> StatusCode {
    match settings.profile {
        Profile::Cloud => StatusCode::TOO_MANY_REQUESTS,
        Profile::PrivateCloud => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The weight of this message: the `<MessageWeight ref>` variable's integer value, or 1.
fn message_weight<R: Runtime>(rt: &R, var: Option<&str>) -> Result<u32, Fault> {
    let Some(v) = var else { return Ok(1) };
    match rt.variable(v) {
        None => Ok(1),
        Some(t) => t.trim().parse::<u32>().map_err(|_| {
            Fault::new(
                "policies.ratelimit.InvalidMessageWeight",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Invalid message weight value {t}"),
            )
        }),
    }
}

/// A counter-store reply, resolved.
enum RateLimitReply {
    /// The decision, with the quota identifier the policy kept.
    Decision(preflow_ratelimit::Decision, Option<String>),
    /// Nothing to decide: go on with this outcome.
    Done(Box<Outcome>),
}

/// Resolves the reply to a rate-limit store operation. An unavailable store fails open,
/// with the policy marked failed.
fn rate_limit_reply<R: Runtime>(rt: &mut R, waiting: Waiting, reply: StoreReply) -> RateLimitReply {
    match (waiting, reply) {
        (Waiting::RateLimit { op, quota }, StoreReply::RateLimit(r)) => match op.resolve(&r) {
            Ok(d) => RateLimitReply::Decision(d, quota),
            Err(e) => {
                RateLimitReply::Done(Box::new(Outcome::Fault(faults::internal(e.to_string()))))
            }
        },
        (Waiting::RateLimit { .. }, _) => {
            rt.mark_failed();
            RateLimitReply::Done(Box::new(Outcome::Continue))
        }
        _ => RateLimitReply::Done(Box::new(Outcome::Fault(faults::internal(
            "a rate-limit policy resumed with an unexpected store reply",
        )))),
    }
}
