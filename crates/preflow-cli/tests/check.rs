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
            stdout.contains(&format!("warning[COND003]: invalid condition: {error}; "))
                && stdout.contains("faults with `ConditionInvalid`"),
            "{bundle}:\n{stdout}"
        );
        assert!(stdout.contains(": 0 errors, "), "{bundle}:\n{stdout}");
    }
}

/// `tests/data/lint/<RULE>/`: a `bad` bundle folder, a `good` one, `expected` (the
/// findings of RULE in `bad`, one `severity file:line` a line) and optional `args`.
fn lint_fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/lint"
    ))
}

#[allow(clippy::expect_used)] // a test helper: failing loudly is its job
fn check_json(
    dir: &std::path::Path,
    args: &[String],
    what: &str,
) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_preflow"))
        .current_dir(dir)
        .arg("check")
        .args(args)
        .args(["--format", "json", what])
        .output()
        .expect("run preflow");
    let json = serde_json::from_slice(&out.stdout).expect("JSON output");
    (out.status.code(), json)
}

#[test]
fn every_rule_has_a_bad_and_a_good_fixture_and_flags_exactly_the_bad_one() {
    let root = lint_fixtures();
    // The rules as SARIF describes them.
    let sarif = Command::new(env!("CARGO_BIN_EXE_preflow"))
        .args(["check", "--format", "sarif"])
        .arg(root.join("POL006/bad"))
        .output()
        .expect("run preflow");
    let sarif: serde_json::Value = serde_json::from_slice(&sarif.stdout).expect("SARIF");
    assert_eq!(sarif["version"], "2.1.0");
    let rules: Vec<String> = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "POL006", "{result}");
    assert_eq!(
        rules[result["ruleIndex"].as_u64().expect("index") as usize],
        "POL006"
    );
    assert!(
        result["locations"][0]["physicalLocation"]["region"]["snippet"]["text"]
            .as_str()
            .is_some_and(|s| s.contains("AM-Unused")),
        "{result}"
    );

    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .expect("fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut sorted_rules = rules.clone();
    sorted_rules.sort();
    assert_eq!(dirs, sorted_rules, "one fixture folder per rule");
    let catalogue =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md"))
            .expect("docs/rules.md");
    for rule in &rules {
        assert!(
            catalogue.contains(&format!("### {rule}\n")),
            "docs/rules.md lacks {rule}: run scripts/rules-doc.py"
        );
    }

    for rule in &rules {
        let dir = root.join(rule);
        let args: Vec<String> = std::fs::read_to_string(dir.join("args"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let expected: Vec<String> = std::fs::read_to_string(dir.join("expected"))
            .expect("expected")
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(!expected.is_empty(), "{rule}: nothing expected");
        let of_rule = |json: &serde_json::Value| -> Vec<String> {
            json["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .filter(|f| f["rule"] == rule.as_str())
                .map(|f| {
                    assert!(
                        f["source_line"].as_str().is_some_and(|s| !s.is_empty()),
                        "{rule}: no source line in {f}"
                    );
                    format!(
                        "{} {}:{}",
                        f["severity"].as_str().unwrap_or_default(),
                        f["file"].as_str().unwrap_or_default(),
                        f["line"]
                    )
                })
                .collect()
        };
        let (code, bad) = check_json(&dir, &args, "bad");
        assert_eq!(of_rule(&bad), expected, "{rule}: bad\n{bad:#}");
        let errors = bad["errors"].as_u64().expect("errors");
        assert_eq!(code, Some(i32::from(errors > 0)), "{rule}: exit code");
        let (code, good) = check_json(&dir, &args, "good");
        assert!(of_rule(&good).is_empty(), "{rule}: good\n{good:#}");
        assert_eq!(code, Some(0), "{rule}: good exits 0\n{good:#}");
    }
}

#[test]
fn deny_allow_strict_and_config_file_set_severities_and_exit_codes() {
    let dir = lint_fixtures().join("REF001");
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        check_json(&dir, &args, "bad")
    };
    let severity = |json: &serde_json::Value, rule: &str| -> Vec<String> {
        json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["rule"] == rule)
            .map(|f| f["severity"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (code, json) = run(&[]);
    assert_eq!(
        (code, severity(&json, "REF001")),
        (Some(0), vec!["warning".to_owned()])
    );
    let (code, json) = run(&["--strict"]);
    assert_eq!(
        (code, severity(&json, "REF001")),
        (Some(1), vec!["error".to_owned()])
    );
    let (code, json) = run(&["--deny", "REF001"]);
    assert_eq!(
        (code, severity(&json, "REF001")),
        (Some(1), vec!["error".to_owned()])
    );
    let (code, json) = run(&["--strict", "--allow", "ref001"]);
    assert_eq!(
        (code, severity(&json, "REF001")),
        (Some(0), Vec::<String>::new())
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("check.toml");
    std::fs::write(&config, "strict = true\n[rules]\nREF001 = \"off\"\n").expect("write");
    let (code, json) = run(&["--config", config.to_str().expect("utf-8")]);
    assert_eq!(
        (code, severity(&json, "REF001")),
        (Some(0), Vec::<String>::new())
    );

    let out = Command::new(env!("CARGO_BIN_EXE_preflow"))
        .current_dir(&dir)
        .args(["check", "--deny", "NOPE1", "bad"])
        .output()
        .expect("run preflow");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown rule `NOPE1`"));
}

#[test]
fn text_output_shows_the_rule_the_line_and_a_caret_for_warnings() {
    let dir = lint_fixtures().join("TLS001");
    let out = Command::new(env!("CARGO_BIN_EXE_preflow"))
        .current_dir(&dir)
        .args(["check", "bad"])
        .output()
        .expect("run preflow");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "bad/apiproxy/targets/default.xml:2:3: warning[TLS001]: `https` target without `<SSLInfo>`"
        ) && text.contains("2 |   <HTTPTargetConnection>\n  |   ^"),
        "{text}"
    );
}
