//! `<JSONToXML>`: converts a JSON payload to XML.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::*;

/// `name` as an XML name: each run of characters a name may not hold becomes one
/// `InvalidCharsReplacement` (`First%%%Name` becomes `First_Name`, as documented).
fn xml_name(name: &str, o: &JsonToXmlOptions) -> String {
    let mut out = String::with_capacity(name.len());
    let mut replaced = false;
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_alphabetic()
            || c == '_'
            || (i > 0 && (c.is_alphanumeric() || c == '-' || c == '.'))
            || (c == ':' && o.namespace_separator.is_some());
        if ok {
            out.push(c);
            replaced = false;
        } else if !replaced {
            out.push_str(&o.invalid_chars_replacement);
            replaced = true;
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

/// The text of a scalar: `null`, and a string equal to `NullValue`, are empty.
fn scalar_text(v: &Value, o: &JsonToXmlOptions) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if o.null_value.as_deref() == Some(s.as_str()) => String::new(),
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
                            let default = o
                                .default_namespace_node_name
                                .as_deref()
                                .unwrap_or("$default");
                            // The docs write the default both as the configured name
                            // and as `$default`; prefixes with or without `xmlns:`.
                            if prefix == default || prefix == "$default" {
                                attrs.push_str(&format!(" xmlns=\"{uri}\""));
                            } else {
                                let p = prefix.strip_prefix("xmlns:").unwrap_or(prefix);
                                attrs.push_str(&format!(" xmlns:{}=\"{uri}\"", xml_name(p, o)));
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
                    // Text stays where the key stands among the children.
                    write_text(&mut body, val, o);
                } else {
                    write_element(&mut body, k, val, o, depth + 1)?;
                }
            }
            out.push_str(&format!("<{tag}{attrs}>{body}</{tag}>"));
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

/// The text of a `TextNodeName` value; an array gives one run of text per item.
fn write_text(out: &mut String, v: &Value, o: &JsonToXmlOptions) {
    match v {
        Value::Array(items) => {
            for item in items {
                out.push_str(&quick_xml::escape::escape(scalar_text(item, o).as_str()));
            }
        }
        other => out.push_str(&quick_xml::escape::escape(scalar_text(other, o).as_str())),
    }
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

/// `<JSONToXML><Options>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonToXmlOptions {
    /// `<NullValue>`: a string value written as an empty element, like `null`.
    pub null_value: Option<String>,
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
            null_value: None,
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
            null_value: opt_text(cx, o, "NullValue").or(d.null_value),
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

/// The JSONToXML policy type.
#[derive(Debug)]
pub(crate) struct JsonToXmlPolicy;

impl PolicyType for JsonToXmlPolicy {
    type Config = JsonToXml;
    type Compiled = (String, JsonToXml);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> JsonToXml {
        json_to_xml(cx, el)
    }

    fn compile(config: &JsonToXml, cx: &BuildCx<'_>) -> Result<(String, JsonToXml), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, JsonToXml), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        convert(
            rt,
            &c.0,
            cfg.source.as_deref(),
            cfg.output_variable.as_deref(),
            true,
            |b| json_to_xml_text(b, &cfg.options),
        )
    }

    fn variables_set(config: &JsonToXml) -> Vec<String> {
        output_variables(&config.output_variable)
    }
}
