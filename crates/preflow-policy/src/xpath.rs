//! XPath 1.0 over an XML payload, with namespace prefixes, for ExtractVariables
//! `<XMLPayload>` and RegularExpressionProtection `<XPath>`.
//!
//! Evaluation uses the `sxd-document` and `sxd-xpath` crates. Before the document is
//! built, the payload is scanned as a stream against [`XPathLimits`], so that no tree is
//! built for a payload that is too large or too deep.

use crate::protect::{XmlStructureLimits, XmlThreatProtection, scan_xml};

/// Limits checked before a payload is parsed into a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XPathLimits {
    /// Largest payload, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting.
    pub max_depth: u64,
}

impl Default for XPathLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 100,
        }
    }
}

/// An XPath evaluation that could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XPathError {
    /// The payload is too large, too deep, or not well-formed.
    #[error("the XML payload cannot be read: {0}")]
    Payload(String),
    /// The expression does not compile (`XPathCompilationFailed`).
    #[error("invalid XPath `{expression}`: {reason}")]
    Compile {
        /// The expression.
        expression: String,
        /// Why.
        reason: String,
    },
    /// The expression failed to evaluate, e.g. an unknown namespace prefix.
    #[error("XPath `{expression}` failed: {reason}")]
    Evaluate {
        /// The expression.
        expression: String,
        /// Why.
        reason: String,
    },
}

/// The result of an XPath expression, reduced to text.
#[derive(Debug, Clone, PartialEq)]
pub enum XPathValue {
    /// A node set: the string value of each node, in document order.
    Nodes(Vec<String>),
    /// A string.
    String(String),
    /// A number.
    Number(f64),
    /// A boolean.
    Boolean(bool),
}

impl XPathValue {
    /// The values as strings: each node of a node set, or the one value.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Self::Nodes(n) => n.clone(),
            Self::String(s) => vec![s.clone()],
            Self::Number(n) => vec![number_text(*n)],
            Self::Boolean(b) => vec![b.to_string()],
        }
    }

    /// The first value as a string (XPath `string()` of the result); `None` for an
    /// empty node set.
    pub fn first(&self) -> Option<String> {
        self.strings().into_iter().next()
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Checks that an XPath expression compiles.
///
/// # Errors
/// [`XPathError::Compile`].
pub fn check_expression(expression: &str) -> Result<(), XPathError> {
    let factory = sxd_xpath::Factory::new();
    match factory.build(expression) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(XPathError::Compile {
            expression: expression.to_owned(),
            reason: "empty expression".into(),
        }),
        Err(e) => Err(XPathError::Compile {
            expression: expression.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Evaluates `expression` over `xml` with the default [`XPathLimits`]. `namespaces` maps
/// prefixes used in the expression to URIs.
///
/// # Errors
/// A payload beyond the limits or not well-formed, an expression that does not compile,
/// or an evaluation error.
pub fn evaluate(
    xml: &str,
    expression: &str,
    namespaces: &[(String, String)],
) -> Result<XPathValue, XPathError> {
    evaluate_with(xml, expression, namespaces, &XPathLimits::default())
}

/// [`evaluate`] with explicit limits.
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_with(
    xml: &str,
    expression: &str,
    namespaces: &[(String, String)],
    limits: &XPathLimits,
) -> Result<XPathValue, XPathError> {
    if xml.len() > limits.max_bytes {
        return Err(XPathError::Payload(format!(
            "{} bytes, more than the limit of {}",
            xml.len(),
            limits.max_bytes
        )));
    }
    let guard = XmlThreatProtection {
        structure: XmlStructureLimits {
            node_depth: Some(limits.max_depth),
            ..XmlStructureLimits::default()
        },
        ..XmlThreatProtection::default()
    };
    scan_xml(&guard, "xpath", xml.as_bytes()).map_err(|e| XPathError::Payload(e.message))?;
    let package = sxd_document::parser::parse(xml)
        .map_err(|e| XPathError::Payload(format!("not well-formed: {e:?}")))?;
    let document = package.as_document();
    let factory = sxd_xpath::Factory::new();
    let compiled = match factory.build(expression) {
        Ok(Some(x)) => x,
        Ok(None) => {
            return Err(XPathError::Compile {
                expression: expression.to_owned(),
                reason: "empty expression".into(),
            });
        }
        Err(e) => {
            return Err(XPathError::Compile {
                expression: expression.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut context = sxd_xpath::Context::new();
    for (prefix, uri) in namespaces {
        context.set_namespace(prefix, uri);
    }
    let value = compiled
        .evaluate(&context, document.root())
        .map_err(|e| XPathError::Evaluate {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(match value {
        sxd_xpath::Value::Nodeset(ns) => XPathValue::Nodes(
            ns.document_order()
                .iter()
                .map(sxd_xpath::nodeset::Node::string_value)
                .collect(),
        ),
        sxd_xpath::Value::String(s) => XPathValue::String(s),
        sxd_xpath::Value::Number(n) => XPathValue::Number(n),
        sxd_xpath::Value::Boolean(b) => XPathValue::Boolean(b),
    })
}
