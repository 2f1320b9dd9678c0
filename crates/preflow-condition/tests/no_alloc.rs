//! Evaluating a compiled condition allocates nothing (DESIGN.md principle 2), whatever the
//! operators: the whole test binary runs under a counting allocator, and the evaluations
//! are counted after one warm-up pass (which lets the regex engine set up its per-thread
//! cache).
//!
//! This file holds a single test, so that no other test thread allocates while it counts.

#![allow(clippy::unwrap_used)]

use preflow_condition::{MapVariables, Names, OwnedValue, ParseOptions, compile};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CONDITIONS: &[&str] = &[
    r#"request.verb = "POST" and proxy.pathsuffix MatchesPath "/v1/orders/**" and request.header.x-api-key != null"#,
    r#"response.status.code = "404" or response.status.code > "1000""#,
    r#"ratio = "0.5" or ratio > 0.25f or big = 12321421312 or big = "12321421312""#,
    r#"flag = "true" and flag or not missing"#,
    r#"request.verb := "post" and name := "ÉTÉ" and name < "z""#,
    r#"proxy.pathsuffix Matches "/v1/*/items*" and proxy.pathsuffix Not Matches "*x*""#,
    r#"proxy.pathsuffix MatchesPath "/v1/*/{id}/**" or proxy.pathsuffix ~/ "**a*b""#,
    r#"proxy.pathsuffix JavaRegex "/v1/[a-z]+/[0-9]+(/.*)?" and response.status.code ~~ "4\d\d""#,
    r#"proxy.pathsuffix StartsWith "/v1" and response.status.code =| "4" and ratio Not StartsWith "1""#,
    r#"missing > 5 and missing <= request.verb and (request.verb >= missing)"#,
    r#"names = "x" or names != null"#,
];

fn evaluation_does_not_allocate() {
    let mut vars = MapVariables::default();
    vars.set("request.verb", OwnedValue::String("POST".into()));
    vars.set(
        "proxy.pathsuffix",
        OwnedValue::String("/v1/orders/123/items".into()),
    );
    vars.set("request.header.x-api-key", OwnedValue::String("k".into()));
    vars.set("response.status.code", OwnedValue::Integer(404));
    vars.set("ratio", OwnedValue::Double(0.5));
    vars.set("big", OwnedValue::Long(12_321_421_312));
    vars.set("flag", OwnedValue::Boolean(true));
    vars.set("name", OwnedValue::String("été".into()));
    vars.set("names", OwnedValue::Object);
    let compiled: Vec<_> = CONDITIONS
        .iter()
        .map(|c| compile(c, &ParseOptions::default(), &Names).unwrap())
        .collect();
    let warm: Vec<bool> = compiled.iter().map(|c| c.eval(&vars)).collect();

    let region = Region::new(GLOBAL);
    let mut trues = 0usize;
    for _ in 0..100 {
        for c in &compiled {
            trues += usize::from(black_box(c).eval(black_box(&vars)));
        }
    }
    let stats = region.change();

    assert_eq!(trues, 100 * warm.iter().filter(|&&b| b).count());
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "evaluation allocated: {stats:?}"
    );
}

/// A plain `main` (no test harness): this thread is the only one that allocates.
fn main() {
    evaluation_does_not_allocate();
    println!("evaluation_does_not_allocate: 1 passed, 0 failed");
}
