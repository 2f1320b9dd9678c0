//! The message-template functions of Apigee's reference ("Message templates", function
//! reference): case, escaping, substrings and regular expressions, JSONPath and XPath,
//! time formatting, Base64, hashes, random numbers, UUIDs and `xeger`.
//!
//! An argument in single or double quotes is literal text. Any other argument is a
//! variable name when it names a set variable; otherwise its text is used as written
//! (numbers, JSONPath and XPath expressions, `format` strings). A function whose input
//! does not resolve, or that cannot compute its result, is unresolved (see
//! `IgnoreUnresolvedVariables`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::runtime::Runtime;
use crate::vars::write_value;

use super::time_format::format_time;

/// Longest text a template function builds (a `replaceAll` result, a decoded value).
const MAX_RESULT: usize = 1 << 20;

/// Splits a function's argument text at the commas outside quotes, brackets and
/// parentheses, trimming each argument.
pub(crate) fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (None, '(' | '[') => {
                depth += 1;
                current.push(c);
            }
            (None, ')' | ']') => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            (None, ',') if depth == 0 => {
                args.push(current.trim().to_owned());
                current.clear();
            }
            (None, c) => current.push(c),
        }
    }
    if !text.trim().is_empty() {
        args.push(current.trim().to_owned());
    }
    args
}

/// An argument in quotes: its text.
fn quoted(a: &str) -> Option<&str> {
    a.strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| a.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
}

/// The value of a variable argument, or `None` when it does not resolve.
fn variable<R: Runtime + ?Sized>(rt: &R, a: &str) -> Option<String> {
    if let Some(q) = quoted(a) {
        return Some(q.to_owned());
    }
    if !super::is_variable_name(a) {
        return None;
    }
    let mut s = String::new();
    write_value(rt.value(&rt.resolve(a)), &mut s).then_some(s)
}

/// A specification argument (a number, a path, a format): quoted text, a set variable,
/// or the text as written.
fn spec<R: Runtime + ?Sized>(rt: &R, a: &str) -> String {
    variable(rt, a).unwrap_or_else(|| a.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Java's `substring(begin, end)` on characters; out of range is unresolved.
fn substring(s: &str, begin: &str, end: Option<&str>) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let begin: usize = begin.trim().parse().ok()?;
    let end: usize = match end {
        Some(e) => e.trim().parse().ok()?,
        None => chars.len(),
    };
    (begin <= end && end <= chars.len())
        .then(|| chars.get(begin..end).unwrap_or(&[]).iter().collect())
}

/// A Java replacement string (`$1`, `\$`) in the `regex` crate's syntax (`${1}`, `$$`).
fn java_replacement(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(x) => out.push(x),
                None => {}
            },
            '$' => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                if n.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{n}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn replace(s: &str, pattern: &str, replacement: &str, all: bool) -> Option<String> {
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .ok()?;
    let r = java_replacement(replacement);
    let out = if all {
        re.replace_all(s, r.as_str())
    } else {
        re.replace(s, r.as_str())
    };
    (out.len() <= MAX_RESULT).then(|| out.into_owned())
}

/// `jsonPath(path, json[, wantArray])`: one match as its text (strings unquoted), several
/// (or any number with `wantArray` true) as a JSON array.
fn json_path(path: &str, json: &str, want_array: bool) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let found = crate::jsonpath::json_path(&v, path).ok()?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match found.as_slice() {
        [] if !want_array => None,
        [one] if !want_array => Some(text(one)),
        many => {
            Some(serde_json::Value::Array(many.iter().map(|v| (*v).clone()).collect()).to_string())
        }
    }
}

/// `xPath(expression, xml[, namespace…][, type])`: namespaces as `prefix:uri`; the type
/// `nodeset` gives every node's text, `boolean` and `number` the value as XPath
/// converts it, the default the first node's text (XPath's `string()`).
fn x_path<R: Runtime + ?Sized>(rt: &R, args: &[String]) -> Option<String> {
    let expr = spec(rt, args.first()?);
    let xml = variable(rt, args.get(1)?)?;
    let mut namespaces = Vec::new();
    let mut kind = None;
    for a in args.iter().skip(2) {
        let v = spec(rt, a);
        match v.as_str() {
            "nodeset" | "boolean" | "number" | "string" => kind = Some(v),
            _ => {
                let (p, uri) = v.split_once(':')?;
                namespaces.push((p.trim().to_owned(), uri.trim().to_owned()));
            }
        }
    }
    let value = crate::xpath::evaluate(&xml, &expr, &namespaces).ok()?;
    match kind.as_deref() {
        Some("nodeset") => Some(value.strings().concat()),
        Some("boolean") => Some(
            match value {
                crate::xpath::XPathValue::Boolean(b) => b,
                crate::xpath::XPathValue::Nodes(n) => !n.is_empty(),
                crate::xpath::XPathValue::String(s) => !s.is_empty(),
                crate::xpath::XPathValue::Number(n) => n != 0.0 && !n.is_nan(),
            }
            .to_string(),
        ),
        Some("number") => {
            let s = value.first()?;
            let n: f64 = s.trim().parse().ok()?;
            Some(if n.fract() == 0.0 && n.abs() < 1e15 {
                format!("{}", n as i64)
            } else {
                n.to_string()
            })
        }
        _ => value.first(),
    }
}

/// A random 64-bit number in `[min, max)` (defaults: 0 and `i64::MAX`).
fn random_long(min: Option<&str>, max: Option<&str>) -> Option<String> {
    use rand::Rng as _;
    let min: i64 = min.map_or(Some(0), |m| m.trim().parse().ok())?;
    let max: i64 = max.map_or(Some(i64::MAX), |m| m.trim().parse().ok())?;
    (min < max).then(|| rand::rng().random_range(min..max).to_string())
}

/// `xeger(regex)`: a random string the regular expression matches, repetitions
/// bounded at 16 so that the text stays short.
fn xeger(pattern: &str) -> Option<String> {
    use rand::Rng as _;
    let generator = rand_regex::Regex::compile(pattern, 16).ok()?;
    let s: String = rand::rng().sample(&generator);
    (s.len() <= MAX_RESULT).then_some(s)
}

/// A random (version 4) UUID.
fn create_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn digest<D: md5::Digest>(s: &str) -> Vec<u8> {
    let mut d = D::new();
    d.update(s.as_bytes());
    d.finalize().to_vec()
}

/// A template function's result; `None` when it does not resolve.
pub(crate) fn call<R: Runtime + ?Sized>(rt: &R, name: &str, args: &[String]) -> Option<String> {
    let value = |i: usize| args.get(i).and_then(|a| variable(rt, a));
    let spec_at = |i: usize| args.get(i).map(|a| spec(rt, a));
    let out = match name {
        "firstnonnull" => args.iter().find_map(|a| variable(rt, a))?,
        "escapeJSON" => {
            let q = serde_json::Value::String(value(0)?).to_string();
            q.get(1..q.len().saturating_sub(1)).unwrap_or("").to_owned()
        }
        "escapeXML" => quick_xml::escape::escape(value(0)?.as_str()).into_owned(),
        "escapeXML11" => quick_xml::escape::escape(value(0)?.as_str()).into_owned(),
        "toLowerCase" => value(0)?.to_lowercase(),
        "toUpperCase" => value(0)?.to_uppercase(),
        "substring" => substring(&value(0)?, &spec_at(1)?, spec_at(2).as_deref())?,
        "replaceAll" => replace(&value(0)?, &spec_at(1)?, &spec_at(2)?, true)?,
        "replaceFirst" => replace(&value(0)?, &spec_at(1)?, &spec_at(2)?, false)?,
        "jsonPath" => json_path(
            &spec_at(0)?,
            &value(1)?,
            spec_at(2).is_some_and(|w| w.eq_ignore_ascii_case("true")),
        )?,
        "xPath" => x_path(rt, args)?,
        "timeFormat" | "timeFormatUTC" => {
            let secs: i64 = value(1)?.trim().parse().ok()?;
            format_time(&spec_at(0)?, secs.checked_mul(1000)?)?
        }
        "timeFormatMs" | "timeFormatUTCMs" => {
            let ms: i64 = value(1)?.trim().parse().ok()?;
            format_time(&spec_at(0)?, ms)?
        }
        "encodeBase64" => B64.encode(value(0)?.as_bytes()),
        "decodeBase64" => {
            let bytes = B64.decode(value(0)?.trim().as_bytes()).ok()?;
            String::from_utf8(bytes).ok()?
        }
        "md5Hex" => hex(&digest::<md5::Md5>(&value(0)?)),
        "md5Base64" => B64.encode(digest::<md5::Md5>(&value(0)?)),
        "sha1Hex" => hex(&digest::<sha1::Sha1>(&value(0)?)),
        "sha1Base64" => B64.encode(digest::<sha1::Sha1>(&value(0)?)),
        "sha256Hex" => hex(&digest::<sha2::Sha256>(&value(0)?)),
        "sha256Base64" => B64.encode(digest::<sha2::Sha256>(&value(0)?)),
        "sha384Hex" => hex(&digest::<sha2::Sha384>(&value(0)?)),
        "sha384Base64" => B64.encode(digest::<sha2::Sha384>(&value(0)?)),
        "sha512Hex" => hex(&digest::<sha2::Sha512>(&value(0)?)),
        "sha512Base64" => B64.encode(digest::<sha2::Sha512>(&value(0)?)),
        "randomLong" => random_long(spec_at(0).as_deref(), spec_at(1).as_deref())?,
        "createUuid" => create_uuid(),
        "xeger" => xeger(&spec_at(0)?)?,
        _ => return None,
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_args(r#"header, '(a,b)', "x,y", $.a[?(@.n == 'a,b')].v"#),
            ["header", "'(a,b)'", "\"x,y\"", "$.a[?(@.n == 'a,b')].v"]
        );
        assert!(split_args("  ").is_empty());
    }

    #[test]
    fn java_replacements() {
        assert_eq!(java_replacement("$1abc"), "${1}abc");
        assert_eq!(java_replacement(r"\$5"), "$$5");
        assert_eq!(
            replace("Bearer abc", "^Bearer (.*)$", "token=$1", true).as_deref(),
            Some("token=abc")
        );
    }

    #[test]
    fn substrings_follow_java() {
        assert_eq!(
            substring("ABCDEFG", "2", Some("6")).as_deref(),
            Some("CDEF")
        );
        assert_eq!(substring("ABC", "1", None).as_deref(), Some("BC"));
        assert_eq!(substring("ABC", "2", Some("9")), None);
    }
}
