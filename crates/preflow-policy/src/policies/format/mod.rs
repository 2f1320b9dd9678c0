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
pub use json_to_xml::*;
pub(crate) use xml_to_json::XmlToJsonPolicy;
pub use xml_to_json::*;

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

fn opt_text(cx: &Cx<'_>, el: Option<&Element>, name: &str) -> Option<String> {
    el.and_then(|e| e.child(name))
        .map(|c| c.raw_text().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| el.and_then(|e| cx.child_text(e, name)))
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
// Running

/// The variables a conversion sets: its output, unless that is a message.
fn output_variables(output: &Option<String>) -> Vec<String> {
    output
        .iter()
        .filter(|v| !matches!(v.as_str(), "request" | "response" | "message"))
        .cloned()
        .collect()
}

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
    let kind = if to_xml { "JSONToXML" } else { "XMLToJSON" };
    let Some(body) = source_body(rt, source) else {
        // As the reference pages print it: `XMLToJSON[name]: Source xyz is not available`.
        let mut f = source_unavailable(prefix, source.unwrap_or("message"));
        f.faultstring = format!(
            "{kind}[{name}]: Source {} is not available",
            source.unwrap_or("message")
        );
        return Outcome::Fault(f);
    };
    let text = match f(&body) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Fault(Fault::new(
                format!("steps.{prefix}.ExecutionFailed"),
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{kind}[{name}]: Execution failed. reason: {e}"),
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
