//! `preflow trace` on the seed: a token request and a protected call traced with the
//! seed's apps and environment files, credentials never printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn seed() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed"))
}

fn trace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_preflow"))
        .arg("trace")
        .arg(seed())
        .args(args)
        .output()
        .expect("run preflow")
}

#[test]
fn a_token_request_is_traced_with_the_apps_file() {
    let out = trace(&[
        "--request",
        "POST /oauth/OAuthToken",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data",
        "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("policy  GenerateAccessToken (OAuthV2): ok")
            && stdout.contains("response  200"),
        "{stdout}"
    );
    // The token itself is masked.
    assert!(stdout.contains(r#""access_token":"***""#), "{stdout}");
    assert!(!stdout.contains("demo-secret"), "{stdout}");
}

#[test]
fn a_protected_call_is_traced_with_a_token_from_the_token_endpoint() {
    let out = trace(&[
        "--request",
        "GET /v1/test/hello",
        "--token-from",
        "POST /oauth/OAuthToken",
        "--client",
        "demo-client:demo-secret",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for needle in [
        "policy  VerifyAccessToken (OAuthV2): ok",
        // Through the seed's API provider: its token request, then the target call.
        "(target endpoint provider-token:cpi)",
        "forward   GET https://127.0.0.1:9443/http/v1/test/hello (target endpoint default)",
        "authorization: Bearer ***",
        "response  200",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("demo-secret"), "{stdout}");
    assert!(!stdout.contains("preflow-trace-stub"), "{stdout}");

    let out = trace(&[
        "--request",
        "GET /v1/test/hello",
        "--token-from",
        "POST /oauth/OAuthToken",
        "--client",
        "demo-client:wrong",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("answered no access_token (status 401"),
        "{stderr}"
    );
}

#[test]
fn an_apps_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("broken-apps.toml");
    let text = std::fs::read_to_string(seed().join("apps.toml"))
        .unwrap()
        .replacen("products = [\"", "products = [\"NoSuchProduct\", \"", 1);
    std::fs::write(&apps, text).unwrap();
    let out = trace(&[
        "--request",
        "GET /v1/test/hello",
        "--apps",
        apps.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("broken-apps.toml: credential")
            && stderr.contains("unknown product \"NoSuchProduct\""),
        "{stderr}"
    );
}
