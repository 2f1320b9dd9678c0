//! Flow variables by name: what each name means ([`resolve_name`], once, at build time
//! where possible) and the text form of a value. The engine reads and writes the slots;
//! the variables of a policy type (`ratelimit.{policy}.*`, the verified token's…) are
//! declared by its module.

use std::collections::HashMap;
use std::fmt::Write as _;

use http::HeaderName;
use preflow_condition::Value;

use crate::policies::security::credentials::{CredField, cred_field};
use crate::policies::traffic::QuotaField;
use crate::runtime::{ExchangeState, PolicyRef};

/// Which message a `request.*`, `response.*`, `message.*` or `error.*` name reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `request.*`.
    Request,
    /// `response.*`.
    Response,
    /// `message.*`: the request on the request side, else the response.
    Message,
    /// `error.*`: the error response while a fault is handled.
    Error,
}

/// A part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `verb`.
    Verb,
    /// `uri`: path and query as received.
    Uri,
    /// `path`.
    Path,
    /// `querystring`.
    QueryString,
    /// `content`.
    Content,
    /// `version`.
    Version,
    /// `header.{name}`: the first value.
    Header(HeaderName),
    /// `header.{name}.values`.
    HeaderValues(HeaderName),
    /// `header.{name}.values.count`.
    HeaderValuesCount(HeaderName),
    /// `headers.count`.
    HeadersCount,
    /// `queryparam.{name}`.
    QueryParam(Box<str>),
    /// `queryparam.{name}.values.count`.
    QueryParamValuesCount(Box<str>),
    /// `queryparams.count`.
    QueryParamsCount,
    /// `formparam.{name}`.
    FormParam(Box<str>),
    /// `formparams.count`.
    FormParamsCount,
    /// `status.code`.
    StatusCode,
    /// `reason.phrase`.
    ReasonPhrase,
}

/// A part of `system.time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    /// The whole text.
    Text,
    /// `year`.
    Year,
    /// `month` (1-12).
    Month,
    /// `day` of the month.
    Day,
    /// `dayofweek` (Sunday 1 to Saturday 7, as Java's `Calendar`).
    DayOfWeek,
    /// `hour` (0-23).
    Hour,
    /// `minute`.
    Minute,
    /// `second`.
    Second,
    /// `millisecond`.
    Millisecond,
}

impl TimePart {
    /// The part of the time `millis` (since the epoch, UTC) as a number; the text for
    /// [`TimePart::Text`] is [`system_time_text`].
    pub fn number(self, millis: i64) -> Option<i32> {
        use chrono::{Datelike as _, Timelike as _};
        let t = chrono::DateTime::from_timestamp_millis(millis)?;
        let n = match self {
            TimePart::Text => return None,
            TimePart::Year => t.year(),
            TimePart::Month => i32::try_from(t.month()).ok()?,
            TimePart::Day => i32::try_from(t.day()).ok()?,
            TimePart::DayOfWeek => i32::try_from(t.weekday().number_from_sunday()).ok()?,
            TimePart::Hour => i32::try_from(t.hour()).ok()?,
            TimePart::Minute => i32::try_from(t.minute()).ok()?,
            TimePart::Second => i32::try_from(t.second()).ok()?,
            TimePart::Millisecond => i32::try_from(t.timestamp_subsec_millis()).ok()?,
        };
        Some(n)
    }
}

/// `system.time` for `millis` since the epoch: `Wed, 21 Aug 2013 19:16:47 UTC`.
pub fn system_time_text(millis: i64) -> String {
    crate::template::format_time("EEE, d MMM yyyy HH:mm:ss z", millis).unwrap_or_default()
}

/// A resolved variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A part of a message.
    Msg(Which, Field),
    /// `proxy.basepath`.
    ProxyBasePath,
    /// `virtualhost.name`: the virtual host the request arrived on.
    VirtualHostName,
    /// `proxy.pathsuffix`.
    ProxyPathSuffix,
    /// `apiproxy.name`.
    ProxyName,
    /// `proxy.name`.
    ProxyEndpointName,
    /// `client.ip`.
    ClientIp,
    /// `client.port`.
    ClientPort,
    /// `client.scheme`.
    ClientScheme,
    /// `route.name`.
    RouteName,
    /// `route.target`.
    RouteTarget,
    /// `target.name`.
    TargetName,
    /// `target.url`.
    TargetUrl,
    /// `current.flow.name`.
    CurrentFlowName,
    /// `proxy.flow.name`.
    ProxyFlowName,
    /// `target.flow.name`.
    TargetFlowName,
    /// `environment.name`.
    EnvironmentName,
    /// `organization.name`.
    OrganizationName,
    /// `apiproxy.revision`.
    ApiProxyRevision,
    /// `messageid`.
    MessageId,
    /// `system.timestamp`.
    SystemTimestamp,
    /// `system.time` (`Wed, 21 Aug 2013 19:16:47 UTC`) and its parts.
    SystemTime(TimePart),
    /// `system.uuid`: this gateway instance's UUID (also `router.uuid`).
    SystemUuid,
    /// `access_token`: the token VerifyAccessToken verified. Read from the request's
    /// `Authorization: Bearer` header when it came from there, so verifying copies nothing.
    AccessToken,
    /// `system.time.zone`, `system.pod.name`, `system.region.name`: fixed texts.
    SystemText(&'static str),
    /// `fault.name`.
    FaultName,
    /// `error.message`.
    ErrorMessage,
    /// `error.state`.
    ErrorState,
    /// `is.error`.
    IsError,
    /// Unprefixed variables of the last VerifyAccessToken.
    Token(CredField),
    /// `verifyapikey.{policy}.*`.
    ApiKey(PolicyRef, CredField),
    /// `ratelimit.{policy}.*` of a Quota.
    Quota(PolicyRef, QuotaField),
    /// `{prefix}.{policy}.failed`.
    Failed(PolicyRef),
    /// Anything else: the exchange's own variables, by name.
    Custom(Box<str>),
}

fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()
}

fn message_field(rest: &str) -> Option<Field> {
    Some(match rest {
        "verb" => Field::Verb,
        "uri" => Field::Uri,
        "path" => Field::Path,
        "querystring" => Field::QueryString,
        "content" => Field::Content,
        "version" => Field::Version,
        "headers.count" => Field::HeadersCount,
        "queryparams.count" => Field::QueryParamsCount,
        "formparams.count" => Field::FormParamsCount,
        "status.code" | "status" => Field::StatusCode,
        "reason.phrase" => Field::ReasonPhrase,
        other => {
            if let Some(h) = other.strip_prefix("header.") {
                if let Some(n) = h.strip_suffix(".values.count") {
                    Field::HeaderValuesCount(header_name(n)?)
                } else if let Some(n) = h.strip_suffix(".values") {
                    Field::HeaderValues(header_name(n)?)
                } else {
                    Field::Header(header_name(h)?)
                }
            } else if let Some(q) = other.strip_prefix("queryparam.") {
                if let Some(n) = q.strip_suffix(".values.count") {
                    Field::QueryParamValuesCount(n.into())
                } else {
                    Field::QueryParam(q.into())
                }
            } else if let Some(f) = other.strip_prefix("formparam.") {
                Field::FormParam(f.into())
            } else {
                return None;
            }
        }
    })
}

/// Resolves `name` for the policies of `bundle`.
pub fn resolve_name(name: &str, bundle: usize, policies: &HashMap<String, usize>) -> Slot {
    let simple = match name {
        "proxy.basepath" => Some(Slot::ProxyBasePath),
        "virtualhost.name" => Some(Slot::VirtualHostName),
        "proxy.pathsuffix" => Some(Slot::ProxyPathSuffix),
        "proxy.name" => Some(Slot::ProxyEndpointName),
        "apiproxy.name" => Some(Slot::ProxyName),
        "apiproxy.revision" => Some(Slot::ApiProxyRevision),
        "client.ip" | "proxy.client.ip" | "client.host" => Some(Slot::ClientIp),
        "client.port" => Some(Slot::ClientPort),
        "client.scheme" => Some(Slot::ClientScheme),
        "route.name" => Some(Slot::RouteName),
        "route.target" => Some(Slot::RouteTarget),
        "target.name" => Some(Slot::TargetName),
        "target.url" | "request.url" => Some(Slot::TargetUrl),
        "current.flow.name" => Some(Slot::CurrentFlowName),
        "proxy.flow.name" => Some(Slot::ProxyFlowName),
        "target.flow.name" => Some(Slot::TargetFlowName),
        "environment.name" => Some(Slot::EnvironmentName),
        "organization.name" => Some(Slot::OrganizationName),
        "messageid" => Some(Slot::MessageId),
        "system.timestamp" => Some(Slot::SystemTimestamp),
        "system.time" => Some(Slot::SystemTime(TimePart::Text)),
        "system.time.year" => Some(Slot::SystemTime(TimePart::Year)),
        "system.time.month" => Some(Slot::SystemTime(TimePart::Month)),
        "system.time.day" => Some(Slot::SystemTime(TimePart::Day)),
        "system.time.dayofweek" => Some(Slot::SystemTime(TimePart::DayOfWeek)),
        "system.time.hour" => Some(Slot::SystemTime(TimePart::Hour)),
        "system.time.minute" => Some(Slot::SystemTime(TimePart::Minute)),
        "system.time.second" => Some(Slot::SystemTime(TimePart::Second)),
        "system.time.millisecond" => Some(Slot::SystemTime(TimePart::Millisecond)),
        "system.time.zone" => Some(Slot::SystemText("UTC")),
        "system.uuid" | "router.uuid" => Some(Slot::SystemUuid),
        "access_token" => Some(Slot::AccessToken),
        "system.pod.name" => Some(Slot::SystemText("preflow")),
        "system.region.name" => Some(Slot::SystemText("local")),
        "fault.name" => Some(Slot::FaultName),
        "error.message" => Some(Slot::ErrorMessage),
        "error.state" => Some(Slot::ErrorState),
        "is.error" => Some(Slot::IsError),
        _ => None,
    };
    if let Some(s) = simple {
        return s;
    }
    for (prefix, which) in [
        ("request.", Which::Request),
        ("response.", Which::Response),
        ("message.", Which::Message),
        ("error.", Which::Error),
    ] {
        if let Some(f) = name.strip_prefix(prefix).and_then(message_field) {
            return Slot::Msg(which, f);
        }
    }
    // {prefix}.{policy}.{rest}: policy names may contain dots, so try every split.
    for prefix in crate::registry::VARIABLE_PREFIXES {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        for (at, _) in rest.match_indices('.') {
            let (Some(policy), Some(field)) = (rest.get(..at), rest.get(at + 1..)) else {
                continue;
            };
            let Some(&p) = policies.get(policy) else {
                continue;
            };
            let at = PolicyRef { bundle, policy: p };
            if field == "failed" {
                return Slot::Failed(at);
            }
            if let Some(slot) = crate::registry::policy_variable(prefix, at, field) {
                return slot;
            }
        }
    }
    if let Some(f) = cred_field(name) {
        // `app.name`, `client_id`, `apiproduct.*`… set by VerifyAccessToken. `scope`,
        // `status` and the like only as exact names.
        return Slot::Token(f);
    }
    Slot::Custom(name.into())
}

/// Appends the text form of `v` to `out`; false for null.
pub fn write_value(v: Value<'_>, out: &mut String) -> bool {
    match v {
        Value::Null => return false,
        Value::String(s) => out.push_str(s),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Long(l) => {
            let _ = write!(out, "{l}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Double(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Boolean(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Object => return false,
    }
    true
}

/// Whether variable `name` reads the request body (its content or form parameters), so
/// that the body must be read before it is evaluated. The same answer as
/// [`Slot::reads_request_body`] for the name's slot: body-reading names are not
/// policy-prefixed, so no bundle is needed to resolve them.
pub fn reads_request_body(name: &str) -> bool {
    resolve_name(name.trim(), 0, &HashMap::new()).reads_request_body()
}

/// Whether reading variable `name` may read the request's headers.
pub fn reads_request_headers(name: &str) -> bool {
    resolve_name(name.trim(), 0, &HashMap::new()).reads_request_headers()
}

impl Slot {
    /// Whether reading this slot needs the request body.
    pub fn reads_request_body(&self) -> bool {
        matches!(
            self,
            Slot::Msg(
                Which::Request | Which::Message,
                Field::Content | Field::FormParam(_) | Field::FormParamsCount
            )
        )
    }

    /// Whether reading this slot may read the request's headers: a header of the request
    /// (or of `message` on the request side), its form parameters (whose parsing depends
    /// on `Content-Type`), the token taken from `Authorization`, or an exchange variable
    /// named after the request message.
    pub fn reads_request_headers(&self) -> bool {
        match self {
            Slot::Msg(Which::Request | Which::Message, f) => matches!(
                f,
                Field::Header(_)
                    | Field::HeaderValues(_)
                    | Field::HeaderValuesCount(_)
                    | Field::HeadersCount
                    | Field::FormParam(_)
                    | Field::FormParamsCount
            ),
            Slot::AccessToken => true,
            Slot::Custom(name) => {
                name.as_ref() == "request"
                    || name.as_ref() == "message"
                    || name.starts_with("request.")
                    || name.starts_with("message.")
            }
            _ => false,
        }
    }
}

/// The value of a slot that a policy's results answer: the verified token, a verified API
/// key or a quota decision. `None` for the other slots, which the engine reads.
pub fn policy_value<'a>(slot: &Slot, state: &'a ExchangeState) -> Option<Value<'a>> {
    Some(match slot {
        Slot::Token(f) => state.verified_token().map_or(Value::Null, |t| {
            crate::policies::security::credentials::token_value(f, t)
        }),
        Slot::ApiKey(at, f) => state.api_key(*at).map_or(Value::Null, |k| {
            crate::policies::security::credentials::key_value(f, k)
        }),
        Slot::Quota(at, f) => state.quota(*at).map_or(Value::Null, |(d, id)| {
            crate::policies::traffic::quota_value(*f, d, id)
        }),
        _ => return None,
    })
}
