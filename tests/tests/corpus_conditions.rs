//! Every real condition of the Apigee corpus parses, except listed mistakes; apigeelint's
//! labelled expressions agree with their label, except listed deviations.

use preflow_condition::{Dialect, ParseOptions, parse_with};
use std::path::PathBuf;

/// The corpus: `shared/apigee-corpus` beside the repository (`CARGO_MANIFEST_DIR/../..`),
/// or under `$PREFLOW_SHARED` when that is set (for checkouts that do not sit beside it).
fn corpus_dir() -> PathBuf {
    let shared = std::env::var_os("PREFLOW_SHARED").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
        PathBuf::from,
    );
    shared.join("apigee-corpus")
}

fn read(name: &str) -> String {
    let path = corpus_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("corpus file {} is missing: {e}", path.display()))
}

fn both(text: &str) -> Vec<Result<preflow_condition::ast::Condition, preflow_condition::ParseError>> {
    [Dialect::Edge, Dialect::ApigeeX]
        .into_iter()
        .map(|dialect| {
            parse_with(
                text,
                &ParseOptions {
                    dialect,
                    ..ParseOptions::default()
                },
            )
        })
        .collect()
}

#[test]
fn explore() {
    let data = read("conditions.jsonl");
    for line in data.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["condition"].as_str().unwrap();
        let fixture = v["only_in_linter_fixtures"].as_bool().unwrap();
        for r in both(text) {
            if let Err(e) = r {
                eprintln!("FAIL fixture={fixture} {text:?}\n{}\n", e.render(text));
            }
        }
    }
}
