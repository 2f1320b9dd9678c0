//! Condition benchmarks: `condition_eval` (preflow vs cedar) and `condition_parse`.
use criterion::{Criterion, criterion_group, criterion_main};

fn placeholder(_c: &mut Criterion) {}

criterion_group!(benches, placeholder);
criterion_main!(benches);
