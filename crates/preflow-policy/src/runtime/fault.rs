//! Faults: what a failing policy, route or target raises, and Apigee's default error body.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};

use super::Message;

/// A fault: the exchange enters the error state with it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fault {
    /// `fault.name`: the last part of the error code.
    pub name: Cow<'static, str>,
    /// `detail.errorcode`.
    pub code: Cow<'static, str>,
    /// `faultstring`.
    pub faultstring: String,
    /// HTTP status of the default error response.
    pub status: StatusCode,
    /// An error response the fault brings along (RaiseFault, a token-endpoint error, a
    /// target's error response); `None` renders the default body.
    pub response: Option<Message>,
    /// Extra headers of the default error response (e.g. `WWW-Authenticate`).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// Whether a RaiseFault produced it.
    pub raised: bool,
    /// `error.state`.
    pub state: &'static str,
    /// The policy, when one raised it: `(bundle, policy)`.
    pub policy: Option<(usize, usize)>,
    /// `x-apigee-fault-source`-style source: `policy`, `target`, `proxy`.
    pub source: &'static str,
}

impl Fault {
    /// A fault with an error code whose last dot segment is the fault name.
    pub fn new(
        code: impl Into<Cow<'static, str>>,
        status: StatusCode,
        faultstring: impl Into<String>,
    ) -> Self {
        let code = code.into();
        let name: Cow<'static, str> = match &code {
            Cow::Borrowed(c) => Cow::Borrowed(c.rsplit('.').next().unwrap_or(c)),
            Cow::Owned(c) => Cow::Owned(c.rsplit('.').next().unwrap_or(c).to_owned()),
        };
        Fault {
            name,
            code,
            faultstring: faultstring.into(),
            status,
            response: None,
            headers: Vec::new(),
            raised: false,
            state: "",
            policy: None,
            source: "policy",
        }
    }

    /// The same fault with an explicit `fault.name`.
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The same fault with a response of its own.
    pub fn with_response(mut self, response: Message) -> Self {
        self.response = Some(response);
        self
    }

    /// The same fault with an extra default-response header.
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The default error response: the fault's own response, or Apigee's body in JSON
    /// (XML when the client prefers XML).
    pub fn render(&self, xml: bool) -> Message {
        if let Some(r) = &self.response {
            return r.clone();
        }
        let mut m = Message::response(self.status);
        let (body, ct) = if xml {
            (
                format!(
                    "<fault><faultstring>{}</faultstring><detail><errorcode>{}</errorcode></detail></fault>",
                    xml_escape(&self.faultstring),
                    xml_escape(&self.code)
                ),
                "application/xml",
            )
        } else {
            let v = serde_json::json!({
                "fault": {"faultstring": self.faultstring, "detail": {"errorcode": self.code}}
            });
            (v.to_string(), "application/json")
        };
        m.body = Bytes::from(body);
        m.headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        for (n, v) in &self.headers {
            m.headers.append(n.clone(), v.clone());
        }
        m
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether the client asked for XML: its `Accept` prefers an XML type over JSON.
pub fn wants_xml(headers: &HeaderMap) -> bool {
    headers.get(http::header::ACCEPT).is_some_and(accepts_xml)
}

/// Whether an `Accept` value prefers an XML type over JSON: `xml` comes before `json`, or
/// comes alone (case-insensitive, in one pass without a lower-case copy).
fn accepts_xml(accept: &http::HeaderValue) -> bool {
    let a = accept.as_bytes();
    let at = |i: usize, what: &[u8]| {
        a.get(i..i + what.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(what))
    };
    (0..a.len())
        .find_map(|i| match a.get(i).map(|b| b | 0x20) {
            Some(b'x') if at(i, b"xml") => Some(true),
            Some(b'j') if at(i, b"json") => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

/// Fault builders shared by the engine and the policies.
pub mod faults {
    use super::*;

    /// 500 `messaging.runtime.PolicyNotFound`: a step names a policy the bundle lacks.
    pub fn policy_missing(name: &str) -> Fault {
        Fault::new(
            "messaging.runtime.PolicyNotFound",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Step names policy `{name}`, which is not in the bundle"),
        )
    }

    /// 500 `messaging.runtime.UnsupportedPolicy`: a policy type this engine does not run.
    pub fn unsupported(type_name: &str, name: &str) -> Fault {
        Fault::new(
            "messaging.runtime.UnsupportedPolicy",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Policy `{name}` of type {type_name} is not supported by this gateway"),
        )
    }

    /// 500 `messaging.runtime.ConditionInvalid`: a condition that cannot be evaluated.
    pub fn condition_invalid(text: &str, why: &str) -> Fault {
        Fault::new(
            "messaging.runtime.ConditionInvalid",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Condition `{text}` is invalid and cannot be evaluated: {why}"),
        )
    }

    /// 500 `messaging.runtime.InternalError`.
    pub fn internal(why: impl Into<String>) -> Fault {
        let mut f = Fault::new(
            "messaging.runtime.InternalError",
            StatusCode::INTERNAL_SERVER_ERROR,
            why,
        );
        f.source = "apigee";
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_prefers_xml_only_when_xml_comes_first() {
        let cases = [
            ("application/xml", true),
            ("text/XML; q=0.9", true),
            ("application/xml, application/json", true),
            ("application/json, application/xml", false),
            ("application/JSON", false),
            ("*/*", false),
            ("", false),
            ("application/problem+xml;q=1, */*", true),
            ("x", false),
            ("jso", false),
        ];
        for (accept, xml) in cases {
            let v = http::HeaderValue::from_str(accept).unwrap();
            assert_eq!(accepts_xml(&v), xml, "{accept}");
            let mut h = HeaderMap::new();
            h.insert(http::header::ACCEPT, v);
            assert_eq!(wants_xml(&h), xml, "{accept}");
        }
        assert!(!wants_xml(&HeaderMap::new()));
    }
}
