//! Arbitrary bytes through the form and Basic-header parsers of the token endpoint: no
//! panic, and what the form parser accepts re-encodes to a body that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preflow_oauth::form::{MAX_PARAMS, basic_param, decode_basic, decode_component, parse_form};

fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = parse_form(data) {
        assert!(pairs.len() <= MAX_PARAMS);
        let mut body = String::new();
        for (k, v) in &pairs {
            if k.is_empty() && v.is_empty() {
                // `=` alone: an empty name and value, which re-encodes to nothing.
                continue;
            }
            if !body.is_empty() {
                body.push('&');
            }
            encode(k, &mut body);
            body.push('=');
            encode(v, &mut body);
        }
        if body.len() <= preflow_oauth::form::MAX_BODY {
            let again = parse_form(body.as_bytes()).expect("re-encoded form parses");
            let kept: Vec<_> = pairs
                .iter()
                .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
                .cloned()
                .collect();
            assert_eq!(again, kept);
        }
    }
    let _ = decode_component(data);
    if let Some(param) = basic_param(data) {
        if let Ok(decoded) = decode_basic(param) {
            let _ = decoded.raw_readings();
        }
    }
    // The bytes as a bare Basic parameter, past the scheme.
    if let Ok(decoded) = decode_basic(data) {
        let _ = decoded.raw_readings();
    }
});
