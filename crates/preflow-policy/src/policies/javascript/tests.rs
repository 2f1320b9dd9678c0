//! Unit tests of the Javascript policy's static helpers; the object model, limits and
//! httpClient are tested through the engine (`tests/data/policies/javascript.toml`,
//! `tests/tests/javascript.rs`).

use super::*;
use crate::test_support::*;

#[test]
fn config_reads_resources_properties_and_time_limit() {
    let (cfg, diags) = load(
        r#"<Javascript name="JS" timeLimit="200"><IncludeURL>jsc://lib.js</IncludeURL><ResourceURL>jsc://main.js</ResourceURL><Properties><Property name="a">1</Property></Properties></Javascript>"#,
    );
    assert!(diags.is_empty(), "{diags:?}");
    let PolicyConfig::Javascript(mut js) = cfg else {
        panic!("{cfg:?}")
    };
    assert_eq!(js.time_limit_ms, Some(200));
    assert_eq!(js.properties, vec![("a".to_owned(), "1".to_owned())]);
    let missing = js.attach(|n| (n == "lib.js").then(|| "var x;".to_owned()));
    assert_eq!(missing, vec!["jsc://main.js".to_owned()]);
    assert_eq!(js.scripts.len(), 1);
    let (_, diags) = load(r#"<Javascript name="JS"/>"#);
    assert!(diags.iter().any(|d| d.message.contains("neither")));
}

#[test]
fn literal_variable_names_are_found_for_prefetch() {
    let names = literal_names(
        "var a = context.getVariable(\"a.b\"); var b = context.getVariable( 'c' ); var c = context.getVariable(x); context.getVariable(`t${y}`); context.getVariable('a.b');",
    );
    assert_eq!(names, vec!["a.b".to_owned(), "c".to_owned()]);
}

#[test]
fn message_use_is_told_apart_from_variable_names() {
    assert!(!uses_messages("context.getVariable(\"request.header.x\")"));
    assert!(uses_messages("var h = context.proxyRequest.headers;"));
    assert!(uses_messages("response.content = 'x';"));
    assert!(uses_messages("var s = request['headers'];"));
    assert!(!uses_messages("var myrequest = 1; myrequest.x = 2;"));
}

#[test]
fn syntax_errors_have_a_line_and_column() {
    let Err((msg, line, col)) = check_syntax("var a = 1;\n\nvar b = ;\n") else {
        panic!("compiles")
    };
    assert!(msg.contains("SyntaxError"), "{msg}");
    assert_eq!(line, Some(3));
    assert_eq!(col, Some(9));
    assert!(check_syntax("const f = (a) => `${a}`;").is_ok());
}

#[test]
fn unsupported_constructs_are_located() {
    let found = unsupported_constructs("var x = y.asXML;\nimportPackage(java.util.List);");
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].0, 9);
    assert!(found[0].1.starts_with("E4X"));
}

#[test]
fn digests_and_hmacs() {
    let hex = |v: Option<Vec<u8>>| hex::encode(v.unwrap());
    assert_eq!(
        hex(crypto::digest("sha-256", b"abc", None)),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(crypto::digest(
            "HMAC-SHA1",
            b"The quick brown fox jumps over the lazy dog",
            Some(b"key")
        )),
        "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
    );
    assert!(crypto::digest("SHA-3", b"", None).is_none());
}
