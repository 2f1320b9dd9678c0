//! Criterion benchmarks of preflow beside its peers; see `benches/`.
