//! `preflow serve` without Redis: the embedded state file (the default) keeps tokens and
//! Quota counters across a crash and restart; `--state memory` does not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Gateway, HELLO, demo_token, pace, raw_get, seed};

fn hello(gw: &Gateway, token: &str) -> common::Raw {
    raw_get(
        gw.addr,
        "/v1/test/hello",
        &format!("Authorization: Bearer {token}\r\n"),
    )
}

fn start(state: &[&str]) -> Gateway {
    let seed = seed();
    let mut args = vec![seed.to_str().unwrap()];
    args.extend_from_slice(state);
    Gateway::start(&args)
}

#[test]
fn tokens_issued_before_a_crash_are_accepted_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = ["--state-dir", dir.path().to_str().unwrap()];
    let gw = start(&state);
    let tokens: Vec<String> = (0..3).map(|_| demo_token(&gw)).collect();
    for t in &tokens {
        let r = hello(&gw, t);
        assert_eq!((r.status, r.body.as_str()), (200, HELLO));
        pace();
    }
    gw.crash();

    let file = dir.path().join("preflow-state.redb");
    let bytes = std::fs::read(&file).unwrap();
    for t in &tokens {
        let raw = t.as_bytes();
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw),
            "the file holds digests, never tokens"
        );
    }

    let gw = start(&state);
    for t in &tokens {
        let r = hello(&gw, t);
        assert_eq!((r.status, r.body.as_str()), (200, HELLO), "{}", gw.log());
        pace();
    }
    assert_eq!(hello(&gw, "not-a-token").status, 401);
}

#[test]
fn with_state_memory_a_restart_forgets_every_token() {
    let gw = start(&["--state", "memory"]);
    let token = demo_token(&gw);
    assert_eq!(hello(&gw, &token).status, 200);
    gw.crash();
    let gw = start(&["--state", "memory"]);
    assert_eq!(hello(&gw, &token).status, 401);
}

#[test]
fn one_state_file_serves_one_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let state = ["--state-dir", dir.path().to_str().unwrap()];
    let _gw = start(&state);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflow"))
        .args(["serve", seed().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state database open"), "{err}");
}

/// A proxy at /metered with a quota of 3 per hour and no target.
fn metered(dir: &Path) {
    let files = [
        (
            "metered/apiproxy/metered.xml",
            r#"<APIProxy name="metered"/>"#,
        ),
        (
            "metered/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request><Step><Name>Quota</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/metered</BasePath></HTTPProxyConnection>
  <RouteRule name="noroute"/>
</ProxyEndpoint>"#,
        ),
        (
            "metered/apiproxy/policies/Quota.xml",
            r#"<Quota name="Quota">
  <Allow count="3"/><Interval>1</Interval><TimeUnit>hour</TimeUnit>
</Quota>"#,
        ),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn quota_counts_survive_a_crash_once_synced() {
    let bundles = tempfile::tempdir().unwrap();
    metered(bundles.path());
    let state = tempfile::tempdir().unwrap();
    let args = [
        bundles.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    let gw = Gateway::start(&args);
    for _ in 0..3 {
        assert_eq!(raw_get(gw.addr, "/metered", "").status, 200);
    }
    // Counters reach the disk within a second (the sync interval).
    std::thread::sleep(Duration::from_millis(1500));
    gw.crash();
    let gw = Gateway::start(&args);
    assert_eq!(raw_get(gw.addr, "/metered", "").status, 429, "{}", gw.log());
}
