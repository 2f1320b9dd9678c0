//! Unit tests of the protect family.

use crate::protect::{JsonLimit, RegexInputs, XmlLimit, check_regex, scan_json, scan_xml};
use crate::test_support::*;

fn json_cfg(xml: &str) -> crate::protect::JsonThreatProtection {
    match load(xml).0 {
        PolicyConfig::JsonThreatProtection(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn json_limits_stop_at_the_first_exceeded_one() {
    let cfg = json_cfg(
        r#"<JSONThreatProtection name="J"><ArrayElementCount>3</ArrayElementCount>
           <ContainerDepth>3</ContainerDepth><ObjectEntryCount>2</ObjectEntryCount>
           <ObjectEntryNameLength>5</ObjectEntryNameLength><StringValueLength>4</StringValueLength>
           <Source>request</Source></JSONThreatProtection>"#,
    );
    assert!(scan_json(&cfg, "J", br#"{"a":[{"b":1}],"c":"abcd"}"#).is_ok());
    let cases: [(&[u8], JsonLimit); 5] = [
        (b"[[{\"a\":{}}]]", JsonLimit::ContainerDepth),
        (b"{\"a\":1,\"b\":2,\n\"c\":3}", JsonLimit::ObjectEntryCount),
        (b"[1,2,3,4]", JsonLimit::ArrayElementCount),
        (b"{\"abcdef\":1}", JsonLimit::ObjectEntryNameLength),
        (
            b"{\"a\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}",
            JsonLimit::StringValueLength,
        ),
    ];
    for (payload, limit) in cases {
        let err = scan_json(&cfg, "J", payload).unwrap_err();
        assert_eq!(
            err.limit,
            Some(limit),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    let err = scan_json(&cfg, "J", b"{\"a\":1,\"b\":2,\n\"c\":3}").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(
        err.message
            .starts_with("JSONThreatProtection[J]: Exceeded object entry count at line 2"),
        "{err}"
    );
    assert_eq!(err.fault_name(), "ExceededObjectEntryCount");
    let err = scan_json(&cfg, "J", b"{\"a\":").unwrap_err();
    assert_eq!(err.fault_name(), "ExecutionFailed");
    // "Stops at the first exceeded limit": a huge array fails at element 4, however
    // long the rest is, and the rest need not even be valid.
    let mut huge = b"[1,2,3,4".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1_000));
    assert_eq!(
        scan_json(&cfg, "J", &huge).unwrap_err().limit,
        Some(JsonLimit::ArrayElementCount)
    );
    // No limit configured: only the scanner's depth bound applies.
    let open = json_cfg(
        r#"<JSONThreatProtection name="J"><ContainerDepth>-1</ContainerDepth></JSONThreatProtection>"#,
    );
    assert!(
        scan_json(
            &open,
            "J",
            &[b'['; 50]
                .iter()
                .chain([b']'; 50].iter())
                .copied()
                .collect::<Vec<_>>()
        )
        .is_ok()
    );
    assert!(scan_json(&open, "J", &vec![b'['; 100_000]).is_err());
}

#[test]
fn xml_limits() {
    let PolicyConfig::XmlThreatProtection(cfg) = load(
        r#"<XMLThreatProtection name="X"><NameLimits><Element>5</Element><Attribute>4</Attribute>
            <NamespacePrefix>3</NamespacePrefix><ProcessingInstructionTarget>4</ProcessingInstructionTarget></NameLimits>
          <StructureLimits><NodeDepth>3</NodeDepth><AttributeCountPerElement>2</AttributeCountPerElement>
            <NamespaceCountPerElement>1</NamespaceCountPerElement>
            <ChildCount includeComment="false">3</ChildCount></StructureLimits>
          <ValueLimits><Text>5</Text><Attribute>3</Attribute><NamespaceURI>20</NamespaceURI>
            <Comment>4</Comment><ProcessingInstructionData>3</ProcessingInstructionData></ValueLimits>
        </XMLThreatProtection>"#,
    )
    .0
    else {
        panic!()
    };
    assert!(
        scan_xml(
            &cfg,
            "X",
            b"<a x=\"1\"><b>hi</b><!-- long comment? no --></a>"
        )
        .is_err()
    );
    assert!(scan_xml(&cfg, "X", b"<a x=\"1\"><b>hi</b><!--ok--><c/></a>").is_ok());
    let cases: [(&[u8], XmlLimit); 12] = [
        (b"<abcdef/>", XmlLimit::ElementName),
        (b"<a abcde=\"1\"/>", XmlLimit::AttributeName),
        (b"<abcd:a xmlns:abcd=\"u\"/>", XmlLimit::NamespacePrefix),
        (b"<a><b><c><d/></c></b></a>", XmlLimit::NodeDepth),
        (b"<a x=\"1\" y=\"2\" z=\"3\"/>", XmlLimit::AttributeCount),
        (b"<a xmlns=\"u\" xmlns:p=\"v\"/>", XmlLimit::NamespaceCount),
        (b"<a><b/><b/><b/><b/></a>", XmlLimit::ChildCount),
        (b"<a>toolong</a>", XmlLimit::Text),
        (b"<a x=\"long\"/>", XmlLimit::AttributeValue),
        (
            b"<a xmlns=\"http://example.com/very/long\"/>",
            XmlLimit::NamespaceUri,
        ),
        (b"<a><?abcde x?></a>", XmlLimit::PiTarget),
        (b"<a><?pi data?></a>", XmlLimit::PiData),
    ];
    for (payload, limit) in cases {
        let err = scan_xml(&cfg, "X", payload).unwrap_err();
        assert_eq!(
            err.limit,
            Some(limit),
            "{}: {err}",
            String::from_utf8_lossy(payload)
        );
    }
    let err = scan_xml(&cfg, "X", b"<a><b></a>").unwrap_err();
    assert_eq!(err.fault_name(), "ExecutionFailed");
    let err = scan_xml(&cfg, "X", b"<a>\n<abcdef/></a>").unwrap_err();
    assert!(
        err.message
            .contains("element name length exceeded (6), max 5 allowed, at line 2"),
        "{err}"
    );
}

#[test]
fn regular_expressions() {
    let PolicyConfig::RegularExpressionProtection(cfg) = load(
        r#"<RegularExpressionProtection name="R">
            <Source>request</Source>
            <URIPath><Pattern>\.\./</Pattern></URIPath>
            <QueryParam name="q"><Pattern>[\s]*(?i)((delete)|(exec)|(drop\s*table))</Pattern></QueryParam>
            <Header name="x-a"><Pattern>(?&lt;=a)b</Pattern></Header>
            <Variable name="v"><Pattern>evil</Pattern></Variable>
            <JSONPayload><JSONPath><Expression>$.store.book[*].title</Expression><Pattern>script</Pattern></JSONPath></JSONPayload>
            <XMLPayload><Namespaces><Namespace prefix="s">urn:s</Namespace></Namespaces>
              <XPath><Expression>/s:a/s:b</Expression><Type>string</Type><Pattern>&lt;script</Pattern></XPath></XMLPayload>
        </RegularExpressionProtection>"#,
    )
    .0
    else {
        panic!()
    };
    let vars = Vars::new(&[("v", "fine")]);
    let q = vec![("q".to_owned(), "select 1".to_owned())];
    let h = vec![("X-A".to_owned(), "cb".to_owned())];
    let base = RegexInputs {
        path: "/a/b",
        query: &q,
        headers: &h,
        form: &[],
        payload: None,
    };
    let lookup = |n: &str| vars.get(n);
    assert!(check_regex(&cfg, "R", &base, &lookup).is_ok());
    let err = check_regex(
        &cfg,
        "R",
        &RegexInputs {
            path: "/a/../etc",
            ..base
        },
        &lookup,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r"Regular Expression Threat Detected in R: regex: \.\./ input: uri path"
    );
    let bad_q = vec![("q".to_owned(), "x; DROP TABLE users".to_owned())];
    let err = check_regex(
        &cfg,
        "R",
        &RegexInputs {
            query: &bad_q,
            ..base
        },
        &lookup,
    )
    .unwrap_err();
    assert_eq!(err.fault_name(), "ThreatDetected");
    let bad_h = vec![("x-a".to_owned(), "ab".to_owned())];
    assert!(
        check_regex(
            &cfg,
            "R",
            &RegexInputs {
                headers: &bad_h,
                ..base
            },
            &lookup
        )
        .is_err()
    );
    let json = br#"{"store":{"book":[{"title":"ok"},{"title":"<script>"}]}}"#;
    let err = check_regex(
        &cfg,
        "R",
        &RegexInputs {
            payload: Some(json),
            ..base
        },
        &lookup,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("input: json path $.store.book[*].title"),
        "{err}"
    );
    let evil = Vars::new(&[("v", "so evil")]);
    assert!(check_regex(&cfg, "R", &base, &|n| evil.get(n)).is_err());
    assert_eq!(
        check_regex(&cfg, "R", &base, &|_| None)
            .unwrap_err()
            .fault_name(),
        "VariableResolutionFailed"
    );
}

#[test]
fn regex_xpath_and_bad_patterns() {
    let PolicyConfig::RegularExpressionProtection(cfg) = load(
        r#"<RegularExpressionProtection name="R"><XMLPayload><Namespaces><Namespace prefix="s">urn:s</Namespace></Namespaces>
              <XPath><Expression>/s:a/s:b</Expression><Pattern>script</Pattern></XPath></XMLPayload>
        </RegularExpressionProtection>"#,
    )
    .0
    else {
        panic!()
    };
    let base = RegexInputs {
        path: "/",
        query: &[],
        headers: &[],
        form: &[],
        payload: Some(b"<a xmlns=\"urn:s\"><b>javascript:x</b></a>"),
    };
    assert!(check_regex(&cfg, "R", &base, &|_| None).is_err());
    let ok = RegexInputs {
        payload: Some(b"<a xmlns=\"urn:s\"><b>fine</b></a>"),
        ..base
    };
    assert!(check_regex(&cfg, "R", &ok, &|_| None).is_ok());
    let (_, diags) = load(
        r#"<RegularExpressionProtection name="R"><URIPath><Pattern>(</Pattern></URIPath></RegularExpressionProtection>"#,
    );
    assert!(
        diags
            .iter()
            .any(|d| d.is_error() && d.message.contains("invalid regular expression"))
    );
    let (_, diags) = load(r#"<RegularExpressionProtection name="R"/>"#);
    assert!(diags.iter().any(|d| d.message.contains("NothingToEnforce")));
}
