//! `<XMLThreatProtection>`: limits on the structure of an XML payload.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::*;
use crate::policies::source::{content_type_has, source_body, source_unavailable};

/// `<NameLimits>`: longest names, in characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct XmlNameLimits {
    /// `<Element>`.
    pub element: Option<u64>,
    /// `<Attribute>`.
    pub attribute: Option<u64>,
    /// `<NamespacePrefix>`.
    pub namespace_prefix: Option<u64>,
    /// `<ProcessingInstructionTarget>`.
    pub processing_instruction_target: Option<u64>,
}

/// `<StructureLimits>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct XmlStructureLimits {
    /// `<NodeDepth>`.
    pub node_depth: Option<u64>,
    /// `<AttributeCountPerElement>`.
    pub attribute_count_per_element: Option<u64>,
    /// `<NamespaceCountPerElement>`.
    pub namespace_count_per_element: Option<u64>,
    /// `<ChildCount>`.
    pub child_count: Option<u64>,
    /// `<ChildCount includeText>`, default true.
    pub child_count_include_text: bool,
    /// `<ChildCount includeElement>`, default true.
    pub child_count_include_element: bool,
    /// `<ChildCount includeComment>`, default true.
    pub child_count_include_comment: bool,
    /// `<ChildCount includeProcessingInstruction>`, default true.
    pub child_count_include_pi: bool,
}

/// `<ValueLimits>`: longest values, in characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct XmlValueLimits {
    /// `<Text>`.
    pub text: Option<u64>,
    /// `<Attribute>`.
    pub attribute: Option<u64>,
    /// `<NamespaceURI>`.
    pub namespace_uri: Option<u64>,
    /// `<Comment>`.
    pub comment: Option<u64>,
    /// `<ProcessingInstructionData>`.
    pub processing_instruction_data: Option<u64>,
}

/// `<XMLThreatProtection>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct XmlThreatProtection {
    /// `<Source>`, default `message`.
    pub source: String,
    /// `<NameLimits>`.
    pub names: XmlNameLimits,
    /// `<StructureLimits>`.
    pub structure: XmlStructureLimits,
    /// `<ValueLimits>`.
    pub values: XmlValueLimits,
}

pub(crate) fn xml_threat_protection(cx: &mut Cx<'_>, el: &Element) -> XmlThreatProtection {
    cx.known_policy(
        el,
        &["Source", "NameLimits", "StructureLimits", "ValueLimits"],
    );
    let empty = Element::default();
    let n = el.child("NameLimits").unwrap_or(&empty);
    cx.known(
        n,
        &[
            "Element",
            "Attribute",
            "NamespacePrefix",
            "ProcessingInstructionTarget",
        ],
    );
    let s = el.child("StructureLimits").unwrap_or(&empty);
    cx.known(
        s,
        &[
            "NodeDepth",
            "AttributeCountPerElement",
            "NamespaceCountPerElement",
            "ChildCount",
        ],
    );
    let v = el.child("ValueLimits").unwrap_or(&empty);
    cx.known(
        v,
        &[
            "Text",
            "Attribute",
            "NamespaceURI",
            "Comment",
            "ProcessingInstructionData",
        ],
    );
    let child_count = s.child("ChildCount");
    let include =
        |cx: &mut Cx<'_>, name: &str| child_count.is_none_or(|c| cx.attr_bool(c, name, true));
    XmlThreatProtection {
        source: source(cx, el),
        names: XmlNameLimits {
            element: limit(cx, n, "Element"),
            attribute: limit(cx, n, "Attribute"),
            namespace_prefix: limit(cx, n, "NamespacePrefix"),
            processing_instruction_target: limit(cx, n, "ProcessingInstructionTarget"),
        },
        structure: XmlStructureLimits {
            node_depth: limit(cx, s, "NodeDepth"),
            attribute_count_per_element: limit(cx, s, "AttributeCountPerElement"),
            namespace_count_per_element: limit(cx, s, "NamespaceCountPerElement"),
            child_count: limit(cx, s, "ChildCount"),
            child_count_include_text: include(cx, "includeText"),
            child_count_include_element: include(cx, "includeElement"),
            child_count_include_comment: include(cx, "includeComment"),
            child_count_include_pi: include(cx, "includeProcessingInstruction"),
        },
        values: XmlValueLimits {
            text: limit(cx, v, "Text"),
            attribute: limit(cx, v, "Attribute"),
            namespace_uri: limit(cx, v, "NamespaceURI"),
            comment: limit(cx, v, "Comment"),
            processing_instruction_data: limit(cx, v, "ProcessingInstructionData"),
        },
    }
}

/// Which XML limit a payload exceeded; the names are Apigee's fault names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlLimit {
    /// `ElementNameExceeded`.
    ElementName,
    /// `AttributeNameExceeded`.
    AttributeName,
    /// `NSPrefixExceeded`.
    NamespacePrefix,
    /// `PITargetExceeded`.
    PiTarget,
    /// `NodeDepthExceeded`.
    NodeDepth,
    /// `AttrCountExceeded`.
    AttributeCount,
    /// `NSCountExceeded`.
    NamespaceCount,
    /// `ChildCountExceeded`.
    ChildCount,
    /// `TextExceeded`.
    Text,
    /// `AttrValueExceeded`.
    AttributeValue,
    /// `NSURIExceeded`.
    NamespaceUri,
    /// `CommentExceeded`.
    Comment,
    /// `PIDataExceeded`.
    PiData,
}

impl XmlLimit {
    /// The fault name (errorcode `steps.xmlthreatprotection.<name>`).
    pub fn fault_name(self) -> &'static str {
        match self {
            Self::ElementName => "ElementNameExceeded",
            Self::AttributeName => "AttributeNameExceeded",
            Self::NamespacePrefix => "NSPrefixExceeded",
            Self::PiTarget => "PITargetExceeded",
            Self::NodeDepth => "NodeDepthExceeded",
            Self::AttributeCount => "AttrCountExceeded",
            Self::NamespaceCount => "NSCountExceeded",
            Self::ChildCount => "ChildCountExceeded",
            Self::Text => "TextExceeded",
            Self::AttributeValue => "AttrValueExceeded",
            Self::NamespaceUri => "NSURIExceeded",
            Self::Comment => "CommentExceeded",
            Self::PiData => "PIDataExceeded",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::ElementName => "element name length",
            Self::AttributeName => "attribute name length",
            Self::NamespacePrefix => "namespace prefix length",
            Self::PiTarget => "processing instruction target length",
            Self::NodeDepth => "node depth",
            Self::AttributeCount => "attribute count",
            Self::NamespaceCount => "namespace count",
            Self::ChildCount => "child count",
            Self::Text => "text length",
            Self::AttributeValue => "attribute value length",
            Self::NamespaceUri => "namespace uri length",
            Self::Comment => "comment length",
            Self::PiData => "processing instruction data length",
        }
    }
}

/// An XML payload that failed an XMLThreatProtection check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct XmlThreat {
    /// The exceeded limit, or `None` for a payload that is not well-formed
    /// (`ExecutionFailed`).
    pub limit: Option<XmlLimit>,
    /// Byte offset in the payload where the scan stopped.
    pub offset: usize,
    /// What went wrong.
    pub message: String,
}

impl XmlThreat {
    /// The fault name.
    pub fn fault_name(&self) -> &'static str {
        self.limit.map_or("ExecutionFailed", XmlLimit::fault_name)
    }
}

/// Deepest XML nesting scanned regardless of the configured limit.
pub const MAX_XML_DEPTH: usize = 1024;

/// Scans `payload` against the limits of `cfg`, stopping at the first exceeded one. Only
/// one counter per open element is kept.
///
/// # Errors
/// An [`XmlThreat`] naming the limit (or a payload that is not well-formed), where it was
/// exceeded, and the value found against the limit.
pub fn scan_xml(cfg: &XmlThreatProtection, policy: &str, payload: &[u8]) -> Result<(), XmlThreat> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(payload);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    // Child counts of the open elements.
    let mut open: Vec<u64> = Vec::new();
    let mut seen_root = false;
    let line_of = |offset: usize| {
        payload
            .get(..offset)
            .map_or(1, |b| b.iter().filter(|c| **c == b'\n').count() + 1)
    };
    let too_much = |which: XmlLimit, found: u64, max: u64, offset: usize| XmlThreat {
        limit: Some(which),
        offset,
        message: format!(
            "XMLThreatProtection[{policy}]: {} exceeded ({found}), max {max} allowed, at line {}",
            which.what(),
            line_of(offset)
        ),
    };
    let check = |which: XmlLimit, max: Option<u64>, found: u64, offset: usize| match max {
        Some(max) if found > max => Err(too_much(which, found, max, offset)),
        _ => Ok(()),
    };
    let chars = |b: &[u8]| String::from_utf8_lossy(b).chars().count() as u64;
    let s = &cfg.structure;
    let count_child =
        |open: &mut Vec<u64>, include: bool, offset: usize| -> Result<(), XmlThreat> {
            if !include {
                return Ok(());
            }
            if let Some(n) = open.last_mut() {
                *n += 1;
                check(XmlLimit::ChildCount, s.child_count, *n, offset)?;
            }
            Ok(())
        };
    loop {
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event_into(&mut buf).map_err(|e| XmlThreat {
            limit: None,
            offset: at,
            message: format!(
                "XMLThreatProtection[{policy}]: Execution failed. reason: the payload is not well-formed XML at line {}: {e}",
                line_of(at)
            ),
        })?;
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                if open.is_empty() && seen_root {
                    return Err(XmlThreat {
                        limit: None,
                        offset: at,
                        message: format!(
                            "XMLThreatProtection[{policy}]: Execution failed. reason: a second root element at line {}",
                            line_of(at)
                        ),
                    });
                }
                seen_root = true;
                count_child(&mut open, s.child_count_include_element, at)?;
                let depth = open.len() as u64 + 1;
                check(XmlLimit::NodeDepth, s.node_depth, depth, at)?;
                if open.len() >= MAX_XML_DEPTH {
                    return Err(XmlThreat {
                        limit: Some(XmlLimit::NodeDepth),
                        offset: at,
                        message: format!(
                            "XMLThreatProtection[{policy}]: node depth exceeded, more than the scanner's {MAX_XML_DEPTH}"
                        ),
                    });
                }
                let name = start.name();
                let (prefix, local) = split_qname(name.as_ref());
                check(XmlLimit::ElementName, cfg.names.element, chars(local), at)?;
                if let Some(p) = prefix {
                    check(
                        XmlLimit::NamespacePrefix,
                        cfg.names.namespace_prefix,
                        chars(p),
                        at,
                    )?;
                }
                let mut attrs = 0u64;
                let mut namespaces = 0u64;
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| XmlThreat {
                        limit: None,
                        offset: at,
                        message: format!(
                            "XMLThreatProtection[{policy}]: Execution failed. reason: bad attribute at line {}: {e}",
                            line_of(at)
                        ),
                    })?;
                    let key = attr.key.as_ref();
                    let value_len = chars(&attr.value);
                    if key == b"xmlns" || key.starts_with(b"xmlns:") {
                        namespaces += 1;
                        check(
                            XmlLimit::NamespaceCount,
                            s.namespace_count_per_element,
                            namespaces,
                            at,
                        )?;
                        if let Some(p) = key.strip_prefix(b"xmlns:") {
                            check(
                                XmlLimit::NamespacePrefix,
                                cfg.names.namespace_prefix,
                                chars(p),
                                at,
                            )?;
                        }
                        check(
                            XmlLimit::NamespaceUri,
                            cfg.values.namespace_uri,
                            value_len,
                            at,
                        )?;
                    } else {
                        attrs += 1;
                        check(
                            XmlLimit::AttributeCount,
                            s.attribute_count_per_element,
                            attrs,
                            at,
                        )?;
                        let (p, l) = split_qname(key);
                        check(XmlLimit::AttributeName, cfg.names.attribute, chars(l), at)?;
                        if let Some(p) = p {
                            check(
                                XmlLimit::NamespacePrefix,
                                cfg.names.namespace_prefix,
                                chars(p),
                                at,
                            )?;
                        }
                        check(
                            XmlLimit::AttributeValue,
                            cfg.values.attribute,
                            value_len,
                            at,
                        )?;
                    }
                }
                if matches!(event, Event::Start(_)) {
                    open.push(0);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                let raw: &[u8] = t;
                if !raw.iter().all(u8::is_ascii_whitespace) {
                    if open.is_empty() {
                        return Err(XmlThreat {
                            limit: None,
                            offset: at,
                            message: format!(
                                "XMLThreatProtection[{policy}]: Execution failed. reason: text outside the root element at line {}",
                                line_of(at)
                            ),
                        });
                    }
                    count_child(&mut open, s.child_count_include_text, at)?;
                    check(XmlLimit::Text, cfg.values.text, chars(raw), at)?;
                }
            }
            Event::CData(t) => {
                count_child(&mut open, s.child_count_include_text, at)?;
                check(XmlLimit::Text, cfg.values.text, chars(t), at)?;
            }
            Event::Comment(c) => {
                count_child(&mut open, s.child_count_include_comment, at)?;
                check(XmlLimit::Comment, cfg.values.comment, chars(c), at)?;
            }
            Event::PI(pi) => {
                count_child(&mut open, s.child_count_include_pi, at)?;
                let target = pi.target();
                check(
                    XmlLimit::PiTarget,
                    cfg.names.processing_instruction_target,
                    chars(target),
                    at,
                )?;
                check(
                    XmlLimit::PiData,
                    cfg.values.processing_instruction_data,
                    chars(pi.content().trim_ascii()),
                    at,
                )?;
            }
            Event::DocType(_) => {
                return Err(XmlThreat {
                    limit: None,
                    offset: at,
                    message: format!(
                        "XMLThreatProtection[{policy}]: Execution failed. reason: a DOCTYPE is not allowed (line {})",
                        line_of(at)
                    ),
                });
            }
            Event::Eof => break,
            Event::Decl(_) | Event::GeneralRef(_) => {}
        }
        buf.clear();
    }
    if !open.is_empty() || !seen_root {
        return Err(XmlThreat {
            limit: None,
            offset: payload.len(),
            message: format!(
                "XMLThreatProtection[{policy}]: Execution failed. reason: the payload ends before its root element is closed"
            ),
        });
    }
    Ok(())
}

fn split_qname(name: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match name.iter().position(|b| *b == b':') {
        Some(i) => (name.get(..i), name.get(i + 1..).unwrap_or_default()),
        None => (None, name),
    }
}

/// The XmlThreatProtection policy type.
#[derive(Debug)]
pub(crate) struct XmlThreatProtectionPolicy;

impl PolicyType for XmlThreatProtectionPolicy {
    type Config = XmlThreatProtection;
    type Compiled = (String, XmlThreatProtection);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> XmlThreatProtection {
        xml_threat_protection(cx, el)
    }

    fn compile(
        config: &XmlThreatProtection,
        cx: &BuildCx<'_>,
    ) -> Result<(String, XmlThreatProtection), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, XmlThreatProtection), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let Some(body) = source_body(rt, Some(&cfg.source)) else {
            return Outcome::Fault(source_unavailable("xmlthreatprotection", &cfg.source));
        };
        if body.is_empty() || !content_type_has(rt, Some(&cfg.source), "xml") {
            return Outcome::Continue;
        }
        match scan_xml(cfg, name, &body) {
            Ok(()) => Outcome::Continue,
            Err(t) => Outcome::Fault(
                Fault::new(
                    "steps.xmlthreatprotection.ExecutionFailed",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "XMLThreatProtection[{name}]: Execution failed. reason: {}",
                        t.message
                    ),
                )
                .named(t.fault_name()),
            ),
        }
    }
}
