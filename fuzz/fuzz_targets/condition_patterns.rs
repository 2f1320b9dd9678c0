//! Fuzzes the hand-written `Matches` and `MatchesPath` matchers against the regex
//! translations that `spec/conditions.md` §4.4 gives as the reference.
//!
//! Input: the first byte picks the operator (even: Matches, odd: MatchesPath); the rest is
//! UTF-8 text split at the first NUL into the pattern and the value. Patterns holding `"`
//! cannot be written as a string literal and are skipped, as are path patterns that both
//! sides reject (an unbalanced `{`); a pattern only one side rejects is a failure.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preflow_condition::{Error, MapVariables, Names, OwnedValue, ParseOptions, compile};
use regex::Regex;

/// Matches: `*` → `.*`, `%c` → quote(c), a trailing `%` → `%`, other → quote(char).
fn glob_oracle(pattern: &str) -> Option<Regex> {
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
    regex::RegexBuilder::new(&re)
        .size_limit(1 << 26)
        .build()
        .ok()
}

/// MatchesPath by the steps of §4.4; `Err(())` when a `{` has no `}` in its element.
fn path_oracle(pattern: &str) -> Result<Option<Regex>, ()> {
    let mut pieces = Vec::new();
    for piece in pattern.split('/') {
        if piece == "**" {
            pieces.push(".*".to_owned());
            continue;
        }
        if piece == "*" {
            pieces.push("[^/]*".to_owned());
            continue;
        }
        let chars: Vec<char> = piece.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            match c {
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
                    let close = chars[i..].iter().position(|&c| c == '}').ok_or(())?;
                    out.push_str("[^/]*");
                    i += close + 1;
                }
                c => {
                    out.push_str(&regex::escape(&c.to_string()));
                    i += 1;
                }
            }
        }
        pieces.push(out);
    }
    let re = format!("(?s)^{}$", pieces.join("/"));
    Ok(regex::RegexBuilder::new(&re)
        .size_limit(1 << 26)
        .build()
        .ok())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Some((pattern, value)) = text.split_once('\0') else {
        return;
    };
    if pattern.contains('"') {
        return;
    }
    let path = selector % 2 == 1;
    let op = if path { "MatchesPath" } else { "Matches" };
    let condition = format!("v {op} \"{pattern}\"");
    let compiled = match compile(&condition, &ParseOptions::default(), &Names) {
        Ok(c) => Some(c),
        Err(Error::Compile(_)) => None,
        // Too long for the parser: nothing to compare.
        Err(_) => return,
    };
    let oracle = if path {
        path_oracle(pattern)
    } else {
        Ok(glob_oracle(pattern))
    };
    match (compiled, oracle) {
        (None, Err(())) => {}
        (Some(c), Ok(Some(re))) => {
            let mut vars = MapVariables::default();
            vars.set("v", OwnedValue::String(value.to_owned()));
            assert_eq!(
                c.eval(&vars),
                re.is_match(value),
                "{op} {pattern:?} against {value:?}"
            );
        }
        // The oracle regex grew past its size limit: no verdict.
        (Some(_), Ok(None)) => {}
        (c, o) => panic!(
            "{op} {pattern:?}: engine compiled = {}, oracle translated = {}",
            c.is_some(),
            o.is_ok()
        ),
    }
});
