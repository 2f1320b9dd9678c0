//! Request path normalisation, applied before base-path selection and condition matching.
//!
//! The path is brought to one canonical spelling, so that no encoded dot segment, encoded
//! slash or doubled slash can reach a flow or target that the plain spelling would not:
//!
//! * percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`, RFC 3986 §2.3) are
//!   decoded, other percent-encodings are kept with upper-case hex digits;
//! * an encoded `/` (`%2F`), `\` (`%5C`) or control character, a raw `\`, and a malformed
//!   percent-encoding are rejected: their meaning differs between servers;
//! * runs of `/` collapse to one;
//! * dot segments are removed as in RFC 3986 §5.2.4; a `..` above the root is rejected.
//!
//! A path that is already canonical is returned borrowed, without allocating.

use std::borrow::Cow;

/// Why a request path was rejected (the engine answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the request path does not start with `/`")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the request path has a malformed percent-encoding")]
    BadEncoding,
    /// `%2F` or `%5C`: an encoded path separator.
    #[error("the request path has an encoded slash or backslash")]
    EncodedSeparator,
    /// A backslash, NUL or other control character, raw or encoded.
    #[error("the request path has a backslash or a control character")]
    ForbiddenCharacter,
    /// A `..` segment that would climb above the root.
    #[error("the request path climbs above the root with `..`")]
    AboveRoot,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` can be returned as is: no `%`, `\`, control character, `//` or dot
/// segment.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    // One pass without branches for the forbidden bytes (it vectorises), then the
    // segments: none empty but the last, none `.` or `..`.
    let forbidden = bytes.iter().fold(false, |bad, &b| {
        bad | (b == b'%') | (b == b'\\') | (b < 0x20) | (b == 0x7f)
    });
    if forbidden {
        return false;
    }
    let mut segments = bytes
        .get(1..)
        .unwrap_or(&[])
        .split(|&b| b == b'/')
        .peekable();
    while let Some(seg) = segments.next() {
        match seg {
            b"." | b".." => return false,
            b"" if segments.peek().is_some() => return false,
            _ => {}
        }
    }
    true
}

/// Normalises a request path (without its query). See the [module docs](self).
///
/// # Errors
/// A [`PathError`] saying why the path cannot be served.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_canonical(path) {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // 1. Percent-decoding of unreserved characters; rejection of separators and controls.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEncoding);
            };
            let c = h * 16 + l;
            if c == b'/' || c == b'\\' {
                return Err(PathError::EncodedSeparator);
            }
            if c < 0x20 || c == 0x7f {
                return Err(PathError::ForbiddenCharacter);
            }
            if is_unreserved(c) {
                decoded.push(char::from(c));
            } else {
                decoded.push('%');
                decoded.push(char::from(
                    b"0123456789ABCDEF"
                        .get(usize::from(h))
                        .copied()
                        .unwrap_or(b'0'),
                ));
                decoded.push(char::from(
                    b"0123456789ABCDEF"
                        .get(usize::from(l))
                        .copied()
                        .unwrap_or(b'0'),
                ));
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::ForbiddenCharacter);
        }
        // Copy one UTF-8 character (the path is a `str`, so boundaries are valid).
        let width = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        if let Some(s) = path.get(i..i + width) {
            decoded.push_str(s);
        }
        i += width;
    }
    // 2. Segments: collapse empty ones, remove dot segments.
    let ends_with_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || ends_with_slash {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

/// Whether `path` lies under `base` (a normalised base path without trailing slash, or
/// `/`): equal, or followed by `/`. Returns the suffix (`proxy.pathsuffix`). The
/// reference the base-path trie (`select::BaseTrie`) is tested against.
#[cfg(test)]
pub(crate) fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    if base == "/" || base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// A base path as written, brought to the form base-path matching expects: normalised,
/// without trailing slash (or `/`).
pub(crate) fn normalize_base(base: &str) -> String {
    let trimmed = base.trim();
    let n = normalize(if trimmed.starts_with('/') {
        trimmed
    } else {
        return format!("/{}", trimmed.trim_end_matches('/'));
    })
    .map(Cow::into_owned)
    .unwrap_or_else(|_| trimmed.to_owned());
    let t = n.trim_end_matches('/');
    if t.is_empty() {
        "/".to_owned()
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/v1/api/items", "/a.b/c..d/.e"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments() {
        assert_eq!(n("/a/./b").unwrap(), "/a/b");
        assert_eq!(n("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(n("/v1/api/../admin").unwrap(), "/v1/admin");
        assert_eq!(n("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(n("/a/../../b").unwrap_err(), PathError::AboveRoot);
    }

    #[test]
    fn encoded_dots() {
        assert_eq!(n("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(n("/a/%2E%2E/b").unwrap(), "/b");
        assert_eq!(n("/a/.%2e/b").unwrap(), "/b");
        assert_eq!(n("/a/%2e/b").unwrap(), "/a/b");
        assert_eq!(n("/%2e%2e").unwrap_err(), PathError::AboveRoot);
    }

    #[test]
    fn slashes() {
        assert_eq!(n("//a///b").unwrap(), "/a/b");
        assert_eq!(n("/a//").unwrap(), "/a/");
        assert_eq!(n("/a%2Fb").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a%2fb").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a%5Cb").unwrap_err(), PathError::EncodedSeparator);
        assert_eq!(n("/a\\b").unwrap_err(), PathError::ForbiddenCharacter);
        assert_eq!(n("/a%00b").unwrap_err(), PathError::ForbiddenCharacter);
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(n("/%61%62c").unwrap(), "/abc");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(n("/a%3ab").unwrap(), "/a%3Ab");
        assert_eq!(n("/a%2").unwrap_err(), PathError::BadEncoding);
        assert_eq!(n("/a%zz").unwrap_err(), PathError::BadEncoding);
        assert_eq!(n("a").unwrap_err(), PathError::NotAbsolute);
        assert_eq!(n("/é/%C3%A9").unwrap(), "/é/%C3%A9");
    }

    #[test]
    fn base_paths() {
        assert_eq!(strip_base("/v1/api/x", "/v1/api"), Some("/x"));
        assert_eq!(strip_base("/v1/api", "/v1/api"), Some(""));
        assert_eq!(strip_base("/v1/api/", "/v1/api"), Some("/"));
        assert_eq!(strip_base("/v1/apix", "/v1/api"), None);
        assert_eq!(strip_base("/x", "/"), Some("/x"));
        assert_eq!(normalize_base("/v1/api/"), "/v1/api");
        assert_eq!(normalize_base("v1"), "/v1");
        assert_eq!(normalize_base("/"), "/");
    }
}
