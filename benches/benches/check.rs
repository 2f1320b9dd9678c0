//! `preflow check`'s work on the real corpus: loading and linting each of the 242 bundles
//! of `apigee-corpus` outside apigeelint's fixtures (`$PREFLOW_SHARED`, default `../shared`
//! beside the repository), in process. The target is under 5 ms per bundle; criterion's
//! throughput line gives bundles per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use preflow::{LintOptions, LoadOptions, lint_with, load_path};
use std::hint::black_box;
use std::path::PathBuf;

fn corpus_bundles() -> Vec<PathBuf> {
    let shared = std::env::var_os("PREFLOW_SHARED").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
        PathBuf::from,
    );
    let root = shared.join("apigee-corpus/bundles");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() || p.ends_with("apigee__apigeelint") {
                continue;
            }
            if p.ends_with("apiproxy") || p.ends_with("sharedflowbundle") {
                out.push(p);
            } else {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn check(c: &mut Criterion) {
    let bundles = corpus_bundles();
    assert_eq!(
        bundles.len(),
        242,
        "the corpus bundles outside apigeelint's fixtures"
    );
    let options = LoadOptions::default();
    let lint = LintOptions::default();
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(bundles.len() as u64));
    group.sample_size(10);
    group.bench_function("corpus_242_bundles", |b| {
        b.iter(|| {
            for dir in &bundles {
                let loaded = load_path(dir, &options);
                black_box(lint_with(&loaded.bundles, &lint));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
