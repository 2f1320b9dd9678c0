//! `preflow cond` as a user runs it: output, exit codes and error rendering.
#![allow(clippy::expect_used, reason = "test helpers outside #[test] functions")]

use std::process::{Command, Output};

#[allow(clippy::expect_used)] // a test helper: failing loudly is its job
fn preflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_preflow"))
        .args(args)
        .output()
        .expect("run preflow")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn evaluates_the_seed_condition() {
    let cond = r#"(proxy.pathsuffix MatchesPath "/OAuthToken" OR proxy.pathsuffix MatchesPath "/OAuthToken/**" OR proxy.pathsuffix MatchesPath "/OAuthToken(**")AND(request.verb = "POST")"#;
    let post = preflow(&[
        "cond",
        "--var",
        "proxy.pathsuffix=/OAuthToken",
        "--var",
        "request.verb=POST",
        cond,
    ]);
    assert_eq!(post.status.code(), Some(0));
    assert_eq!(stdout(&post), "true");
    let get = preflow(&[
        "cond",
        "--var",
        "proxy.pathsuffix=/OAuthToken",
        "--var",
        "request.verb=GET",
        cond,
    ]);
    assert_eq!(get.status.code(), Some(0));
    assert_eq!(stdout(&get), "false");
}

#[test]
fn typed_variables_follow_type_adaptation() {
    // Integer 404 against the integer literal: numeric comparison.
    let o = preflow(&[
        "cond",
        "--var",
        "response.status.code:int=404",
        "response.status.code > 399",
    ]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "true"));
    // The same digits as a string compare as strings: "404" > "1000".
    let o = preflow(&[
        "cond",
        "--var",
        "response.status.code=404",
        "response.status.code > 1000",
    ]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "true"));
    let o = preflow(&[
        "cond",
        "--var",
        "flow.cachehit:bool=true",
        "flow.cachehit is true",
    ]);
    assert_eq!(stdout(&o), "true");
}

#[test]
fn unset_variables_are_null() {
    let o = preflow(&["cond", "request.header.host is null"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "true"));
}

#[test]
fn header_names_match_case_insensitively() {
    let o = preflow(&[
        "cond",
        "--var",
        "request.header.Content-Type=application/json",
        r#"request.header.content-type = "application/json""#,
    ]);
    assert_eq!(stdout(&o), "true");
}

#[test]
fn parse_error_exits_2_with_column_and_hint() {
    let o = preflow(&["cond", "response.status.code LessThan 500"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("column 22"), "{err}");
    assert!(err.contains('^'), "{err}");
    assert!(err.contains("LesserThan"), "{err}");
}

#[test]
fn parse_only_and_double_dash() {
    let ok = preflow(&["cond", "--parse-only", "--", "!valid"]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(ok.stdout.is_empty());
    let bad = preflow(&["cond", "--parse-only", "--", "a = \"1\" and and b = \"2\""]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn dialect_switch_changes_precedence() {
    // Edge: (F and F) or T = true. Apigee X: F and (F or T) = false.
    let expr = r#"request.verb = "POST" and request.verb = "PUT" or request.verb = "GET""#;
    let edge = preflow(&["cond", "--var", "request.verb=GET", expr]);
    assert_eq!(stdout(&edge), "true");
    let x = preflow(&["cond", "--dialect", "x", "--var", "request.verb=GET", expr]);
    assert_eq!(stdout(&x), "false");
}

#[test]
fn bad_variable_type_is_a_usage_error() {
    let o = preflow(&["cond", "--var", "code:int=abc", "code = 1"]);
    assert_eq!(o.status.code(), Some(2));
}
