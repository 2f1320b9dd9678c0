//! `<RegularExpressionProtection>`: rejects requests whose parts match threat patterns.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::*;
use crate::policies::source::{header_list, source_message};

/// A compiled Java-style pattern (fancy-regex: lookaround and backreferences included,
/// with a backtrack limit).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pattern {
    /// The pattern as written.
    pub text: String,
    /// The compiled pattern; `None` when it did not compile (an error at load).
    pub regex: Option<fancy_regex::Regex>,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}

impl Pattern {
    /// Whether the pattern occurs in `input` (a find, not a full match). A pattern that
    /// exceeds the backtrack limit counts as found: the input is treated as a threat.
    pub fn found_in(&self, input: &str) -> bool {
        match &self.regex {
            Some(r) => r.is_match(input).unwrap_or(true),
            None => false,
        }
    }
}

/// A parameter, header or variable with its patterns.
pub type NamedPatterns = crate::policies::Named<Pattern>;

/// `<JSONPath><Expression><Pattern>` or `<XPath><Expression><Type><Pattern>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathPatterns {
    /// `<Expression>`.
    pub expression: String,
    /// `<Type>` (XPath only): `string` (default), `nodeset`, ...
    pub value_type: Option<String>,
    /// The patterns.
    pub patterns: Vec<Pattern>,
}

/// `<RegularExpressionProtection>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RegularExpressionProtection {
    /// `<Source>`, default `message`.
    pub source: String,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
    /// `<URIPath><Pattern>`: matched against the request path.
    pub uri_path: Vec<Pattern>,
    /// `<QueryParam>`.
    pub query_params: Vec<NamedPatterns>,
    /// `<Header>`.
    pub headers: Vec<NamedPatterns>,
    /// `<FormParam>`.
    pub form_params: Vec<NamedPatterns>,
    /// `<Variable>`.
    pub variables: Vec<NamedPatterns>,
    /// `<JSONPayload><JSONPath>`.
    pub json_paths: Vec<PathPatterns>,
    /// `<XMLPayload><Namespaces>`.
    pub namespaces: Vec<(String, String)>,
    /// `<XMLPayload><XPath>`.
    pub xpaths: Vec<PathPatterns>,
}

/// Largest compiled size of one pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn patterns(cx: &mut Cx<'_>, el: &Element) -> Vec<Pattern> {
    el.children_named("Pattern")
        .map(|p| {
            let text = p.text().to_owned();
            let regex = fancy_regex::RegexBuilder::new(&text)
                .delegate_size_limit(REGEX_SIZE_LIMIT)
                .backtrack_limit(100_000)
                .build();
            let regex = match regex {
                Ok(r) => Some(r),
                Err(e) => {
                    cx.error(
                        p.text_offset(),
                        format!("invalid regular expression `{text}`: {e}"),
                    );
                    None
                }
            };
            Pattern { text, regex }
        })
        .collect()
}

fn named(cx: &mut Cx<'_>, el: &Element, item: &str) -> Vec<NamedPatterns> {
    el.children_named(item)
        .map(|e| {
            cx.known(e, &["Pattern"]);
            NamedPatterns {
                name: e.attr("name").unwrap_or_default().trim().to_owned(),
                patterns: patterns(cx, e),
            }
        })
        .collect()
}

fn path_patterns(cx: &mut Cx<'_>, el: Option<&Element>, item: &str) -> Vec<PathPatterns> {
    let Some(el) = el else {
        return Vec::new();
    };
    el.children_named(item)
        .map(|p| {
            cx.known(p, &["Expression", "Type", "Pattern"]);
            let expression = cx.child_text(p, "Expression").unwrap_or_default();
            if expression.is_empty() {
                cx.error(p.offset, format!("`<{item}>` has no `<Expression>`"));
            }
            PathPatterns {
                expression,
                value_type: cx.child_text(p, "Type"),
                patterns: patterns(cx, p),
            }
        })
        .collect()
}

pub(crate) fn regular_expression_protection(
    cx: &mut Cx<'_>,
    el: &Element,
) -> RegularExpressionProtection {
    cx.known_policy(
        el,
        &[
            "Source",
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
    let xml = el.child("XMLPayload");
    let cfg = RegularExpressionProtection {
        source: source(cx, el),
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        uri_path: el
            .children_named("URIPath")
            .flat_map(|u| patterns(cx, u))
            .collect(),
        query_params: named(cx, el, "QueryParam"),
        headers: named(cx, el, "Header"),
        form_params: named(cx, el, "FormParam"),
        variables: named(cx, el, "Variable"),
        json_paths: path_patterns(cx, el.child("JSONPayload"), "JSONPath"),
        namespaces: xml
            .and_then(|x| x.child("Namespaces"))
            .map(|n| {
                n.children_named("Namespace")
                    .map(|ns| {
                        (
                            ns.attr("prefix").unwrap_or_default().trim().to_owned(),
                            ns.text().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        xpaths: path_patterns(cx, xml, "XPath"),
    };
    let nothing = cfg.uri_path.is_empty()
        && cfg.query_params.is_empty()
        && cfg.headers.is_empty()
        && cfg.form_params.is_empty()
        && cfg.variables.is_empty()
        && cfg.json_paths.is_empty()
        && cfg.xpaths.is_empty();
    if nothing {
        cx.error(
            el.offset,
            "RegularExpressionProtection has nothing to enforce (NothingToEnforce)",
        );
    }
    cfg
}

/// What RegularExpressionProtection reads from the message.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RegexInputs<'a> {
    /// The request path (with the query string removed).
    pub path: &'a str,
    /// Query parameters, decoded, in order.
    pub query: &'a [(String, String)],
    /// Headers, in order.
    pub headers: &'a [(String, String)],
    /// Form parameters, decoded, in order.
    pub form: &'a [(String, String)],
    /// The payload, when JSONPath or XPath checks are configured.
    pub payload: Option<&'a [u8]>,
}

/// A RegularExpressionProtection rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexThreat {
    /// A pattern was found (`ThreatDetected`).
    #[error("Regular Expression Threat Detected in {policy}: regex: {regex} input: {input}")]
    ThreatDetected {
        /// The policy name.
        policy: String,
        /// The pattern.
        regex: String,
        /// Which input held it, such as `header authorization`.
        input: String,
    },
    /// A `<Variable>` did not resolve (`VariableResolutionFailed`).
    #[error("Unresolved variable : {0}")]
    VariableResolutionFailed(String),
    /// The payload could not be read for JSONPath/XPath (`ExecutionFailed`).
    #[error("{0}")]
    ExecutionFailed(String),
}

impl RegexThreat {
    /// The fault name (errorcode `steps.regexprotection.<name>`).
    pub fn fault_name(&self) -> &'static str {
        match self {
            Self::ThreatDetected { .. } => "ThreatDetected",
            Self::VariableResolutionFailed(_) => "VariableResolutionFailed",
            Self::ExecutionFailed(_) => "ExecutionFailed",
        }
    }
}

/// Runs RegularExpressionProtection: every configured input against its patterns.
///
/// # Errors
/// The first pattern found, naming the policy, the pattern and the input.
pub fn check_regex(
    cfg: &RegularExpressionProtection,
    policy: &str,
    inputs: &RegexInputs<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), RegexThreat> {
    let threat = |regex: &Pattern, input: String| RegexThreat::ThreatDetected {
        policy: policy.to_owned(),
        regex: regex.text.clone(),
        input,
    };
    let check_all = |patterns: &[Pattern], value: &str, what: &str| -> Result<(), RegexThreat> {
        match patterns.iter().find(|p| p.found_in(value)) {
            Some(p) => Err(threat(p, what.to_owned())),
            None => Ok(()),
        }
    };
    check_all(&cfg.uri_path, inputs.path, "uri path")?;
    let params = |list: &[NamedPatterns], values: &[(String, String)], kind: &str, ci: bool| {
        for np in list {
            for (k, v) in values {
                let same = if ci {
                    k.eq_ignore_ascii_case(&np.name)
                } else {
                    *k == np.name
                };
                if same {
                    check_all(&np.patterns, v, &format!("{kind} {}", np.name))?;
                }
            }
        }
        Ok(())
    };
    params(&cfg.query_params, inputs.query, "query param", false)?;
    params(&cfg.headers, inputs.headers, "header", true)?;
    params(&cfg.form_params, inputs.form, "form param", false)?;
    for np in &cfg.variables {
        match lookup(&np.name) {
            Some(v) => check_all(&np.patterns, &v, &format!("variable {}", np.name))?,
            None if cfg.ignore_unresolved_variables => {}
            None => return Err(RegexThreat::VariableResolutionFailed(np.name.clone())),
        }
    }
    if !cfg.json_paths.is_empty()
        && let Some(payload) = inputs.payload
        && !payload.is_empty()
    {
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| RegexThreat::ExecutionFailed(format!("the payload is not JSON: {e}")))?;
        for jp in &cfg.json_paths {
            let found = crate::format::json_path(&value, &jp.expression).map_err(|e| {
                RegexThreat::ExecutionFailed(format!("JSONPath `{}`: {e}", jp.expression))
            })?;
            for v in found {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                check_all(&jp.patterns, &text, &format!("json path {}", jp.expression))?;
            }
        }
    }
    if !cfg.xpaths.is_empty()
        && let Some(payload) = inputs.payload
        && !payload.is_empty()
    {
        let text = std::str::from_utf8(payload)
            .map_err(|_| RegexThreat::ExecutionFailed("the payload is not UTF-8".into()))?;
        for xp in &cfg.xpaths {
            let values = crate::xpath::evaluate(text, &xp.expression, &cfg.namespaces)
                .map_err(|e| RegexThreat::ExecutionFailed(e.to_string()))?;
            for v in values.strings() {
                check_all(&xp.patterns, &v, &format!("xpath {}", xp.expression))?;
            }
        }
    }
    Ok(())
}

/// The RegularExpressionProtection policy type.
#[derive(Debug)]
pub(crate) struct RegularExpressionProtectionPolicy;

impl PolicyType for RegularExpressionProtectionPolicy {
    type Config = Box<RegularExpressionProtection>;
    type Compiled = Box<(String, RegularExpressionProtection)>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Box<RegularExpressionProtection> {
        Box::new(regular_expression_protection(cx, el))
    }

    fn compile(
        config: &Box<RegularExpressionProtection>,
        cx: &BuildCx<'_>,
    ) -> Result<Self::Compiled, CompileError> {
        Ok(Box::new((cx.name.to_owned(), (**config).clone())))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let m = source_message(rt, Some(&cfg.source)).unwrap_or(rt.request());
        let headers = header_list(m);
        let needs_body = !cfg.json_paths.is_empty() || !cfg.xpaths.is_empty();
        let body = needs_body.then(|| m.body.clone());
        let path = m.path.clone();
        let query = rt.query_params().to_vec();
        let form = rt.form_params().to_vec();
        let inputs = RegexInputs {
            path: &path,
            query: &query,
            headers: &headers,
            form: &form,
            payload: body.as_deref(),
        };
        let lookup = |n: &str| rt.variable(n);
        match check_regex(cfg, name, &inputs, &lookup) {
            Ok(()) => Outcome::Continue,
            Err(e) => {
                let code = format!("steps.regexprotection.{}", e.fault_name());
                let st = match e {
                    RegexThreat::ThreatDetected { .. } => StatusCode::BAD_REQUEST,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                Outcome::Fault(Fault::new(code, st, e.to_string()))
            }
        }
    }
}
