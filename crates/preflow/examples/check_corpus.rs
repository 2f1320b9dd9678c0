//! Times what `preflow check` does per bundle (load and lint, in process) on the real
//! corpus bundles outside apigeelint's fixtures: `cargo run --release -p preflow
//! --example check_corpus [BUNDLES_DIR]` (default `$PREFLOW_SHARED/apigee-corpus/bundles`).
//! The criterion bench `benches/benches/check.rs` measures the same work.

use preflow::{LintOptions, LoadOptions, lint_with, load_path};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(std::env::var_os("PREFLOW_SHARED").unwrap_or_else(|| "../shared".into()))
                .join("apigee-corpus/bundles")
        },
        PathBuf::from,
    );
    let mut bundles = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for p in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            if p.ends_with("apigee__apigeelint") {
                continue;
            }
            if p.ends_with("apiproxy") || p.ends_with("sharedflowbundle") {
                bundles.push(p);
            } else {
                stack.push(p);
            }
        }
    }
    bundles.sort();
    let options = LoadOptions::default();
    let lint = LintOptions::default();
    let mut times = Vec::with_capacity(bundles.len());
    let mut errors = 0;
    for round in 0..3 {
        for dir in &bundles {
            let start = Instant::now();
            let loaded = load_path(dir, &options);
            let found = lint_with(&loaded.bundles, &lint);
            let took = start.elapsed();
            if round == 2 {
                times.push((took, dir));
                errors += loaded.errors().count() + found.iter().filter(|d| d.is_error()).count();
            }
        }
    }
    times.sort();
    let total: std::time::Duration = times.iter().map(|(t, _)| *t).sum();
    let n = u32::try_from(times.len().max(1)).unwrap_or(u32::MAX);
    println!(
        "{} bundles: mean {:?}, median {:?} per bundle (load and lint), {errors} errors; slowest:",
        times.len(),
        total / n,
        times
            .get(times.len() / 2)
            .map(|(t, _)| *t)
            .unwrap_or_default(),
    );
    for (t, dir) in times.iter().rev().take(3) {
        println!("  {t:?} {}", dir.display());
    }
}
