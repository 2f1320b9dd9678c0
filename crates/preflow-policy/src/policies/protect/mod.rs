//! Threat protection: JSONThreatProtection, XMLThreatProtection and
//! RegularExpressionProtection.
//!
//! The JSON and XML checks scan the payload as a stream and stop at the first exceeded
//! limit: no tree is built. [`scan_json`] drives serde_json with a visitor that keeps only
//! counters; [`scan_xml`] reads quick-xml events and keeps one counter per open element.

mod json_threat_protection;
mod regular_expression_protection;
mod xml_threat_protection;

pub(crate) use json_threat_protection::JsonThreatProtectionPolicy;
pub(crate) use regular_expression_protection::RegularExpressionProtectionPolicy;
pub(crate) use xml_threat_protection::XmlThreatProtectionPolicy;

use crate::parse::Cx;
use crate::xml::Element;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

// ---------------------------------------------------------------------------------------
// JSONThreatProtection

/// `<JSONThreatProtection>`: limits on a JSON payload. `None` is "no limit" (absent or
/// negative in the policy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JsonThreatProtection {
    /// `<Source>`, default `message`.
    pub source: String,
    /// `<ArrayElementCount>`.
    pub array_element_count: Option<u64>,
    /// `<ContainerDepth>`.
    pub container_depth: Option<u64>,
    /// `<ObjectEntryCount>`.
    pub object_entry_count: Option<u64>,
    /// `<ObjectEntryNameLength>` (characters).
    pub object_entry_name_length: Option<u64>,
    /// `<StringValueLength>` (characters).
    pub string_value_length: Option<u64>,
}

fn limit(cx: &mut Cx<'_>, el: &Element, name: &str) -> Option<u64> {
    let c = el.child(name)?;
    let n: i64 = cx.number(c)?;
    u64::try_from(n).ok()
}

fn source(cx: &Cx<'_>, el: &Element) -> String {
    cx.child_text(el, "Source")
        .unwrap_or_else(|| "message".to_owned())
}

pub(crate) fn json_threat_protection(cx: &mut Cx<'_>, el: &Element) -> JsonThreatProtection {
    cx.known_policy(
        el,
        &[
            "Source",
            "ArrayElementCount",
            "ContainerDepth",
            "ObjectEntryCount",
            "ObjectEntryNameLength",
            "StringValueLength",
        ],
    );
    JsonThreatProtection {
        source: source(cx, el),
        array_element_count: limit(cx, el, "ArrayElementCount"),
        container_depth: limit(cx, el, "ContainerDepth"),
        object_entry_count: limit(cx, el, "ObjectEntryCount"),
        object_entry_name_length: limit(cx, el, "ObjectEntryNameLength"),
        string_value_length: limit(cx, el, "StringValueLength"),
    }
}

/// Which JSON limit a payload exceeded; the names are Apigee's fault names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonLimit {
    /// `ExceededContainerDepth`.
    ContainerDepth,
    /// `ExceededObjectEntryCount`.
    ObjectEntryCount,
    /// `ExceededArrayElementCount`.
    ArrayElementCount,
    /// `ExceededObjectEntryNameLength`.
    ObjectEntryNameLength,
    /// `ExceededStringValueLength`.
    StringValueLength,
}

impl JsonLimit {
    /// The fault name (errorcode `steps.jsonthreatprotection.<name>`).
    pub fn fault_name(self) -> &'static str {
        match self {
            Self::ContainerDepth => "ExceededContainerDepth",
            Self::ObjectEntryCount => "ExceededObjectEntryCount",
            Self::ArrayElementCount => "ExceededArrayElementCount",
            Self::ObjectEntryNameLength => "ExceededObjectEntryNameLength",
            Self::StringValueLength => "ExceededStringValueLength",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::ContainerDepth => "container depth",
            Self::ObjectEntryCount => "object entry count",
            Self::ArrayElementCount => "array element count",
            Self::ObjectEntryNameLength => "object entry name length",
            Self::StringValueLength => "string value length",
        }
    }
}

/// A JSON payload that failed a JSONThreatProtection check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct JsonThreat {
    /// The exceeded limit, or `None` for a payload that is not valid JSON
    /// (`ExecutionFailed`).
    pub limit: Option<JsonLimit>,
    /// The line of the payload where the scan stopped (1-based).
    pub line: usize,
    /// What went wrong, in Apigee's words where known.
    pub message: String,
}

impl JsonThreat {
    /// The fault name.
    pub fn fault_name(&self) -> &'static str {
        self.limit.map_or("ExecutionFailed", JsonLimit::fault_name)
    }
}

/// Deepest JSON nesting scanned regardless of the configured limit; serde_json's own
/// recursion limit (128) also applies.
pub const MAX_JSON_DEPTH: u64 = 120;

#[derive(Clone, Copy)]
struct Scan<'a> {
    cfg: &'a JsonThreatProtection,
    depth: u64,
    hit: &'a Cell<Option<(JsonLimit, u64, u64)>>,
}

impl Scan<'_> {
    fn exceed<E: de::Error>(&self, which: JsonLimit, found: u64, max: u64) -> E {
        self.hit.set(Some((which, found, max)));
        E::custom(which.what())
    }

    fn enter<E: de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if let Some(max) = self.cfg.container_depth
            && depth > max
        {
            return Err(self.exceed(JsonLimit::ContainerDepth, depth, max));
        }
        if depth > MAX_JSON_DEPTH {
            return Err(E::custom("nesting deeper than the scanner accepts"));
        }
        Ok(Self { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

struct Key<'a>(Scan<'a>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Some(max) = self.0.cfg.object_entry_name_length {
            let n = v.chars().count() as u64;
            if n > max {
                return Err(self.0.exceed(JsonLimit::ObjectEntryNameLength, n, max));
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Some(max) = self.cfg.string_value_length {
            let n = v.chars().count() as u64;
            if n > max {
                return Err(self.exceed(JsonLimit::StringValueLength, n, max));
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut count = 0u64;
        while seq.next_element_seed(inner)?.is_some() {
            count += 1;
            if let Some(max) = self.cfg.array_element_count
                && count > max
            {
                return Err(self.exceed(JsonLimit::ArrayElementCount, count, max));
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut count = 0u64;
        while map.next_key_seed(Key(inner))?.is_some() {
            count += 1;
            if let Some(max) = self.cfg.object_entry_count
                && count > max
            {
                return Err(self.exceed(JsonLimit::ObjectEntryCount, count, max));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Scans `payload` against the limits of `cfg`, stopping at the first exceeded one.
///
/// # Errors
/// A [`JsonThreat`] naming the limit (or invalid JSON), the line, and a message in
/// Apigee's form `JSONThreatProtection[<policy>]: Exceeded <limit> at line <n>`.
pub fn scan_json(
    cfg: &JsonThreatProtection,
    policy: &str,
    payload: &[u8],
) -> Result<(), JsonThreat> {
    let hit = Cell::new(None);
    let scan = Scan {
        cfg,
        depth: 0,
        hit: &hit,
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let result = scan.deserialize(&mut de).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let line = e.line();
            Err(match hit.get() {
                Some((which, found, max)) => JsonThreat {
                    limit: Some(which),
                    line,
                    message: format!(
                        "JSONThreatProtection[{policy}]: Exceeded {} at line {line} ({found} is more than the limit of {max})",
                        which.what()
                    ),
                },
                None => JsonThreat {
                    limit: None,
                    line,
                    message: format!(
                        "JSONThreatProtection[{policy}]: Execution failed. reason: invalid JSON: {e}"
                    ),
                },
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// XMLThreatProtection

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

// ---------------------------------------------------------------------------------------
// RegularExpressionProtection

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

/// A named input (`<QueryParam name>`, `<Header name>`, `<FormParam name>`,
/// `<Variable name>`) with its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamedPatterns {
    /// The parameter, header or variable name.
    pub name: String,
    /// The patterns.
    pub patterns: Vec<Pattern>,
}

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
