//! Strict `application/x-www-form-urlencoded` decoding (RFC 6749 Appendix B) and HTTP
//! Basic client credentials (RFC 6749 §2.3.1, spec/oauth.md §1a).
//!
//! Unlike lossy decoders, a malformed percent escape or invalid UTF-8 is an error here, so
//! two different submitted secrets can never decode to the same string.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Most parameters accepted in one form body or query.
pub const MAX_PARAMS: usize = 64;
/// Largest accepted form body, in bytes: token, introspection and revocation requests are
/// a few hundred bytes; a JWT bearer assertion a few KiB.
pub const MAX_BODY: usize = 16 * 1024;

/// Why form or Basic decoding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    BadPercent,
    /// The decoded bytes are not UTF-8.
    #[error("not valid utf-8")]
    BadUtf8,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("too many parameters")]
    TooManyParams,
    /// The body exceeds [`MAX_BODY`].
    #[error("body too large")]
    TooLarge,
    /// The Basic credentials are not valid base64.
    #[error("basic credentials are not valid base64")]
    BadBase64,
    /// The decoded Basic credentials hold no `:`.
    #[error("basic credentials hold no ':' separator")]
    NoColon,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-encoded component: `+` is a space, `%XX` a byte, and the result must
/// be UTF-8.
pub fn decode_component(input: &[u8]) -> Result<String, DecodeError> {
    let mut out = Vec::with_capacity(input.len());
    let mut it = input.iter();
    while let Some(&b) = it.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = it
                    .next()
                    .copied()
                    .and_then(hex)
                    .ok_or(DecodeError::BadPercent)?;
                let lo = it
                    .next()
                    .copied()
                    .and_then(hex)
                    .ok_or(DecodeError::BadPercent)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::BadUtf8)
}

/// Decodes a whole form body or query into ordered `(name, value)` pairs. Empty
/// `&`-separated pieces are skipped; a piece without `=` has an empty value.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    if input.len() > MAX_BODY {
        return Err(DecodeError::TooLarge);
    }
    let mut out = Vec::new();
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        if out.len() >= MAX_PARAMS {
            return Err(DecodeError::TooManyParams);
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (
                piece.get(..i).unwrap_or(&[]),
                piece.get(i + 1..).unwrap_or(&[]),
            ),
            None => (piece, &[][..]),
        };
        out.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(out)
}

/// Client credentials taken from an `Authorization: Basic` header.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// Client id, form-decoded per RFC 6749 §2.3.1.
    pub client_id: String,
    /// Secret, form-decoded per RFC 6749 §2.3.1.
    pub secret: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("client_id", &self.client_id)
            .field("secret", &"…")
            .finish()
    }
}

/// The result of decoding Basic credentials: the strict §2.3.1 reading (if the bytes
/// allow one) and the raw RFC 7617 readings for the opt-in legacy fallback.
#[derive(Clone, PartialEq, Eq)]
pub struct DecodedBasic {
    /// Strict RFC 6749 §2.3.1 decoding, or why it failed.
    pub strict: Result<BasicCredentials, DecodeError>,
    /// The raw user and password bytes (split at the first `:`), undecoded.
    pub raw_user: Vec<u8>,
    /// See `raw_user`.
    pub raw_password: Vec<u8>,
}

impl std::fmt::Debug for DecodedBasic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedBasic")
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

impl DecodedBasic {
    /// Raw (RFC 7617) readings of the credentials: UTF-8 first, then Latin-1 (which
    /// Python `requests` and Authlib use). Distinct readings only; may be empty.
    pub fn raw_readings(&self) -> Vec<BasicCredentials> {
        let mut out: Vec<BasicCredentials> = Vec::new();
        let utf8 = (
            std::str::from_utf8(&self.raw_user).ok(),
            std::str::from_utf8(&self.raw_password).ok(),
        );
        if let (Some(u), Some(p)) = utf8 {
            out.push(BasicCredentials {
                client_id: u.to_owned(),
                secret: p.to_owned(),
            });
        }
        let latin1 = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
        let l = BasicCredentials {
            client_id: latin1(&self.raw_user),
            secret: latin1(&self.raw_password),
        };
        if !out.contains(&l) {
            out.push(l);
        }
        if let Ok(strict) = &self.strict {
            out.retain(|c| c != strict);
        }
        out
    }
}

/// If `header` uses the Basic scheme (any letter case), returns its credentials part.
pub fn basic_param(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..6)?;
    if scheme.eq_ignore_ascii_case(b"basic ") {
        let rest = header.get(6..)?;
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        let rest = rest.get(start..)?;
        let end = rest.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        rest.get(..end)
    } else {
        None
    }
}

/// Decodes the credentials of a Basic header: base64 (standard alphabet), split at the
/// first `:`, then the strict §2.3.1 form-decoding of each half.
pub fn decode_basic(param: &[u8]) -> Result<DecodedBasic, DecodeError> {
    let raw = STANDARD.decode(param).map_err(|_| DecodeError::BadBase64)?;
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or(DecodeError::NoColon)?;
    let raw_user = raw.get(..colon).unwrap_or(&[]).to_vec();
    let raw_password = raw.get(colon + 1..).unwrap_or(&[]).to_vec();
    let strict = decode_component(&raw_user).and_then(|client_id| {
        decode_component(&raw_password).map(|secret| BasicCredentials { client_id, secret })
    });
    Ok(DecodedBasic {
        strict,
        raw_user,
        raw_password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(header: &str) -> Result<BasicCredentials, DecodeError> {
        decode_basic(basic_param(header.as_bytes()).unwrap())
            .unwrap()
            .strict
    }

    const SECRET: &str = "p:a+s s%w/o=rd&é~";

    #[test]
    fn rfc_example() {
        let c = strict("Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW").unwrap();
        assert_eq!(c.client_id, "s6BhdRkqt3");
        assert_eq!(c.secret, "gX1fBat3bV");
        let c = strict("bAsIc   czZCaGRSa3F0MzpnWDFmQmF0M2JW ").unwrap();
        assert_eq!(c.secret, "gX1fBat3bV");
    }

    #[test]
    fn rfc6749_encoded_vectors() {
        let c = strict("Basic czZCaGRSa3F0MzpwJTNBYSUyQnMrcyUyNXclMkZvJTNEcmQlMjYlQzMlQTklN0U=")
            .unwrap();
        assert_eq!(c.client_id, "s6BhdRkqt3");
        assert_eq!(c.secret, SECRET);
        // Python quote_plus keeps '~'.
        let c =
            strict("Basic czZCaGRSa3F0MzpwJTNBYSUyQnMrcyUyNXclMkZvJTNEcmQlMjYlQzMlQTl+").unwrap();
        assert_eq!(c.secret, SECRET);
        let c = strict(
            "Basic Y2xpJTNBZW50K2lkJTJCJTI1OnAlM0FhJTJCcytzJTI1dyUyRm8lM0RyZCUyNiVDMyVBOSU3RQ==",
        )
        .unwrap();
        assert_eq!(c.client_id, "cli:ent id+%");
        assert_eq!(c.secret, SECRET);
    }

    #[test]
    fn raw_latin1_sender_needs_fallback() {
        let d = decode_basic(b"czZCaGRSa3F0MzpwOmErcyBzJXcvbz1yZCbpfg==").unwrap();
        // Strict decoding fails: "%w/" is no escape.
        assert_eq!(d.strict, Err(DecodeError::BadPercent));
        let readings = d.raw_readings();
        assert!(
            readings
                .iter()
                .any(|c| c.client_id == "s6BhdRkqt3" && c.secret == SECRET)
        );
    }

    #[test]
    fn raw_utf8_curl_sender_needs_fallback() {
        let d = decode_basic(b"czZCaGRSa3F0MzpwOmErcyBzJXcvbz1yZCbDqX4=").unwrap();
        assert!(d.strict.is_err());
        let readings = d.raw_readings();
        assert_eq!(readings[0].secret, SECRET);
    }

    #[test]
    fn raw_id_with_colon_is_unrecoverable() {
        let d = decode_basic(b"Y2xpOmVudCBpZCslOnA6YStzIHMldy9vPXJkJul+").unwrap();
        for r in d.raw_readings() {
            assert_eq!(r.client_id, "cli");
        }
    }

    #[test]
    fn bad_base64_and_missing_colon() {
        assert_eq!(decode_basic(b"!!!").unwrap_err(), DecodeError::BadBase64);
        assert_eq!(decode_basic(b"YWJj").unwrap_err(), DecodeError::NoColon);
        assert!(basic_param(b"Bearer abc").is_none());
    }

    #[test]
    fn form_decoding_is_strict() {
        assert_eq!(
            parse_form(b"a=1&b=x+y%21&&c").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), "".into())
            ]
        );
        assert_eq!(parse_form(b"a=%zz").unwrap_err(), DecodeError::BadPercent);
        assert_eq!(parse_form(b"a=%4").unwrap_err(), DecodeError::BadPercent);
        assert_eq!(parse_form(b"a=%ff").unwrap_err(), DecodeError::BadUtf8);
    }

    fn encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(char::from(b))
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn form_round_trip(name in "[a-z_]{1,12}", value in "\\PC{0,40}") {
            let body = format!("{}={}", encode(&name), encode(&value));
            let parsed = parse_form(body.as_bytes()).unwrap();
            proptest::prop_assert_eq!(parsed, vec![(name, value)]);
        }

        #[test]
        fn basic_round_trip(id in "\\PC{0,20}", secret in "\\PC{0,40}") {
            use base64::Engine as _;
            let raw = format!("{}:{}", encode(&id), encode(&secret));
            let b64 = STANDARD.encode(raw);
            let d = decode_basic(b64.as_bytes()).unwrap();
            proptest::prop_assert_eq!(d.strict, Ok(BasicCredentials { client_id: id, secret }));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_form(&bytes);
            if let Ok(d) = decode_basic(&bytes) {
                let _ = d.raw_readings();
            }
            let _ = basic_param(&bytes);
        }
    }
}
