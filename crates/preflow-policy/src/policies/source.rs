//! The message a policy's `<Source>` names, as several policy families read it.

use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;

use crate::runtime::{Fault, Message, Runtime};

/// The message a `<Source>` names: `request`, `response`, or the current message.
pub(crate) fn source_message<'a, R: Runtime>(
    rt: &'a R,
    source: Option<&str>,
) -> Option<&'a Message> {
    match source.map(str::trim) {
        Some("request") => Some(rt.request()),
        Some("response") => rt.response(),
        _ if rt.is_response_side() => rt.response(),
        _ => Some(rt.request()),
    }
}

/// The body of the message `<Source>` names; a message variable set by a callout
/// (`{name}.content`) is read too.
pub(crate) fn source_body<R: Runtime>(rt: &R, source: Option<&str>) -> Option<Bytes> {
    match source.map(str::trim) {
        None | Some("request" | "response" | "message") => {
            source_message(rt, source).map(|m| m.body.clone())
        }
        Some(var) => rt.variable(&format!("{var}.content")).map(Bytes::from),
    }
}

/// Whether the source message's `Content-Type` mentions `kind` (`json`, `xml`). A message
/// variable other than the request or response counts as matching.
pub(crate) fn content_type_has<R: Runtime>(rt: &R, source: Option<&str>, kind: &str) -> bool {
    if !matches!(
        source.map(str::trim),
        None | Some("request" | "response" | "message")
    ) {
        return true;
    }
    source_message(rt, source).is_some_and(|m| {
        m.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().contains(kind))
    })
}

/// The headers of `m` as text pairs.
pub(crate) fn header_list(m: &Message) -> Vec<(String, String)> {
    m.headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// `steps.{prefix}.SourceUnavailable`.
pub(crate) fn source_unavailable(prefix: &str, source: &str) -> Fault {
    Fault::new(
        format!("steps.{prefix}.SourceUnavailable"),
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the source message `{source}` is not available"),
    )
}

/// A status code from a number, 500 when it is not one.
pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Sets each `(name, value)` header on `m`, skipping pairs that are not valid headers.
pub(crate) fn add_headers(m: &mut Message, headers: &[(String, String)]) {
    for (k, v) in headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            m.headers.insert(n, v);
        }
    }
}
