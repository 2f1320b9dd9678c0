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
    let wanted = wanted.as_bytes();
    if wanted.is_empty() {
        return false;
    }
    // At the start of each word: one comparison with `wanted`, then a jump to the next
    // space (scopes are a few short words; a general splitter costs more than that).
    let mut word = granted.as_bytes();
    loop {
        if let Some(after) = word.strip_prefix(wanted)
            && after.first().is_none_or(|&b| b == b' ')
        {
            return true;
        }
        match word.iter().position(|&b| b == b' ') {
            Some(space) => word = word.get(space + 1..).unwrap_or_default(),
            None => return false,
        }
    }
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
        assert!(scope_contains("a  b", "b"));
        assert!(!scope_contains("bb", "b"));
    }

    proptest::proptest! {
        #[test]
        fn scope_contains_is_a_word_of_the_split(
            granted in "[ab ]{0,12}",
            wanted in "[ab]{1,3}",
        ) {
            proptest::prop_assert_eq!(
                scope_contains(&granted, &wanted),
                granted.split(' ').any(|w| w == wanted)
            );
        }
    }
}
