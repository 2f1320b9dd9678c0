//! Necessary conditions read off a condition's tree at build time, checked before the
//! compiled condition: a literal prefix that `proxy.pathsuffix` must have and a verb that
//! `request.verb` must equal. When a guard fails, the condition is false without being
//! evaluated; when it holds, the condition is evaluated as usual. Guards only ever
//! short-cut conditions that would be false, so results never change.

use preflow_condition::ast::{Comparison, Condition, Expr, Literal, Op, Operand};

/// What must hold for a condition to be true.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Guard {
    /// `proxy.pathsuffix` starts with this.
    pub prefix: Option<Box<str>>,
    /// `request.verb` equals this.
    pub verb: Option<Box<str>>,
    /// The guard decides the condition on its own: the condition is an `AND` of
    /// `proxy.pathsuffix MatchesPath "/lit/**"`, `proxy.pathsuffix StartsWith "lit"` and
    /// `request.verb = "VERB"` comparisons, which hold exactly when the guard holds.
    pub exact: bool,
}

impl Guard {
    pub(crate) fn is_empty(&self) -> bool {
        self.prefix.is_none() && self.verb.is_none()
    }

    /// Whether the guard holds for this path suffix and verb.
    #[inline]
    pub(crate) fn holds(&self, suffix: &str, verb: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.prefix.as_deref().is_none_or(|p| suffix.starts_with(p))
    }
}

/// The literal start of a path pattern, up to its first wildcard, `{name}` or `%` escape
/// (spec/conditions.md §4.4: literal pieces match literally, from the start).
fn path_pattern_prefix(p: &str) -> &str {
    match p.find(['*', '%', '{']) {
        None => p,
        Some(at) => p.get(..at).unwrap_or(""),
    }
}

fn glob_prefix(p: &str) -> &str {
    match p.find(['*', '?', '%', '\\', '[']) {
        None => p,
        Some(at) => p.get(..at).unwrap_or(""),
    }
}

fn compare(c: &Comparison) -> Guard {
    let mut g = Guard::default();
    if c.negated {
        return g;
    }
    let Operand::Literal {
        value: Literal::String(lit),
        ..
    } = &c.rhs
    else {
        return g;
    };
    match c.lhs.name.as_str() {
        "proxy.pathsuffix" => {
            // `/lit/**` (reference algorithm: `/lit/` then anything) and StartsWith are
            // exactly a prefix test.
            g.exact = match c.op {
                Op::StartsWith => !lit.is_empty(),
                Op::MatchesPath => lit
                    .strip_suffix("/**")
                    .is_some_and(|head| !head.contains(['*', '%', '{', '}'])),
                _ => false,
            };
            let prefix = match c.op {
                Op::Equals | Op::StartsWith => lit.as_str(),
                Op::MatchesPath => path_pattern_prefix(lit),
                Op::Matches => glob_prefix(lit),
                _ => "",
            };
            if !prefix.is_empty() {
                g.prefix = Some(prefix.into());
            }
        }
        "request.verb" if c.op == Op::Equals => {
            g.verb = Some(lit.as_str().into());
            g.exact = true;
        }
        _ => {}
    }
    g
}

fn common_prefix(a: &str, b: &str) -> Box<str> {
    let n = a
        .char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    a.get(..n).unwrap_or("").into()
}

fn of(e: &Expr, depth: usize) -> Guard {
    if depth > 64 {
        return Guard::default();
    }
    match e {
        Expr::Compare(c) => compare(c),
        Expr::And { lhs, rhs, .. } => {
            let (a, b) = (of(lhs, depth + 1), of(rhs, depth + 1));
            // Both must hold. Of two prefixes keep the longer when it extends the other
            // (then it implies it), else the left one (then the guard is only necessary).
            let mut exact = a.exact && b.exact;
            let prefix = match (a.prefix, b.prefix) {
                (Some(x), Some(y)) if y.starts_with(&*x) => Some(y),
                (Some(x), Some(y)) => {
                    exact &= x.starts_with(&*y);
                    Some(x)
                }
                (x, y) => x.or(y),
            };
            let verb = match (a.verb, b.verb) {
                (Some(x), Some(y)) => {
                    exact &= x == y;
                    Some(x)
                }
                (x, y) => x.or(y),
            };
            Guard {
                prefix,
                verb,
                exact,
            }
        }
        Expr::Or { lhs, rhs, .. } => {
            let (a, b) = (of(lhs, depth + 1), of(rhs, depth + 1));
            Guard {
                prefix: match (a.prefix, b.prefix) {
                    (Some(x), Some(y)) => {
                        let p = common_prefix(&x, &y);
                        (!p.is_empty()).then_some(p)
                    }
                    _ => None,
                },
                verb: match (a.verb, b.verb) {
                    (Some(x), Some(y)) if x == y => Some(x),
                    _ => None,
                },
                exact: false,
            }
        }
        Expr::Not { .. } | Expr::Operand(_) => Guard::default(),
    }
}

/// The guard of a parsed condition.
pub(crate) fn guard(c: &Condition) -> Guard {
    c.expr.as_ref().map_or_else(Guard::default, |e| of(e, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflow_condition::parse;

    #[test]
    fn exact_guards() {
        let e = |t: &str| guard(&parse(t).unwrap()).exact;
        assert!(e(
            r#"(proxy.pathsuffix MatchesPath "/orders/**") and (request.verb = "GET")"#
        ));
        assert!(e(r#"proxy.pathsuffix StartsWith "/a""#));
        assert!(!e(r#"proxy.pathsuffix MatchesPath "/a/*""#));
        assert!(!e(r#"proxy.pathsuffix MatchesPath "/a/**/b""#));
        assert!(!e(r#"proxy.pathsuffix = "/a""#));
        assert!(!e(r#"request.verb = "GET" or request.verb = "POST""#));
        assert!(!e(r#"request.verb = "GET" and request.verb = "POST""#));
        assert!(!e(r#"request.verb = "GET" and request.header.x = "1""#));
    }

    fn g(text: &str) -> (Option<String>, Option<String>) {
        let c = parse(text).unwrap();
        let g = guard(&c);
        (g.prefix.map(String::from), g.verb.map(String::from))
    }

    #[test]
    fn guards() {
        assert_eq!(
            g(r#"(proxy.pathsuffix MatchesPath "/orders/**") and (request.verb = "GET")"#),
            (Some("/orders/".into()), Some("GET".into()))
        );
        assert_eq!(
            g(r#"proxy.pathsuffix MatchesPath "/a/*/b""#).0.as_deref(),
            Some("/a/")
        );
        assert_eq!(
            g(r#"proxy.pathsuffix MatchesPath "/OAuthToken""#)
                .0
                .as_deref(),
            Some("/OAuthToken")
        );
        assert_eq!(
            g(r#"proxy.pathsuffix = "/x" or proxy.pathsuffix = "/y""#)
                .0
                .as_deref(),
            Some("/")
        );
        assert_eq!(
            g(r#"proxy.pathsuffix = "/x" or request.verb = "GET""#),
            (None, None)
        );
        assert_eq!(g(r#"not (proxy.pathsuffix = "/x")"#), (None, None));
        assert_eq!(g(r#"proxy.pathsuffix !~/ "/x""#), (None, None));
        assert_eq!(g(r#"proxy.pathsuffix ~~ "/x.*""#), (None, None));
        assert_eq!(
            g(r#"proxy.pathsuffix Matches "/ab*c""#).0.as_deref(),
            Some("/ab")
        );
        let seed = r#"(proxy.pathsuffix MatchesPath "/OAuthToken" OR proxy.pathsuffix MatchesPath "/OAuthToken/**" OR proxy.pathsuffix MatchesPath "/OAuthToken(**")AND(request.verb = "POST")"#;
        assert_eq!(g(seed), (Some("/OAuthToken".into()), Some("POST".into())));
    }

    /// A guard that fails implies the compiled condition is false.
    #[test]
    fn guards_agree_with_evaluation() {
        use preflow_condition::{MapVariables, Names, OwnedValue};
        let patterns = [
            "/",
            "/a",
            "/a/",
            "/a/*",
            "/a/**",
            "/a/*/b",
            "/a/**/b",
            "/a{x}",
            "/a/{id}",
            "/OAuthToken(**",
            "/a%*b",
            "**",
            "*",
            "/ab*c",
            "/a b",
        ];
        let paths = [
            "",
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/a/b/c",
            "/ab",
            "/abc",
            "/a/x/b",
            "/OAuthToken(x",
            "/OAuthToken",
            "/a*b",
            "/b",
            "/a b",
            "/A",
        ];
        for p in patterns {
            for op in ["MatchesPath", "Matches", "StartsWith", "="] {
                let text = format!(r#"proxy.pathsuffix {op} "{p}""#);
                let Ok(c) = parse(&text) else { continue };
                let Ok(compiled) = c.compile(&text, &Names) else {
                    continue;
                };
                let gd = guard(&c);
                for path in paths {
                    let mut vars = MapVariables::default();
                    vars.set("proxy.pathsuffix", OwnedValue::String(path.into()));
                    let holds = gd.prefix.as_deref().is_none_or(|x| path.starts_with(x));
                    if !holds {
                        assert!(!compiled.eval(&vars), "{text} on {path:?}: guard {gd:?}");
                    }
                    if gd.exact {
                        assert_eq!(
                            compiled.eval(&vars),
                            holds,
                            "{text} on {path:?}: guard {gd:?}"
                        );
                    }
                }
            }
        }
    }
}
