//! Format conversion: JSONToXML and XMLToJSON, and the JSONPath subset used by the
//! payload checks.
//!
//! Both conversions read their input once, with a depth limit, and fail on the first
//! problem. The defaults follow Apigee's documented option defaults; where Apigee's
//! documentation is silent the choice is stated on the option.

mod json_to_xml;
mod xml_to_json;

pub use crate::jsonpath::json_path;
pub(crate) use json_to_xml::JsonToXmlPolicy;
pub(crate) use xml_to_json::XmlToJsonPolicy;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};

use crate::parse::Cx;
use crate::policies::source::{source_body, source_unavailable};
use crate::runtime::{Fault, Message, Outcome, Runtime};
use crate::xml::Element;
use ord::{Map, Value};

/// Deepest nesting either conversion accepts.
pub const MAX_DEPTH: usize = 100;

/// `<JSONToXML><Options>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonToXmlOptions {
    /// `<NullValue>`: the text written for `null` (default empty).
    pub null_value: String,
    /// `<NamespaceBlockName>`: a key holding `prefix: uri` declarations.
    pub namespace_block_name: Option<String>,
    /// `<DefaultNamespaceNodeName>`: the key of the default namespace in that block.
    pub default_namespace_node_name: Option<String>,
    /// `<NamespaceSeparator>`: separates prefix and name in keys.
    pub namespace_separator: Option<String>,
    /// `<AttributeBlockName>`: a key whose object holds attributes.
    pub attribute_block_name: Option<String>,
    /// `<AttributePrefix>`: keys starting with it become attributes.
    pub attribute_prefix: Option<String>,
    /// `<TextNodeName>`: the key whose value becomes the element's text.
    pub text_node_name: Option<String>,
    /// `<ObjectRootElementName>` (default `Root`): the root for an object with several keys.
    pub object_root_element_name: String,
    /// `<ArrayRootElementName>` (default `Array`): the root for a top-level array.
    pub array_root_element_name: String,
    /// `<ArrayItemElementName>` (default `Item`): items of arrays inside arrays.
    pub array_item_element_name: String,
    /// `<InvalidCharsReplacement>` (default `_`): replaces characters not allowed in names.
    pub invalid_chars_replacement: String,
}

impl Default for JsonToXmlOptions {
    fn default() -> Self {
        Self {
            null_value: String::new(),
            namespace_block_name: None,
            default_namespace_node_name: None,
            namespace_separator: None,
            attribute_block_name: None,
            attribute_prefix: None,
            text_node_name: None,
            object_root_element_name: "Root".into(),
            array_root_element_name: "Array".into(),
            array_item_element_name: "Item".into(),
            invalid_chars_replacement: "_".into(),
        }
    }
}

/// `<JSONToXML>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonToXml {
    /// `<Source>`: the message to convert (default: the current message).
    pub source: Option<String>,
    /// `<OutputVariable>`: where the XML goes (default: the source).
    pub output_variable: Option<String>,
    /// `<Options>`.
    pub options: JsonToXmlOptions,
}

/// `<XMLToJSON><Options>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XmlToJsonOptions {
    /// `<RecognizeNumber>` (default false): numeric text becomes a JSON number.
    pub recognize_number: bool,
    /// `<RecognizeBoolean>` (default false): `true`/`false` text becomes a JSON boolean.
    pub recognize_boolean: bool,
    /// `<RecognizeNull>` (default false): empty elements become `null` (or `NullValue`).
    pub recognize_null: bool,
    /// `<NullValue>`: the value written for a recognised null (default JSON `null`).
    pub null_value: Option<String>,
    /// `<NamespaceBlockName>`: when set, namespace declarations are kept under this key.
    pub namespace_block_name: Option<String>,
    /// `<DefaultNamespaceNodeName>` (default `$default`).
    pub default_namespace_node_name: String,
    /// `<NamespaceSeparator>` (default `:`): between prefix and local name in keys.
    pub namespace_separator: String,
    /// `<TextAlwaysAsProperty>` (default false).
    pub text_always_as_property: bool,
    /// `<TextNodeName>` (default `#text`).
    pub text_node_name: String,
    /// `<AttributeBlockName>`: when set, attributes go in an object under this key.
    pub attribute_block_name: Option<String>,
    /// `<AttributePrefix>` (default `@`).
    pub attribute_prefix: String,
    /// `<OutputPrefix>`: text before the JSON.
    pub output_prefix: String,
    /// `<OutputSuffix>`: text after the JSON.
    pub output_suffix: String,
    /// `<StripLevels>` (default 0): outer single-key levels removed.
    pub strip_levels: usize,
    /// `<TreatAsArray><Path unwrap>`: element paths always written as arrays.
    pub treat_as_array: Vec<(String, bool)>,
}

impl Default for XmlToJsonOptions {
    fn default() -> Self {
        Self {
            recognize_number: false,
            recognize_boolean: false,
            recognize_null: false,
            null_value: None,
            namespace_block_name: None,
            default_namespace_node_name: "$default".into(),
            namespace_separator: ":".into(),
            text_always_as_property: false,
            text_node_name: "#text".into(),
            attribute_block_name: None,
            attribute_prefix: "@".into(),
            output_prefix: String::new(),
            output_suffix: String::new(),
            strip_levels: 0,
            treat_as_array: Vec::new(),
        }
    }
}

impl XmlToJsonOptions {
    /// The option set of a predefined `<Format>`, as Apigee's XMLToJSON reference lists
    /// them: `xml.com` (recognise null, text `#text`, attributes `@`), `yahoo` (recognise
    /// numbers and booleans, text `content`, attributes without prefix), `google` (text
    /// `$t`, always as a property, namespace separator `$`) and `badgerFish` (text `$`,
    /// always as a property, attributes `@`, namespaces under `@xmlns` with `$` as the
    /// default). Names are matched without regard to case.
    pub fn preset(format: &str) -> Option<Self> {
        let d = Self::default();
        Some(match format.trim().to_ascii_lowercase().as_str() {
            "xml.com" => Self {
                recognize_null: true,
                text_node_name: "#text".into(),
                attribute_prefix: "@".into(),
                ..d
            },
            "yahoo" => Self {
                recognize_number: true,
                recognize_boolean: true,
                text_node_name: "content".into(),
                attribute_prefix: String::new(),
                ..d
            },
            "google" => Self {
                text_node_name: "$t".into(),
                namespace_separator: "$".into(),
                text_always_as_property: true,
                ..d
            },
            "badgerfish" => Self {
                text_node_name: "$".into(),
                text_always_as_property: true,
                attribute_prefix: "@".into(),
                namespace_separator: ":".into(),
                namespace_block_name: Some("@xmlns".into()),
                default_namespace_node_name: "$".into(),
                ..d
            },
            _ => return None,
        })
    }
}

/// `<XMLToJSON>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XmlToJson {
    /// `<Source>`.
    pub source: Option<String>,
    /// `<OutputVariable>`.
    pub output_variable: Option<String>,
    /// `<Format>`: a predefined option set (see [`XmlToJsonOptions::preset`]); `<Options>`
    /// given beside it override single options.
    pub format: Option<String>,
    /// `<Options>`.
    pub options: XmlToJsonOptions,
}

fn opt_text(cx: &Cx<'_>, el: Option<&Element>, name: &str) -> Option<String> {
    el.and_then(|e| e.child(name))
        .map(|c| c.raw_text().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| el.and_then(|e| cx.child_text(e, name)))
}

fn json_to_xml(cx: &mut Cx<'_>, el: &Element) -> JsonToXml {
    cx.known_policy(el, &["Source", "OutputVariable", "Options"]);
    let o = el.child("Options");
    if let Some(o) = o {
        cx.known(
            o,
            &[
                "NullValue",
                "NamespaceBlockName",
                "DefaultNamespaceNodeName",
                "NamespaceSeparator",
                "AttributeBlockName",
                "AttributePrefix",
                "TextNodeName",
                "ObjectRootElementName",
                "ArrayRootElementName",
                "ArrayItemElementName",
                "InvalidCharsReplacement",
            ],
        );
    }
    let d = JsonToXmlOptions::default();
    JsonToXml {
        source: cx.child_text(el, "Source"),
        output_variable: cx.child_text(el, "OutputVariable"),
        options: JsonToXmlOptions {
            null_value: opt_text(cx, o, "NullValue").unwrap_or(d.null_value),
            namespace_block_name: opt_text(cx, o, "NamespaceBlockName"),
            default_namespace_node_name: opt_text(cx, o, "DefaultNamespaceNodeName"),
            namespace_separator: opt_text(cx, o, "NamespaceSeparator"),
            attribute_block_name: opt_text(cx, o, "AttributeBlockName"),
            attribute_prefix: opt_text(cx, o, "AttributePrefix"),
            text_node_name: opt_text(cx, o, "TextNodeName"),
            object_root_element_name: opt_text(cx, o, "ObjectRootElementName")
                .unwrap_or(d.object_root_element_name),
            array_root_element_name: opt_text(cx, o, "ArrayRootElementName")
                .unwrap_or(d.array_root_element_name),
            array_item_element_name: opt_text(cx, o, "ArrayItemElementName")
                .unwrap_or(d.array_item_element_name),
            invalid_chars_replacement: opt_text(cx, o, "InvalidCharsReplacement")
                .unwrap_or(d.invalid_chars_replacement),
        },
    }
}

fn xml_to_json(cx: &mut Cx<'_>, el: &Element) -> XmlToJson {
    cx.known_policy(el, &["Source", "OutputVariable", "Options", "Format"]);
    let o = el.child("Options");
    if let Some(o) = o {
        cx.known(
            o,
            &[
                "RecognizeNumber",
                "RecognizeBoolean",
                "RecognizeNull",
                "NullValue",
                "NamespaceBlockName",
                "DefaultNamespaceNodeName",
                "NamespaceSeparator",
                "TextAlwaysAsProperty",
                "TextNodeName",
                "AttributeBlockName",
                "AttributePrefix",
                "OutputPrefix",
                "OutputSuffix",
                "StripLevels",
                "TreatAsArray",
            ],
        );
    }
    let format = cx.child_text(el, "Format");
    let d = match (&format, el.child("Format")) {
        (Some(f), Some(fe)) => match XmlToJsonOptions::preset(f) {
            Some(p) => p,
            None => {
                cx.error(
                    fe.text_offset(),
                    format!("`<Format>` must be xml.com, yahoo, google or badgerFish, not `{f}`"),
                );
                XmlToJsonOptions::default()
            }
        },
        _ => XmlToJsonOptions::default(),
    };
    let empty = Element::default();
    let oe = o.unwrap_or(&empty);
    let options = XmlToJsonOptions {
        recognize_number: cx.child_bool(oe, "RecognizeNumber", d.recognize_number),
        recognize_boolean: cx.child_bool(oe, "RecognizeBoolean", d.recognize_boolean),
        recognize_null: cx.child_bool(oe, "RecognizeNull", d.recognize_null),
        null_value: opt_text(cx, o, "NullValue").or(d.null_value),
        namespace_block_name: opt_text(cx, o, "NamespaceBlockName").or(d.namespace_block_name),
        default_namespace_node_name: opt_text(cx, o, "DefaultNamespaceNodeName")
            .unwrap_or(d.default_namespace_node_name),
        namespace_separator: opt_text(cx, o, "NamespaceSeparator").unwrap_or(d.namespace_separator),
        text_always_as_property: cx.child_bool(
            oe,
            "TextAlwaysAsProperty",
            d.text_always_as_property,
        ),
        text_node_name: opt_text(cx, o, "TextNodeName").unwrap_or(d.text_node_name),
        attribute_block_name: opt_text(cx, o, "AttributeBlockName").or(d.attribute_block_name),
        attribute_prefix: opt_text(cx, o, "AttributePrefix").unwrap_or(d.attribute_prefix),
        output_prefix: opt_text(cx, o, "OutputPrefix").unwrap_or_default(),
        output_suffix: opt_text(cx, o, "OutputSuffix").unwrap_or_default(),
        strip_levels: oe
            .child("StripLevels")
            .and_then(|s| cx.number(s))
            .unwrap_or(0),
        treat_as_array: oe
            .child("TreatAsArray")
            .map(|t| {
                t.children_named("Path")
                    .map(|p| (p.text().to_owned(), cx.attr_bool(p, "unwrap", false)))
                    .collect()
            })
            .unwrap_or_default(),
    };
    XmlToJson {
        source: cx.child_text(el, "Source"),
        output_variable: cx.child_text(el, "OutputVariable"),
        format,
        options,
    }
}

/// A conversion that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The input is not valid JSON (`steps.json2xml.ExecutionFailed`).
    #[error("the input is not valid JSON: {0}")]
    InvalidJson(String),
    /// The input is not well-formed XML (`steps.xml2json.ExecutionFailed`).
    #[error("the input is not well-formed XML: {0}")]
    InvalidXml(String),
    /// The input nests deeper than [`MAX_DEPTH`].
    #[error("the input nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

// ---------------------------------------------------------------------------------------
// JSON -> XML

fn xml_name(name: &str, o: &JsonToXmlOptions) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_alphabetic()
            || c == '_'
            || (i > 0 && (c.is_alphanumeric() || c == '-' || c == '.'))
            || (c == ':' && o.namespace_separator.is_some());
        if ok {
            out.push(c);
        } else {
            out.push_str(&o.invalid_chars_replacement);
        }
    }
    if out.is_empty() {
        out.push_str(&o.invalid_chars_replacement);
    }
    out
}

/// An array item that is itself an array becomes one element holding the inner items.
fn wrap(v: &Value) -> Value {
    match v {
        Value::Array(_) => Value::Array(vec![v.clone()]),
        other => other.clone(),
    }
}

fn scalar_text(v: &Value, o: &JsonToXmlOptions) -> String {
    match v {
        Value::Null => o.null_value.clone(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_element(
    out: &mut String,
    name: &str,
    v: &Value,
    o: &JsonToXmlOptions,
    depth: usize,
) -> Result<(), ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    let tag = match (&o.namespace_separator, name) {
        (Some(sep), n) if !sep.is_empty() && n.contains(sep.as_str()) => {
            xml_name(&n.replacen(sep.as_str(), ":", 1), o)
        }
        _ => xml_name(name, o),
    };
    match v {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(inner) => {
                        out.push_str(&format!("<{tag}>"));
                        for x in inner {
                            write_element(out, &o.array_item_element_name, &wrap(x), o, depth + 1)?;
                        }
                        out.push_str(&format!("</{tag}>"));
                    }
                    _ => write_element(out, name, item, o, depth + 1)?,
                }
            }
        }
        Value::Object(map) => {
            let mut attrs = String::new();
            let mut body = String::new();
            let mut text = String::new();
            for (k, val) in map.iter() {
                if o.attribute_block_name.as_deref() == Some(k.as_str()) {
                    if let Value::Object(a) = val {
                        for (ak, av) in a.iter() {
                            attrs.push_str(&format!(
                                " {}=\"{}\"",
                                xml_name(ak, o),
                                quick_xml::escape::escape(scalar_text(av, o).as_str())
                            ));
                        }
                    }
                } else if o.namespace_block_name.as_deref() == Some(k.as_str()) {
                    if let Value::Object(ns) = val {
                        for (prefix, uri) in ns.iter() {
                            let uri = quick_xml::escape::escape(scalar_text(uri, o).as_str())
                                .into_owned();
                            if o.default_namespace_node_name.as_deref() == Some(prefix.as_str()) {
                                attrs.push_str(&format!(" xmlns=\"{uri}\""));
                            } else {
                                attrs
                                    .push_str(&format!(" xmlns:{}=\"{uri}\"", xml_name(prefix, o)));
                            }
                        }
                    }
                } else if let Some(attr) = o
                    .attribute_prefix
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .and_then(|p| k.strip_prefix(p))
                {
                    attrs.push_str(&format!(
                        " {}=\"{}\"",
                        xml_name(attr, o),
                        quick_xml::escape::escape(scalar_text(val, o).as_str())
                    ));
                } else if o.text_node_name.as_deref() == Some(k.as_str()) {
                    text.push_str(&quick_xml::escape::escape(scalar_text(val, o).as_str()));
                } else {
                    write_element(&mut body, k, val, o, depth + 1)?;
                }
            }
            out.push_str(&format!("<{tag}{attrs}>{text}{body}</{tag}>"));
        }
        scalar => {
            let text = scalar_text(scalar, o);
            out.push_str(&format!(
                "<{tag}>{}</{tag}>",
                quick_xml::escape::escape(text.as_str())
            ));
        }
    }
    Ok(())
}

/// Converts a JSON document to XML (JSONToXML).
///
/// An object with one key becomes that element; an object with several keys is wrapped
/// in `ObjectRootElementName`; a top-level array in `ArrayRootElementName` with
/// `ArrayItemElementName` items. Array members repeat their element.
///
/// # Errors
/// Invalid JSON, or nesting deeper than [`MAX_DEPTH`].
pub fn json_to_xml_text(json: &[u8], o: &JsonToXmlOptions) -> Result<String, ConvertError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|e| ConvertError::InvalidJson(e.to_string()))?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    match &value {
        Value::Object(map) if map.len() == 1 => {
            if let Some((k, v)) = map.iter().next() {
                if matches!(v, Value::Array(_)) {
                    let wrapped = Value::Object(map.clone());
                    write_element(&mut out, &o.object_root_element_name, &wrapped, o, 0)?;
                } else {
                    write_element(&mut out, k, v, o, 0)?;
                }
            }
        }
        Value::Object(_) => write_element(&mut out, &o.object_root_element_name, &value, o, 0)?,
        Value::Array(items) => {
            let root = xml_name(&o.array_root_element_name, o);
            out.push_str(&format!("<{root}>"));
            for item in items {
                write_element(&mut out, &o.array_item_element_name, &wrap(item), o, 1)?;
            }
            out.push_str(&format!("</{root}>"));
        }
        scalar => write_element(&mut out, &o.object_root_element_name, scalar, o, 0)?,
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// XML -> JSON

struct Open {
    name: String,
    map: Map,
    text: String,
    path: String,
}

fn recognise(text: &str, o: &XmlToJsonOptions) -> Value {
    if o.recognize_boolean {
        match text {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    if o.recognize_number {
        let leading_zero = text.len() > 1 && text.starts_with('0') && !text.starts_with("0.");
        let numeric = !text.is_empty()
            && !leading_zero
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+'));
        if numeric {
            if let Ok(i) = text.parse::<i64>() {
                return Value::from(i);
            }
            if let Some(n) = text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_owned())
}

fn null_value(o: &XmlToJsonOptions) -> Value {
    o.null_value
        .as_ref()
        .map_or(Value::Null, |n| Value::String(n.clone()))
}

fn finish(open: Open, o: &XmlToJsonOptions) -> Value {
    let text = open.text.trim();
    let mut map = open.map;
    if map.is_empty() && !o.text_always_as_property {
        if text.is_empty() {
            return if o.recognize_null {
                null_value(o)
            } else {
                Value::String(String::new())
            };
        }
        return recognise(text, o);
    }
    if !text.is_empty() {
        map.insert(o.text_node_name.clone(), recognise(text, o));
    }
    Value::Object(map)
}

fn insert(map: &mut Map, key: String, value: Value, as_array: bool) {
    match map.get_mut(&key) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = std::mem::take(existing);
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            let v = if as_array {
                Value::Array(vec![value])
            } else {
                value
            };
            map.insert(key, v);
        }
    }
}

/// Converts an XML document to JSON text (XMLToJSON), with [`MAX_DEPTH`] as the depth
/// limit. Repeated elements become arrays; attributes become `AttributePrefix` keys (or an
/// `AttributeBlockName` object); mixed text goes under `TextNodeName`.
///
/// # Errors
/// Input that is not well-formed or nests too deeply.
pub fn xml_to_json_text(xml: &[u8], o: &XmlToJsonOptions) -> Result<String, ConvertError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut root = Map::new();
    let bad = |e: String| ConvertError::InvalidXml(e);
    let key_of = |qname: &[u8]| -> String {
        let name = String::from_utf8_lossy(qname);
        match name.split_once(':') {
            Some((p, l)) => format!("{p}{}{l}", o.namespace_separator),
            None => name.into_owned(),
        }
    };
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| bad(e.to_string()))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(s) | Event::Empty(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ConvertError::TooDeep);
                }
                let name = key_of(s.name().as_ref());
                let path = format!(
                    "{}/{}",
                    stack.last().map_or("", |p| p.path.as_str()),
                    String::from_utf8_lossy(s.local_name().as_ref())
                );
                let mut map = Map::new();
                let mut attrs = Map::new();
                let mut namespaces = Map::new();
                for a in s.attributes() {
                    let a = a.map_err(|e| bad(e.to_string()))?;
                    let value = a
                        .unescape_value()
                        .map_err(|e| bad(e.to_string()))?
                        .into_owned();
                    let key = a.key.as_ref();
                    if key == b"xmlns" {
                        namespaces
                            .insert(o.default_namespace_node_name.clone(), Value::String(value));
                    } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                        namespaces.insert(
                            String::from_utf8_lossy(p).into_owned(),
                            Value::String(value),
                        );
                    } else {
                        attrs.insert(key_of(key), recognise(&value, o));
                    }
                }
                if let Some(block) = &o.namespace_block_name
                    && !namespaces.is_empty()
                {
                    map.insert(block.clone(), Value::Object(namespaces));
                }
                match &o.attribute_block_name {
                    Some(block) if !attrs.is_empty() => {
                        map.insert(block.clone(), Value::Object(attrs));
                    }
                    Some(_) => {}
                    None => {
                        for (k, v) in attrs.into_entries() {
                            map.insert(format!("{}{k}", o.attribute_prefix), v);
                        }
                    }
                }
                let open = Open {
                    name,
                    map,
                    text: String::new(),
                    path,
                };
                if empty {
                    close(open, &mut stack, &mut root, o);
                } else {
                    stack.push(open);
                }
            }
            Event::End(_) => {
                if let Some(open) = stack.pop() {
                    close(open, &mut stack, &mut root, o);
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.decode().map_err(|e| bad(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = r.decode().map_err(|e| bad(e.to_string()))?;
                    if let Ok(Some(c)) = r.resolve_char_ref() {
                        top.text.push(c);
                    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                        top.text.push_str(s);
                    } else {
                        return Err(bad(format!("unknown entity `&{name};`")));
                    }
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::DocType(_) => return Err(bad("a DOCTYPE is not allowed".into())),
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
        buf.clear();
    }
    if !stack.is_empty() || root.is_empty() {
        return Err(bad(
            "the document ends before its root element is closed".into()
        ));
    }
    let mut value = Value::Object(root);
    for _ in 0..o.strip_levels {
        match value {
            Value::Object(m) if m.len() == 1 => {
                value = m
                    .into_entries()
                    .next()
                    .map(|(_, v)| v)
                    .unwrap_or(Value::Null);
            }
            other => {
                value = other;
                break;
            }
        }
    }
    Ok(format!("{}{value}{}", o.output_prefix, o.output_suffix))
}

fn close(open: Open, stack: &mut [Open], root: &mut Map, o: &XmlToJsonOptions) {
    let treat = o.treat_as_array.iter().find(|(p, _)| *p == open.path);
    let name = open.name.clone();
    let value = finish(open, o);
    let parent = match stack.last_mut() {
        Some(p) => &mut p.map,
        None => root,
    };
    match treat {
        Some((_, true)) => {
            // unwrap: the element's own children replace it in an array.
            let items = match value {
                Value::Object(m) if m.len() == 1 => m
                    .into_entries()
                    .next()
                    .map(|(_, v)| v)
                    .unwrap_or(Value::Null),
                other => other,
            };
            let items = match items {
                Value::Array(a) => a,
                other => vec![other],
            };
            parent.insert(name, Value::Array(items));
        }
        Some((_, false)) => insert(parent, name, value, true),
        None => insert(parent, name, value, false),
    }
}

/// JSON values whose objects keep their keys in insertion order, so that conversions keep
/// document order.
mod ord {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::collections::HashMap;
    use std::fmt;

    /// An object: entries in insertion order, with an index by key.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub(super) struct Map {
        entries: Vec<(String, Value)>,
        index: HashMap<String, usize>,
    }

    impl Map {
        pub(super) fn new() -> Self {
            Self::default()
        }

        pub(super) fn len(&self) -> usize {
            self.entries.len()
        }

        pub(super) fn is_empty(&self) -> bool {
            self.entries.is_empty()
        }

        pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
            let i = *self.index.get(key)?;
            self.entries.get_mut(i).map(|(_, v)| v)
        }

        /// Sets `key`, keeping its place when it is already present.
        pub(super) fn insert(&mut self, key: String, value: Value) {
            if let Some(v) = self.get_mut(&key) {
                *v = value;
                return;
            }
            self.index.insert(key.clone(), self.entries.len());
            self.entries.push((key, value));
        }

        pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
            self.entries.iter().map(|(k, v)| (k, v))
        }

        pub(super) fn into_entries(self) -> impl Iterator<Item = (String, Value)> {
            self.entries.into_iter()
        }
    }

    /// A JSON value.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub(super) enum Value {
        #[default]
        Null,
        Bool(bool),
        Number(serde_json::Number),
        String(String),
        Array(Vec<Value>),
        Object(Map),
    }

    impl From<i64> for Value {
        fn from(n: i64) -> Self {
            Value::Number(n.into())
        }
    }

    impl fmt::Display for Value {
        /// Compact JSON text.
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Value::Null => f.write_str("null"),
                Value::Bool(b) => write!(f, "{b}"),
                Value::Number(n) => write!(f, "{n}"),
                Value::String(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
                Value::Array(items) => {
                    f.write_str("[")?;
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{v}")?;
                    }
                    f.write_str("]")
                }
                Value::Object(m) => {
                    f.write_str("{")?;
                    for (i, (k, v)) in m.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{}:{v}", serde_json::Value::String(k.clone()))?;
                    }
                    f.write_str("}")
                }
            }
        }
    }

    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element()? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
            let mut m = Map::new();
            while let Some((k, v)) = access.next_entry::<String, Value>()? {
                m.insert(k, v);
            }
            Ok(Value::Object(m))
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            d.deserialize_any(ValueVisitor)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running

/// Converts the source message's body and writes the result to the output message or
/// variable.
fn convert<R: Runtime>(
    rt: &mut R,
    name: &str,
    source: Option<&str>,
    output: Option<&str>,
    to_xml: bool,
    f: impl Fn(&[u8]) -> Result<String, ConvertError>,
) -> Outcome {
    let prefix = if to_xml { "json2xml" } else { "xml2json" };
    let Some(body) = source_body(rt, source) else {
        return Outcome::Fault(source_unavailable(prefix, source.unwrap_or("message")));
    };
    let text = match f(&body) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                format!("steps.{prefix}.ExecutionFailed"),
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "{}[{name}]: Execution failed. reason: {e}",
                    if to_xml { "JSONToXML" } else { "XMLToJSON" }
                ),
            ));
        }
    };
    let content_type = if to_xml {
        "application/xml"
    } else {
        "application/json"
    };
    let target = output.or(source).map(str::trim);
    let m = match target {
        Some("request") => Some(rt.request_mut()),
        Some("response") => Some(
            rt.response_mut()
                .get_or_insert_with(|| Message::response(StatusCode::OK)),
        ),
        None | Some("message") => {
            if rt.is_response_side() {
                rt.response_mut().as_mut()
            } else {
                Some(rt.request_mut())
            }
        }
        Some(var) => {
            rt.set_variable(var, text);
            return Outcome::Continue;
        }
    };
    if let Some(m) = m {
        m.body = Bytes::from(text);
        m.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    Outcome::Continue
}
