//! OAuth scopes (RFC 6749 §3.3).

/// Whether `s` is a scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Parses a space-delimited scope string. `None` when a token is malformed (e.g. a
/// double space, a quote, a backslash or a non-ASCII character).
pub fn parse_scope(s: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(' ') {
        if !is_scope_token(tok) {
            return None;
        }
        if !out.iter().any(|t| t == tok) {
            out.push(tok.to_owned());
        }
    }
    Some(out)
}

/// Joins scopes with single spaces.
pub fn join_scope(scopes: &[impl AsRef<str>]) -> String {
    let mut out = String::new();
    for (i, s) in scopes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(s.as_ref());
    }
    out
}

/// Whether the space-separated scope string `granted` contains `wanted`.
pub fn scope_contains(granted: &str, wanted: &str) -> bool {
    if wanted.is_empty() {
        return false;
    }
    // Splitting beats a substring search here: scopes are a few short words.
    let wanted = wanted.as_bytes();
    granted
        .as_bytes()
        .split(|&b| b == b' ')
        .any(|g| g == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_syntax() {
        assert_eq!(
            parse_scope("read write read"),
            Some(vec!["read".into(), "write".into()])
        );
        assert_eq!(parse_scope("read  write"), None);
        assert_eq!(parse_scope("re\"ad"), None);
        assert_eq!(parse_scope("re\\ad"), None);
        assert_eq!(
            parse_scope("ESBMessaging.Send"),
            Some(vec!["ESBMessaging.Send".into()])
        );
        assert!(scope_contains("a b c", "b"));
        assert!(!scope_contains("a bc", "b"));
        assert!(!scope_contains("ab c", "b"));
        assert!(scope_contains("ab b", "b"));
        assert!(scope_contains("b", "b"));
        assert!(!scope_contains("", "b"));
        assert!(!scope_contains("a b", ""));
    }
}
