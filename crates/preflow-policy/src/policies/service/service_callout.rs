//! `<ServiceCallout>`: asks the host to call another service, then reads the response
//! into variables.

use bytes::Bytes;
use http::StatusCode;

use crate::parse::Cx;
use crate::policies::message::apply_ops;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Message, Outcome, Runtime, Target, TargetError, Timeouts};
use crate::xml::Element;

use super::{CalloutConnection, ServiceCallout};

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
    let mut m = Message::response(StatusCode::OK);
    m.method = http::Method::GET;
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
        Box::new(super::service_callout(cx, el))
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
