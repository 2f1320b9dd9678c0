//! The Javascript policy's cost per request.
//!
//! - `js_policy/with_script`: one request through a ProxyEndpoint whose PreFlow runs a
//!   Javascript policy doing two `getVariable`, one `setVariable` and a `JSON.parse`,
//!   up to `Step::Forward`.
//! - `js_policy/without_script`: the same request and bundle without the policy.
//!
//! The difference of the two medians is the policy's cost (goal: at most 5 µs). Heap
//! allocations per request are counted with a counting global allocator and printed.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use preflow::{Client, Gateway, LoadOptions, Step, load_files};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const T0: u64 = 1_700_000_000;

const SCRIPT: &str = r#"var verb = context.getVariable("request.verb");
var suffix = context.getVariable("proxy.pathsuffix");
var cfg = JSON.parse('{"tier":"gold","limit":100,"tags":["a","b"]}');
context.setVariable("js.route", verb + " " + suffix + " " + cfg.tier);
"#;

fn gateway(with_script: bool) -> Gateway {
    let steps = if with_script {
        "<Step><Name>JS</Name></Step>"
    } else {
        ""
    };
    let files: Vec<(String, String)> = vec![
        ("apiproxy/api.xml".into(), r#"<APIProxy name="api"/>"#.into()),
        (
            "apiproxy/proxies/default.xml".into(),
            format!(
                r#"<ProxyEndpoint name="default">
  <PreFlow><Request>{steps}</Request></PreFlow>
  <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
            ),
        ),
        (
            "apiproxy/targets/default.xml".into(),
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend.internal:8080</URL></HTTPTargetConnection></TargetEndpoint>"#.into(),
        ),
        (
            "apiproxy/policies/JS.xml".into(),
            r#"<Javascript name="JS" timeLimit="200"><ResourceURL>jsc://route.js</ResourceURL></Javascript>"#.into(),
        ),
        ("apiproxy/resources/jsc/route.js".into(), SCRIPT.into()),
    ];
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Gateway::builder().bundles(loaded).build().expect("gateway")
}

fn request() -> http::Request<Bytes> {
    http::Request::get("/v1/api/orders/123?expand=true")
        .header("host", "api.example.com")
        .header("accept", "application/json")
        .header("user-agent", "curl/8.5.0")
        .body(Bytes::new())
        .expect("request")
}

fn one(gateway: &Gateway, req: http::Request<Bytes>, now: SystemTime) -> bool {
    let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
    let mut ex = gateway.begin(req, client, now);
    matches!(gateway.step(&mut ex), Step::Forward(_))
}

fn js_policy(c: &mut Criterion) {
    let with = gateway(true);
    let without = gateway(false);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    // The script ran and set its variable.
    {
        let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
        let mut ex = with.begin(request(), client, now);
        assert!(matches!(with.step(&mut ex), Step::Forward(_)));
        assert_eq!(
            with.variable(&ex, "js.route").as_deref(),
            Some("GET /orders/123 gold")
        );
    }
    for (name, g) in [("with_script", &with), ("without_script", &without)] {
        assert!(one(g, request(), now));
        let req = request();
        let region = Region::new(GLOBAL);
        let _ = one(g, req, now);
        let stats = region.change();
        println!(
            "js_policy/{name}: {} heap allocations per request ({} bytes)",
            stats.allocations, stats.bytes_allocated
        );
    }
    let mut group = c.benchmark_group("js_policy");
    for (name, g) in [("with_script", &with), ("without_script", &without)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                request,
                |req| black_box(one(g, req, now)),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, js_policy);
criterion_main!(benches);
