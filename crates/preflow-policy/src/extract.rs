//! The ExtractVariables policy.

use crate::parse::Cx;
use crate::template::Template;
use crate::xml::Element;

/// A pattern: literal text with `{name}` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern, parsed as a template whose variables are the captures.
    pub pattern: Template,
    /// `ignoreCase`, default false.
    pub ignore_case: bool,
}

/// `<QueryParam name>`, `<Header name>`, `<FormParam name>` or `<Variable name>` with
/// its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPatterns {
    /// The parameter, header or variable name.
    pub name: String,
    /// The patterns; the first that matches wins.
    pub patterns: Vec<Pattern>,
}

/// The declared type of an extracted JSON or XML value.
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub struct JsonPayload {
    /// `<Variable name type><JSONPath>`.
    pub variables: Vec<ExtractedVariable>,
}

/// `<XMLPayload stopPayloadProcessing>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
            ExtractedVariable {
                name: v.attr("name").unwrap_or_default().trim().to_owned(),
                value_type: v.attr("type").map(|t| t.trim().to_owned()),
                path: cx.child_text(v, path).unwrap_or_default(),
            }
        })
        .collect()
}

pub(crate) fn extract_variables(cx: &mut Cx<'_>, el: &Element) -> ExtractVariables {
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
