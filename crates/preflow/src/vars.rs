//! Flow variables on an exchange: reading a resolved slot without allocating, and
//! writing a variable (message parts into the message, the rest by name). What names
//! mean is [`preflow_policy::vars`]'s.

use std::collections::HashMap;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use preflow_condition::{OwnedValue, Resolve, Value, Variables};
use preflow_policy::runtime::Message;
use preflow_policy::vars::{Field, Slot, Which, policy_value, resolve_name, write_value};

use crate::compiled::{Inner, flows_of, target_url};
use crate::exchange::{Exchange, Stage};

/// Resolves names for one bundle (its policy names give meaning to prefixed names).
pub(crate) struct Resolver<'a> {
    pub bundle: usize,
    pub policies: &'a HashMap<String, usize>,
    /// Set when a resolved name reads the request body.
    pub reads_body: std::cell::Cell<bool>,
    /// Set when a resolved name reads the response body (`response.content`…).
    pub reads_response_body: std::cell::Cell<bool>,
    /// Set when a resolved name may read the request's headers.
    pub reads_request_headers: std::cell::Cell<bool>,
}

impl Resolve for Resolver<'_> {
    type Handle = Slot;
    fn resolve(&self, name: &str) -> Slot {
        let slot = resolve_name(name, self.bundle, self.policies);
        if slot.reads_request_body() {
            self.reads_body.set(true);
        }
        if slot.reads_request_headers() {
            self.reads_request_headers.set(true);
        }
        if matches!(
            slot,
            Slot::Msg(
                preflow_policy::vars::Which::Response,
                preflow_policy::vars::Field::Content
                    | preflow_policy::vars::Field::FormParam(_)
                    | preflow_policy::vars::Field::FormParamsCount
            )
        ) {
            self.reads_response_body.set(true);
        }
        slot
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
                    Value::String(self.ex.req_path())
                } else {
                    Value::Null
                }
            }
            Field::QueryString => {
                if is_request {
                    opt_str(self.ex.req_query())
                } else {
                    opt_str(m.query.as_deref())
                }
            }
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
            Slot::VirtualHostName => ex
                .virtual_host
                .as_deref()
                .map_or(Value::Null, Value::String),
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
            Slot::TargetUrl => opt_str(target_url(g, ex)),
            Slot::CurrentFlowName => match (&ex.current_flow_name, ex.current_flow, ex.stage) {
                (Some(n), _, _) => Value::String(n),
                (None, "", Stage::Run(seg, _)) => {
                    flows_of(g, ex, seg).map_or(Value::Null, |(f, _)| Value::String(&f.name))
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
            Slot::EnvironmentName => Value::String(&g.env.settings.environment),
            Slot::OrganizationName => Value::String(&g.env.settings.organization),
            Slot::MessageId => Value::Long(i64::try_from(ex.message_id).unwrap_or(0)),
            Slot::SystemTimestamp => {
                Value::Long(i64::try_from(ex.now_ns / 1_000_000).unwrap_or(i64::MAX))
            }
            Slot::SystemTime(preflow_policy::vars::TimePart::Text) => {
                Value::String(ex.system_time_cache.get_or_init(|| {
                    preflow_policy::vars::system_time_text(
                        i64::try_from(ex.now_ns / 1_000_000).unwrap_or(0),
                    )
                }))
            }
            Slot::SystemTime(part) => part
                .number(i64::try_from(ex.now_ns / 1_000_000).unwrap_or(0))
                .map_or(Value::Null, Value::Integer),
            Slot::SystemUuid => Value::String(&g.env.instance_uuid),
            Slot::AccessToken => match ex.vars.get("access_token") {
                Some(v) => v.as_value(),
                None if ex.state.verified_token().is_some() => {
                    bearer_token(&ex.request.headers).map_or(Value::Null, Value::String)
                }
                None => Value::Null,
            },
            Slot::SystemText(t) => Value::String(t),
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
            // Null for a policy that never ran, as Apigee's flow variables are unset.
            Slot::Failed(at) if ex.failed.contains(at) => Value::Boolean(true),
            Slot::Failed(at) if ex.ran.contains(at) => Value::Boolean(false),
            Slot::Failed(_) => Value::Null,
            Slot::Custom(name) => ex
                .vars
                .get(&**name)
                .map_or(Value::Null, OwnedValue::as_value),
            // What a policy recorded (a verified credential, a rate-limit decision).
            other => policy_value(other, &ex.state).unwrap_or(Value::Null),
        }
    }
}

impl Variables for View<'_> {
    type Handle = Slot;
    fn get(&self, handle: &Slot) -> Value<'_> {
        self.value(handle)
    }
}

/// Sets variable `name`: message parts are written to the message, the rest is kept by
/// name.
pub(crate) fn set_variable(g: &Inner, ex: &mut Exchange, bundle: usize, name: &str, value: String) {
    let empty = HashMap::new();
    let index = g.bundles.get(bundle).map_or(&empty, |b| &b.policy_index);
    match resolve_name(name, bundle, index) {
        Slot::Msg(which, field) => {
            // Only a write to a message needs its lazily kept path and query.
            ex.materialize();
            let response_side = ex.stage.is_response_side();
            let m = match which {
                Which::Request => Some(&mut ex.request),
                Which::Message if !response_side => Some(&mut ex.request),
                _ => ex.response.as_mut(),
            };
            if let Some(m) = m {
                match field {
                    Field::Header(h) => {
                        if let Ok(v) = HeaderValue::from_str(&value) {
                            m.headers.insert(h, v);
                        }
                    }
                    Field::Content => m.body = Bytes::from(value),
                    Field::StatusCode => {
                        if let Some(s) = value
                            .trim()
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| StatusCode::from_u16(s).ok())
                        {
                            m.status = s;
                        }
                    }
                    Field::ReasonPhrase => m.reason = Some(value),
                    Field::Verb => {
                        if let Ok(v) = http::Method::from_bytes(value.as_bytes()) {
                            m.method = v;
                        }
                    }
                    Field::Path => m.path = value,
                    Field::QueryString => m.query = Some(value),
                    _ => {
                        ex.vars.insert(name.to_owned(), OwnedValue::String(value));
                        return;
                    }
                }
                ex.invalidate_params();
            }
        }
        Slot::TargetUrl => ex.target_url = Some(value),
        _ => {
            ex.vars.insert(name.to_owned(), OwnedValue::String(value));
        }
    }
}

/// Removes variable `name`: a header is removed from its message, a variable kept by
/// name is forgotten; other message parts cannot be removed and are left as they are.
pub(crate) fn remove_variable(g: &Inner, ex: &mut Exchange, bundle: usize, name: &str) {
    ex.materialize();
    let empty = HashMap::new();
    let index = g.bundles.get(bundle).map_or(&empty, |b| &b.policy_index);
    match resolve_name(name, bundle, index) {
        Slot::Msg(which, Field::Header(h)) => {
            let response_side = ex.stage.is_response_side();
            let m = match which {
                Which::Request => Some(&mut ex.request),
                Which::Message if !response_side => Some(&mut ex.request),
                _ => ex.response.as_mut(),
            };
            if let Some(m) = m {
                m.headers.remove(&h);
                ex.invalidate_params();
            }
        }
        Slot::Msg(..) => {
            ex.vars.remove(name);
        }
        Slot::TargetUrl => ex.target_url = None,
        _ => {
            ex.vars.remove(name);
        }
    }
}

/// The text of variable `name` in `ex`.
pub(crate) fn variable_text(g: &Inner, ex: &Exchange, name: &str) -> Option<String> {
    let empty = std::collections::HashMap::new();
    let index = g.bundles.get(ex.bundle).map_or(&empty, |b| &b.policy_index);
    let slot = resolve_name(name, ex.bundle, index);
    let mut out = String::new();
    write_value(View { g, ex }.value(&slot), &mut out).then_some(out)
}
impl Exchange {
    pub(crate) fn path_suffix(&self) -> &str {
        self.req_path().get(self.base_len..).unwrap_or("")
    }

    pub(crate) fn client_ip(&self) -> &str {
        self.client_ip_cache
            .get_or_init(|| self.client.addr.ip().to_string())
    }

    pub(crate) fn query_params(&self) -> &[(String, String)] {
        self.query_cache.get_or_init(|| {
            self.req_query()
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

/// The token of an `Authorization: Bearer` header.
fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|s| {
            let s = s.trim();
            let (scheme, token) = s.split_once(' ')?;
            (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
                .then(|| token.trim())
        })
}
