//! The JSONPath subset every policy uses (ExtractVariables, the format policies,
//! RegularExpressionProtection, DataCapture): one evaluator, so a path means the same
//! everywhere.

/// An expression outside the supported subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JSONPath: {0}")]
pub struct JsonPathError(String);

/// Deepest nesting `..name` descends into.
const MAX_DEPTH: usize = 100;

/// Longest JSONPath expression accepted.
const MAX_PATH_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Child(String),
    Index(i64),
    Wildcard,
    Descend(String),
}

fn parse_path(expr: &str) -> Result<Vec<Seg>, JsonPathError> {
    if expr.len() > MAX_PATH_LEN {
        return Err(JsonPathError(format!("longer than {MAX_PATH_LEN} bytes")));
    }
    let mut rest = expr.trim();
    rest = rest.strip_prefix('$').unwrap_or(rest);
    let mut segs = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, after) = r.split_at(end);
            if name.is_empty() {
                return Err(JsonPathError("`..` must be followed by a name".into()));
            }
            segs.push(Seg::Descend(name.to_owned()));
            rest = after;
        } else if let Some(r) = rest.strip_prefix(".[") {
            // `$.[0]` and `$.['a']`: Jayway, Apigee's JSONPath, reads the dot as nothing.
            rest = rest.get(1..).unwrap_or(r);
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, after) = r.split_at(end);
            segs.push(if name == "*" {
                Seg::Wildcard
            } else if name.is_empty() {
                return Err(JsonPathError("empty name after `.`".into()));
            } else {
                Seg::Child(name.to_owned())
            });
            rest = after;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| JsonPathError("`[` without `]`".into()))?;
            let (inner, after) = r.split_at(end);
            let inner = inner.trim();
            segs.push(if inner == "*" {
                Seg::Wildcard
            } else if let Some(q) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                Seg::Child(q.to_owned())
            } else {
                Seg::Index(
                    inner
                        .parse()
                        .map_err(|_| JsonPathError(format!("unsupported selector `[{inner}]`")))?,
                )
            });
            rest = after.get(1..).unwrap_or("");
        } else if segs.is_empty() {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            segs.push(Seg::Child(name.to_owned()));
            rest = after;
        } else {
            return Err(JsonPathError(format!("unexpected text `{rest}`")));
        }
    }
    Ok(segs)
}

/// Checks that `expr` is in the supported subset, without evaluating it.
///
/// # Errors
/// An expression outside the subset.
pub fn check_path(expr: &str) -> Result<(), JsonPathError> {
    parse_path(expr).map(drop)
}

fn descend<'v>(
    v: &'v serde_json::Value,
    name: &str,
    out: &mut Vec<&'v serde_json::Value>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            if let Some(x) = m.get(name) {
                out.push(x);
            }
            for x in m.values() {
                descend(x, name, out, depth + 1);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                descend(x, name, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Evaluates a JSONPath expression: the subset `$`, `.name`, `['name']`, `[n]` (negative
/// counts from the end), `[*]`, `.*` and `..name`. Filters, slices and unions are not
/// supported and are errors.
///
/// # Errors
/// An expression outside the subset.
pub fn json_path<'v>(
    value: &'v serde_json::Value,
    expr: &str,
) -> Result<Vec<&'v serde_json::Value>, JsonPathError> {
    let segs = parse_path(expr)?;
    let mut current = vec![value];
    for seg in &segs {
        let mut next = Vec::new();
        for v in current {
            match seg {
                Seg::Child(n) => {
                    if let Some(x) = v.get(n.as_str()) {
                        next.push(x);
                    }
                }
                Seg::Index(i) => {
                    if let serde_json::Value::Array(a) = v {
                        let idx = if *i < 0 {
                            i64::try_from(a.len()).ok().map(|len| len + i)
                        } else {
                            Some(*i)
                        };
                        if let Some(x) = idx
                            .and_then(|i| usize::try_from(i).ok())
                            .and_then(|i| a.get(i))
                        {
                            next.push(x);
                        }
                    }
                }
                Seg::Wildcard => match v {
                    serde_json::Value::Object(m) => next.extend(m.values()),
                    serde_json::Value::Array(a) => next.extend(a.iter()),
                    _ => {}
                },
                Seg::Descend(n) => descend(v, n, &mut next, 0),
            }
        }
        current = next;
    }
    Ok(current)
}
