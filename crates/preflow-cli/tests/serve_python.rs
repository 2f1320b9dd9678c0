//! Python OAuth clients (requests-oauthlib, Authlib) against the running gateway:
//! `tests/e2e/clients.py`. The interpreter is `$PREFLOW_E2E_PYTHON` (a venv with
//! `requests-oauthlib authlib requests`, as `scripts/test.sh` makes) or `python3`.
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

#[test]
fn python_oauth_clients_get_tokens_and_call_the_api() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import requests_oauthlib, authlib, requests"])
        .output();
    let usable = matches!(&probe, Ok(o) if o.status.success());
    if !usable {
        let why = match &probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "{py} cannot import requests_oauthlib, authlib and requests: {why}"
        );
        // Straight to the process's stderr: the test harness does not capture this, so
        // the notice shows in a plain `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: python OAuth clients: {py} cannot import requests_oauthlib, authlib and \
             requests ({}). Run ./scripts/test.sh, or set PREFLOW_E2E_PYTHON to a venv's python.",
            why.trim().lines().last().unwrap_or("")
        );
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
