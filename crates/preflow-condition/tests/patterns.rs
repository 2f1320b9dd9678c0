//! The hand-written `Matches` and `MatchesPath` matchers against an oracle: the regex
//! translations that `spec/conditions.md` §4.4 gives as the reference, run by the `regex`
//! crate.
//!
//! Patterns and values are drawn from an alphabet biased towards the characters that matter
//! (`/ * % { } a b .`), and half of the values are built from the pattern itself so that
//! matches are common. A pattern the oracle cannot translate (an unbalanced `{` in a path
//! expression) must be a compile error.

// Test code: a failed unwrap or index is a test failure, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use preflow_condition::{Error, MapVariables, Names, OwnedValue, ParseOptions, compile};
use proptest::prelude::*;
use regex::Regex;

/// Matches: `^` + translate + `$` with `*` → `.*`, `%c` → quote(c), other → quote(char).
/// `*` matches any character, line breaks included, hence `(?s)`. A `%` that ends the
/// pattern escapes nothing and is literal.
fn glob_oracle(pattern: &str) -> Regex {
    let mut re = String::from("(?s)^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '%' => re.push_str(&regex::escape(&chars.next().unwrap_or('%').to_string())),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).unwrap()
}

/// MatchesPath, the steps of §4.4: split on `/` keeping empty pieces; a piece that is
/// exactly `**` → `.*`; exactly `*` or `{name}` → `[^/]*`; inside a mixed piece `**` → `.*`,
/// `*` → `[^/]*`, `%c` → quote(c), `{name}` → `[^/]*`, other → quote(char); re-join with
/// `/`. `None` when a `{` has no `}` in its piece.
fn path_oracle(pattern: &str) -> Option<Regex> {
    let mut pieces = Vec::new();
    for piece in pattern.split('/') {
        let is_name = piece.len() >= 2
            && piece.starts_with('{')
            && piece.ends_with('}')
            && !piece[1..piece.len() - 1].contains('}');
        let translated = if piece == "**" {
            ".*".to_owned()
        } else if piece == "*" || is_name {
            "[^/]*".to_owned()
        } else {
            let mut out = String::new();
            let chars: Vec<char> = piece.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                match chars[i] {
                    '*' if chars.get(i + 1) == Some(&'*') => {
                        out.push_str(".*");
                        i += 2;
                    }
                    '*' => {
                        out.push_str("[^/]*");
                        i += 1;
                    }
                    '%' => {
                        let c = chars.get(i + 1).copied().unwrap_or('%');
                        out.push_str(&regex::escape(&c.to_string()));
                        i += 2;
                    }
                    '{' => {
                        let close = chars[i..].iter().position(|&c| c == '}')?;
                        out.push_str("[^/]*");
                        i += close + 1;
                    }
                    c => {
                        out.push_str(&regex::escape(&c.to_string()));
                        i += 1;
                    }
                }
            }
            out
        };
        pieces.push(translated);
    }
    Some(Regex::new(&format!("(?s)^{}$", pieces.join("/"))).unwrap())
}

/// Evaluates `v <op> "<pattern>"` through the public API; `None` on a compile error.
fn engine(op: &str, pattern: &str, value: &str) -> Option<bool> {
    let text = format!("v {op} \"{pattern}\"");
    match compile(&text, &ParseOptions::default(), &Names) {
        Ok(c) => {
            let mut vars = MapVariables::default();
            vars.set("v", OwnedValue::String(value.to_owned()));
            Some(c.eval(&vars))
        }
        Err(Error::Compile(_)) => None,
        Err(e) => panic!("`{text}` does not parse: {e}"),
    }
}

fn pattern_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => Just('/'),
        4 => Just('*'),
        2 => Just('%'),
        1 => Just('{'),
        1 => Just('}'),
        3 => Just('a'),
        2 => Just('b'),
        1 => Just('.'),
        1 => Just('é'),
        1 => Just('('),
    ]
}

fn value_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => Just('/'),
        4 => Just('a'),
        2 => Just('b'),
        1 => Just('.'),
        1 => Just('*'),
        1 => Just('%'),
        1 => Just('{'),
        1 => Just('}'),
        1 => Just('é'),
        1 => Just('\n'),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(pattern_char(), 0..12).prop_map(|v| v.into_iter().collect())
}

fn random_value() -> impl Strategy<Value = String> {
    prop::collection::vec(value_char(), 0..12).prop_map(|v| v.into_iter().collect())
}

/// A value built from `pattern`: each wildcard-ish character replaced by a short run of
/// value characters, everything else kept. Such values match far more often than random
/// ones, so both answers get exercised.
fn value_from(pattern: String) -> impl Strategy<Value = (String, String)> {
    let n = pattern.chars().count();
    (
        Just(pattern),
        prop::collection::vec(prop::collection::vec(value_char(), 0..4), n),
    )
        .prop_map(|(pattern, fills)| {
            let mut value = String::new();
            let mut chars = pattern.chars().zip(fills).peekable();
            while let Some((c, fill)) = chars.next() {
                match c {
                    '*' => value.extend(fill),
                    '%' => {
                        if let Some((next, _)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '{' => {
                        value.extend(fill);
                        for (c, _) in chars.by_ref() {
                            if c == '}' {
                                break;
                            }
                        }
                    }
                    c => value.push(c),
                }
            }
            (pattern, value)
        })
}

fn case() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (pattern(), random_value()),
        pattern().prop_flat_map(value_from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn matches_agrees_with_the_reference_regex((pattern, value) in case()) {
        let want = glob_oracle(&pattern).is_match(&value);
        prop_assert_eq!(engine("Matches", &pattern, &value), Some(want),
            "Matches {:?} against {:?}", pattern, value);
        prop_assert_eq!(engine("Not Matches", &pattern, &value), Some(!want));
    }

    #[test]
    fn matches_path_agrees_with_the_reference_regex((pattern, value) in case()) {
        let want = path_oracle(&pattern).map(|re| re.is_match(&value));
        prop_assert_eq!(engine("MatchesPath", &pattern, &value), want,
            "MatchesPath {:?} against {:?}", pattern, value);
    }
}

/// The oracles themselves reproduce the examples of §4.4, so that a wrong oracle cannot
/// silently agree with a wrong matcher.
#[test]
fn oracles_follow_the_spec_examples() {
    let path = |p: &str, v: &str| path_oracle(p).unwrap().is_match(v);
    assert!(path("/*/a/", "/x/a/"));
    assert!(path("/*/a/**", "/x/a/b/c/d"));
    assert!(path("/a/**/feed/**", "/a/b/feed/rss/1234"));
    assert!(!path("/a/**/feed/**", "/a/feed/rss"));
    assert!(path("%{user%}", "{user}"));
    assert!(!path("%{user%}", "user"));
    assert!(path("/items/*", "/items/"));
    assert!(!path("/items/**", "/items"));
    assert!(path("**/india/blr**", "/india/blrfoo"));
    assert!(path("/OAuthToken(**", "/OAuthToken(1)/Items"));
    assert!(path_oracle("/v3/{ticket").is_none());
    let glob = |p: &str, v: &str| glob_oracle(p).is_match(v);
    assert!(glob("/cat*", "/cat/bird/mouse"));
    assert!(glob("/c%*at", "/c*at"));
    assert!(!glob("/c%*at", "/cat"));
    assert!(!glob("/cat", "/cat/paws"));
}

/// Hand-picked shapes where two kinds of star meet, beyond what random search finds fast.
#[test]
fn tricky_shapes() {
    let shapes = [
        ("**a*b", "q/a/b/zzab"),
        ("**a*b", "q/zza/b"),
        ("/a*/b*/**", "/ax/by/"),
        ("/a*/b*/**", "/ax/by"),
        ("*a/*b", "xa/yb"),
        ("*a/*b", "xa/y/b"),
        ("a**b*c", "a/x/b/yc"),
        ("a**b*c", "a/x/by/c"),
        ("a**b*c", "ab/bc"),
        ("*/*/*", "a/b/c"),
        ("*/*/*", "a/b/c/d"),
        ("**/*", "a"),
        ("**/*", "/a"),
        ("{x}a{y}", "xxay"),
        ("{x}a{y}", "x/ay"),
    ];
    for (p, v) in shapes {
        let want = path_oracle(p).map(|re| re.is_match(v));
        assert_eq!(
            engine("MatchesPath", p, v),
            want,
            "MatchesPath {p:?} against {v:?}"
        );
        let want = glob_oracle(p).is_match(v);
        assert_eq!(
            engine("Matches", p, v),
            Some(want),
            "Matches {p:?} against {v:?}"
        );
    }
}
