//! Rate-limit benchmarks.
fn main() {}
