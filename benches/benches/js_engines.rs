//! QuickJS (rquickjs) against boa_engine on the work a Javascript policy does, for the
//! engine choice in the README. Run with `cargo bench -p preflow-benches --features boa
//! --bench js_engines`.
//!
//! - `*/policy_script_fresh`: a new context per run, the script compiled and run in it
//!   (what a context per exchange would cost).
//! - `*/policy_script_reused`: one context, the script compiled once and run again
//!   (QuickJS: a cached function; boa: a parsed `Script` evaluated again).
//! - `*/fib20`: pure interpretation speed, `fib(20)` recursively.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const SCRIPT: &str = r#"var vars = { "request.verb": "GET", "proxy.pathsuffix": "/orders/123" };
var verb = vars["request.verb"];
var suffix = vars["proxy.pathsuffix"];
var cfg = JSON.parse('{"tier":"gold","limit":100,"tags":["a","b"]}');
vars["js.route"] = verb + " " + suffix + " " + cfg.tier;
"#;

const FIB: &str = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(20);";

fn quickjs(c: &mut Criterion) {
    use rquickjs::{Context, Function, Runtime};
    let mut g = c.benchmark_group("js_engines_quickjs");
    let rt = Runtime::new().expect("runtime");
    g.bench_function("policy_script_fresh", |b| {
        b.iter(|| {
            let ctx = Context::full(&rt).expect("context");
            ctx.with(|ctx| {
                let _: () = ctx.eval(SCRIPT).expect("run");
            });
        })
    });
    let ctx = Context::full(&rt).expect("context");
    let wrapped = format!("(function(){{{SCRIPT}}})");
    let f = ctx.with(|ctx| {
        let f: Function = ctx.eval(wrapped.as_str()).expect("compile");
        rquickjs::Persistent::save(&ctx, f)
    });
    g.bench_function("policy_script_reused", |b| {
        b.iter(|| {
            ctx.with(|ctx| {
                let f = f.clone().restore(&ctx).expect("restore");
                let _: () = f.call(()).expect("run");
            });
        })
    });
    g.bench_function("fib20", |b| {
        b.iter(|| {
            ctx.with(|ctx| {
                let v: i32 = ctx.eval(FIB).expect("run");
                black_box(v)
            })
        })
    });
    g.finish();
}

fn boa(c: &mut Criterion) {
    use boa_engine::{Context, Script, Source};
    let mut g = c.benchmark_group("js_engines_boa");
    g.bench_function("policy_script_fresh", |b| {
        b.iter(|| {
            let mut ctx = Context::default();
            black_box(ctx.eval(Source::from_bytes(SCRIPT)).expect("run"));
        })
    });
    let mut ctx = Context::default();
    let script = Script::parse(Source::from_bytes(SCRIPT), None, &mut ctx).expect("parse");
    g.bench_function("policy_script_reused", |b| {
        b.iter(|| black_box(script.evaluate(&mut ctx).expect("run")))
    });
    g.bench_function("fib20", |b| {
        b.iter(|| black_box(ctx.eval(Source::from_bytes(FIB)).expect("run")))
    });
    g.finish();
}

criterion_group!(benches, quickjs, boa);
criterion_main!(benches);
