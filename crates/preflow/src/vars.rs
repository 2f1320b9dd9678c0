//! Flow variables: names resolved once at build time into slots, read per request
//! without allocating.

use std::collections::HashMap;
use std::fmt::Write as _;

use http::HeaderName;
use preflow_condition::{OwnedValue, Resolve, Value, Variables};

use crate::exchange::{Exchange, Message};
use crate::gateway::Inner;

/// Which message a `request.*`, `response.*`, `message.*` or `error.*` name reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Request,
    Response,
    Message,
    Error,
}

/// A part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Verb,
    Uri,
    Path,
    QueryString,
    Content,
    Version,
    Header(HeaderName),
    HeaderValues(HeaderName),
    HeaderValuesCount(HeaderName),
    HeadersCount,
    QueryParam(Box<str>),
    QueryParamValuesCount(Box<str>),
    QueryParamsCount,
    FormParam(Box<str>),
    FormParamsCount,
    StatusCode,
    ReasonPhrase,
}

/// What a verified token or API key exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredField {
    ClientId,
    GrantType,
    TokenType,
    IssuedAt,
    ExpiresIn,
    Status,
    Scope,
    AppName,
    AppId,
    AppStatus,
    DeveloperId,
    DeveloperEmail,
    DeveloperStatus,
    ProductName,
    QuotaLimit,
    QuotaInterval,
    QuotaTimeUnit,
    AppAttr(Box<str>),
    ProductAttr(Box<str>),
    TokenAttr(Box<str>),
}

/// The Quota variables `ratelimit.{policy}.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaField {
    Allowed,
    Used,
    Available,
    Exceed,
    TotalExceed,
    ExpiryTime,
    Identifier,
}

/// A resolved variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    Msg(Which, Field),
    ProxyBasePath,
    ProxyPathSuffix,
    ProxyName,
    ProxyEndpointName,
    ClientIp,
    ClientPort,
    ClientScheme,
    RouteName,
    RouteTarget,
    TargetName,
    TargetUrl,
    CurrentFlowName,
    ProxyFlowName,
    TargetFlowName,
    EnvironmentName,
    OrganizationName,
    ApiProxyRevision,
    MessageId,
    SystemTimestamp,
    FaultName,
    ErrorMessage,
    ErrorState,
    IsError,
    /// Unprefixed variables of the last VerifyAccessToken.
    Token(CredField),
    /// `verifyapikey.{policy}.*`: (bundle, policy, field).
    ApiKey(usize, usize, CredField),
    /// `ratelimit.{policy}.*` of a Quota.
    Quota(usize, usize, QuotaField),
    /// `{prefix}.{policy}.failed`.
    Failed(usize, usize),
    /// Anything else: the exchange's own variables, by name.
    Custom(Box<str>),
}

/// Resolves names for one bundle (its policy names give meaning to prefixed names).
pub(crate) struct Resolver<'a> {
    pub bundle: usize,
    pub policies: &'a HashMap<String, usize>,
}

fn cred_field(rest: &str) -> Option<CredField> {
    Some(match rest {
        "client_id" => CredField::ClientId,
        "grant_type" => CredField::GrantType,
        "token_type" => CredField::TokenType,
        "issued_at" => CredField::IssuedAt,
        "expires_in" => CredField::ExpiresIn,
        "status" => CredField::Status,
        "scope" => CredField::Scope,
        "developer.app.name" | "app.name" => CredField::AppName,
        "developer.app.id" | "app.id" => CredField::AppId,
        "app.status" => CredField::AppStatus,
        "developer.id" => CredField::DeveloperId,
        "developer.email" => CredField::DeveloperEmail,
        "developer.status" => CredField::DeveloperStatus,
        "apiproduct.name" => CredField::ProductName,
        "apiproduct.developer.quota.limit" => CredField::QuotaLimit,
        "apiproduct.developer.quota.interval" => CredField::QuotaInterval,
        "apiproduct.developer.quota.timeunit" => CredField::QuotaTimeUnit,
        other => {
            if let Some(a) = other.strip_prefix("app.") {
                CredField::AppAttr(a.into())
            } else if let Some(a) = other.strip_prefix("apiproduct.") {
                CredField::ProductAttr(a.into())
            } else if let Some(a) = other.strip_prefix("accesstoken.") {
                CredField::TokenAttr(a.into())
            } else {
                return None;
            }
        }
    })
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
pub(crate) fn resolve_name(name: &str, bundle: usize, policies: &HashMap<String, usize>) -> Slot {
    let simple = match name {
        "proxy.basepath" => Some(Slot::ProxyBasePath),
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
    for (prefix, kind) in [
        ("ratelimit.", 0u8),
        ("verifyapikey.", 1),
        ("oauthV2.", 2),
        ("oauthv2accesstoken.", 3),
        ("assignmessage.", 2),
        ("raisefault.", 2),
        ("extractvariables.", 2),
        ("BasicAuthentication.", 2),
        ("acl.", 2),
        ("keyvaluemap.", 2),
        ("flowcallout.", 2),
    ] {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        for (at, _) in rest.match_indices('.') {
            let (Some(policy), Some(field)) = (rest.get(..at), rest.get(at + 1..)) else {
                continue;
            };
            let Some(&p) = policies.get(policy) else {
                continue;
            };
            if field == "failed" {
                return Slot::Failed(bundle, p);
            }
            match kind {
                0 => {
                    let q = match field {
                        "allowed.count" => Some(QuotaField::Allowed),
                        "used.count" => Some(QuotaField::Used),
                        "available.count" => Some(QuotaField::Available),
                        "exceed.count" => Some(QuotaField::Exceed),
                        "total.exceed.count" => Some(QuotaField::TotalExceed),
                        "expiry.time" => Some(QuotaField::ExpiryTime),
                        "identifier" => Some(QuotaField::Identifier),
                        _ => None,
                    };
                    if let Some(q) = q {
                        return Slot::Quota(bundle, p, q);
                    }
                }
                1 => {
                    if let Some(f) = cred_field(field) {
                        return Slot::ApiKey(bundle, p, f);
                    }
                }
                _ => {}
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

impl Resolve for Resolver<'_> {
    type Handle = Slot;
    fn resolve(&self, name: &str) -> Slot {
        resolve_name(name, self.bundle, self.policies)
    }
}

/// The variables of one exchange, as conditions and templates read them.
pub(crate) struct View<'a> {
    pub g: &'a Inner,
    pub ex: &'a Exchange,
}

fn first_element(v: &str) -> &str {
    v.split(',').next().unwrap_or(v).trim()
}

fn opt_str(s: Option<&str>) -> Value<'_> {
    s.map_or(Value::Null, Value::String)
}

impl<'a> View<'a> {
    fn message(&self, which: Which) -> Option<&'a Message> {
        let ex = self.ex;
        match which {
            Which::Request => Some(&ex.request),
            Which::Response => ex.response.as_ref(),
            Which::Error => ex.fault.as_ref().and(ex.response.as_ref()),
            Which::Message => {
                if ex.stage.is_response_side() {
                    ex.response.as_ref()
                } else {
                    Some(&ex.request)
                }
            }
        }
    }

    fn msg_field(&self, which: Which, field: &Field) -> Value<'a> {
        let Some(m) = self.message(which) else {
            return Value::Null;
        };
        let is_request = matches!(which, Which::Request)
            || (matches!(which, Which::Message) && !self.ex.stage.is_response_side());
        match field {
            Field::Verb => {
                if is_request {
                    Value::String(m.method.as_str())
                } else {
                    Value::Null
                }
            }
            Field::Uri => {
                if is_request {
                    Value::String(
                        self.ex
                            .original_uri
                            .path_and_query()
                            .map_or("/", |p| p.as_str()),
                    )
                } else {
                    Value::Null
                }
            }
            Field::Path => {
                if is_request {
                    Value::String(&m.path)
                } else {
                    Value::Null
                }
            }
            Field::QueryString => opt_str(m.query.as_deref()),
            Field::Content => std::str::from_utf8(&m.body).map_or(Value::Object, Value::String),
            Field::Version => Value::String(match m.version {
                http::Version::HTTP_09 => "0.9",
                http::Version::HTTP_10 => "1.0",
                http::Version::HTTP_2 => "2.0",
                http::Version::HTTP_3 => "3.0",
                _ => "1.1",
            }),
            Field::Header(h) => m
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map_or(Value::Null, |v| Value::String(first_element(v))),
            Field::HeaderValues(h) => {
                if m.headers.contains_key(h) {
                    Value::Object
                } else {
                    Value::Null
                }
            }
            Field::HeaderValuesCount(h) => {
                let n: usize = m
                    .headers
                    .get_all(h)
                    .iter()
                    .map(|v| v.as_bytes().split(|&b| b == b',').count())
                    .sum();
                Value::Integer(i32::try_from(n).unwrap_or(i32::MAX))
            }
            Field::HeadersCount => {
                Value::Integer(i32::try_from(m.headers.keys_len()).unwrap_or(i32::MAX))
            }
            Field::QueryParam(name) => {
                if !is_request {
                    return Value::Null;
                }
                opt_str(
                    self.ex
                        .query_params()
                        .iter()
                        .find(|(k, _)| k.as_str() == &**name)
                        .map(|(_, v)| v.as_str()),
                )
            }
            Field::QueryParamValuesCount(name) => Value::Integer(
                i32::try_from(
                    self.ex
                        .query_params()
                        .iter()
                        .filter(|(k, _)| k.as_str() == &**name)
                        .count(),
                )
                .unwrap_or(i32::MAX),
            ),
            Field::QueryParamsCount => {
                Value::Integer(i32::try_from(self.ex.query_params().len()).unwrap_or(i32::MAX))
            }
            Field::FormParam(name) => {
                if !is_request {
                    return Value::Null;
                }
                opt_str(
                    self.ex
                        .form_params()
                        .iter()
                        .find(|(k, _)| k.as_str() == &**name)
                        .map(|(_, v)| v.as_str()),
                )
            }
            Field::FormParamsCount => {
                Value::Integer(i32::try_from(self.ex.form_params().len()).unwrap_or(i32::MAX))
            }
            Field::StatusCode => {
                if is_request {
                    Value::Null
                } else {
                    Value::Integer(i32::from(m.status.as_u16()))
                }
            }
            Field::ReasonPhrase => {
                if is_request {
                    Value::Null
                } else {
                    opt_str(m.reason.as_deref().or(m.status.canonical_reason()))
                }
            }
        }
    }

    fn cred(&self, field: &CredField, v: Cred<'a>) -> Value<'a> {
        let (client_id, app, dev, product) = match v {
            Cred::Token(t) => (
                &*t.token.client_id,
                &*t.client.app,
                &*t.client.developer,
                &*t.product,
            ),
            Cred::Key(k) => (
                k.client.credential.key.as_str(),
                &*k.client.app,
                &*k.client.developer,
                &*k.product,
            ),
        };
        let token = match v {
            Cred::Token(t) => Some(t),
            Cred::Key(_) => None,
        };
        match field {
            CredField::ClientId => Value::String(client_id),
            CredField::GrantType => {
                token.map_or(Value::Null, |t| Value::String(t.token.grant_type.as_str()))
            }
            CredField::TokenType => token.map_or(Value::Null, |_| Value::String("BearerToken")),
            CredField::IssuedAt => token.map_or(Value::Null, |t| {
                Value::Long(i64::try_from(t.token.issued_at.saturating_mul(1000)).unwrap_or(0))
            }),
            CredField::ExpiresIn => token.map_or(Value::Null, |t| {
                Value::Long(
                    t.expires_in
                        .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX)),
                )
            }),
            CredField::Status => Value::String("approved"),
            CredField::Scope => token.map_or(Value::Null, |t| Value::String(&t.token.scope)),
            CredField::AppName => Value::String(&app.name),
            CredField::AppId => Value::String(&app.id),
            CredField::AppStatus => Value::String(app.status.as_str()),
            CredField::DeveloperId | CredField::DeveloperEmail => Value::String(&dev.email),
            CredField::DeveloperStatus => Value::String(match dev.status {
                preflow_oauth::DeveloperStatus::Active => "active",
                preflow_oauth::DeveloperStatus::Inactive => "inactive",
            }),
            CredField::ProductName => Value::String(&product.name),
            CredField::QuotaLimit => product.quota.as_ref().map_or(Value::Null, |q| {
                Value::Long(i64::try_from(q.limit).unwrap_or(i64::MAX))
            }),
            CredField::QuotaInterval => product.quota.as_ref().map_or(Value::Null, |q| {
                Value::Long(i64::try_from(q.interval).unwrap_or(i64::MAX))
            }),
            CredField::QuotaTimeUnit => product
                .quota
                .as_ref()
                .map_or(Value::Null, |q| Value::String(q.time_unit.as_str())),
            CredField::AppAttr(a) => opt_str(
                app.attributes
                    .iter()
                    .find(|(k, _)| k.as_str() == &**a)
                    .map(|(_, v)| v.as_str()),
            ),
            CredField::ProductAttr(a) => opt_str(
                product
                    .attributes
                    .iter()
                    .find(|(k, _)| k.as_str() == &**a)
                    .map(|(_, v)| v.as_str()),
            ),
            CredField::TokenAttr(a) => token.map_or(Value::Null, |t| {
                opt_str(
                    t.token
                        .attributes
                        .iter()
                        .find(|(k, _)| k.as_str() == &**a)
                        .map(|(_, v)| v.as_str()),
                )
            }),
        }
    }

    /// The value of `slot`.
    pub fn value(&self, slot: &Slot) -> Value<'a> {
        let ex = self.ex;
        let g = self.g;
        match slot {
            Slot::Msg(which, field) => self.msg_field(*which, field),
            Slot::ProxyBasePath => g
                .proxy_endpoint(ex)
                .map_or(Value::Null, |p| Value::String(&p.base_path)),
            Slot::ProxyPathSuffix => Value::String(ex.path_suffix()),
            Slot::ProxyName => g
                .bundles
                .get(ex.bundle)
                .map_or(Value::Null, |b| Value::String(&b.name)),
            Slot::ProxyEndpointName => g
                .proxy_endpoint(ex)
                .map_or(Value::Null, |p| Value::String(&p.name)),
            Slot::ApiProxyRevision => g
                .bundles
                .get(ex.bundle)
                .map_or(Value::Null, |b| Value::String(&b.revision)),
            Slot::ClientIp => Value::String(ex.client_ip()),
            Slot::ClientPort => Value::Integer(i32::from(ex.client.addr.port())),
            Slot::ClientScheme => Value::String(ex.client.scheme.as_str()),
            Slot::RouteName => g
                .proxy_endpoint(ex)
                .and_then(|p| ex.route.and_then(|r| p.routes.get(r)))
                .map_or(Value::Null, |r| Value::String(&r.name)),
            Slot::RouteTarget | Slot::TargetName => g
                .target_endpoint(ex)
                .map_or(Value::Null, |t| Value::String(&t.name)),
            Slot::TargetUrl => opt_str(crate::engine::target_url(g, ex)),
            Slot::CurrentFlowName => match (&ex.current_flow_name, ex.current_flow, ex.stage) {
                (Some(n), _, _) => Value::String(n),
                (None, "", crate::engine::Stage::Run(seg, _)) => {
                    crate::engine::flows_of(g, ex, seg)
                        .map_or(Value::Null, |(f, _)| Value::String(&f.name))
                }
                (None, "", _) => Value::Null,
                (None, name, _) => Value::String(name),
            },
            Slot::ProxyFlowName => g
                .proxy_endpoint(ex)
                .and_then(|p| ex.proxy_flow.and_then(|f| p.flows.get(f)))
                .map_or(Value::Null, |f| Value::String(&f.name)),
            Slot::TargetFlowName => g
                .target_endpoint(ex)
                .and_then(|t| ex.target_flow.and_then(|f| t.flows.get(f)))
                .map_or(Value::Null, |f| Value::String(&f.name)),
            Slot::EnvironmentName => Value::String(&g.settings.environment),
            Slot::OrganizationName => Value::String(&g.settings.organization),
            Slot::MessageId => Value::Long(i64::try_from(ex.message_id).unwrap_or(0)),
            Slot::SystemTimestamp => {
                Value::Long(i64::try_from(ex.now_ns / 1_000_000).unwrap_or(i64::MAX))
            }
            Slot::FaultName => ex
                .fault
                .as_ref()
                .map_or(Value::Null, |f| Value::String(&f.name)),
            Slot::ErrorMessage => ex
                .fault
                .as_ref()
                .map_or(Value::Null, |f| Value::String(&f.faultstring)),
            Slot::ErrorState => ex
                .fault
                .as_ref()
                .map_or(Value::Null, |f| Value::String(f.state)),
            Slot::IsError => Value::Boolean(ex.fault.is_some()),
            Slot::Token(f) => ex
                .verified
                .as_ref()
                .map_or(Value::Null, |t| self.cred(f, Cred::Token(t))),
            Slot::ApiKey(b, p, f) => ex
                .api_keys
                .iter()
                .rev()
                .find(|(kb, kp, _)| kb == b && kp == p)
                .map_or(Value::Null, |(_, _, k)| self.cred(f, Cred::Key(k))),
            Slot::Quota(b, p, f) => {
                let Some((_, _, d, id)) = ex
                    .quotas
                    .iter()
                    .rev()
                    .find(|(qb, qp, _, _)| qb == b && qp == p)
                else {
                    return Value::Null;
                };
                let n = |v: u64| Value::Long(i64::try_from(v).unwrap_or(i64::MAX));
                match f {
                    QuotaField::Allowed => n(d.allowed_count),
                    QuotaField::Used => n(d.used_count),
                    QuotaField::Available => n(d.available_count),
                    QuotaField::Exceed => n(d.exceed_count),
                    QuotaField::TotalExceed => n(d.total_exceed_count),
                    QuotaField::ExpiryTime => {
                        d.expires_at.map_or(Value::Null, |t| n(t.as_millis()))
                    }
                    QuotaField::Identifier => Value::String(id),
                }
            }
            Slot::Failed(b, p) => Value::Boolean(ex.failed.contains(&(*b, *p))),
            Slot::Custom(name) => ex
                .vars
                .get(&**name)
                .map_or(Value::Null, OwnedValue::as_value),
        }
    }
}

#[derive(Clone, Copy)]
enum Cred<'a> {
    Token(&'a preflow_oauth::VerifiedToken),
    Key(&'a preflow_oauth::VerifiedApiKey),
}

impl Variables for View<'_> {
    type Handle = Slot;
    fn get(&self, handle: &Slot) -> Value<'_> {
        self.value(handle)
    }
}

/// Appends the text form of `v` to `out`; false for null.
pub(crate) fn write_value(v: Value<'_>, out: &mut String) -> bool {
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

impl Exchange {
    pub(crate) fn path_suffix(&self) -> &str {
        self.request.path.get(self.base_len..).unwrap_or("")
    }

    pub(crate) fn client_ip(&self) -> &str {
        self.client_ip_cache
            .get_or_init(|| self.client.addr.ip().to_string())
    }

    pub(crate) fn query_params(&self) -> &[(String, String)] {
        self.query_cache.get_or_init(|| {
            self.request
                .query
                .as_deref()
                .map(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    pub(crate) fn form_params(&self) -> &[(String, String)] {
        self.form_cache.get_or_init(|| {
            let is_form = self
                .request
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| {
                    ct.split(';').next().is_some_and(|m| {
                        m.trim()
                            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                    })
                });
            if !is_form {
                return Vec::new();
            }
            form_urlencoded::parse(&self.request.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
    }

    pub(crate) fn invalidate_params(&mut self) {
        self.query_cache = std::sync::OnceLock::new();
        self.form_cache = std::sync::OnceLock::new();
    }
}
