//! The developer portal in a real browser: two `preflow serve` instances of the seed
//! sharing Redis, each with `--portal`; `tests/portal/browser.py` drives headless
//! Chromium through sign-up, the catalogue, an API reference, an app's key and secret,
//! rotation and revocation, against both gateways. Screenshots of each page go to
//! `target/portal-screenshots/`.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `python3-selenium` (scripts/test.sh
//! and .ci/run install them): without them the test fails, it never skips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Gateway, seed};
use preflow_redis::server::RedisServer;

const PYTHON: &str = "/usr/bin/python3";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `target/portal-screenshots`, beside the test binary's `debug/deps`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map_or_else(
            || exe.ancestors().nth(3).unwrap().to_owned(),
            Path::to_owned,
        );
    target.join("portal-screenshots")
}

#[test]
fn a_developer_gets_a_working_key_in_the_browser_on_every_instance() {
    for (tool, path) in [
        ("chromium", CHROMIUM),
        ("chromium-driver", CHROMEDRIVER),
        ("python3", PYTHON),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: apt-get install chromium chromium-driver python3-selenium ({tool}); scripts/test.sh does"
        );
    }
    let selenium = Command::new(PYTHON)
        .args(["-c", "import selenium"])
        .status()
        .unwrap();
    assert!(
        selenium.success(),
        "python3-selenium is missing: apt-get install python3-selenium"
    );

    let redis = RedisServer::start().unwrap_or_else(|e| {
        panic!("this test needs redis-server (apt-get install redis-server): {e}")
    });
    let url = redis.url();
    // The portal writes the apps file: a copy, not the seed's.
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let seed = seed();
    let common_args = [
        seed.to_str().unwrap(),
        "--apps",
        apps.to_str().unwrap(),
        "--redis",
        url.as_str(),
        "--redis-timeout-ms",
        "500",
    ];
    let mut with_portal = common_args.to_vec();
    with_portal.extend(["--portal", "127.0.0.1:0"]);
    let a = Gateway::start(&with_portal);
    let other_apps = dir.path().join("other-apps.toml");
    std::fs::copy(seed.join("apps.toml"), &other_apps).unwrap();
    let mut b_args = common_args.to_vec();
    b_args[2] = other_apps.to_str().unwrap();
    b_args.extend(["--portal", "127.0.0.1:0"]);
    let b = Gateway::start(&b_args);
    let portal = a.portal.expect("the portal's address");
    let other_portal = b.portal.expect("the other portal's address");

    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal/browser.py");
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(format!("http://{portal}"))
        .arg(a.url(""))
        .arg(b.url(""))
        .arg(&shots)
        .arg(format!("http://{other_portal}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\n--- gateway a ---\n{}\n--- gateway b ---\n{}",
        a.log(),
        b.log()
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 10, "{taken} screenshots in {}", shots.display());

    // Secrets never reach the logs, the apps file holds hashes only.
    let text = std::fs::read_to_string(&apps).unwrap();
    assert!(text.contains("weather-station"), "{text}");
    assert!(text.contains("ada@example.com"), "{text}");
    assert!(!text.contains("correct horse"), "{text}");
    for log in [a.log(), b.log()] {
        assert!(!log.contains("correct horse"), "{log}");
    }
}
