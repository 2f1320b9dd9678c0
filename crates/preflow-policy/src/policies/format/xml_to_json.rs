//! `<XMLToJSON>`: converts a XML payload to JSON.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::*;

struct Open {
    name: String,
    map: Map,
    /// Text runs between child elements, trimmed and non-empty.
    texts: Vec<String>,
    /// The text run being read (text, CDATA and references since the last tag).
    text: String,
    path: String,
    /// Keys of children written by an unwrapping `TreatAsArray` path.
    unwrapped: Vec<String>,
    /// Keys holding an array of same-named children.
    arrays: Vec<String>,
}

impl Open {
    /// Ends the current text run. The first run reserves the text key's place so that
    /// text written before the children stays before them.
    fn end_text(&mut self, o: &XmlToJsonOptions) {
        let t = self.text.trim();
        if !t.is_empty() {
            if self.texts.is_empty() && self.map.get_mut(&o.text_node_name).is_none() {
                self.map.insert(o.text_node_name.clone(), Value::Null);
            }
            self.texts.push(t.to_owned());
        }
        self.text.clear();
    }
}

fn recognise(text: &str, o: &XmlToJsonOptions) -> Value {
    if o.recognize_null && o.null_value.as_deref() == Some(text) {
        return Value::Null;
    }
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
            // Only numbers that print back as written (`-0`, `+5` stay text).
            if let Ok(i) = text.parse::<i64>()
                && i.to_string() == text
            {
                return Value::from(i);
            }
            // A number only when it prints back as written, so no digit is lost.
            if let Some(n) = text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .filter(|n| n.to_string() == text)
            {
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_owned())
}

fn finish(mut open: Open, o: &XmlToJsonOptions) -> Value {
    open.end_text(o);
    let mut texts: Vec<Value> = open.texts.iter().map(|t| recognise(t, o)).collect();
    let mut map = open.map;
    // An element holding only unwrapped children becomes their array.
    if texts.is_empty()
        && map.len() == 1
        && let Some(key) = open.unwrapped.first()
        && let Some(Value::Array(items)) = map.get_mut(key)
    {
        return Value::Array(std::mem::take(items));
    }
    let only_text = map.len() == usize::from(!texts.is_empty());
    if only_text && !o.text_always_as_property {
        return match texts.len() {
            0 if o.recognize_null => Value::Null,
            0 => Value::Object(Map::new()),
            1 => texts.pop().unwrap_or(Value::Null),
            _ => Value::Array(texts),
        };
    }
    if !texts.is_empty() {
        let v = if texts.len() == 1 {
            texts.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(texts)
        };
        map.insert(o.text_node_name.clone(), v);
    }
    Value::Object(map)
}

/// Adds a child's value under `key`: a repeated name turns into an array of the
/// siblings (`arrays` lists the keys that already hold such an array, so that a child
/// whose own value is an array stays one item).
fn insert(map: &mut Map, arrays: &mut Vec<String>, key: String, value: Value, as_array: bool) {
    if arrays.contains(&key)
        && let Some(Value::Array(items)) = map.get_mut(&key)
    {
        items.push(value);
        return;
    }
    if let Some(existing) = map.get_mut(&key) {
        let first = std::mem::take(existing);
        *existing = Value::Array(vec![first, value]);
        arrays.push(key);
    } else if as_array {
        map.insert(key.clone(), Value::Array(vec![value]));
        arrays.push(key);
    } else {
        map.insert(key, value);
    }
}

/// The key of an element or attribute name: the prefix kept with `NamespaceSeparator`
/// between, or dropped when no separator is configured.
fn key_of(qname: &[u8], o: &XmlToJsonOptions) -> String {
    let name = String::from_utf8_lossy(qname);
    match (name.split_once(':'), &o.namespace_separator) {
        (Some((p, l)), Some(sep)) => format!("{p}{sep}{l}"),
        (Some((_, l)), None) => l.to_owned(),
        (None, _) => name.into_owned(),
    }
}

/// Converts an XML document to JSON text (XMLToJSON), with [`MAX_DEPTH`] as the depth
/// limit. Repeated elements become arrays; attributes become `AttributePrefix` keys (in
/// an `AttributeBlockName` object when one is set); text beside child elements goes under
/// `TextNodeName`, one string per run of text.
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
                if let Some(parent) = stack.last_mut() {
                    parent.end_text(o);
                }
                let name = key_of(s.name().as_ref(), o);
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
                        let k = format!("{}{}", o.attribute_prefix, key_of(key, o));
                        attrs.insert(k, recognise(&value, o));
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
                            map.insert(k, v);
                        }
                    }
                }
                let open = Open {
                    name,
                    map,
                    texts: Vec::new(),
                    text: String::new(),
                    path,
                    unwrapped: Vec::new(),
                    arrays: Vec::new(),
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

/// A `TreatAsArray` path as the docs write it (`a/b/c`, with or without a leading `/`)
/// against an element's path of local names.
fn path_matches(configured: &str, path: &str) -> bool {
    configured.trim().trim_start_matches('/') == path.trim_start_matches('/')
}

fn close(open: Open, stack: &mut [Open], root: &mut Map, o: &XmlToJsonOptions) {
    let treat = o
        .treat_as_array
        .iter()
        .filter(|(p, _)| path_matches(p, &open.path))
        .map(|(_, unwrap)| *unwrap)
        .reduce(|a, b| a || b);
    let name = open.name.clone();
    let value = finish(open, o);
    match stack.last_mut() {
        Some(p) => {
            if treat == Some(true) && !p.unwrapped.contains(&name) {
                // Remembered so that the parent becomes the array when nothing else is in it.
                p.unwrapped.push(name.clone());
            }
            insert(&mut p.map, &mut p.arrays, name, value, treat.is_some());
        }
        None => insert(root, &mut Vec::new(), name, value, treat.is_some()),
    }
}

/// `<XMLToJSON><Options>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XmlToJsonOptions {
    /// `<RecognizeNumber>` (default true, as the reference page states): numeric text
    /// becomes a JSON number when it prints back unchanged.
    pub recognize_number: bool,
    /// `<RecognizeBoolean>` (default true): `true`/`false` text becomes a JSON boolean.
    pub recognize_boolean: bool,
    /// `<RecognizeNull>` (default false): empty elements (and text equal to `NullValue`)
    /// become `null`; without it an empty element becomes `{}`.
    pub recognize_null: bool,
    /// `<NullValue>`: element text read as `null` when `RecognizeNull` is on.
    pub null_value: Option<String>,
    /// `<NamespaceBlockName>`: when set, namespace declarations are kept under this key.
    pub namespace_block_name: Option<String>,
    /// `<DefaultNamespaceNodeName>` (default `$default`).
    pub default_namespace_node_name: String,
    /// `<NamespaceSeparator>`: between prefix and local name in keys; without one,
    /// keys are local names (the prefix is dropped).
    pub namespace_separator: Option<String>,
    /// `<TextAlwaysAsProperty>` (default false).
    pub text_always_as_property: bool,
    /// `<TextNodeName>` (default `#text`).
    pub text_node_name: String,
    /// `<AttributeBlockName>`: when set, attributes go in an object under this key.
    pub attribute_block_name: Option<String>,
    /// `<AttributePrefix>` (default none: the reference page's output without options
    /// shows attributes by their bare names).
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
            recognize_number: true,
            recognize_boolean: true,
            recognize_null: false,
            null_value: None,
            namespace_block_name: None,
            default_namespace_node_name: "$default".into(),
            namespace_separator: None,
            text_always_as_property: false,
            text_node_name: "#text".into(),
            attribute_block_name: None,
            attribute_prefix: String::new(),
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
        // A format names the whole option set: what it does not list is off.
        let d = Self {
            recognize_number: false,
            recognize_boolean: false,
            ..Self::default()
        };
        Some(match format.trim().to_ascii_lowercase().as_str() {
            "xml.com" => Self {
                recognize_null: true,
                namespace_separator: Some(":".into()),
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
                namespace_separator: Some("$".into()),
                text_always_as_property: true,
                ..d
            },
            "badgerfish" => Self {
                text_node_name: "$".into(),
                text_always_as_property: true,
                attribute_prefix: "@".into(),
                namespace_separator: Some(":".into()),
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
        namespace_separator: opt_text(cx, o, "NamespaceSeparator").or(d.namespace_separator),
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

/// The XMLToJSON policy type.
#[derive(Debug)]
pub(crate) struct XmlToJsonPolicy;

impl PolicyType for XmlToJsonPolicy {
    type Config = XmlToJson;
    type Compiled = (String, XmlToJson);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> XmlToJson {
        xml_to_json(cx, el)
    }

    fn compile(config: &XmlToJson, cx: &BuildCx<'_>) -> Result<(String, XmlToJson), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, XmlToJson), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        convert(
            rt,
            &c.0,
            cfg.source.as_deref(),
            cfg.output_variable.as_deref(),
            false,
            |b| xml_to_json_text(b, &cfg.options),
        )
    }

    fn variables_set(config: &XmlToJson) -> Vec<String> {
        output_variables(&config.output_variable)
    }
}
