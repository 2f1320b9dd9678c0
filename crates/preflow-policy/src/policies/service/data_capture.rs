//! `<DataCapture>`: captures values for analytics.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::*;
use crate::policies::source::header_list;

/// Where a `<Collect>` takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectFrom {
    /// `<Collect ref="var" default="x"/>`.
    Variable(String),
    /// `<URIPath><Pattern>`: captured from the path suffix.
    UriPath(Vec<Pattern>),
    /// `<QueryParam name><Pattern>`.
    QueryParam(String, Vec<Pattern>),
    /// `<Header name><Pattern>`.
    Header(String, Vec<Pattern>),
    /// `<JSONPayload><JSONPath>`.
    JsonPath(String),
    /// `<XMLPayload><XPath>`.
    XPath(String),
    /// Only a default.
    Nothing,
}

/// `<Capture>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capture {
    /// `<DataCollector>`: the data collector (written as a variable of that name).
    pub data_collector: String,
    /// Where the value comes from.
    pub from: CollectFrom,
    /// `default`.
    pub default: Option<String>,
}

/// `<DataCapture>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataCapture {
    /// `<Capture>`s.
    pub captures: Vec<Capture>,
    /// `<IgnoreUnresolvedVariables>` (default false).
    pub ignore_unresolved_variables: bool,
    /// `<ThrowExceptionOnLimit>` (default false).
    pub throw_exception_on_limit: bool,
}

fn ev_patterns(cx: &mut Cx<'_>, el: &Element) -> Vec<Pattern> {
    el.children_named("Pattern")
        .map(|p| Pattern {
            pattern: Template::parse(p.text()),
            ignore_case: cx.attr_bool(p, "ignoreCase", false),
        })
        .collect()
}

fn data_capture(cx: &mut Cx<'_>, el: &Element) -> DataCapture {
    cx.known_policy(
        el,
        &[
            "Capture",
            "IgnoreUnresolvedVariables",
            "ThrowExceptionOnLimit",
        ],
    );
    let captures = el
        .children_named("Capture")
        .map(|c| {
            capture_structure(cx, c);
            let data_collector = c
                .child("DataCollector")
                .and_then(Element::non_empty_text)
                .unwrap_or_default()
                .to_owned();
            if data_collector.is_empty() {
                cx.error(c.offset, "`<Capture>` needs a `<DataCollector>`");
            }
            let collect = c.child("Collect");
            let default = collect.and_then(|k| k.attr("default")).map(str::to_owned);
            let from = match collect {
                None => CollectFrom::Nothing,
                Some(k) => {
                    let src = k.child("Source").unwrap_or(k);
                    if let Some(r) = ref_attr(k) {
                        CollectFrom::Variable(r)
                    } else if let Some(u) = src.child("URIPath").or_else(|| k.child("URIPath")) {
                        CollectFrom::UriPath(ev_patterns(cx, u))
                    } else if let Some(q) =
                        src.child("QueryParam").or_else(|| k.child("QueryParam"))
                    {
                        CollectFrom::QueryParam(
                            q.attr("name").unwrap_or_default().to_owned(),
                            ev_patterns(cx, q),
                        )
                    } else if let Some(h) = src.child("Header").or_else(|| k.child("Header")) {
                        CollectFrom::Header(
                            h.attr("name").unwrap_or_default().to_owned(),
                            ev_patterns(cx, h),
                        )
                    } else if let Some(j) = k.child("JSONPayload").and_then(|j| j.child("JSONPath"))
                    {
                        CollectFrom::JsonPath(j.text().to_owned())
                    } else if let Some(x) = k.child("XMLPayload").and_then(|x| x.child("XPath")) {
                        CollectFrom::XPath(x.text().to_owned())
                    } else {
                        CollectFrom::Nothing
                    }
                }
            };
            Capture {
                data_collector,
                from,
                default,
            }
        })
        .collect();
    DataCapture {
        captures,
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        throw_exception_on_limit: cx.child_bool(el, "ThrowExceptionOnLimit", false),
    }
}

/// Lint findings about the shape of a `<Capture>` (each once-only element once, no
/// stray attributes or children), with their rule ids; they do not change the config.
fn capture_structure(cx: &mut Cx<'_>, c: &Element) {
    let mut push = |rule: &'static str, at: usize, message: String| {
        cx.diags.push(cx.src.warning(at, message).with_rule(rule));
    };
    let collects: Vec<&Element> = c.children_named("Collect").collect();
    if collects.is_empty() {
        push(
            "SCH002",
            c.offset,
            "`<Capture>` without a `<Collect>`; it captures nothing".to_owned(),
        );
    }
    for (name, list) in [
        ("Collect", collects.clone()),
        ("DataCollector", c.children_named("DataCollector").collect()),
    ] {
        if list.len() > 1 {
            push(
                "SCH002",
                c.offset,
                format!(
                    "`<Capture>` has {} `<{name}>` elements; only the first is used",
                    list.len()
                ),
            );
        }
    }
    for d in c.children_named("DataCollector") {
        for a in d.attributes.iter().filter(|a| a.name != "scope") {
            push(
                "SCH001",
                d.offset,
                format!("unknown attribute `{}` on `<DataCollector>`", a.name),
            );
        }
    }
    for k in collects {
        for a in k
            .attributes
            .iter()
            .filter(|a| !matches!(a.name.as_str(), "ref" | "default" | "type"))
        {
            push(
                "SCH001",
                k.offset,
                format!("unknown attribute `{}` on `<Collect>`", a.name),
            );
        }
        if k.attr("ref").is_some() && k.attr("default").is_none() {
            push(
                "SCH002",
                k.offset,
                "`<Collect ref>` without the required `default` attribute".to_owned(),
            );
        }
        let sources: Vec<&Element> = k.children_named("Source").collect();
        if sources.len() > 1 {
            push(
                "SCH002",
                k.offset,
                format!(
                    "`<Collect>` has {} `<Source>` elements; only the first is used",
                    sources.len()
                ),
            );
        }
        for src in sources {
            if let Some(a) = src.attributes.first() {
                push(
                    "SCH001",
                    src.offset,
                    format!("unknown attribute `{}` on `<Source>`", a.name),
                );
            }
            if let Some(child) = src.children.first() {
                push(
                    "SCH001",
                    child.offset,
                    format!(
                        "unknown element `<{}>` in `<Source>`; it holds a variable name",
                        child.name
                    ),
                );
            } else if src.text().trim().is_empty() {
                push(
                    "SCH002",
                    src.offset,
                    "an empty `<Source>`; name the message variable or leave it out".to_owned(),
                );
            }
        }
    }
}

/// Matches `text` against an ExtractVariables-style pattern (`{name}` captures, literal
/// text otherwise); returns the captures.
pub fn match_pattern(p: &Pattern, text: &str) -> Option<Vec<(String, String)>> {
    use crate::template::Part;
    let parts = p.pattern.parts();
    let fold = |s: &str| {
        if p.ignore_case {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let text_f = fold(text);
    let mut at = 0usize;
    let mut out = Vec::new();
    let mut iter = parts.iter().peekable();
    while let Some(part) = iter.next() {
        match part {
            Part::Literal(l) => {
                let l = fold(l);
                if !text_f.get(at..)?.starts_with(&l) {
                    return None;
                }
                at += l.len();
            }
            Part::Variable(name) | Part::Function { name, .. } => {
                let rest = text_f.get(at..)?;
                let end = match iter.peek() {
                    Some(Part::Literal(next)) => rest.find(&fold(next))?,
                    _ => rest.len(),
                };
                out.push((name.clone(), text.get(at..at + end)?.to_owned()));
                at += end;
            }
        }
    }
    (at == text.len()).then_some(out)
}

/// What DataCapture reads.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CaptureInputs<'a> {
    /// `proxy.pathsuffix`.
    pub path_suffix: &'a str,
    /// Query parameters.
    pub query: &'a [(String, String)],
    /// Headers.
    pub headers: &'a [(String, String)],
    /// The payload.
    pub payload: Option<&'a [u8]>,
}

/// The values DataCapture collects: `(data collector, value)`.
pub fn capture_values(
    cfg: &DataCapture,
    inputs: &CaptureInputs<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let first_capture = |patterns: &[Pattern], text: &str| {
        patterns
            .iter()
            .find_map(|p| match_pattern(p, text))
            .and_then(|caps| caps.into_iter().next().map(|(_, v)| v))
    };
    cfg.captures
        .iter()
        .filter_map(|c| {
            let value = match &c.from {
                CollectFrom::Variable(v) => lookup(v),
                CollectFrom::UriPath(ps) => first_capture(ps, inputs.path_suffix),
                CollectFrom::QueryParam(n, ps) => inputs
                    .query
                    .iter()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, v)| first_capture(ps, v)),
                CollectFrom::Header(n, ps) => inputs
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .and_then(|(_, v)| first_capture(ps, v)),
                CollectFrom::JsonPath(p) => inputs
                    .payload
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| {
                        crate::format::json_path(&v, p).ok().and_then(|found| {
                            found.first().map(|x| match x {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                        })
                    }),
                CollectFrom::XPath(x) => inputs
                    .payload
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|t| crate::xpath::evaluate(t, x, &[]).ok())
                    .and_then(|v| v.first()),
                CollectFrom::Nothing => None,
            };
            value
                .or_else(|| c.default.clone())
                .map(|v| (c.data_collector.clone(), v))
        })
        .collect()
}

/// The DataCapture policy type.
#[derive(Debug)]
pub(crate) struct DataCapturePolicy;

impl PolicyType for DataCapturePolicy {
    type Config = DataCapture;
    type Compiled = (String, DataCapture);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> DataCapture {
        data_capture(cx, el)
    }

    fn compile(
        config: &DataCapture,
        cx: &BuildCx<'_>,
    ) -> Result<(String, DataCapture), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, DataCapture), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        let m = if rt.is_response_side() {
            rt.response().unwrap_or(rt.request())
        } else {
            rt.request()
        };
        let headers = header_list(m);
        let body = m.body.clone();
        let suffix = rt.path_suffix().to_owned();
        let query = rt.query_params().to_vec();
        let inputs = CaptureInputs {
            path_suffix: &suffix,
            query: &query,
            headers: &headers,
            payload: Some(&body),
        };
        let values = capture_values(cfg, &inputs, &|n| rt.variable(n));
        for (k, v) in values {
            rt.set_variable(&k, v);
        }
        Outcome::Continue
    }

    fn variables_set(d: &DataCapture) -> Vec<String> {
        d.captures
            .iter()
            .map(|c| c.data_collector.clone())
            .collect()
    }
}
