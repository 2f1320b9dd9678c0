//! Loads every bundle of the Apigee corpus (`shared/apigee-corpus/bundles`, beside the
//! repository). Every real bundle passes `preflow check` (no load or lint error); the
//! apigeelint fixtures may have errors, but nothing panics.

use preflow::{LoadOptions, Loaded, load_path};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Real bundles holding a condition that does not parse, with the condition. They were
/// deployed as written from Apigee's own sample repositories, so, like policies a build
/// script adds, policy-only shared flow folders and an OAuthV2 without `<Operation>`,
/// they load with a warning and the condition faults with `ConditionInvalid` if reached.
/// Paths are relative to the corpus `bundles/` folder.
const INVALID_CONDITIONS: &[(&str, &str)] = &[
    (
        "apigee__api-platform-samples/sample-proxies/oauth10a-3legged/apiproxy",
        "conditions `proxy.pathsuffix /~ \"...\"`: a reversed `~/` (listed in corpus_conditions)",
    ),
    (
        "apigee__consumer-data-standards-au/src/shared-flows/collect-performance-slo/sharedflowbundle",
        "condition `true = false`: the left-hand side must be a variable (listed in corpus_conditions)",
    ),
];

/// The bundle root (`…/apiproxy` or `…/sharedflowbundle`) of a corpus-relative file.
fn bundle_root(file: &str) -> String {
    ["/apiproxy/", "/sharedflowbundle/"]
        .iter()
        .find_map(|r| file.find(r).map(|i| file[..i + r.len() - 1].to_owned()))
        .unwrap_or_else(|| file.to_owned())
}

/// The corpus: `shared/` sits beside the repository (`CARGO_MANIFEST_DIR/../../shared`);
/// in a git worktree the nearest ancestor holding `shared/` is used.
fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/apigee-corpus/bundles"))
        .find(|dir| dir.is_dir());
    match found {
        Some(dir) => dir.canonicalize().unwrap(),
        None => panic!(
            "the Apigee corpus is missing: expected it at {}",
            manifest
                .join("../../shared/apigee-corpus/bundles")
                .display()
        ),
    }
}

fn relative(corpus: &Path, path: &str) -> String {
    let base = corpus.to_string_lossy();
    path.strip_prefix(base.as_ref())
        .unwrap_or(path)
        .trim_start_matches('/')
        .to_owned()
}

#[test]
fn corpus_bundles_load() {
    let corpus = corpus();
    let options = LoadOptions::default();
    let mut real = Loaded::default();
    let mut fixtures = Loaded::default();
    let mut repos: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    repos.sort();
    for repo in &repos {
        let loaded = load_path(repo, &options);
        let into = if repo.ends_with("apigee__apigeelint") {
            &mut fixtures
        } else {
            &mut real
        };
        into.bundles.extend(loaded.bundles);
        into.diagnostics.extend(loaded.diagnostics);
    }

    // Errors of real bundles, by bundle root.
    // What `preflow check` reports: load diagnostics plus the lints. Its exit status is
    // 0 exactly when a bundle has no error among them.
    let lints = preflow::lint(&real.bundles);
    let mut errors_by_bundle: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in real.errors().chain(lints.iter().filter(|d| d.is_error())) {
        let file = relative(&corpus, &d.location.file);
        errors_by_bundle
            .entry(bundle_root(&file))
            .or_default()
            .push(format!("{}", d).replace(corpus.to_string_lossy().as_ref(), ""));
    }
    let unexpected: Vec<String> = errors_by_bundle.values().flatten().cloned().collect();
    // The bundles with a condition that does not parse carry its warning.
    let mut invalid_condition_warned: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in real
        .warnings()
        .filter(|d| d.message.starts_with("invalid condition: "))
    {
        let file = relative(&corpus, &d.location.file);
        invalid_condition_warned
            .entry(bundle_root(&file))
            .or_default()
            .push(d.to_string());
    }
    let unwarned: Vec<&str> = INVALID_CONDITIONS
        .iter()
        .map(|(root, _)| *root)
        .filter(|root| !invalid_condition_warned.contains_key(*root))
        .collect();
    let unlisted: Vec<&String> = invalid_condition_warned
        .keys()
        .filter(|root| !INVALID_CONDITIONS.iter().any(|(r, _)| r == root))
        .collect();

    let mut supported: BTreeMap<String, usize> = BTreeMap::new();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    for b in &real.bundles {
        for p in b.policies.values() {
            let map = if p.config.is_supported() {
                &mut supported
            } else {
                &mut unsupported
            };
            *map.entry(p.type_name.clone()).or_default() += 1;
        }
    }
    let count = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    println!(
        "real bundles: {} loaded, {} with errors, {} with an invalid condition, {} warnings",
        real.bundles.len(),
        errors_by_bundle.len(),
        invalid_condition_warned.len(),
        real.warnings().count()
    );
    println!(
        "real policies: {} supported, {} unsupported",
        count(&supported),
        count(&unsupported)
    );
    println!("  supported by type: {supported:?}");
    println!("  unsupported by type: {unsupported:?}");
    println!(
        "apigeelint fixtures: {} bundles, {} errors, {} warnings",
        fixtures.bundles.len(),
        fixtures.errors().count(),
        fixtures.warnings().count()
    );

    // Every position points inside its file.
    for d in real.diagnostics.iter().chain(&fixtures.diagnostics) {
        let Ok(text) = std::fs::read_to_string(&*d.location.file) else {
            continue;
        };
        let line = text.lines().nth(d.location.line - 1);
        let line = line.unwrap_or_else(|| panic!("{d}: line past the end of the file"));
        assert!(
            d.location.column <= line.chars().count() + 1,
            "{d}: column past the end of line {line:?}"
        );
    }

    assert!(
        real.bundles.len() >= 240,
        "only {} real bundles",
        real.bundles.len()
    );
    assert!(
        fixtures.bundles.len() >= 80,
        "only {} fixture bundles",
        fixtures.bundles.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected errors in real bundles:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        unwarned.is_empty(),
        "listed with an invalid condition but loading without its warning: {unwarned:?}"
    );
    assert!(
        unlisted.is_empty(),
        "invalid conditions in bundles not listed in INVALID_CONDITIONS: {unlisted:?}"
    );
    assert!(
        fixtures.errors().count() > 0,
        "the apigeelint fixtures hold broken bundles on purpose; some must be reported"
    );
}

/// Every corpus XML file, cut short at several points and loaded as each kind of bundle
/// file, gives diagnostics and never panics.
#[test]
fn truncated_corpus_files_never_panic() {
    let corpus = corpus();
    let mut files = Vec::new();
    let mut stack = vec![corpus];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "xml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 2000, "only {} XML files", files.len());
    let options = LoadOptions::default();
    let mut loads = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let as_kind = if path.to_string_lossy().contains("/policies/") {
            "apiproxy/policies/P.xml"
        } else if path.to_string_lossy().contains("/targets/") {
            "apiproxy/targets/default.xml"
        } else {
            "apiproxy/proxies/default.xml"
        };
        for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() * 9 / 10] {
            let loaded = preflow::load_files([(as_kind, &bytes[..cut])], &options);
            let _ = preflow::lint(&loaded.bundles);
            for d in &loaded.diagnostics {
                let _ = d.render();
            }
            loads += 1;
        }
    }
    println!("{loads} truncated loads");
}
