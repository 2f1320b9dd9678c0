//! Python clients against the running gateway: OAuth clients (requests-oauthlib,
//! Authlib) in `tests/e2e/clients.py`, and TLS and HTTP/2 (`requests` verifying the seed's
//! example CA, `httpx[http2]`) in `tests/e2e/tls_h2.py`. The interpreter is
//! `$PREFLOW_E2E_PYTHON` (a venv with `requests-oauthlib authlib requests httpx[http2]`,
//! as `scripts/test.sh` makes) or `python3`.
//! Under CI (`CI=true`) a missing interpreter or package fails the test; elsewhere the
//! test says loudly that it did not run.

// Test helpers outside #[test] functions: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use common::{Gateway, seed};

fn python() -> String {
    std::env::var("PREFLOW_E2E_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether `py` can import `modules`; under CI a failure to is a test failure, elsewhere
/// a loud notice.
fn usable(py: &str, modules: &str) -> bool {
    let probe = Command::new(py)
        .args(["-c", &format!("import {modules}")])
        .output();
    let usable = matches!(&probe, Ok(o) if o.status.success());
    if !usable {
        let why = match &probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "{py} cannot import {modules}: {why}");
        // Straight to the process's stderr: the test harness does not capture this, so
        // the notice shows in a plain `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: python clients: {py} cannot import {modules} ({}). Run \
             ./scripts/test.sh, or set PREFLOW_E2E_PYTHON to a venv's python.",
            why.trim().lines().last().unwrap_or("")
        );
    }
    usable
}

#[test]
fn python_oauth_clients_get_tokens_and_call_the_api() {
    let py = python();
    if !usable(&py, "requests_oauthlib, authlib, requests") {
        return;
    }
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/clients.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(gw.url(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python clients failed:\n{stdout}\n{stderr}\ngateway log:\n{}",
        gw.log()
    );
    assert!(stdout.contains("7 passed, 0 failed"), "{stdout}");
}

#[test]
fn python_requests_over_tls_and_httpx_over_http2() {
    let py = python();
    if !usable(&py, "requests, httpx, h2") {
        return;
    }
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let secure = gw.secure.expect("the seed's secure virtual host");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/tls_h2.py");
    let ca = seed().join("tls/ca.pem");
    let out = Command::new(&py)
        .arg(&script)
        .arg(gw.url(""))
        .arg(secure.port().to_string())
        .arg(&ca)
        // Only the example CA may make the certificate valid.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python TLS/HTTP2 clients failed:\n{stdout}\n{stderr}\ngateway log:\n{}",
        gw.log()
    );
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
    let log = gw.log();
    assert!(log.contains("listener=\"secure\""), "{log}");
}
