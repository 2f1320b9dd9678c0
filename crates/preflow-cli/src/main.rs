//! The `preflow` command line.
fn main() {}
