//! Every policy file of the corpus (real bundles and apigeelint fixtures) whose type is
//! one of the JWT, protection, CORS, cache, callout, logging, statistics, data capture,
//! assertion or format families loads into its typed configuration, without an error in
//! the policy file. Prints the supported and unsupported policy files by type.

use preflow::{LoadOptions, PolicyConfig, load_files};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FAMILIES: &[&str] = &[
    "Javascript",
    "OASValidation",
    "AccessEntity",
    "VerifyJWT",
    "GenerateJWT",
    "DecodeJWT",
    "JSONThreatProtection",
    "XMLThreatProtection",
    "RegularExpressionProtection",
    "CORS",
    "ResponseCache",
    "LookupCache",
    "PopulateCache",
    "InvalidateCache",
    "ServiceCallout",
    "MessageLogging",
    "StatisticsCollector",
    "DataCapture",
    "AssertCondition",
    "JSONToXML",
    "XMLToJSON",
];

/// apigeelint fixtures that are broken on purpose, with the error they must give.
const BROKEN_FIXTURES: &[(&str, &str)] = &[
    (
        "PO037/datacapture1/apiproxy/policies/DC-DataCollector-empty.xml",
        "needs a `<DataCollector>`",
    ),
    (
        "PO037/datacapture1/apiproxy/policies/DC-DataCollector-missing.xml",
        "needs a `<DataCollector>`",
    ),
    (
        "PO037/datacapture1/apiproxy/policies/DC-DataCollector-with-child-elements.xml",
        "needs a `<DataCollector>`",
    ),
    (
        "sampleFlow/24Solver/sharedflowbundle/policies/regExLookAround.xml",
        "invalid regular expression",
    ),
    (
        "sampleProxy/24Solver/apiproxy/policies/regExLookAround.xml",
        "invalid regular expression",
    ),
];

fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/apigee-corpus/bundles"))
        .find(|dir| dir.is_dir())
        .expect("the Apigee corpus beside the repository")
}

fn policy_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "xml")
                && path.parent().is_some_and(|p| p.ends_with("policies"))
                && path
                    .ancestors()
                    .any(|a| a.ends_with("apiproxy") || a.ends_with("sharedflowbundle"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn family_policies_of_the_corpus_load() {
    let options = LoadOptions::default();
    let mut supported: BTreeMap<String, usize> = BTreeMap::new();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut family_files = 0;
    let mut broken_seen = 0;
    let files = policy_files(&corpus());
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let shown = format!("apiproxy/policies/{name}");
        let loaded = load_files([(shown.as_str(), &bytes)], &options);
        let Some(policy) = loaded
            .bundles
            .first()
            .and_then(|b| b.policies.values().next())
        else {
            continue; // not well-formed XML or no name: counted by corpus_bundles
        };
        let map = if policy.config.is_supported() {
            &mut supported
        } else {
            &mut unsupported
        };
        *map.entry(policy.type_name.clone()).or_default() += 1;
        if !FAMILIES.contains(&policy.type_name.as_str()) {
            continue;
        }
        family_files += 1;
        let errors: Vec<String> = loaded
            .errors()
            .filter(|d| d.location.file.as_ref() == shown)
            .map(|d| d.message.clone())
            .collect();
        let typed = !matches!(policy.config, PolicyConfig::Unsupported { .. });
        let path_text = path.to_string_lossy();
        if let Some((_, expected)) = BROKEN_FIXTURES.iter().find(|(p, _)| path_text.ends_with(p)) {
            broken_seen += 1;
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{path_text}: expected an error containing {expected:?}, got {errors:?}"
            );
            continue;
        }
        if !errors.is_empty() || !typed {
            failures.push(format!("{}: {errors:?}", path.display()));
        }
    }
    let count = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    println!(
        "corpus policy files: {} supported, {} unsupported",
        count(&supported),
        count(&unsupported)
    );
    println!("  supported by type: {supported:?}");
    println!("  unsupported by type: {unsupported:?}");
    println!("  files of the new families: {family_files}");
    assert!(
        family_files >= 260,
        "only {family_files} family policy files"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(broken_seen, BROKEN_FIXTURES.len());
    for t in FAMILIES {
        assert!(!unsupported.contains_key(*t), "{t} still unsupported");
    }
}
