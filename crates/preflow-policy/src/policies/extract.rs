//! The ExtractVariables policy.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::template::Part;
use crate::template::Template;
use crate::xml::Element;

/// A pattern: literal text with `{name}` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pattern {
    /// The pattern, parsed as a template whose variables are the captures.
    pub pattern: Template,
    /// `ignoreCase`, default false.
    pub ignore_case: bool,
}

/// A parameter, header or variable with its patterns.
pub type NamedPatterns = super::Named<Pattern>;

/// The declared type of an extracted JSON or XML value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractedVariable {
    /// The output variable name (prefixed with `VariablePrefix`).
    pub name: String,
    /// `type`, such as `string`, `integer`, `boolean`, `nodeset`.
    pub value_type: Option<String>,
    /// The JSONPath or XPath expression.
    pub path: String,
}

/// `<JSONPayload>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JsonPayload {
    /// `<Variable name type><JSONPath>`.
    pub variables: Vec<ExtractedVariable>,
}

/// `<XMLPayload stopPayloadProcessing>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct XmlPayload {
    /// `stopPayloadProcessing`, default false.
    pub stop_payload_processing: bool,
    /// `<Namespaces><Namespace prefix>uri</Namespace>`.
    pub namespaces: Vec<(String, String)>,
    /// `<Variable name type><XPath>`.
    pub variables: Vec<ExtractedVariable>,
}

/// `<ExtractVariables>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractVariables {
    /// `<Source>`, default `message`.
    pub source: String,
    /// `<Source clearPayload>`, default false.
    pub clear_payload: bool,
    /// `<VariablePrefix>`: outputs are `{prefix}.{name}`.
    pub variable_prefix: Option<String>,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
    /// `<URIPath><Pattern>`, matched against `proxy.pathsuffix`.
    pub uri_paths: Vec<Pattern>,
    /// `<QueryParam>`.
    pub query_params: Vec<NamedPatterns>,
    /// `<Header>`.
    pub headers: Vec<NamedPatterns>,
    /// `<FormParam>`.
    pub form_params: Vec<NamedPatterns>,
    /// `<Variable>`.
    pub variables: Vec<NamedPatterns>,
    /// `<JSONPayload>`.
    pub json_payload: Option<JsonPayload>,
    /// `<XMLPayload>`.
    pub xml_payload: Option<XmlPayload>,
}

impl ExtractVariables {
    /// The name of an output variable: `{prefix}.{name}`, or `name` without a prefix.
    pub fn output_name(&self, name: &str) -> String {
        match &self.variable_prefix {
            Some(p) => format!("{p}.{name}"),
            None => name.to_owned(),
        }
    }
}

fn patterns(cx: &mut Cx<'_>, el: &Element) -> Vec<Pattern> {
    cx.known(el, &["Pattern"]);
    el.children_named("Pattern")
        .map(|p| Pattern {
            pattern: Template::parse(p.text()),
            ignore_case: cx.attr_bool(p, "ignoreCase", false),
        })
        .collect()
}

fn named_patterns(cx: &mut Cx<'_>, el: &Element, item: &str) -> Vec<NamedPatterns> {
    el.children_named(item)
        .map(|e| NamedPatterns {
            name: e.attr("name").unwrap_or_default().trim().to_owned(),
            patterns: patterns(cx, e),
        })
        .collect()
}

fn extracted(cx: &mut Cx<'_>, el: &Element, path: &str) -> Vec<ExtractedVariable> {
    el.children_named("Variable")
        .map(|v| {
            cx.known(v, &[path]);
            let expr = cx.child_text(v, path).unwrap_or_default();
            // A path that does not compile extracts nothing at run time: say so at load.
            if !expr.is_empty() && !crate::is_placeholder(&expr) {
                let problem = if path == "JSONPath" {
                    crate::jsonpath::check_path(&expr).err().map(|e| e.to_string())
                } else {
                    crate::xpath::check_expression(&expr)
                        .err()
                        .map(|e| e.to_string())
                };
                if let (Some(problem), Some(at)) = (problem, v.child(path)) {
                    // Filters, slices and unions are valid JSONPath that preflow's subset
                    // does not evaluate: a difference from Apigee, not a mistake.
                    let d = if path == "JSONPath" && beyond_json_path_subset(&expr) {
                        cx.src
                            .warning(
                                at.offset,
                                "`<JSONPath>` uses a filter, slice or union, which preflow does not evaluate: the variable stays unset under preflow",
                            )
                            .with_rule("LOAD002")
                    } else {
                        cx.src
                            .warning(at.offset, format!("`<{path}>` does not compile: {problem}"))
                            .with_rule("POL013")
                    };
                    cx.diags.push(d);
                }
            }
            ExtractedVariable {
                name: v.attr("name").unwrap_or_default().trim().to_owned(),
                value_type: v.attr("type").map(|t| t.trim().to_owned()),
                path: expr,
            }
        })
        .collect()
}

/// Whether a JSONPath uses the parts of the language beyond preflow's subset: filters
/// `[?(…)]`, slices `[a:b]` and unions `[a,b]`.
fn beyond_json_path_subset(expr: &str) -> bool {
    expr.matches('[').count() == expr.matches(']').count()
        && expr
            .split('[')
            .skip(1)
            .filter_map(|s| s.split(']').next())
            .any(|inner| {
                let inner = inner.trim();
                inner.starts_with('?')
                    || (!inner.starts_with(['\'', '"']) && inner.contains([':', ',']))
            })
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> ExtractVariables {
    cx.known_policy(
        el,
        &[
            "Source",
            "VariablePrefix",
            "IgnoreUnresolvedVariables",
            "URIPath",
            "QueryParam",
            "Header",
            "FormParam",
            "Variable",
            "JSONPayload",
            "XMLPayload",
        ],
    );
    let source_el = el.child("Source");
    let uri_paths = el
        .children_named("URIPath")
        .flat_map(|u| patterns(cx, u))
        .collect();
    let json_payload = el.child("JSONPayload").map(|j| {
        cx.known(j, &["Variable"]);
        JsonPayload {
            variables: extracted(cx, j, "JSONPath"),
        }
    });
    let xml_payload = el.child("XMLPayload").map(|x| {
        cx.known(x, &["Variable", "Namespaces"]);
        XmlPayload {
            stop_payload_processing: cx.attr_bool(x, "stopPayloadProcessing", false),
            namespaces: x
                .child("Namespaces")
                .map(|n| {
                    n.children_named("Namespace")
                        .map(|ns| {
                            (
                                ns.attr("prefix").unwrap_or_default().to_owned(),
                                ns.text().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            variables: extracted(cx, x, "XPath"),
        }
    });
    let config = ExtractVariables {
        source: source_el
            .and_then(Element::non_empty_text)
            .unwrap_or("message")
            .to_owned(),
        clear_payload: source_el.is_some_and(|s| cx.attr_bool(s, "clearPayload", false)),
        variable_prefix: cx.child_text(el, "VariablePrefix"),
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        uri_paths,
        query_params: named_patterns(cx, el, "QueryParam"),
        headers: named_patterns(cx, el, "Header"),
        form_params: named_patterns(cx, el, "FormParam"),
        variables: named_patterns(cx, el, "Variable"),
        json_payload,
        xml_payload,
    };
    let nothing = config.uri_paths.is_empty()
        && config.query_params.is_empty()
        && config.headers.is_empty()
        && config.form_params.is_empty()
        && config.variables.is_empty()
        && config.json_payload.is_none()
        && config.xml_payload.is_none();
    if nothing {
        cx.warning(el.offset, "ExtractVariables has nothing to extract");
    }
    config
}

/// Matches `text` against a pattern of literals and `{name}` captures; returns the
/// captures. A capture is non-greedy: it takes the shortest text before the next literal.
fn match_pattern(p: &Pattern, text: &str) -> Option<Vec<(String, String)>> {
    let parts = p.pattern.parts();
    let mut out = Vec::new();
    let lower;
    let (text, fold) = if p.ignore_case {
        lower = text.to_lowercase();
        (lower.as_str(), true)
    } else {
        (text, false)
    };
    let mut rest = text;
    let mut i = 0;
    while let Some(part) = parts.get(i) {
        match part {
            Part::Literal(l) => {
                let l = if fold { l.to_lowercase() } else { l.clone() };
                rest = rest.strip_prefix(l.as_str())?;
            }
            Part::Variable(name) | Part::Function { name, .. } => match parts.get(i + 1) {
                Some(Part::Literal(next)) => {
                    let next = if fold {
                        next.to_lowercase()
                    } else {
                        next.clone()
                    };
                    let at = rest.find(next.as_str())?;
                    out.push((name.clone(), rest.get(..at)?.to_owned()));
                    rest = rest.get(at..)?;
                }
                _ => {
                    out.push((name.clone(), rest.to_owned()));
                    rest = "";
                }
            },
        }
        i += 1;
    }
    rest.is_empty().then_some(out)
}

/// The text of what `path` selects in `doc`: a string's value, another value's JSON; several
/// matches give a JSON array. `None` when nothing matches or the path is not supported.
fn json_text(doc: &serde_json::Value, path: &str) -> Option<String> {
    let found = crate::jsonpath::json_path(doc, path).ok()?;
    match found.as_slice() {
        [] => None,
        [serde_json::Value::String(s)] => Some(s.clone()),
        [one] => Some(one.to_string()),
        many => {
            Some(serde_json::Value::Array(many.iter().map(|v| (*v).clone()).collect()).to_string())
        }
    }
}

fn run<R: Runtime>(rt: &mut R, e: &ExtractVariables) -> Outcome {
    let mut out: Vec<(String, String)> = Vec::new();
    let response_side = rt.is_response_side();
    let source = e.source.trim();
    let use_response = source == "response" || (source == "message" && response_side);
    // Another message (AssignMessage's `CustomReq`, a ServiceCallout response) or a
    // variable holding the payload (`AccessEntity.…`).
    let named = !matches!(source, "request" | "response" | "message" | "");
    let payload: Option<bytes::Bytes> = if named {
        let m = rt.state().named_message(source).map(|m| m.body.clone());
        let v = m
            .or_else(|| {
                rt.variable(&format!("{source}.content"))
                    .map(bytes::Bytes::from)
            })
            .or_else(|| rt.variable(source).map(bytes::Bytes::from));
        if v.is_none() {
            return Outcome::Fault(Fault::new(
                "steps.extractvariables.SourceMessageNotAvailable",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{source} message is not available for ExtractVariable"),
            ));
        }
        v
    } else if use_response {
        match rt.response() {
            Some(m) => Some(m.body.clone()),
            None => {
                return Outcome::Fault(Fault::new(
                    "steps.extractvariables.SourceMessageNotAvailable",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "response message is not available for ExtractVariable",
                ));
            }
        }
    } else {
        None
    };
    let body_of = |rt: &R| match &payload {
        Some(b) => b.clone(),
        None => rt.request().body.clone(),
    };
    for p in &e.uri_paths {
        if let Some(c) = match_pattern(p, rt.path_suffix()) {
            out.extend(c);
            break;
        }
    }
    let prefix = if named {
        source
    } else if use_response {
        "response"
    } else {
        "request"
    };
    for (list, kind) in [
        (&e.query_params, "queryparam"),
        (&e.headers, "header"),
        (&e.form_params, "formparam"),
    ] {
        for np in list {
            let Some(value) = rt.variable(&format!("{prefix}.{kind}.{}", np.name)) else {
                continue;
            };
            for p in &np.patterns {
                if let Some(c) = match_pattern(p, &value) {
                    out.extend(c);
                    break;
                }
            }
        }
    }
    for np in &e.variables {
        let Some(value) = rt.variable(&np.name) else {
            continue;
        };
        for p in &np.patterns {
            if let Some(c) = match_pattern(p, &value) {
                out.extend(c);
                break;
            }
        }
    }
    if let Some(j) = &e.json_payload {
        let body = body_of(rt);
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(doc) => {
                for v in &j.variables {
                    if let Some(text) = json_text(&doc, &v.path) {
                        out.push((v.name.clone(), text));
                    }
                }
            }
            Err(_) if e.ignore_unresolved_variables || body.is_empty() => {}
            Err(err) => {
                return Outcome::Fault(Fault::new(
                    "steps.extractvariables.ExecutionFailed",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Failed to execute the ExtractVariables: the payload is not JSON: {err}"
                    ),
                ));
            }
        }
    }
    if let Some(x) = &e.xml_payload {
        let body = body_of(rt);
        match extract_xml(x, &body, e.ignore_unresolved_variables) {
            Ok(found) => out.extend(found),
            Err(f) => return Outcome::Fault(*f),
        }
    }
    for (name, value) in out {
        let full = e.output_name(&name);
        rt.set_variable(&full, value);
    }
    Outcome::Continue
}

/// The values of ExtractVariables' `<XMLPayload><Variable><XPath>`s over `body`: for each
/// variable, the string value of the first node (or the value of a non-node-set
/// expression). A path that selects nothing is a fault, or leaves the variable unset
/// with `ignore_errors`. An empty body extracts nothing.
fn extract_xml(
    x: &XmlPayload,
    body: &[u8],
    ignore_errors: bool,
) -> Result<Vec<(String, String)>, Box<Fault>> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let fail = |why: String| {
        Box::new(Fault::new(
            "steps.extractvariables.ExecutionFailed",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Failed to execute the ExtractVariables: {why}"),
        ))
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return if ignore_errors {
            Ok(Vec::new())
        } else {
            Err(fail("the payload is not UTF-8".into()))
        };
    };
    let mut out = Vec::new();
    for v in &x.variables {
        match crate::xpath::evaluate(text, &v.path, &x.namespaces) {
            Ok(value) => {
                let nodeset = v.value_type.as_deref() == Some("nodeset");
                let found = if nodeset {
                    let all = value.strings();
                    (!all.is_empty()).then(|| all.join(","))
                } else {
                    value.first()
                };
                match found {
                    Some(f) => out.push((v.name.clone(), f)),
                    // The reference page: an XPath that does not resolve is an error
                    // unless IgnoreUnresolvedVariables (or continueOnError) is set.
                    None if ignore_errors => {}
                    None => {
                        return Err(fail(format!(
                            "the XPath `{}` of variable `{}` does not resolve",
                            v.path, v.name
                        )));
                    }
                }
            }
            Err(_) if ignore_errors => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Ok(out)
}

/// The ExtractVariables policy type.
#[derive(Debug)]
pub(crate) struct ExtractVariablesPolicy;

impl PolicyType for ExtractVariablesPolicy {
    type Config = ExtractVariables;
    type Compiled = Box<ExtractVariables>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> ExtractVariables {
        parse(cx, el)
    }

    fn compile(
        config: &ExtractVariables,
        cx: &BuildCx<'_>,
    ) -> Result<Box<ExtractVariables>, CompileError> {
        let _ = cx;
        Ok(Box::new(config.clone()))
    }

    fn run<R: Runtime>(c: &Box<ExtractVariables>, rt: &mut R) -> Outcome {
        run(rt, c)
    }

    fn advice(e: &ExtractVariables) -> Vec<crate::Advice> {
        let mut out = Vec::new();
        for (element, list) in [
            ("QueryParam", &e.query_params),
            ("Header", &e.headers),
            ("FormParam", &e.form_params),
            ("Variable", &e.variables),
        ] {
            for (i, n) in list.iter().enumerate() {
                if n.patterns.is_empty() {
                    out.push(
                        crate::Advice::new(
                            "POL001",
                            Some(element),
                            format!(
                                "`<{element} name=\"{}\">` has no `<Pattern>`; it extracts nothing",
                                n.name
                            ),
                        )
                        .nth(i),
                    );
                }
            }
        }
        out
    }

    fn variables_set(e: &ExtractVariables) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for pattern in e
            .uri_paths
            .iter()
            .chain(e.query_params.iter().flat_map(|q| &q.patterns))
            .chain(e.headers.iter().flat_map(|q| &q.patterns))
            .chain(e.form_params.iter().flat_map(|q| &q.patterns))
            .chain(e.variables.iter().flat_map(|q| &q.patterns))
        {
            names.extend(pattern.pattern.variables().map(str::to_owned));
        }
        for v in e.json_payload.iter().flat_map(|j| &j.variables) {
            names.push(v.name.clone());
        }
        for v in e.xml_payload.iter().flat_map(|x| &x.variables) {
            names.push(v.name.clone());
        }
        let mut out: Vec<String> = names.iter().map(|n| e.output_name(n)).collect();
        out.extend(e.variable_prefix.clone());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    fn pat(p: &str) -> Pattern {
        Pattern {
            pattern: Template::parse(p),
            ignore_case: false,
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(
            match_pattern(&pat("/a/{id}/b/{x}"), "/a/12/b/zz"),
            Some(vec![("id".into(), "12".into()), ("x".into(), "zz".into())])
        );
        assert_eq!(match_pattern(&pat("/a/{id}/b"), "/a/12/c"), None);
        assert_eq!(
            match_pattern(&pat("Bearer {tok}"), "Bearer abc"),
            Some(vec![("tok".into(), "abc".into())])
        );
    }

    #[test]
    fn json_paths() {
        let v: serde_json::Value = serde_json::json!({"a":{"b":[1,{"c":"x"}]}});
        assert_eq!(json_text(&v, "$.a.b[1].c").as_deref(), Some("x"));
        assert_eq!(json_text(&v, "$.a.b[0]").as_deref(), Some("1"));
        assert_eq!(json_text(&v, "$.a.z"), None);
        // A dot before a bracket reads as nothing, as in Jayway.
        let top: serde_json::Value = serde_json::json!([{"name":"n0"},{"name":"n1"}]);
        assert_eq!(json_text(&top, "$.[1].name").as_deref(), Some("n1"));
        assert_eq!(json_text(&top, "$.['0']"), None);
    }

    #[test]
    fn json_paths_beyond_the_subset_are_told_from_broken_ones() {
        assert!(beyond_json_path_subset(
            "$.[?(@.customer == {id})].accounts"
        ));
        assert!(beyond_json_path_subset("$.items[0:2]"));
        assert!(beyond_json_path_subset("$.items[0,2]"));
        assert!(!beyond_json_path_subset("$.items[?(@.id == 1)"));
        assert!(!beyond_json_path_subset("$.items['a,b']"));
        assert!(!beyond_json_path_subset("$.items[0]"));
    }
}
