//! Data loss is a bug: property tests that no element, attribute or text of generated
//! input is silently dropped by XMLToJSON or JSONToXML, through round trips where the
//! options allow one.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::format::{JsonToXmlOptions, XmlToJsonOptions, json_to_xml_text, xml_to_json_text};

/// A generated XML element.
#[derive(Debug, Clone)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    /// Children in order: text runs and elements.
    content: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    El(El),
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

impl El {
    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
        out.push('>');
        for n in &self.content {
            match n {
                Node::Text(t) => out.push_str(&escape(t)),
                Node::El(e) => e.write(out),
            }
        }
        out.push_str(&format!("</{}>", self.name));
    }
}

/// Text without surrounding blanks: digits, signs and dots too, so that values look like
/// numbers and booleans now and then.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9+.<>&-]{1,6}",
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("007".to_owned()),
        Just("-0".to_owned()),
        Just("1.50".to_owned()),
    ]
}

fn element() -> impl Strategy<Value = El> {
    element_of("[a-d]", 3)
}

/// Elements named by `names`, with up to `attrs - 1` attributes each; few names make
/// repeated siblings (arrays) and parents holding one kind of child common.
fn element_of(names: &'static str, attrs: usize) -> impl Strategy<Value = El> {
    let leaf = (
        names,
        prop::collection::btree_map("[x-z]", text(), 0..attrs),
        prop::option::of(text()),
    )
        .prop_map(|(name, attrs, t)| El {
            name,
            attrs: attrs.into_iter().collect(),
            content: t.into_iter().map(Node::Text).collect(),
        });
    leaf.prop_recursive(4, 40, 5, move |inner| {
        (
            names,
            prop::collection::btree_map("[x-z]", text(), 0..attrs),
            prop::collection::vec(
                prop_oneof![4 => inner.prop_map(Node::El), 1 => text().prop_map(Node::Text)],
                0..5,
            ),
        )
            .prop_map(|(name, attrs, content)| El {
                name,
                attrs: attrs.into_iter().collect(),
                content,
            })
    })
}

/// What a document holds, by element path: each element's attributes and its text runs
/// joined (runs may be joined or split by a conversion, their text may not change).
type Facts = BTreeMap<String, Vec<String>>;

fn facts_of(xml: &str) -> Facts {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut facts = Facts::new();
    let mut path: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let close = |path: &mut Vec<String>, texts: &mut Vec<String>, facts: &mut Facts| {
        let t = texts.pop().unwrap_or_default();
        facts
            .entry(format!("{}#text", path.join("/")))
            .or_default()
            .push(t);
        path.pop();
    };
    loop {
        match reader.read_event().expect("well-formed") {
            Event::Start(s) => {
                path.push(String::from_utf8_lossy(s.name().as_ref()).into_owned());
                texts.push(String::new());
                for a in s.attributes() {
                    let a = a.expect("attribute");
                    let key = format!(
                        "{}@{}",
                        path.join("/"),
                        String::from_utf8_lossy(a.key.as_ref())
                    );
                    let v = a.unescape_value().expect("value").into_owned();
                    facts.entry(key).or_default().push(v);
                }
            }
            Event::Empty(s) => {
                path.push(String::from_utf8_lossy(s.name().as_ref()).into_owned());
                for a in s.attributes() {
                    let a = a.expect("attribute");
                    let key = format!(
                        "{}@{}",
                        path.join("/"),
                        String::from_utf8_lossy(a.key.as_ref())
                    );
                    let v = a.unescape_value().expect("value").into_owned();
                    facts.entry(key).or_default().push(v);
                }
                texts.push(String::new());
                close(&mut path, &mut texts, &mut facts);
            }
            Event::End(_) => close(&mut path, &mut texts, &mut facts),
            Event::Text(t) => {
                if let Some(cur) = texts.last_mut() {
                    cur.push_str(t.decode().expect("text").trim());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(cur) = texts.last_mut() {
                    let name = r.decode().expect("ref");
                    cur.push_str(quick_xml::escape::resolve_predefined_entity(&name).unwrap_or(""));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    for v in facts.values_mut() {
        v.sort();
    }
    facts
}

/// Options under which XMLToJSON and JSONToXML are inverses up to sibling order.
fn round_trip_options() -> (XmlToJsonOptions, JsonToXmlOptions) {
    let x = XmlToJsonOptions {
        attribute_prefix: "@".into(),
        text_node_name: "#text".into(),
        ..XmlToJsonOptions::default()
    };
    let j = JsonToXmlOptions {
        attribute_prefix: Some("@".into()),
        text_node_name: Some("#text".into()),
        ..JsonToXmlOptions::default()
    };
    (x, j)
}

/// Every string and number of a JSON value, as text.
fn leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Null => out.push("null".into()),
        serde_json::Value::Bool(b) => out.push(b.to_string()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| leaves(x, out)),
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        "[a-z0-9 <&>.-]{1,6}".prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        (0i32..1000).prop_map(|n| serde_json::json!(f64::from(n) + 0.5)),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-d]", inner, 1..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// XMLToJSON then JSONToXML gives back every element, attribute and text, at the
    /// same path.
    #[test]
    fn xml_to_json_drops_nothing(root in element()) {
        let mut xml = String::new();
        root.write(&mut xml);
        let (x, j) = round_trip_options();
        let json = xml_to_json_text(xml.as_bytes(), &x).expect("converts");
        let back = json_to_xml_text(json.as_bytes(), &j).expect("converts back");
        prop_assert_eq!(facts_of(&xml), facts_of(&back), "JSON was {}", json);
    }

    /// With the defaults (numbers and booleans recognised, no attribute prefix) every
    /// attribute value and text still appears in the JSON.
    #[test]
    fn xml_to_json_defaults_keep_every_value(root in element()) {
        let mut xml = String::new();
        root.write(&mut xml);
        let json = xml_to_json_text(xml.as_bytes(), &XmlToJsonOptions::default()).expect("converts");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let mut got = Vec::new();
        leaves(&v, &mut got);
        let mut want: Vec<String> = facts_of(&xml)
            .into_values()
            .flatten()
            .filter(|t| !t.is_empty())
            .collect();
        got.retain(|t| !t.is_empty() && t != "null");
        got.sort();
        want.sort();
        // Text runs of one element may be split into several JSON strings: compare the
        // characters of all values.
        let mut g: Vec<char> = got.concat().chars().collect();
        let mut w: Vec<char> = want.concat().chars().collect();
        g.sort_unstable();
        w.sort_unstable();
        prop_assert_eq!(w, g, "JSON was {}", json);
    }

    /// TreatAsArray paths, unwrapping or not, never lose a value.
    #[test]
    fn treat_as_array_keeps_every_value(
        root in element_of("[ab]", 1),
        paths in prop::collection::vec(("[ab]{2,3}", any::<bool>()), 1..4),
    ) {
        let mut xml = String::new();
        root.write(&mut xml);
        let o = XmlToJsonOptions {
            recognize_number: false,
            recognize_boolean: false,
            treat_as_array: paths
                .into_iter()
                .map(|(p, unwrap)| (p.chars().map(String::from).collect::<Vec<_>>().join("/"), unwrap))
                .collect(),
            ..XmlToJsonOptions::default()
        };
        let json = xml_to_json_text(xml.as_bytes(), &o).expect("converts");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let mut got = Vec::new();
        leaves(&v, &mut got);
        let mut g: Vec<char> = got.concat().chars().collect();
        let mut w: Vec<char> = facts_of(&xml).into_values().flatten().collect::<String>().chars().collect();
        g.sort_unstable();
        w.sort_unstable();
        prop_assert_eq!(w, g, "JSON was {}", json);
    }

    /// JSONToXML then XMLToJSON gives back every value (arrays of one item may come back
    /// as the item, numbers and booleans as what they print).
    #[test]
    fn json_to_xml_drops_nothing(v in prop::collection::btree_map("[a-d]", json_value(), 1..2)) {
        let doc = serde_json::Value::Object(v.into_iter().collect());
        let text = doc.to_string();
        let xml = json_to_xml_text(text.as_bytes(), &JsonToXmlOptions::default()).expect("converts");
        let x = XmlToJsonOptions { recognize_null: true, ..XmlToJsonOptions::default() };
        let back = xml_to_json_text(xml.as_bytes(), &x).expect("converts back");
        let back: serde_json::Value = serde_json::from_str(&back).expect("JSON");
        let (mut want, mut got) = (Vec::new(), Vec::new());
        leaves(&doc, &mut want);
        leaves(&back, &mut got);
        // Text is trimmed by XMLToJSON; an all-blank string reads as an empty element.
        let norm = |v: Vec<String>| {
            let mut v: Vec<String> = v
                .into_iter()
                .map(|s| s.trim().to_owned())
                .map(|s| if s.is_empty() { "null".to_owned() } else { s })
                .collect();
            v.sort();
            v
        };
        prop_assert_eq!(norm(want), norm(got), "XML was {}", xml);
    }
}
