//! Unit tests of the format family.

use crate::format::{
    JsonToXmlOptions, XmlToJsonOptions, json_path, json_to_xml_text, xml_to_json_text,
};
use crate::test_support::*;

#[test]
fn xml_to_json_defaults() {
    let o = XmlToJsonOptions::default();
    let xml = br#"<?xml version="1.0"?><root a="1"><item>x</item><item>y</item><n>42</n><e/><t b="2">txt</t></root>"#;
    let json: serde_json::Value =
        serde_json::from_str(&xml_to_json_text(xml, &o).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"root":{"a":1,"item":["x","y"],"n":42,"e":{},"t":{"b":2,"#text":"txt"}}})
    );
    let o = XmlToJsonOptions {
        recognize_number: true,
        recognize_boolean: true,
        recognize_null: true,
        attribute_block_name: Some("attrs".into()),
        treat_as_array: vec![("root/n".into(), false)],
        strip_levels: 1,
        ..XmlToJsonOptions::default()
    };
    let xml = br#"<root a="1"><n>42</n><b>true</b><z>007</z><e/></root>"#;
    let json: serde_json::Value =
        serde_json::from_str(&xml_to_json_text(xml, &o).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"attrs":{"a":1},"n":[42],"b":true,"z":"007","e":null})
    );
    assert!(xml_to_json_text(b"<a><b></a>", &XmlToJsonOptions::default()).is_err());
    let deep = "<a>".repeat(200) + &"</a>".repeat(200);
    assert_eq!(
        xml_to_json_text(deep.as_bytes(), &XmlToJsonOptions::default()),
        Err(crate::format::ConvertError::TooDeep)
    );
}

#[test]
fn json_to_xml_defaults() {
    let o = JsonToXmlOptions::default();
    assert_eq!(
        json_to_xml_text(br#"{"a":{"b":[1,2],"c":null,"d":"x<y"}}"#, &o).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><a><b>1</b><b>2</b><c></c><d>x&lt;y</d></a>"#
    );
    assert_eq!(
        json_to_xml_text(br#"{"a":1,"b":2}"#, &o).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><Root><a>1</a><b>2</b></Root>"#
    );
    assert_eq!(
        json_to_xml_text(br#"[1,[2]]"#, &o).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><Array><Item>1</Item><Item><Item>2</Item></Item></Array>"#
    );
    let o = JsonToXmlOptions {
        attribute_prefix: Some("@".into()),
        text_node_name: Some("#text".into()),
        ..JsonToXmlOptions::default()
    };
    assert_eq!(
        json_to_xml_text(br##"{"a":{"@id":"1","#text":"hi","1bad":true}}"##, &o).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><a id="1">hi<_bad>true</_bad></a>"#
    );
    assert!(json_to_xml_text(b"{", &o).is_err());
    // Document order is kept both ways.
    assert_eq!(
        json_to_xml_text(br#"{"z":{"b":1,"a":2}}"#, &JsonToXmlOptions::default()).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><z><b>1</b><a>2</a></z>"#
    );
    assert_eq!(
        xml_to_json_text(b"<z><b>1</b><a>2</a></z>", &XmlToJsonOptions::default()).unwrap(),
        r#"{"z":{"b":1,"a":2}}"#
    );
}

#[test]
fn predefined_formats() {
    let PolicyConfig::XmlToJson(x) = load(
        r#"<XMLToJSON name="X"><Format>yahoo</Format><Options><TextNodeName>t</TextNodeName></Options></XMLToJSON>"#,
    )
    .0
    else {
        panic!()
    };
    assert!(x.options.recognize_number && x.options.recognize_boolean);
    assert_eq!(x.options.text_node_name, "t", "Options override the format");
    let json = xml_to_json_text(br#"<a id="1"><n>5</n><b>true</b></a>"#, &x.options).unwrap();
    assert_eq!(json, r#"{"a":{"id":1,"n":5,"b":true}}"#);
    let (_, diags) = load(r#"<XMLToJSON name="X"><Format>nope</Format></XMLToJSON>"#);
    assert!(
        diags
            .iter()
            .any(|d| d.is_error() && d.message.contains("`nope`"))
    );
    let bf = XmlToJsonOptions::preset("badgerFish").unwrap();
    let json = xml_to_json_text(br#"<a xmlns="urn:x">hi</a>"#, &bf).unwrap();
    assert_eq!(json, r#"{"a":{"@xmlns":{"$":"urn:x"},"$":"hi"}}"#);
}

#[test]
fn configs_load() {
    let PolicyConfig::XmlToJson(x) = load(
        r#"<XMLToJSON name="X"><Source>response</Source><OutputVariable>response</OutputVariable>
           <Options><RecognizeNumber>true</RecognizeNumber><TextNodeName>TEXT</TextNodeName>
           <TreatAsArray><Path unwrap="true">/a/b</Path></TreatAsArray></Options></XMLToJSON>"#,
    )
    .0
    else {
        panic!()
    };
    assert!(x.options.recognize_number);
    assert_eq!(x.options.text_node_name, "TEXT");
    assert_eq!(x.options.treat_as_array, vec![("/a/b".to_owned(), true)]);
    let PolicyConfig::JsonToXml(j) = load(
        r#"<JSONToXML name="J"><Options><ObjectRootElementName>Doc</ObjectRootElementName></Options></JSONToXML>"#,
    )
    .0
    else {
        panic!()
    };
    assert_eq!(j.options.object_root_element_name, "Doc");
    assert_eq!(j.options.array_item_element_name, "Item");
}

#[test]
fn json_paths() {
    let v = serde_json::json!({"a":{"b":[{"c":1},{"c":2}]},"x":{"c":3}});
    let got: Vec<String> = json_path(&v, "$.a.b[*].c")
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(got, ["1", "2"]);
    assert_eq!(json_path(&v, "$.a.b[-1].c").unwrap()[0], 2);
    assert_eq!(json_path(&v, "$['x']['c']").unwrap()[0], 3);
    assert_eq!(json_path(&v, "$..c").unwrap().len(), 3);
    assert!(json_path(&v, "$.a[0:1]").is_err());
    assert_eq!(json_path(&v, "$.a.b[?(@.c > 1)].c").unwrap()[0], 2);
}

#[test]
fn xpath_with_namespaces() {
    let xml = r#"<s:Envelope xmlns:s="urn:soap"><s:Body><m:r xmlns:m="urn:m"><m:id>7</m:id><m:id>8</m:id></m:r></s:Body></s:Envelope>"#;
    let ns = vec![
        ("soap".to_owned(), "urn:soap".to_owned()),
        ("x".to_owned(), "urn:m".to_owned()),
    ];
    let v = crate::xpath::evaluate(xml, "/soap:Envelope/soap:Body/x:r/x:id", &ns).unwrap();
    assert_eq!(v.strings(), ["7", "8"]);
    assert_eq!(
        crate::xpath::evaluate(xml, "count(//x:id)", &ns)
            .unwrap()
            .first()
            .as_deref(),
        Some("2")
    );
    assert!(crate::xpath::evaluate(xml, "/a[", &ns).is_err());
    assert!(crate::xpath::evaluate("<a>", "/a", &ns).is_err());
}
