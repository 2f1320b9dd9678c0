//! The CORS policy (Apigee X): answers preflight requests and adds the
//! `Access-Control-*` headers to actual cross-origin requests.
//!
//! A disallowed origin is not a fault: the headers are left out and the browser refuses
//! the response.

use http::StatusCode;

use crate::parse::Cx;
use crate::policies::source::add_headers;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Message, Outcome, Runtime};
use crate::template::Template;
use crate::xml::Element;

/// `<CORS>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cors {
    /// `<AllowOrigins>`: comma-separated origins, `*`, or a template such as
    /// `{request.header.origin}` (default).
    pub allow_origins: Template,
    /// `<AllowMethods>` (default `GET, PUT, POST, DELETE`).
    pub allow_methods: Template,
    /// `<AllowHeaders>` (default `origin, x-requested-with, accept, content-type`).
    pub allow_headers: Template,
    /// `<ExposeHeaders>` (default `*`).
    pub expose_headers: Template,
    /// `<MaxAge>` in seconds (default 1800; -1 leaves the header out).
    pub max_age: i64,
    /// `<AllowCredentials>` (default false).
    pub allow_credentials: bool,
    /// `<GeneratePreflightResponse>` (default true).
    pub generate_preflight_response: bool,
    /// `<IgnoreUnresolvedVariables>` (default true).
    pub ignore_unresolved_variables: bool,
}

fn template_or(cx: &Cx<'_>, el: &Element, name: &str, default: &str) -> Template {
    Template::parse(
        &cx.child_text(el, name)
            .unwrap_or_else(|| default.to_owned()),
    )
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> Cors {
    cx.known_policy(
        el,
        &[
            "AllowOrigins",
            "AllowMethods",
            "AllowHeaders",
            "ExposeHeaders",
            "MaxAge",
            "AllowCredentials",
            "GeneratePreflightResponse",
            "IgnoreUnresolvedVariables",
        ],
    );
    if let Some(o) = el.child("AllowOrigins") {
        let origins: Vec<&str> = o.text().split(',').map(str::trim).collect();
        if origins.len() > 1 && origins.contains(&"*") {
            cx.error(
                o.text_offset(),
                "`<AllowOrigins>` mixes `*` with specific origins",
            );
        }
        if origins.iter().any(|x| x.ends_with('/')) {
            cx.warning(
                o.text_offset(),
                "an origin in `<AllowOrigins>` ends with `/`; origins never do, so it never matches",
            );
        }
    }
    let max_age = match el.child("MaxAge") {
        Some(m) => cx.number(m).unwrap_or(1800),
        None => 1800,
    };
    Cors {
        allow_origins: template_or(cx, el, "AllowOrigins", "{request.header.origin}"),
        allow_methods: template_or(cx, el, "AllowMethods", "GET, PUT, POST, DELETE"),
        allow_headers: template_or(
            cx,
            el,
            "AllowHeaders",
            "origin, x-requested-with, accept, content-type",
        ),
        expose_headers: template_or(cx, el, "ExposeHeaders", "*"),
        max_age,
        allow_credentials: cx.child_bool(el, "AllowCredentials", false),
        generate_preflight_response: cx.child_bool(el, "GeneratePreflightResponse", true),
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", true),
    }
}

/// The parts of a request CORS looks at.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CorsRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Method`.
    pub request_method: Option<&'a str>,
    /// `Access-Control-Request-Headers`.
    pub request_headers: Option<&'a str>,
}

/// What CORS decides for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOutcome {
    /// Not a cross-origin request (no `Origin`): nothing to do.
    NotCors,
    /// A preflight to answer now with status 200 and these headers; the target is not
    /// called.
    Preflight(Vec<(String, String)>),
    /// An actual request from an allowed origin: add these headers to the response.
    Allowed(Vec<(String, String)>),
    /// The origin (or, for a preflight, the method or a header) is not allowed: no CORS
    /// headers are added; a preflight is answered with 200 and no CORS headers.
    Denied {
        /// Whether the request was a preflight (still answered, without CORS headers).
        preflight: bool,
        /// Which check failed.
        reason: String,
    },
}

/// `cors.*` flow variable names set by [`evaluate`]'s caller: `cors.isPreflight`,
/// `cors.isCorsRequest`, `cors.allowed`.
pub const VARIABLES: &[&str] = &["cors.isPreflight", "cors.isCorsRequest", "cors.allowed"];

fn list(t: &str) -> Vec<String> {
    t.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Decides CORS for `req`. `lookup` resolves template variables (such as
/// `request.header.origin`).
pub fn evaluate(
    cfg: &Cors,
    req: &CorsRequest<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> CorsOutcome {
    let Some(origin) = req.origin.map(str::trim).filter(|o| !o.is_empty()) else {
        return CorsOutcome::NotCors;
    };
    let preflight = req.method.eq_ignore_ascii_case("OPTIONS") && req.request_method.is_some();
    let render = |t: &Template| t.render(|n| lookup(n));
    let origins = list(&render(&cfg.allow_origins));
    let wildcard = origins.iter().any(|o| o == "*");
    let allowed = wildcard || origins.iter().any(|o| o.eq_ignore_ascii_case(origin));
    if !allowed {
        return CorsOutcome::Denied {
            preflight,
            reason: format!("origin `{origin}` is not in the allowed origins {origins:?}"),
        };
    }
    let allow_origin = if wildcard && !cfg.allow_credentials {
        "*".to_owned()
    } else {
        origin.to_owned()
    };
    let mut headers = vec![("Access-Control-Allow-Origin".to_owned(), allow_origin)];
    if !wildcard || cfg.allow_credentials {
        headers.push(("Vary".to_owned(), "Origin".to_owned()));
    }
    if cfg.allow_credentials {
        headers.push((
            "Access-Control-Allow-Credentials".to_owned(),
            "true".to_owned(),
        ));
    }
    if preflight {
        let methods = render(&cfg.allow_methods);
        let method_list = list(&methods);
        if let Some(m) = req.request_method.map(str::trim)
            && !method_list
                .iter()
                .any(|x| x == "*" || x.eq_ignore_ascii_case(m))
        {
            return CorsOutcome::Denied {
                preflight: true,
                reason: format!("method `{m}` is not in the allowed methods {method_list:?}"),
            };
        }
        let allowed_headers = render(&cfg.allow_headers);
        let header_list = list(&allowed_headers);
        if let Some(h) = req.request_headers
            && !header_list.iter().any(|x| x == "*")
        {
            for wanted in list(h) {
                if !header_list.iter().any(|x| x.eq_ignore_ascii_case(&wanted)) {
                    return CorsOutcome::Denied {
                        preflight: true,
                        reason: format!(
                            "header `{wanted}` is not in the allowed headers {header_list:?}"
                        ),
                    };
                }
            }
        }
        headers.push(("Access-Control-Allow-Methods".to_owned(), methods));
        let echo = if header_list.iter().any(|x| x == "*") {
            req.request_headers
                .map(str::to_owned)
                .unwrap_or(allowed_headers)
        } else {
            allowed_headers
        };
        headers.push(("Access-Control-Allow-Headers".to_owned(), echo));
        if cfg.max_age >= 0 {
            headers.push(("Access-Control-Max-Age".to_owned(), cfg.max_age.to_string()));
        }
        if cfg.generate_preflight_response {
            return CorsOutcome::Preflight(headers);
        }
        return CorsOutcome::Allowed(headers);
    }
    let expose = render(&cfg.expose_headers);
    if !expose.trim().is_empty() {
        headers.push(("Access-Control-Expose-Headers".to_owned(), expose));
    }
    CorsOutcome::Allowed(headers)
}

fn run<R: Runtime>(rt: &mut R, cfg: &Cors) -> Outcome {
    let h = |n: &str| {
        rt.request()
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (origin, method_h, headers_h) = (
        h("origin"),
        h("access-control-request-method"),
        h("access-control-request-headers"),
    );
    let method = rt.request().method.as_str().to_owned();
    let req = CorsRequest {
        method: &method,
        origin: origin.as_deref(),
        request_method: method_h.as_deref(),
        request_headers: headers_h.as_deref(),
    };
    let outcome = evaluate(cfg, &req, &|n| rt.variable(n));
    let preflight = matches!(
        outcome,
        CorsOutcome::Preflight(_)
            | CorsOutcome::Denied {
                preflight: true,
                ..
            }
    );
    rt.set_variable("cors.isPreflight", preflight.to_string());
    rt.set_variable(
        "cors.isCorsRequest",
        (!matches!(outcome, CorsOutcome::NotCors)).to_string(),
    );
    match outcome {
        CorsOutcome::NotCors => Outcome::Continue,
        CorsOutcome::Preflight(headers) => {
            rt.set_variable("cors.allowed", "true".into());
            let mut m = Message::response(StatusCode::OK);
            add_headers(&mut m, &headers);
            Outcome::Respond(m)
        }
        CorsOutcome::Allowed(headers) => {
            rt.set_variable("cors.allowed", "true".into());
            let mut m = Message::response(StatusCode::OK);
            add_headers(&mut m, &headers);
            rt.state_mut().response_headers = m
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            Outcome::Continue
        }
        CorsOutcome::Denied { preflight, .. } => {
            rt.set_variable("cors.allowed", "false".into());
            if preflight && cfg.generate_preflight_response {
                Outcome::Respond(Message::response(StatusCode::OK))
            } else {
                Outcome::Continue
            }
        }
    }
}

/// The Cors policy type.
#[derive(Debug)]
pub(crate) struct CorsPolicy;

impl PolicyType for CorsPolicy {
    type Config = Cors;
    type Compiled = Cors;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Cors {
        parse(cx, el)
    }

    fn compile(config: &Cors, cx: &BuildCx<'_>) -> Result<Cors, CompileError> {
        let _ = cx;
        Ok(config.clone())
    }

    fn run<R: Runtime>(c: &Cors, rt: &mut R) -> Outcome {
        run(rt, c)
    }

    fn reads_request_body(c: &Cors) -> bool {
        [
            &c.allow_origins,
            &c.allow_methods,
            &c.allow_headers,
            &c.expose_headers,
        ]
        .into_iter()
        .any(Template::reads_request_body)
    }
}

#[cfg(test)]
mod tests {
    use crate::cors::{CorsOutcome, CorsRequest, evaluate};
    use crate::test_support::*;

    fn cfg(xml: &str) -> crate::cors::Cors {
        match load(xml).0 {
            PolicyConfig::Cors(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn preflight_actual_and_denied() {
        let c = cfg(
            r#"<CORS name="C"><AllowOrigins>https://a.example, https://b.example</AllowOrigins>
               <AllowMethods>GET, POST</AllowMethods><AllowHeaders>content-type, x-key</AllowHeaders>
               <ExposeHeaders>x-total</ExposeHeaders><MaxAge>600</MaxAge><AllowCredentials>true</AllowCredentials></CORS>"#,
        );
        let pre = CorsRequest {
            method: "OPTIONS",
            origin: Some("https://b.example"),
            request_method: Some("POST"),
            request_headers: Some("X-Key"),
        };
        let CorsOutcome::Preflight(h) = evaluate(&c, &pre, &|_| None) else {
            panic!()
        };
        let get = |h: &[(String, String)], k: &str| {
            h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(&h, "Access-Control-Allow-Origin").as_deref(),
            Some("https://b.example")
        );
        assert_eq!(
            get(&h, "Access-Control-Allow-Methods").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(get(&h, "Access-Control-Max-Age").as_deref(), Some("600"));
        assert_eq!(
            get(&h, "Access-Control-Allow-Credentials").as_deref(),
            Some("true")
        );
        let actual = CorsRequest {
            method: "GET",
            request_method: None,
            request_headers: None,
            ..pre
        };
        let CorsOutcome::Allowed(h) = evaluate(&c, &actual, &|_| None) else {
            panic!()
        };
        assert_eq!(
            get(&h, "Access-Control-Expose-Headers").as_deref(),
            Some("x-total")
        );
        assert!(matches!(
            evaluate(
                &c,
                &CorsRequest {
                    origin: Some("https://evil.example"),
                    ..actual
                },
                &|_| None
            ),
            CorsOutcome::Denied {
                preflight: false,
                ..
            }
        ));
        assert!(matches!(
            evaluate(
                &c,
                &CorsRequest {
                    request_method: Some("DELETE"),
                    ..pre
                },
                &|_| None
            ),
            CorsOutcome::Denied {
                preflight: true,
                ..
            }
        ));
        assert_eq!(
            evaluate(
                &c,
                &CorsRequest {
                    origin: None,
                    ..actual
                },
                &|_| None
            ),
            CorsOutcome::NotCors
        );
    }

    #[test]
    fn defaults_echo_the_origin() {
        let c = cfg(r#"<CORS name="C"/>"#);
        let req = CorsRequest {
            method: "GET",
            origin: Some("https://x.example"),
            request_method: None,
            request_headers: None,
        };
        let vars = Vars::new(&[("request.header.origin", "https://x.example")]);
        let CorsOutcome::Allowed(h) = evaluate(&c, &req, &|n| vars.get(n)) else {
            panic!()
        };
        assert_eq!(
            h[0],
            (
                "Access-Control-Allow-Origin".into(),
                "https://x.example".into()
            )
        );
        let (_, diags) =
            load(r#"<CORS name="C"><AllowOrigins>*, https://a.example</AllowOrigins></CORS>"#);
        assert!(diags.iter().any(|d| d.is_error()));
    }
}
