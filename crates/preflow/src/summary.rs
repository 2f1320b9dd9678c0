//! What a finished exchange came to, in a few fields a host can count or log: the
//! engine stays sans-IO, the host turns summaries into metrics and log lines.

use crate::{Exchange, Gateway};

/// Who produced the response of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answerer {
    /// A policy: a token endpoint, a RaiseFault, a policy fault, a flow with no target.
    Policy,
    /// The target (its response, or its failure: connection refused, timeout, 5xx).
    Target,
    /// The gateway itself: no proxy for the path, an internal error.
    Gateway,
}

impl Answerer {
    /// `policy`, `target` or `gateway` (a metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Answerer::Policy => "policy",
            Answerer::Target => "target",
            Answerer::Gateway => "gateway",
        }
    }
}

/// The outcome of a token request ([OAuthV2] answering a token endpoint).
///
/// [OAuthV2]: https://cloud.google.com/apigee/docs/api-platform/reference/policies/oauthv2-policy
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenOutcome {
    /// An OAuthV2 policy answered 2xx: a token (or a refreshed one) was issued.
    Issued,
    /// An OAuthV2 policy refused the request with an RFC 6749 §5.2 error.
    Refused,
}

/// A summary of a finished exchange ([`Gateway::summary`]). Every string comes from the
/// deployed bundles or from the engine's fixed fault names, never from the request, so
/// the values make labels of bounded cardinality.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeSummary {
    /// `apiproxy.name`, when a proxy was selected.
    pub proxy: Option<String>,
    /// The conditional flow of the ProxyEndpoint that ran (`proxy.flow.name`).
    pub flow: Option<String>,
    /// The status of the response the flows produced, if any.
    pub status: Option<u16>,
    /// Who produced the response (`None` before the exchange began).
    pub answered_by: Option<Answerer>,
    /// `fault.name` of the fault the exchange ended with.
    pub fault: Option<String>,
    /// The policy that raised that fault.
    pub fault_policy: Option<String>,
    /// The error code of that fault (`steps.raisefault.RaiseFault`).
    pub fault_code: Option<String>,
    /// Where the fault arose: `policy`, `target` or `proxy`.
    pub fault_source: Option<String>,
    /// The flow that was running when it arose (`current.flow.name`, else the
    /// conditional flow of the ProxyEndpoint).
    pub fault_flow: Option<String>,
    /// The rate-limit policy (Quota, SpikeArrest, ConcurrentRatelimit) that rejected the
    /// request.
    pub rate_limited_by: Option<String>,
    /// Whether a token was issued or refused, for token requests.
    pub token: Option<TokenOutcome>,
    /// The name of the app whose access token or API key the request carried, once
    /// verified. Unlike the other fields its values grow with the apps registered: a
    /// metric label only by the operator's choice.
    pub app: Option<String>,
    /// The id of that app (unique, where names are unique per developer only).
    pub app_id: Option<String>,
}

impl ExchangeSummary {
    /// The error headers Apigee attaches to an error response for its debug sessions
    /// and access logs (`X-Apigee.fault-code`, `-source`, `-policy`, `-flow`), as the
    /// documented trace shows them. They are not sent to the client (Apigee's are not
    /// either); hosts put them in their logs. Empty when the exchange ended without a
    /// fault.
    pub fn fault_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.fault.is_none() {
            return out;
        }
        for (name, value) in [
            ("X-Apigee.fault-code", &self.fault_code),
            ("X-Apigee.fault-source", &self.fault_source),
            ("X-Apigee.fault-policy", &self.fault_policy),
            ("X-Apigee.fault-flow", &self.fault_flow),
        ] {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
        }
        out
    }
}

/// Fault names of a token endpoint refusing a request (RFC 6749 §5.2 as Apigee names them).
const TOKEN_REFUSALS: &[&str] = &[
    "InvalidClientIdentifier",
    "UnSupportedGrantType",
    "invalid_grant",
    "InvalidScope",
    "unauthorized_client",
    "invalid_request",
];

const RATE_LIMIT_TYPES: &[&str] = &["Quota", "SpikeArrest", "ConcurrentRatelimit"];

impl Gateway {
    /// What `ex` came to, once [`Step::Respond`](crate::Step::Respond) was returned.
    pub fn summary(&self, ex: &Exchange) -> ExchangeSummary {
        let inner = &self.inner;
        let policy_of = |bundle: usize, policy: usize| {
            inner
                .bundles
                .get(bundle)
                .and_then(|b| b.policies.get(policy))
        };
        let proxy = inner
            .bundles
            .get(ex.bundle)
            .filter(|_| ex.stage != crate::exchange::Stage::Start)
            .and_then(|_| self.variable(ex, "apiproxy.name"))
            .filter(|p| !p.is_empty());
        let flow = self
            .variable(ex, "proxy.flow.name")
            .filter(|f| !f.is_empty());
        let status = ex.response.as_ref().map(|m| m.status.as_u16());
        let verified_app = ex
            .state
            .verified_token()
            .map(|v| &v.client().app)
            .or_else(|| ex.state.last_api_key().map(|k| &k.client().app));
        let mut summary = ExchangeSummary {
            proxy,
            flow,
            status,
            app: verified_app.map(|a| a.name.clone()),
            app_id: verified_app.map(|a| a.id.clone()),
            ..ExchangeSummary::default()
        };
        match ex.fault.as_deref() {
            Some(fault) => {
                summary.fault = Some(fault.name.to_string());
                summary.fault_code = Some(fault.code.to_string());
                summary.fault_source = Some(
                    if fault.policy.is_some() && fault.source == "proxy" {
                        "policy"
                    } else {
                        fault.source
                    }
                    .to_owned(),
                );
                summary.fault_flow = self
                    .variable(ex, "current.flow.name")
                    .filter(|f| !f.is_empty())
                    .or_else(|| summary.flow.clone());
                summary.answered_by = Some(match fault.source {
                    "policy" => Answerer::Policy,
                    "target" => Answerer::Target,
                    _ if fault.policy.is_some() => Answerer::Policy,
                    _ => Answerer::Gateway,
                });
                if let Some((b, p)) = fault.policy
                    && let Some(policy) = policy_of(b, p)
                {
                    summary.fault_policy = Some(policy.name().to_owned());
                    let type_name = policy.type_name();
                    if RATE_LIMIT_TYPES.contains(&type_name) && fault.name.ends_with("Violation") {
                        summary.rate_limited_by = Some(policy.name().to_owned());
                    }
                    if type_name == "OAuthV2" && TOKEN_REFUSALS.contains(&fault.name.as_ref()) {
                        summary.token = Some(TokenOutcome::Refused);
                    }
                }
            }
            None => {
                summary.answered_by = Some(if ex.target_answered {
                    Answerer::Target
                } else if summary.proxy.is_some() {
                    Answerer::Policy
                } else {
                    Answerer::Gateway
                });
                // A token endpoint that answered sets
                // `oauthv2accesstoken.{policy}.access_token`.
                if status.is_some_and(|s| (200..300).contains(&s))
                    && ex.vars.keys().any(|k| {
                        k.starts_with("oauthv2accesstoken.") && k.ends_with(".access_token")
                    })
                {
                    summary.token = Some(TokenOutcome::Issued);
                }
            }
        }
        summary
    }

    /// Seconds a client should wait before retrying a request that a rate limit
    /// rejected (a `Retry-After` value, RFC 9110 §10.2.3): until the Quota's window
    /// ends, one second for SpikeArrest and ConcurrentRatelimit. `None` for any other
    /// ending.
    pub fn retry_after(&self, ex: &Exchange) -> Option<u64> {
        let fault = ex.fault.as_deref()?;
        if !fault.name.ends_with("Violation") {
            return None;
        }
        let (b, p) = fault.policy?;
        let policy = self.inner.bundles.get(b)?.policies.get(p)?;
        match policy.type_name() {
            "Quota" => {
                let expiry_ms: u64 = self
                    .variable(ex, &format!("ratelimit.{}.expiry.time", policy.name()))?
                    .trim()
                    .parse()
                    .ok()?;
                let now_ms = ex
                    .now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                Some(expiry_ms.saturating_sub(now_ms).div_ceil(1000).max(1))
            }
            "SpikeArrest" | "ConcurrentRatelimit" => Some(1),
            _ => None,
        }
    }
}
