//! `<ServiceCallout>`: asks the host to call another service, then reads the response
//! into variables.

use bytes::Bytes;
use http::StatusCode;

use crate::parse::Cx;
use crate::policies::message::apply_ops;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Message, Outcome, Runtime, Target, TargetError, Timeouts};
use crate::xml::Element;

use super::*;

/// `<Request variable clearPayload>`: the callout request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CalloutRequest {
    /// `variable`: the message variable that holds the callout request (absent: a new
    /// request message).
    pub variable: Option<String>,
    /// `clearPayload` (default false).
    pub clear_payload: bool,
    /// `<Set>`, `<Add>`, `<Remove>`, `<Copy>` as in AssignMessage.
    pub ops: MessageOps,
    /// `<IgnoreUnresolvedVariables>` (default false).
    pub ignore_unresolved_variables: bool,
}

/// How the callout reaches its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutConnection {
    /// `<HTTPTargetConnection>`.
    Http {
        /// `<URL>`, a template.
        url: Template,
        /// `<Properties><Property>`.
        properties: Vec<(String, String)>,
        /// `<Authentication><GoogleAccessToken|GoogleIDToken>` present (the host must add the
        /// token; it is reported, not performed).
        google_auth: bool,
    },
    /// `<LocalTargetConnection>`: another proxy in the same gateway.
    Local {
        /// `<APIProxy>`.
        api_proxy: Option<String>,
        /// `<ProxyEndpoint>`.
        proxy_endpoint: Option<String>,
        /// `<Path>`.
        path: Option<String>,
    },
}

/// `<ServiceCallout>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceCallout {
    /// `<Request>`; absent means a new GET request.
    pub request: Option<CalloutRequest>,
    /// `<Response>`: the variable that receives the response; absent means
    /// fire-and-forget (the response is discarded).
    pub response: Option<String>,
    /// `<Timeout>` in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The connection.
    pub connection: Option<CalloutConnection>,
}

fn service_callout(cx: &mut Cx<'_>, el: &Element) -> ServiceCallout {
    cx.known_policy(
        el,
        &[
            "Request",
            "Response",
            "Timeout",
            "HTTPTargetConnection",
            "LocalTargetConnection",
        ],
    );
    let request = el.child("Request").map(|r| CalloutRequest {
        variable: r
            .attr("variable")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
        clear_payload: cx.attr_bool(r, "clearPayload", false),
        ops: crate::policies::message::message_ops(cx, r),
        ignore_unresolved_variables: cx.child_bool(r, "IgnoreUnresolvedVariables", false),
    });
    let connection = if let Some(h) = el.child("HTTPTargetConnection") {
        let mut url = cx.child_text(h, "URL");
        // SAP API Management: `<APIProvider>` and `<Path>` instead of a URL (its CSRF-token
        // callout). Kept as a provider URL; callouts do not go through providers yet.
        if url.is_none()
            && let Some(provider) = cx.child_text(h, "APIProvider")
        {
            let path = cx.child_text(h, "Path").unwrap_or_default();
            let sep = if path.is_empty() || path.starts_with('/') {
                ""
            } else {
                "/"
            };
            let url_text = format!("provider://{provider}{sep}{path}");
            cx.warning(
                h.offset,
                format!(
                    "the callout goes through API provider `{provider}`, which preflow resolves for target endpoints only: the callout is sent to `{url_text}` as it is"
                ),
            );
            url = Some(url_text);
        }
        if url.is_none() {
            cx.error(
                h.offset,
                "the callout's `<HTTPTargetConnection>` needs a `<URL>`",
            );
        }
        Some(CalloutConnection::Http {
            url: Template::parse(url.as_deref().unwrap_or("")),
            properties: h.properties(),
            google_auth: h.child("Authentication").is_some(),
        })
    } else if let Some(l) = el.child("LocalTargetConnection") {
        Some(CalloutConnection::Local {
            api_proxy: cx.child_text(l, "APIProxy"),
            proxy_endpoint: cx.child_text(l, "ProxyEndpoint"),
            path: cx.child_text(l, "Path"),
        })
    } else {
        cx.error(
            el.offset,
            "ServiceCallout needs an `<HTTPTargetConnection>` or a `<LocalTargetConnection>`",
        );
        None
    };
    ServiceCallout {
        request,
        response: cx.child_text(el, "Response"),
        timeout_ms: el.child("Timeout").and_then(|t| cx.number(t)),
        connection,
    }
}

/// The Apigee faults of ServiceCallout: (fault name, HTTP status).
pub mod faults {
    /// The callout could not be made or timed out: `steps.servicecallout.ExecutionFailed`.
    pub const EXECUTION_FAILED: (&str, u16) = ("ExecutionFailed", 500);
    /// The callout's response has status 4xx/5xx: `steps.servicecallout.ResponseCode`...
    /// Apigee reports `ExecutionFailed` with the reason `ResponseCode <n> is treated as error`.
    pub const RESPONSE_CODE: (&str, u16) = ("ExecutionFailed", 500);
    /// The request variable is not a message: `steps.servicecallout.RequestVariableNotMessageType`.
    pub const REQUEST_NOT_MESSAGE: (&str, u16) = ("RequestVariableNotMessageType", 500);
}

fn start<R: Runtime>(rt: &mut R, name: &str, sc: &ServiceCallout) -> Outcome {
    // An HTTP callout names its URL; a local one (proxy chaining) only a path, which the
    // host resolves against its own proxies.
    let (base, local) = match &sc.connection {
        Some(CalloutConnection::Http { url, .. }) => (url.render(|n| rt.variable(n)), false),
        Some(CalloutConnection::Local { path, .. }) => (path.clone().unwrap_or_default(), true),
        None => {
            return Outcome::Fault(Fault::new(
                "steps.servicecallout.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ServiceCallout[{name}]: no connection is configured"),
            ));
        }
    };
    // A request AssignMessage built under the variable's name is the starting point.
    let named = sc
        .request
        .as_ref()
        .and_then(|r| r.variable.as_deref())
        .and_then(|v| rt.state().named_message(v).cloned());
    let mut m = named.unwrap_or_else(|| {
        let mut m = Message::response(StatusCode::OK);
        m.method = http::Method::GET;
        m
    });
    if let Some(req) = &sc.request {
        if let Err(f) = apply_ops(rt, &req.ops, req.ignore_unresolved_variables, Some(&mut m)) {
            return Outcome::Fault(f);
        }
        if let Some(var) = &req.variable {
            rt.set_variable(
                &format!("{var}.content"),
                String::from_utf8_lossy(&m.body).into_owned(),
            );
        }
    }
    let mut uri = base.trim_end_matches('/').to_owned();
    if !m.path.is_empty() {
        if !m.path.starts_with('/') {
            uri.push('/');
        }
        uri.push_str(&m.path);
    } else if base.ends_with('/') {
        uri.push('/');
    }
    if let Some(q) = m.query.as_deref().filter(|q| !q.is_empty()) {
        uri.push(if uri.contains('?') { '&' } else { '?' });
        uri.push_str(q);
    }
    let mut builder = http::Request::builder().method(m.method.clone()).uri(&uri);
    if let Some(h) = builder.headers_mut() {
        *h = m.headers.clone();
    }
    let request = match builder.body(m.body.clone()) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                "steps.servicecallout.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ServiceCallout[{name}]: invalid callout URL `{uri}`: {e}"),
            ));
        }
    };
    let timeouts = Timeouts {
        connect: None,
        io: sc.timeout_ms.map(std::time::Duration::from_millis),
    };
    Outcome::Callout(Target {
        request,
        timeouts,
        endpoint: if local {
            format!("servicecallout-local:{name}").into()
        } else {
            format!("servicecallout:{name}").into()
        },
        tls: None,
        server: None,
        address: None,
        stream_request_body: false,
        stream_response_body: false,
    })
}

/// A ServiceCallout asks the host for its call with `Step::Forward`:
/// the [`Target`]'s `endpoint` is `servicecallout:{policy}` for an HTTP callout, and
/// `servicecallout-local:{policy}` for a `<LocalTargetConnection>`, whose request URI is
/// only a path the host resolves against its own proxies.
///
/// Finishes a ServiceCallout with the host's result: the response goes to the
/// `<Response>` variable (`{var}.content`, `{var}.status.code`, `{var}.header.{name}`).
fn finish<R: Runtime>(
    rt: &mut R,
    name: &str,
    sc: &ServiceCallout,
    result: Result<http::Response<Bytes>, TargetError>,
) -> Outcome {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                "steps.servicecallout.ExecutionFailed",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Execution of ServiceCallout {name} failed. Reason: {e}"),
            ));
        }
    };
    let code = resp.status().as_u16();
    if let Some(var) = &sc.response {
        rt.set_variable(&format!("{var}.status.code"), code.to_string());
        if let Some(r) = resp.status().canonical_reason() {
            rt.set_variable(&format!("{var}.reason.phrase"), r.to_owned());
        }
        for (k, v) in resp.headers() {
            rt.set_variable(
                &format!("{var}.header.{}", k.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
        }
        rt.set_variable(
            &format!("{var}.content"),
            String::from_utf8_lossy(resp.body()).into_owned(),
        );
    }
    if code >= 400 {
        return Outcome::Fault(Fault::new(
            "steps.servicecallout.ExecutionFailed",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Execution of ServiceCallout {name} failed. Reason: ResponseCode {code} is treated as error"
            ),
        ));
    }
    Outcome::Continue
}

/// The ServiceCallout policy type.
#[derive(Debug)]
pub(crate) struct ServiceCalloutPolicy;

impl PolicyType for ServiceCalloutPolicy {
    type Config = Box<ServiceCallout>;
    type Compiled = (String, Box<ServiceCallout>);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Box<ServiceCallout> {
        Box::new(service_callout(cx, el))
    }

    fn compile(
        config: &Box<ServiceCallout>,
        cx: &BuildCx<'_>,
    ) -> Result<Self::Compiled, CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        start(rt, &c.0, &c.1)
    }

    fn resume_callout<R: Runtime>(
        c: &Self::Compiled,
        rt: &mut R,
        result: Result<http::Response<Bytes>, TargetError>,
    ) -> Outcome {
        finish(rt, &c.0, &c.1, result)
    }

    fn variables_set(s: &Box<ServiceCallout>) -> Vec<String> {
        s.response
            .iter()
            .cloned()
            .chain(s.request.as_ref().and_then(|r| r.variable.clone()))
            .collect()
    }
}
