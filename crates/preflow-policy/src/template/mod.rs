//! Message templates: text with variable references such as `{request.header.origin}`,
//! parsed once at load time into literal parts and references.
//!
//! A reference is recognised only when the text between the prefix and suffix characters
//! is a variable name (letters, digits, `_ . - $ [ ]`, starting with a letter or `_`) or a
//! function call `name(args)` without braces inside. Anything else, such as the braces of a
//! JSON payload, stays literal. The delimiters default to `{` and `}`; AssignMessage and
//! RaiseFault payloads can change them with `variablePrefix` and `variableSuffix`.

mod functions;
mod time_format;

pub(crate) use time_format::format_time;

use std::fmt;

use crate::runtime::Runtime;
use crate::vars::write_value;

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A variable reference, by name.
    Variable(String),
    /// A template function call such as `firstnonnull(a,b)` or `escapeJSON(x)`.
    Function {
        /// Function name.
        name: String,
        /// Arguments as written, split on commas and trimmed.
        args: Vec<String>,
    },
}

/// A parsed message template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

/// A variable the lookup could not resolve while rendering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unresolved variable `{0}`")]
pub struct Unresolved(pub String);

impl Template {
    /// Parses `text` with the default delimiters `{` and `}`.
    pub fn parse(text: &str) -> Self {
        Self::parse_with(text, '{', '}')
    }

    /// Parses `text` with custom delimiters.
    pub fn parse_with(text: &str, prefix: char, suffix: char) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let (before, from) = rest.split_at(at);
            literal.push_str(before);
            let after_prefix = from.get(prefix.len_utf8()..).unwrap_or("");
            let reference = after_prefix
                .find(suffix)
                .and_then(|end| after_prefix.get(..end).map(|inner| (inner, end)))
                .and_then(|(inner, end)| reference(inner).map(|part| (part, end)));
            match reference {
                Some((part, end)) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = after_prefix.get(end + suffix.len_utf8()..).unwrap_or("");
                }
                None => {
                    literal.push(prefix);
                    rest = after_prefix;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Self { parts }
    }

    /// A template of one literal text.
    pub fn literal(text: impl Into<String>) -> Self {
        let text = text.into();
        if text.is_empty() {
            return Self::default();
        }
        Self {
            parts: vec![Part::Literal(text)],
        }
    }

    /// The parts in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template holds no reference (its text is fixed).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The fixed text of a template without references.
    pub fn as_literal(&self) -> Option<String> {
        self.is_literal().then(|| self.to_string())
    }

    /// Every variable name the template reads, function arguments that look like variable
    /// names included.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().flat_map(|p| {
            let names: Vec<&str> = match p {
                Part::Literal(_) => Vec::new(),
                Part::Variable(v) => vec![v.as_str()],
                Part::Function { args, .. } => args
                    .iter()
                    .map(String::as_str)
                    .filter(|a| is_variable_name(a))
                    .collect(),
            };
            names
        })
    }

    /// Whether rendering reads the request body (a reference to its content or form
    /// parameters, directly or as a function argument).
    pub fn reads_request_body(&self) -> bool {
        self.reads(crate::vars::reads_request_body)
    }

    /// Whether a variable the template names, or a function argument, satisfies `reads`.
    pub(crate) fn reads(&self, reads: fn(&str) -> bool) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Variable(name) => reads(name),
            Part::Function { args, .. } => args.iter().any(|a| reads(a)),
            Part::Literal(_) => false,
        })
    }

    /// Renders into `out`. `lookup` appends the value of a variable (or the result of a
    /// function, given as `name(args)`) to its buffer and returns whether it resolved.
    ///
    /// # Errors
    /// The first reference that did not resolve. Parts before it have been written; the
    /// caller decides whether that is a fault (`IgnoreUnresolvedVariables=false`) or not.
    pub fn render_into(
        &self,
        out: &mut String,
        mut lookup: impl FnMut(&Part, &mut String) -> bool,
    ) -> Result<(), Unresolved> {
        let mut first_unresolved = None;
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Variable(name) => {
                    if !lookup(part, out) && first_unresolved.is_none() {
                        first_unresolved = Some(name.clone());
                    }
                }
                Part::Function { name, .. } => {
                    if !lookup(part, out) && first_unresolved.is_none() {
                        first_unresolved = Some(format!("{name}(…)"));
                    }
                }
            }
        }
        first_unresolved.map_or(Ok(()), |n| Err(Unresolved(n)))
    }

    /// Renders with a lookup of variable values; unresolved references become empty and
    /// functions are looked up by their text `name(args)`.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        let _ = self.render_into(&mut out, |part, buf| {
            let key = match part {
                Part::Variable(name) => name.clone(),
                Part::Function { name, args } => format!("{name}({})", args.join(",")),
                Part::Literal(_) => return true,
            };
            match lookup(&key) {
                Some(v) => {
                    buf.push_str(&v);
                    true
                }
                None => false,
            }
        });
        out
    }
}

impl Template {
    /// Renders against an exchange: variables resolve for the running policy's bundle,
    /// functions are the template functions Apigee documents (see the `functions`
    /// module: `firstnonnull`, escaping, case, `substring`, `replaceAll`, `jsonPath`,
    /// `xPath`, `timeFormat…`, Base64, hashes, `randomLong`, `createUuid`).
    ///
    /// # Errors
    /// The first unresolved reference, unless `ignore_unresolved`.
    pub fn render_on<R: Runtime + ?Sized>(
        &self,
        rt: &R,
        ignore_unresolved: bool,
    ) -> Result<String, Unresolved> {
        // One allocation for the usual short value: the text plus room for each reference.
        let room = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.len(),
                _ => 24,
            })
            .sum();
        let mut out = String::with_capacity(room);
        let r = self.render_into(&mut out, |part, buf| match part {
            Part::Variable(name) => write_value(rt.value(&rt.resolve(name)), buf),
            Part::Function { name, args } => function(rt, name, args, buf),
            Part::Literal(_) => true,
        });
        match r {
            Ok(()) => Ok(out),
            Err(_) if ignore_unresolved => Ok(out),
            Err(u) => Err(u),
        }
    }
}

/// A template function's result, appended to `out`; false when it does not resolve.
fn function<R: Runtime + ?Sized>(rt: &R, name: &str, args: &[String], out: &mut String) -> bool {
    match functions::call(rt, name, args) {
        Some(v) => {
            out.push_str(&v);
            true
        }
        None => false,
    }
}

impl fmt::Display for Template {
    /// Prints the template back with `{` `}` delimiters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(s) => f.write_str(s)?,
                Part::Variable(v) => write!(f, "{{{v}}}")?,
                Part::Function { name, args } => write!(f, "{{{name}({})}}", args.join(","))?,
            }
        }
        Ok(())
    }
}

/// Whether `s` is a variable name as templates and refs accept it.
pub fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '$' | '[' | ']'))
}

fn reference(inner: &str) -> Option<Part> {
    if is_variable_name(inner) {
        return Some(Part::Variable(inner.to_owned()));
    }
    let (name, rest) = inner.split_once('(')?;
    let args = rest.strip_suffix(')')?;
    let ok_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_name || args.contains(['{', '}']) {
        return None;
    }
    let args = functions::split_args(args);
    Some(Part::Function {
        name: name.to_owned(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "fault.name" => Some("InvalidApiKey".into()),
            "a" => Some("A".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_references_and_leaves_json_braces() {
        let t = Template::parse(r#"{"error":"{fault.name}","x":{a}}"#);
        assert_eq!(
            t.parts(),
            &[
                Part::Literal(r#"{"error":""#.into()),
                Part::Variable("fault.name".into()),
                Part::Literal(r#"","x":"#.into()),
                Part::Variable("a".into()),
                Part::Literal("}".into()),
            ]
        );
        assert_eq!(t.render(lookup), r#"{"error":"InvalidApiKey","x":A}"#);
        assert_eq!(t.variables().collect::<Vec<_>>(), ["fault.name", "a"]);
    }

    #[test]
    fn custom_delimiters() {
        let t = Template::parse_with(r#"{"code":"@fault.name#","n":{a}}"#, '@', '#');
        assert_eq!(t.render(lookup), r#"{"code":"InvalidApiKey","n":{a}}"#);
    }

    #[test]
    fn functions_and_unresolved() {
        let t = Template::parse("x{firstnonnull(b, a)}y{missing}z");
        assert!(
            matches!(&t.parts()[1], Part::Function { name, args } if name == "firstnonnull" && args == &["b", "a"])
        );
        let mut out = String::new();
        let err = t
            .render_into(&mut out, |p, buf| match p {
                Part::Variable(v) => lookup(v).map(|s| buf.push_str(&s)).is_some(),
                _ => {
                    buf.push('F');
                    true
                }
            })
            .unwrap_err();
        assert_eq!(err, Unresolved("missing".into()));
        assert_eq!(out, "xFyz");
        assert_eq!(t.to_string(), "x{firstnonnull(b,a)}y{missing}z");
    }

    #[test]
    fn literal_templates() {
        assert!(Template::parse("plain {not a var}").is_literal());
        assert_eq!(Template::parse("").parts(), &[]);
        assert_eq!(Template::parse("a{").as_literal().as_deref(), Some("a{"));
    }
}
