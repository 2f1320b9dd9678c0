//! Request ids and W3C trace context on incoming requests.
//!
//! A client's `X-Request-ID` is kept when it is a short token of visible characters;
//! otherwise one is generated. Either way the request carries it on to the target (the
//! gateway forwards request headers) and the response returns it to the client. A
//! valid `traceparent` passes through unchanged; a request without one gets a new trace
//! (not sampled), so the target's spans join a trace that starts at the gateway.

use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-ID`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest request id kept from a client.
const MAX_ID_LEN: usize = 128;

/// Makes sure `headers` carry a request id and a trace context; the request id.
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let kept = headers
        .get(&X_REQUEST_ID)
        .filter(|v| valid_id(v.as_bytes()))
        .cloned();
    let traced = headers
        .get(&TRACEPARENT)
        .is_some_and(|v| valid_traceparent(v.as_bytes()));
    if let Some(id) = kept.as_ref().filter(|_| traced) {
        return id.clone();
    }
    // One draw for both: 16 bytes of request id, 16 of trace id, 8 of parent id.
    let mut random = [0u8; 40];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
    let (id_bytes, trace) = random.split_at(16);
    let (trace_id, parent_id) = trace.split_at(16);
    let id = match kept {
        Some(id) => id,
        None => {
            let mut hex = [0u8; 32];
            let id = hex::encode_to_slice(id_bytes, &mut hex)
                .ok()
                .and_then(|()| HeaderValue::from_bytes(&hex).ok())
                .unwrap_or(HeaderValue::from_static("-"));
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    if !traced {
        // 00-<32 hex trace id>-<16 hex parent id>-00
        let mut value = *b"00-________________________________-________________-00";
        let written = value
            .get_mut(3..35)
            .is_some_and(|out| hex::encode_to_slice(trace_id, out).is_ok())
            && value
                .get_mut(36..52)
                .is_some_and(|out| hex::encode_to_slice(parent_id, out).is_ok());
        if written && let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT.clone(), v);
        }
    }
    id
}

fn valid_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_ID_LEN && v.iter().all(|b| b.is_ascii_graphic())
}

/// `version-traceid-parentid-flags` of W3C Trace Context §3.2 (version 00 layout, ids not
/// all zero).
fn valid_traceparent(v: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(v) else {
        return false;
    };
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [version, trace, parent, flags, ..] = parts.as_slice() else {
        return false;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    hex(version, 2)
        && *version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (*version != "00" || parts.len() == 4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_client_id_and_generates_one_otherwise() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(ensure(&mut h), "abc-123");
        let mut h = HeaderMap::new();
        let id = ensure(&mut h);
        assert_eq!(id.len(), 32);
        assert_eq!(h.get("x-request-id").unwrap(), &id);
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(ensure(&mut h), "has space");
    }

    #[test]
    fn passes_a_valid_traceparent_and_starts_a_trace_otherwise() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(given));
        ensure(&mut h);
        assert_eq!(h.get("traceparent").unwrap(), given);
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        );
        ensure(&mut h);
        let made = h.get("traceparent").unwrap().to_str().unwrap().to_owned();
        assert!(valid_traceparent(made.as_bytes()), "{made}");
        assert_ne!(made, given);
    }
}
