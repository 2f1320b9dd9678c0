//! How the per-request cost and the build grow with the size of the deployment.
//!
//! - `request_scale/proxies/{1,100,1000}`: one request (begin to `Step::Forward`) on a
//!   gateway of that many API proxies (base paths `/v1/svc{i}`, each proxy also serving
//!   `/v1/svc{i}/admin`), to the proxy in the middle of the set. Each proxy has one
//!   conditional flow that matches, so the cost is selection plus one short run.
//! - `request_scale/flows/{20,200}`: one proxy with that many conditional flows, guarded
//!   by distinct path prefixes and verbs; the request matches the last one.
//! - `gateway_build/corpus`: building one gateway of the corpus bundles that load and
//!   build (the 242 bundles of `apigee-corpus` outside apigeelint's fixtures, minus those
//!   with a load error, a policy that cannot run or a base path an earlier one serves;
//!   the count is printed).
//! - `gateway_build/generated_1000`: building a gateway of 1,000 generated proxies.
//!
//! Printed before the timings: the heap memory per live token (1,000,000 tokens in the
//! in-memory token store) and per rate-limit key (1,000,000 keys of a keyed SpikeArrest),
//! counted by a counting global allocator (allocated minus freed bytes, divided by the
//! number of entries).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use preflow::{Client, Gateway, LoadOptions, Loaded, Step, load_files, load_path};
use preflow_oauth::{GrantId, GrantType, MemoryStore, TokenHash, TokenKind, TokenRecord};
use preflow_ratelimit::{Rate, SpikeArrest, SpikeArrestConfig, SpikeBehaviour, Timestamp};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const VERBS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// One API proxy bundle named `name` at `base`, with `flows` as its `<Flows>` content.
fn proxy_bundle(name: &str, base: &str, flows: &str) -> Vec<(String, String)> {
    vec![
        (
            "apiproxy/api.xml".into(),
            format!(r#"<APIProxy name="{name}"/>"#),
        ),
        (
            "apiproxy/proxies/default.xml".into(),
            format!(
                r#"<ProxyEndpoint name="default">
  <Flows>{flows}</Flows>
  <HTTPProxyConnection><BasePath>{base}</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
            ),
        ),
        (
            "apiproxy/proxies/admin.xml".into(),
            format!(
                r#"<ProxyEndpoint name="admin">
  <HTTPProxyConnection><BasePath>{base}/admin</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
            ),
        ),
        (
            "apiproxy/targets/default.xml".into(),
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend.internal:8080</URL></HTTPTargetConnection></TargetEndpoint>"#.into(),
        ),
    ]
}

/// `n` conditional flows; flow `i < n - 1` needs `/r{i}/…` and verb `VERBS[i % 4]`, the
/// last one `/orders/…` and `GET`.
fn flows(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n.saturating_sub(1) {
        out.push_str(&format!(
            r#"<Flow name="f{i}"><Condition>(proxy.pathsuffix MatchesPath "/r{i}/**") and (request.verb = "{}")</Condition></Flow>"#,
            VERBS[i % VERBS.len()]
        ));
    }
    out.push_str(
        r#"<Flow name="orders"><Condition>(proxy.pathsuffix MatchesPath "/orders/**") and (request.verb = "GET")</Condition></Flow>"#,
    );
    out
}

fn generated(proxies: usize, flows_each: usize) -> Vec<Loaded> {
    let f = flows(flows_each);
    (0..proxies)
        .map(|i| {
            let loaded = load_files(
                proxy_bundle(&format!("svc{i}"), &format!("/v1/svc{i}"), &f),
                &LoadOptions::default(),
            );
            assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
            loaded
        })
        .collect()
}

fn build(all: Vec<Loaded>) -> Gateway {
    all.into_iter()
        .fold(Gateway::builder(), |b, l| b.bundles(l))
        .build()
        .expect("gateway")
}

fn request(path: &str) -> http::Request<Bytes> {
    http::Request::get(path)
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

fn request_scale(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut group = c.benchmark_group("request_scale");
    for n in [1usize, 100, 1000] {
        let gateway = build(generated(n, 1));
        let req = request(&format!("/v1/svc{}/orders/123?expand=true", n / 2));
        assert!(one(&gateway, req.clone(), now), "proxies/{n} forwards");
        group.bench_function(BenchmarkId::new("proxies", n), |b| {
            b.iter_batched(
                || req.clone(),
                |r| one(&gateway, r, now),
                BatchSize::SmallInput,
            )
        });
    }
    for n in [20usize, 200] {
        let gateway = build(generated(1, n));
        let req = request("/v1/svc0/orders/123?expand=true");
        let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
        let mut ex = gateway.begin(req.clone(), client, now);
        assert!(matches!(gateway.step(&mut ex), Step::Forward(_)));
        assert_eq!(
            gateway.variable(&ex, "proxy.flow.name").as_deref(),
            Some("orders"),
            "flows/{n} selects the last flow"
        );
        group.bench_function(BenchmarkId::new("flows", n), |b| {
            b.iter_batched(
                || req.clone(),
                |r| one(&gateway, r, now),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn corpus_bundles() -> Vec<PathBuf> {
    let shared = std::env::var_os("PREFLOW_SHARED").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
        PathBuf::from,
    );
    let mut out = Vec::new();
    let mut stack = vec![shared.join("apigee-corpus/bundles")];
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

/// The corpus bundles that build alone, without a base path an earlier one serves.
fn corpus() -> Vec<Loaded> {
    let dirs = corpus_bundles();
    assert_eq!(dirs.len(), 242, "the corpus bundles outside apigeelint's");
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for dir in dirs {
        let loaded = load_path(&dir, &LoadOptions::default());
        let Ok(alone) = Gateway::builder().bundles(loaded.clone()).build() else {
            continue;
        };
        let paths: Vec<String> = alone.base_paths().map(|(p, _)| p.to_owned()).collect();
        if paths.iter().any(|p| seen.contains(p)) {
            continue;
        }
        seen.extend(paths);
        kept.push(loaded);
    }
    kept
}

fn gateway_build(c: &mut Criterion) {
    let corpus = corpus();
    println!(
        "gateway_build/corpus: {} of the 242 corpus bundles build together",
        corpus.len()
    );
    // In test mode (`cargo test --benches`, a debug build) a tenth of the proxies.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let generated = generated(if benchmarking { 1000 } else { 100 }, 20);
    let mut group = c.benchmark_group("gateway_build");
    group.sample_size(10);
    group.bench_function("corpus", |b| {
        b.iter_batched(|| corpus.clone(), build, BatchSize::LargeInput)
    });
    group.bench_function("generated_1000", |b| {
        b.iter_batched(|| generated.clone(), build, BatchSize::LargeInput)
    });
    group.finish();
}

/// Bytes still allocated at the end of a region (reallocations count their growth).
fn net_bytes(s: &stats_alloc::Stats) -> f64 {
    s.bytes_allocated as f64 + s.bytes_reallocated as f64 - s.bytes_deallocated as f64
}

/// Heap bytes per entry of 1,000,000 live tokens and 1,000,000 rate-limit keys.
fn memory() {
    let n = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let record = Arc::new(TokenRecord {
        kind: TokenKind::Access,
        client_id: Arc::from("client"),
        app_id: Arc::from("app"),
        app_name: Arc::from("app"),
        developer_email: Arc::from("dev@example.com"),
        products: Arc::from(vec![Arc::<str>::from("P")]),
        scope: Arc::from(""),
        grant_type: GrantType::ClientCredentials,
        username: None,
        issued_at: 1_700_000_000,
        expires_at: None,
        revoked_at: None,
        grant_id: GrantId([0; 16]),
        refresh_count: 0,
        attributes: Arc::from(Vec::new()),
    });
    let region = Region::new(GLOBAL);
    let store = MemoryStore::default();
    let mut batch = Vec::with_capacity(1000);
    for t in 0..n {
        // Each token its own record, as issued tokens have.
        let rec = Arc::new(TokenRecord {
            grant_id: GrantId((t as u128).to_le_bytes()),
            ..(*record).clone()
        });
        batch.push((TokenHash::of(format!("token-{t}").as_bytes()), rec));
        if batch.len() == 1000 {
            preflow_oauth::TokenStore::put_tokens(&store, &batch);
            batch.clear();
        }
    }
    preflow_oauth::TokenStore::put_tokens(&store, &batch);
    drop(batch);
    let s = region.change();
    let per_token = net_bytes(&s) / n as f64;
    println!(
        "memory/live_token: {per_token:.0} bytes per live token ({n} tokens in the in-memory store, record included; its strings shared)"
    );
    black_box(&store);
    drop(store);

    let spike = SpikeArrest::new(
        SpikeArrestConfig::new(Rate::per_second(NonZeroU32::MIN))
            .with_behaviour(SpikeBehaviour::ApigeeX),
    );
    let keys: Vec<String> = (0..n).map(|i| format!("client-{i:07}")).collect();
    let region = Region::new(GLOBAL);
    for (i, k) in keys.iter().enumerate() {
        black_box(spike.check(k, Timestamp::from_nanos(1_000 + i as u64), 1));
    }
    let s = region.change();
    let per_key = net_bytes(&s) / n as f64;
    println!(
        "memory/rate_limit_key: {per_key:.0} bytes per rate-limit key ({n} keys of a keyed SpikeArrest, 14-byte keys)"
    );
    black_box(&spike);
}

fn all(c: &mut Criterion) {
    memory();
    request_scale(c);
    gateway_build(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
