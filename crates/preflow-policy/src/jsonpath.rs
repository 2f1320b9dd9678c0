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
    Filter(Filter),
}

/// `[?(@.a.b)]` or `[?(@.a.b OP literal)]`.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<String>,
    test: Option<(Op, serde_json::Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

fn parse_filter(inner: &str) -> Result<Filter, JsonPathError> {
    let bad = || JsonPathError(format!("unsupported filter `[{inner}]`"));
    let body = inner
        .strip_prefix("?(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(bad)?
        .trim();
    let (lhs, test) = match ["==", "!=", "<=", ">=", "<", ">"]
        .iter()
        .find_map(|op| body.split_once(op).map(|(l, r)| (l, *op, r)))
    {
        Some((l, op, r)) => {
            let op = match op {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<=" => Op::Le,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                _ => Op::Gt,
            };
            let r = r.trim();
            let lit = match r
                .strip_prefix('\'')
                .and_then(|x| x.strip_suffix('\''))
                .or_else(|| r.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
            {
                Some(q) => serde_json::Value::String(q.to_owned()),
                None => serde_json::from_str(r).map_err(|_| bad())?,
            };
            (l.trim(), Some((op, lit)))
        }
        None => (body, None),
    };
    let path = lhs.strip_prefix("@.").ok_or_else(bad)?;
    Ok(Filter {
        path: path.split('.').map(str::to_owned).collect(),
        test,
    })
}

fn compare(a: &serde_json::Value, op: Op, b: &serde_json::Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (serde_json::Value::String(x), serde_json::Value::String(y)) => Some(x.cmp(y)),
        _ => (a == b).then_some(Ordering::Equal),
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
    }
}

impl Filter {
    fn accepts(&self, item: &serde_json::Value) -> bool {
        let mut v = Some(item);
        for k in &self.path {
            v = v.and_then(|x| x.get(k.as_str()));
        }
        match (v, &self.test) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(x), Some((op, lit))) => compare(x, *op, lit),
        }
    }
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
            } else if inner.starts_with('?') {
                Seg::Filter(parse_filter(inner)?)
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
/// counts from the end), `[*]`, `.*`, `..name` and filters `[?(@.a.b)]` and
/// `[?(@.a.b OP literal)]` (OP one of `== != < <= > >=`). Slices and unions are not
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
                Seg::Filter(f) => match v {
                    serde_json::Value::Array(a) => next.extend(a.iter().filter(|x| f.accepts(x))),
                    serde_json::Value::Object(m) => {
                        next.extend(m.values().filter(|x| f.accepts(x)));
                    }
                    _ => {}
                },
            }
        }
        current = next;
    }
    Ok(current)
}
