//! Between Envoy's header maps and mutations and the engine's `http` messages.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, CommonResponse, HeaderMutation, ImmediateResponse, body_mutation,
    common_response::ResponseStatus,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use http::{HeaderName, HeaderValue as Value};
use preflow::Target;

/// The request header naming the target's authority (`host:port`): an Envoy route with
/// `cluster_header` set to it sends the request to the cluster of that name.
pub const CLUSTER_HEADER: &str = "x-preflow-cluster";

/// Headers Envoy frames or owns: never copied into mutations.
fn framing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "proxy-connection"
            | "te"
            | "host"
    )
}

/// Name and value of one Envoy header; values come as `raw_value` (or `value` from older
/// data planes).
fn entries(map: Option<&HeaderMap>) -> impl Iterator<Item = (&str, &[u8])> {
    map.into_iter().flat_map(|m| {
        m.headers.iter().map(|h| {
            let v: &[u8] = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            };
            (h.key.as_str(), v)
        })
    })
}

/// The request head from Envoy's request headers (pseudo-headers included).
pub fn request_parts(map: Option<&HeaderMap>) -> Result<http::request::Parts, &'static str> {
    let mut method = None;
    let mut path = None;
    let mut authority = None;
    let mut headers = http::HeaderMap::new();
    for (k, v) in entries(map) {
        match k {
            ":method" => method = Some(v),
            ":path" => path = Some(v),
            ":authority" => authority = Some(v),
            _ if k.starts_with(':') => {}
            _ => {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| "a header name")?;
                let value = Value::from_bytes(v).map_err(|_| "a header value")?;
                headers.append(name, value);
            }
        }
    }
    if let Some(a) = authority
        && !headers.contains_key(http::header::HOST)
    {
        headers.insert(
            http::header::HOST,
            Value::from_bytes(a).map_err(|_| "the authority")?,
        );
    }
    let method = http::Method::from_bytes(method.ok_or("no :method")?).map_err(|_| "the method")?;
    let uri = http::Uri::try_from(path.ok_or("no :path")?).map_err(|_| "the path")?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.headers = headers;
    Ok(parts)
}

/// The response head from Envoy's response headers.
pub fn response_parts(map: Option<&HeaderMap>) -> Result<http::response::Parts, &'static str> {
    let mut status = None;
    let mut headers = http::HeaderMap::new();
    for (k, v) in entries(map) {
        if k == ":status" {
            status = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u16>().ok());
        } else if !k.starts_with(':') {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| "a header name")?;
            let value = Value::from_bytes(v).map_err(|_| "a header value")?;
            headers.append(name, value);
        }
    }
    let status =
        http::StatusCode::from_u16(status.ok_or("no :status")?).map_err(|_| "the status")?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    Ok(parts)
}

fn option(key: &str, value: &[u8], action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: String::new(),
            raw_value: value.to_vec(),
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// The mutations turning header map `from` into `to` (framing headers left to Envoy):
/// names whose values differ are set (the first value replaces, the rest append), names
/// `to` lacks are removed.
fn diff(from: &http::HeaderMap, to: &http::HeaderMap) -> HeaderMutation {
    let mut m = HeaderMutation::default();
    for name in to.keys() {
        if framing(name) {
            continue;
        }
        let want: Vec<&Value> = to.get_all(name).iter().collect();
        let have: Vec<&Value> = from.get_all(name).iter().collect();
        if want == have {
            continue;
        }
        for (i, v) in want.iter().enumerate() {
            let action = if i == 0 {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            } else {
                HeaderAppendAction::AppendIfExistsOrAdd
            };
            m.set_headers
                .push(option(name.as_str(), v.as_bytes(), action));
        }
    }
    for name in from.keys() {
        if !framing(name) && !to.contains_key(name) {
            m.remove_headers.push(name.as_str().to_owned());
        }
    }
    m
}

/// The request mutations of a target call: method, path, authority, headers, the
/// cluster header, and the body when Envoy buffered it.
pub fn request(original: &http::HeaderMap, target: Target, body_buffered: bool) -> CommonResponse {
    let (parts, body) = target.request.into_parts();
    let mut m = diff(original, &parts.headers);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let authority = parts.uri.authority().map(|a| {
        let default = if parts.uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        format!("{}:{}", a.host(), a.port_u16().unwrap_or(default))
    });
    let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd;
    m.set_headers.push(option(
        ":method",
        parts.method.as_str().as_bytes(),
        overwrite,
    ));
    m.set_headers
        .push(option(":path", path.as_bytes(), overwrite));
    if let Some(a) = parts.uri.authority() {
        m.set_headers
            .push(option(":authority", a.as_str().as_bytes(), overwrite));
    }
    if let Some(cluster) = &authority {
        m.set_headers
            .push(option(CLUSTER_HEADER, cluster.as_bytes(), overwrite));
    }
    let body_mutation = body_buffered.then(|| BodyMutation {
        mutation: Some(body_mutation::Mutation::Body(body.to_vec())),
    });
    CommonResponse {
        status: ResponseStatus::Continue as i32,
        header_mutation: Some(m),
        body_mutation,
        trailers: None,
        clear_route_cache: true,
    }
}

/// The response-header mutations turning the back end's head into the engine's answer,
/// whose body is the back end's, streamed by Envoy.
pub fn response(
    upstream: &http::HeaderMap,
    upstream_status: http::StatusCode,
    answer: &http::Response<Bytes>,
) -> CommonResponse {
    let mut m = diff(upstream, answer.headers());
    if answer.status() != upstream_status {
        m.set_headers.push(option(
            ":status",
            answer.status().as_str().as_bytes(),
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
    }
    CommonResponse {
        header_mutation: Some(m),
        ..Default::default()
    }
}

/// The engine's response as Envoy's local reply.
pub fn immediate(resp: http::Response<Bytes>) -> ImmediateResponse {
    let (parts, body) = resp.into_parts();
    let mut headers = HeaderMutation::default();
    let mut seen: Vec<&HeaderName> = Vec::new();
    for (name, value) in &parts.headers {
        if framing(name) {
            continue;
        }
        let action = if seen.contains(&name) {
            HeaderAppendAction::AppendIfExistsOrAdd
        } else {
            seen.push(name);
            HeaderAppendAction::OverwriteIfExistsOrAdd
        };
        headers
            .set_headers
            .push(option(name.as_str(), value.as_bytes(), action));
    }
    ImmediateResponse {
        status: Some(HttpStatus {
            code: i32::from(parts.status.as_u16()),
        }),
        headers: Some(headers),
        body: body.to_vec(),
        grpc_status: None,
        details: "preflow".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap {
            headers: pairs
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: (*k).to_owned(),
                    value: String::new(),
                    raw_value: v.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn request_head_from_pseudo_headers() {
        let m = map(&[
            (":method", "POST"),
            (":path", "/v1/test/hello?x=1"),
            (":authority", "api.example"),
            (":scheme", "http"),
            ("authorization", "Bearer t"),
        ]);
        let p = request_parts(Some(&m)).unwrap();
        assert_eq!(p.method, http::Method::POST);
        assert_eq!(p.uri, "/v1/test/hello?x=1");
        assert_eq!(p.headers["host"], "api.example");
        assert_eq!(p.headers["authorization"], "Bearer t");
        assert!(request_parts(Some(&map(&[(":method", "GET")]))).is_err());
    }

    #[test]
    fn diff_sets_changed_and_removes_missing_headers() {
        let mut from = http::HeaderMap::new();
        from.insert("a", Value::from_static("1"));
        from.insert("gone", Value::from_static("x"));
        from.insert("content-length", Value::from_static("3"));
        let mut to = http::HeaderMap::new();
        to.insert("a", Value::from_static("1"));
        to.append("b", Value::from_static("2"));
        to.append("b", Value::from_static("3"));
        let m = diff(&from, &to);
        let set: Vec<(&str, &[u8], i32)> = m
            .set_headers
            .iter()
            .map(|o| {
                let h = o.header.as_ref().unwrap();
                (h.key.as_str(), h.raw_value.as_slice(), o.append_action)
            })
            .collect();
        assert_eq!(
            set,
            vec![
                (
                    "b",
                    &b"2"[..],
                    HeaderAppendAction::OverwriteIfExistsOrAdd as i32
                ),
                (
                    "b",
                    &b"3"[..],
                    HeaderAppendAction::AppendIfExistsOrAdd as i32
                ),
            ]
        );
        assert_eq!(m.remove_headers, vec!["gone".to_owned()]);
    }

    #[test]
    fn target_request_becomes_path_authority_and_cluster() {
        let req = http::Request::get("http://127.0.0.1:9000/http/v1/test/hello?q=1")
            .header("x-new", "v")
            .body(Bytes::new())
            .unwrap();
        let target = Target {
            request: req,
            timeouts: Default::default(),
            endpoint: "default".into(),
            tls: None,
            server: None,
            address: None,
            stream_request_body: true,
            stream_response_body: true,
        };
        let c = request(&http::HeaderMap::new(), target, false);
        let set: Vec<(String, String)> = c
            .header_mutation
            .unwrap()
            .set_headers
            .into_iter()
            .map(|o| {
                let h = o.header.unwrap();
                (h.key, String::from_utf8(h.raw_value).unwrap())
            })
            .collect();
        for want in [
            ("x-new", "v"),
            (":method", "GET"),
            (":path", "/http/v1/test/hello?q=1"),
            (":authority", "127.0.0.1:9000"),
            (CLUSTER_HEADER, "127.0.0.1:9000"),
        ] {
            assert!(
                set.contains(&(want.0.to_owned(), want.1.to_owned())),
                "{want:?} in {set:?}"
            );
        }
        assert!(c.clear_route_cache);
        assert!(c.body_mutation.is_none());
    }
}
