//! `preflow check` on the real corpus bundles whose conditions do not parse: the bundles
//! load with a warning at the condition and the command exits 0.
#![allow(clippy::expect_used, reason = "test helpers outside #[test] functions")]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The corpus bundles: `shared/apigee-corpus/bundles` beside the repository
/// (`CARGO_MANIFEST_DIR/../../..`), or under `$PREFLOW_SHARED` when that is set.
fn bundles() -> PathBuf {
    let shared = std::env::var_os("PREFLOW_SHARED").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
        PathBuf::from,
    );
    shared.join("apigee-corpus/bundles")
}

#[allow(clippy::expect_used)] // a test helper: failing loudly is its job
fn check(path: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_preflow"))
        .arg("check")
        .arg(path)
        .output()
        .expect("run preflow")
}

#[test]
fn bundles_with_an_invalid_condition_pass_check_with_a_warning() {
    for (bundle, error) in [
        (
            "apigee__api-platform-samples/sample-proxies/oauth10a-3legged/apiproxy",
            "unknown operator `/~`",
        ),
        (
            "apigee__consumer-data-standards-au/src/shared-flows/collect-performance-slo/sharedflowbundle",
            "the left-hand side of a comparison must be a variable, found `true`",
        ),
    ] {
        let path = bundles().join(bundle);
        assert!(path.is_dir(), "corpus bundle {} is missing", path.display());
        let out = check(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{bundle}:\n{stdout}");
        assert!(
            stdout.contains(&format!("warning: invalid condition: {error}; "))
                && stdout.contains("faults with `ConditionInvalid`"),
            "{bundle}:\n{stdout}"
        );
        assert!(stdout.contains(": 0 errors, "), "{bundle}:\n{stdout}");
    }
}
