//! API resource path patterns of API products (spec/policies.md §6.3).
//!
//! The rules are those of Google's Apigee remote-service library:
//!
//! * `/` alone matches every path;
//! * `*` matches within one segment (`[^/]*`);
//! * `**` is allowed only as a suffix and matches anything to the end (`.*`); `/**`
//!   also matches the empty suffix of a request to the base path itself;
//! * everything else matches exactly.

use crate::error::RegistryError;

/// Longest accepted resource pattern, in bytes.
const MAX_PATTERN_LEN: usize = 1024;

/// A compiled API resource pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePattern {
    source: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    /// `/`: any path.
    Any,
    /// No wildcard: the path must be equal.
    Exact,
    /// `literal/**` with no other wildcard: the path must start with the literal.
    LiteralPrefix(String),
    /// Segments matched one to one; `*` globs within a segment.
    Segments(Vec<String>),
    /// Leading segments matched one to one, then the last one as a prefix glob, then
    /// anything (`…/**`).
    Prefix { full: Vec<String>, partial: String },
}

impl ResourcePattern {
    /// Compiles a resource pattern such as `/`, `/*`, `/**`, `/hello` or `/foo/*/bar`.
    pub fn new(pattern: &str) -> Result<Self, RegistryError> {
        let invalid = |reason| RegistryError::InvalidResource {
            path: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
            return Err(invalid("length must be 1 to 1024 bytes"));
        }
        if !pattern.starts_with('/') {
            return Err(invalid("must start with '/'"));
        }
        if pattern == "/" {
            return Ok(Self {
                source: pattern.to_owned(),
                kind: PatternKind::Any,
            });
        }
        let (body, double) = match pattern.strip_suffix("**") {
            Some(b) => (b, true),
            None => (pattern, false),
        };
        if body.contains("**") {
            return Err(invalid("'**' is allowed only at the end"));
        }
        if !body.contains('*') {
            let kind = if double {
                PatternKind::LiteralPrefix(body.to_owned())
            } else {
                PatternKind::Exact
            };
            return Ok(Self {
                source: pattern.to_owned(),
                kind,
            });
        }
        let mut segments: Vec<String> = body.split('/').map(str::to_owned).collect();
        let kind = if double {
            let partial = segments.pop().unwrap_or_default();
            PatternKind::Prefix {
                full: segments,
                partial,
            }
        } else {
            PatternKind::Segments(segments)
        };
        Ok(Self {
            source: pattern.to_owned(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether a path suffix (`proxy.pathsuffix`) matches this pattern.
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Exact => path == self.source,
            // `/**` also matches the base path itself (an empty suffix), as a request to
            // `/v1/catalogservice` is one to `/v1/catalogservice/`.
            PatternKind::LiteralPrefix(prefix) => {
                path.starts_with(prefix.as_str()) || (path.is_empty() && prefix == "/")
            }
            PatternKind::Segments(segs) => {
                let mut parts = path.split('/');
                for seg in segs {
                    match parts.next() {
                        Some(p) if glob(seg.as_bytes(), p.as_bytes()) => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
            PatternKind::Prefix { full, partial } => {
                let mut parts = path.split('/');
                for seg in full {
                    match parts.next() {
                        Some(p) if glob(seg.as_bytes(), p.as_bytes()) => {}
                        _ => return false,
                    }
                }
                match parts.next() {
                    Some(p) => glob_prefix(partial.as_bytes(), p.as_bytes()),
                    None => false,
                }
            }
        }
    }
}

/// Wildcard match of one segment: `*` matches any run of bytes (segments hold no `/`).
/// Classic linear-time algorithm with a single backtrack point.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    glob_impl(pattern, text, false)
}

/// Whether some prefix of `text` matches `pattern` (as if it ended with `*`).
fn glob_prefix(pattern: &[u8], text: &[u8]) -> bool {
    glob_impl(pattern, text, true)
}

fn glob_impl(pattern: &[u8], text: &[u8], trailing_star: bool) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            None if trailing_star => return true,
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if Some(c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        ResourcePattern::new(p).unwrap().matches(path)
    }

    #[test]
    fn spec_vectors() {
        for path in ["/", "/foo", "/foo/bar"] {
            assert!(m("/", path));
        }
        for path in ["/", "/foo", "/foo/bar/baz"] {
            assert!(m("/**", path));
        }
        assert!(m("/*", "/"));
        assert!(m("/*", "/foo"));
        assert!(!m("/*", "/foo/bar"));
        assert!(m("/foo", "/foo"));
        assert!(!m("/foo", "/"));
        assert!(!m("/foo", "/foo/bar"));
        assert!(m("/foo/*", "/foo/bar"));
        assert!(!m("/foo/*", "/foo/bar/baz"));
        assert!(m("/foo/**", "/foo/bar/baz"));
        assert!(m("/*/bar", "/foo/bar"));
        assert!(m("/*/*/baz", "/foo/bar/baz"));
    }

    #[test]
    fn more_cases() {
        assert!(m("/hello", "/hello"));
        assert!(!m("/hello", "/hello2"));
        assert!(m("/he*o", "/hello"));
        assert!(!m("/he*o", "/he/o"));
        assert!(m("/foo**", "/foobar/baz"));
        assert!(!m("/foo/**", "/bar/x"));
        assert!(m("/*/**", "/a/b/c"));
        assert!(m("/fo*o**", "/foxo/x"));
        assert!(!m("/fo*o**", "/fxo/x"));
        assert!(m("/a*b/**", "/acb/d"));
        assert!(ResourcePattern::new("/**/bad").is_err());
        assert!(ResourcePattern::new("").is_err());
        assert!(ResourcePattern::new("foo").is_err());
    }
}
