//! `JavaRegex` patterns on the `regex` crate.
//!
//! Apigee runs `java.util.regex` with `Matcher.matches()`. This module compiles a pattern
//! for a full match and brings the two dialects closer where that is cheap and exact:
//!
//! * `\d`, `\w`, `\s` and their negations are ASCII classes, as in Java by default (the
//!   `regex` crate would make them Unicode-aware, and `\w{36}` would then compile to a
//!   program too large to keep per condition);
//! * `\Q…\E` quoting, which the `regex` crate lacks, becomes escaped literal text.
//!
//! Java constructs the `regex` crate cannot run (look-around, backreferences, atomic groups,
//! possessive quantifiers) are reported by name instead of as a generic syntax error, so
//! that a bundle author sees what to rewrite. A pattern is never accepted with a different
//! meaning silently changed by these steps.

use regex::Regex;

/// Why a pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegexError {
    /// What is wrong, one line.
    pub(crate) problem: String,
    /// How to fix it, when there is a likely fix.
    pub(crate) hint: Option<&'static str>,
}

const JAVA_ONLY_HINT: &str = "the regex engine has no look-around, backreferences, atomic groups or possessive quantifiers; rewrite the pattern without them";

/// Compiles `pattern` so that `is_match` is true only when the whole value matches.
pub(crate) fn compile(pattern: &str) -> Result<Regex, RegexError> {
    let translated = translate(pattern).map_err(|construct| RegexError {
        problem: format!("{construct} is not supported"),
        hint: Some(JAVA_ONLY_HINT),
    })?;
    let build = |p: &str| {
        regex::RegexBuilder::new(p).build().map_err(|e| RegexError {
            problem: regex_problem(&e),
            hint: None,
        })
    };
    // Compile the pattern alone first, so that an unbalanced `)` cannot escape the
    // anchoring group below.
    build(&translated)?;
    build(&format!(r"\A(?:{translated})\z"))
}

/// Rewrites Java-only spellings the `regex` crate can express, or names the first Java
/// construct it cannot.
fn translate(pattern: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut class_depth = 0usize;
    // After a quantifier, a `+` makes it possessive.
    let mut after_quantifier = false;
    // Inside `{n,m}`, whose `}` ends a quantifier (a lone `}` is a literal).
    let mut in_counted = false;
    let mut rest = pattern;
    while let Some(c) = chars.next() {
        let here = rest;
        rest = rest.get(c.len_utf8()..).unwrap_or("");
        let in_class = class_depth > 0;
        let mut quantifier = false;
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    // A trailing backslash: let the regex parser report it.
                    out.push('\\');
                    continue;
                };
                rest = rest.get(e.len_utf8()..).unwrap_or("");
                match e {
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' => out.push_str(ascii_class(e, in_class)),
                    'Q' => {
                        let (quoted, after) = rest.split_once(r"\E").unwrap_or((rest, ""));
                        out.push_str(&regex::escape(quoted));
                        // Skip the quoted text and the `\E` in the character stream too.
                        let skip = rest.len() - after.len();
                        let mut skipped = 0;
                        while skipped < skip {
                            match chars.next() {
                                Some(q) => skipped += q.len_utf8(),
                                None => break,
                            }
                        }
                        rest = after;
                    }
                    '1'..='9' if !in_class => return Err("a backreference"),
                    'k' if !in_class && rest.starts_with('<') => {
                        return Err("a named backreference");
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '[' => {
                class_depth += 1;
                out.push('[');
                // A `]` first in a class (after an optional `^`) is a literal.
                if chars.peek() == Some(&'^') {
                    chars.next();
                    rest = rest.get(1..).unwrap_or("");
                    out.push('^');
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                    rest = rest.get(1..).unwrap_or("");
                    out.push_str(r"\]");
                }
            }
            ']' if in_class => {
                class_depth -= 1;
                out.push(']');
            }
            '(' if !in_class => {
                if here.starts_with("(?=") || here.starts_with("(?!") {
                    return Err("look-ahead");
                }
                if here.starts_with("(?<=") || here.starts_with("(?<!") {
                    return Err("look-behind");
                }
                if here.starts_with("(?>") {
                    return Err("an atomic group");
                }
                out.push('(');
            }
            '+' if after_quantifier => return Err("a possessive quantifier"),
            '*' | '+' | '?' if !in_class => {
                quantifier = true;
                out.push(c);
            }
            '{' if !in_class => {
                in_counted = true;
                out.push('{');
            }
            '}' if !in_class && in_counted => {
                in_counted = false;
                quantifier = true;
                out.push('}');
            }
            other => out.push(other),
        }
        after_quantifier = quantifier;
    }
    Ok(out)
}

/// Java's default (ASCII) meaning of `\d \D \w \W \s \S`, spelled for use outside or inside
/// a character class. Inside a class a negated one is a nested class, which the `regex`
/// crate unions with the rest.
fn ascii_class(escape: char, in_class: bool) -> &'static str {
    match (escape, in_class) {
        ('d', false) => "[0-9]",
        ('d', true) => "0-9",
        ('D', _) => "[^0-9]",
        ('w', false) => "[0-9A-Za-z_]",
        ('w', true) => "0-9A-Za-z_",
        ('W', _) => "[^0-9A-Za-z_]",
        ('s', false) => r"[\t\n\x0B\x0C\r ]",
        ('s', true) => r"\t\n\x0B\x0C\r ",
        (_, _) => r"[^\t\n\x0B\x0C\r ]",
    }
}

/// The one-line description of a regex syntax error, without the rendering of the pattern.
fn regex_problem(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(text.trim())
            .to_owned(),
        regex::Error::CompiledTooBig(_) => "the compiled regex is too large".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(pattern: &str, value: &str) -> bool {
        compile(pattern).unwrap().is_match(value)
    }

    #[test]
    fn full_match() {
        assert!(full("/items/.+", "/items/foo"));
        assert!(!full("/items/.+", "/items/"));
        assert!(!full("/cat", "/cat/"));
        assert!(!full("a|b", "ab"));
        assert!(full("^/a$", "/a"));
        assert!(full("(?i)/cat", "/CAT"));
    }

    #[test]
    fn shorthand_classes_are_ascii_like_java() {
        assert!(full(r"\d+", "2024"));
        assert!(!full(r"\d", "٣"));
        assert!(full(r"\D", "٣"));
        assert!(full(r"\w+", "a_Z9"));
        assert!(!full(r"\w", "é"));
        assert!(full(r"\W", "é"));
        assert!(full(r"\s", "\u{b}"));
        assert!(!full(r"\s", "\u{a0}"));
        assert!(full(r"[\d-]+", "12-3"));
        assert!(full(r"[^\d]", "x"));
        assert!(!full(r"[^\d]", "5"));
        assert!(full(r"[\W]", "é"));
        assert!(full(r"\\d", r"\d"));
        // What used to be too large with Unicode classes.
        assert!(full(r"\w{36}", &"a".repeat(36)));
        assert!(full(r"[\w-]{100}", &"-".repeat(100)));
    }

    #[test]
    fn quoting() {
        assert!(full(r"\Qa.b\E", "a.b"));
        assert!(!full(r"\Qa.b\E", "axb"));
        // As in Java, a quantifier after the quote applies to its last character.
        assert!(full(r"x\Q(?=\E+", "x(?==="));
        assert!(!full(r"x\Q(?=\E+", "x(?=(?="));
        assert!(full(r"\Q*", "*"));
        assert!(full(r"[\Q]-\E]+", "]-]"));
    }

    #[test]
    fn java_only_constructs_are_named() {
        for (pattern, what) in [
            ("foo(?=bar)", "look-ahead"),
            ("foo(?!bar)", "look-ahead"),
            ("(?<=x)y", "look-behind"),
            ("(?<!x)y", "look-behind"),
            (r"(a)\1", "a backreference"),
            (r"(?<n>a)\k<n>", "a named backreference"),
            ("(?>ab)", "an atomic group"),
            ("a*+b", "a possessive quantifier"),
            ("a++", "a possessive quantifier"),
            ("a?+", "a possessive quantifier"),
            ("a{2}+", "a possessive quantifier"),
        ] {
            let e = compile(pattern).unwrap_err();
            assert_eq!(e.problem, format!("{what} is not supported"), "{pattern}");
            assert!(e.hint.is_some());
        }
        for ok in [
            r"a\*+",
            "[*]+",
            r"\d+",
            "(?<name>x)",
            "[+*]",
            "a}+",
            "x{2}",
            "[(?=]",
        ] {
            assert!(compile(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let e = compile("[a-").unwrap_err();
        assert!(!e.problem.contains('\n'), "{}", e.problem);
        assert!(e.hint.is_none());
        assert!(compile("a)|(b").is_err());
        assert!(compile(r"\p{javaLowerCase}").is_err());
    }
}
