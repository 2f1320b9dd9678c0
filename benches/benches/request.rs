//! The whole per-request path.
//!
//! - `request_preflow/preflow`: one request through a ProxyEndpoint with VerifyAccessToken
//!   and SpikeArrest (per client id) in the PreFlow and 20 conditional flows of which the
//!   last matches, ending in `Step::Forward`; the token store holds 1,000,000 live tokens of
//!   10,000 client ids (10,000 tokens when run as a test).
//! - `request_preflow/cedar_single_decision`: one cedar-policy authorization of the rule of
//!   the `condition_eval` bench, on a prebuilt request.
//!
//! Heap allocations per request are counted with a counting global allocator and printed.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{Criterion, criterion_group, criterion_main};
use preflow::{Client, Gateway, LoadOptions, Step, load_files};
use preflow_oauth::{
    ApiProduct, App, Developer, GrantId, GrantType, NewCredential, Registry, TokenHash, TokenKind,
    TokenRecord, TokenStore,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CLIENTS: usize = 10_000;
const T0: u64 = 1_700_000_000;

fn bundle() -> Vec<(String, String)> {
    let mut flows = String::new();
    for i in 0..19 {
        flows.push_str(&format!(
            r#"<Flow name="f{i}"><Condition>(proxy.pathsuffix MatchesPath "/resource{i}/**") and (request.verb = "POST")</Condition></Flow>"#
        ));
    }
    flows.push_str(
        r#"<Flow name="orders"><Condition>(proxy.pathsuffix MatchesPath "/orders/**") and (request.verb = "GET")</Condition></Flow>"#,
    );
    vec![
        ("apiproxy/api.xml".into(), r#"<APIProxy name="api"/>"#.into()),
        (
            "apiproxy/proxies/default.xml".into(),
            format!(
                r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Verify</Name></Step><Step><Name>Spike</Name></Step></Request></PreFlow>
  <Flows>{flows}</Flows>
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
            "apiproxy/policies/Verify.xml".into(),
            r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#.into(),
        ),
        (
            "apiproxy/policies/Spike.xml".into(),
            r#"<SpikeArrest name="Spike"><Identifier ref="client_id"/><Rate>1000000ps</Rate></SpikeArrest>"#.into(),
        ),
    ]
}

fn gateway(tokens: usize) -> (Gateway, Vec<String>) {
    let registry = Arc::new(Registry::new());
    registry.put_developer(Developer::new("dev@example.com"));
    registry.put_product(
        ApiProduct::new("P")
            .with_proxies(["api"])
            .with_resources(["/**"])
            .expect("resource pattern"),
    );
    let mut apps = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let app = registry
            .add_app("dev@example.com", App::new(format!("app-{i}")))
            .expect("app");
        registry
            .add_credential(
                &app,
                NewCredential {
                    key: Some(format!("client-{i}")),
                    products: vec!["P".into()],
                    ..Default::default()
                },
            )
            .expect("credential");
        apps.push(app);
    }
    let loaded = load_files(bundle(), &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let gateway = Gateway::builder()
        .bundles(loaded)
        .registry(Arc::clone(&registry))
        .build()
        .expect("gateway");
    let products: Arc<[Arc<str>]> = Arc::from(vec![Arc::<str>::from("P")]);
    let mut batch = Vec::with_capacity(1000);
    let mut sample = Vec::new();
    for t in 0..tokens {
        let c = t % CLIENTS;
        let value = format!("token-{t:08}-abcdefghijklmnopqrstuvwxyz0123456789");
        let record = TokenRecord {
            kind: TokenKind::Access,
            client_id: Arc::from(format!("client-{c}")),
            app_id: Arc::from(apps[c].as_str()),
            app_name: Arc::from(format!("app-{c}")),
            developer_email: Arc::from("dev@example.com"),
            products: Arc::clone(&products),
            scope: Arc::from(""),
            grant_type: GrantType::ClientCredentials,
            username: None,
            issued_at: T0,
            // Never expiring: the timed loop runs for many simulated hours.
            expires_at: None,
            revoked_at: None,
            grant_id: GrantId([0; 16]),
            refresh_count: 0,
            attributes: Arc::from(Vec::new()),
        };
        batch.push((TokenHash::of(value.as_bytes()), Arc::new(record)));
        if batch.len() == 1000 {
            gateway.token_store().put_tokens(&batch);
            batch.clear();
        }
        if t % (tokens / 16 + 1) == 0 {
            sample.push(value);
        }
    }
    gateway.token_store().put_tokens(&batch);
    (gateway, sample)
}

fn requests(sample: &[String]) -> Vec<http::Request<Bytes>> {
    sample
        .iter()
        .map(|t| {
            http::Request::get("/v1/api/orders/123/items?expand=true")
                .header("host", "api.example.com")
                .header("accept", "application/json")
                .header("user-agent", "curl/8.5.0")
                .header("authorization", format!("Bearer {t}"))
                .body(Bytes::new())
                .expect("request")
        })
        .collect()
}

/// One request up to the forward; returns whether it was forwarded. Never inlined, so
/// `scripts/bench-instructions.sh request request_preflow/preflow request::one` can count
/// its instructions.
#[inline(never)]
fn one(gateway: &Gateway, req: http::Request<Bytes>, now: SystemTime) -> bool {
    let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
    let mut ex = gateway.begin(req, client, now);
    matches!(gateway.step(&mut ex), Step::Forward(_))
}

fn cedar() -> (Authorizer, cedar_policy::Request, PolicySet, Entities) {
    let policies = PolicySet::from_str(
        r#"permit(principal, action, resource) when { context.verb == "POST" && context.path like "/v1/orders/*" && context has apikey };"#,
    )
    .expect("cedar policy");
    let context = Context::from_pairs([
        (
            "verb".to_owned(),
            RestrictedExpression::new_string("POST".into()),
        ),
        (
            "path".to_owned(),
            RestrictedExpression::new_string("/v1/orders/123/items".into()),
        ),
        (
            "apikey".to_owned(),
            RestrictedExpression::new_string("k3y-0f-the-app".into()),
        ),
    ])
    .expect("context");
    let uid = |s: &str| EntityUid::from_str(s).expect("uid");
    let request = Request::new(
        uid(r#"User::"app""#),
        uid(r#"Action::"call""#),
        uid(r#"Api::"orders""#),
        context,
        None,
    )
    .expect("request");
    (Authorizer::new(), request, policies, Entities::empty())
}

fn request_preflow(c: &mut Criterion) {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let tokens = if benchmarking { 1_000_000 } else { 10_000 };
    let (gateway, sample) = gateway(tokens);
    let reqs = requests(&sample);
    // Each request is a millisecond later than the last, so SpikeArrest always allows.
    let mut t = SystemTime::UNIX_EPOCH + Duration::from_secs(T0);
    let mut next_time = move || {
        t += Duration::from_millis(1);
        t
    };
    for r in &reqs {
        assert!(
            one(&gateway, r.clone(), next_time()),
            "every sample request is forwarded"
        );
    }

    // Allocations of one request (cloning the prepared request is counted apart).
    let req = reqs[0].clone();
    let now = next_time();
    let region = Region::new(GLOBAL);
    let _ = one(&gateway, req, now);
    let per_request = region.change();
    let region = Region::new(GLOBAL);
    let _ = black_box(reqs[0].clone());
    let clone_only = region.change();
    println!(
        "request_preflow/preflow: {} heap allocations per request ({} bytes), begin to forward; cloning the prepared request (in the timed loop's setup) takes {} more; {} live tokens, {} client ids",
        per_request.allocations,
        per_request.bytes_allocated,
        clone_only.allocations,
        tokens,
        CLIENTS
    );
    let (authorizer, cedar_request, policies, entities) = cedar();
    assert_eq!(
        authorizer
            .is_authorized(&cedar_request, &policies, &entities)
            .decision(),
        Decision::Allow
    );
    let region = Region::new(GLOBAL);
    let _ = authorizer.is_authorized(&cedar_request, &policies, &entities);
    println!(
        "request_preflow/cedar_single_decision: {} heap allocations per decision",
        region.change().allocations
    );

    let mut group = c.benchmark_group("request_preflow");
    let mut i = 0usize;
    group.bench_function("preflow", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % reqs.len();
                (reqs[i].clone(), next_time())
            },
            |(req, now)| one(&gateway, req, now),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("cedar_single_decision", |b| {
        b.iter(|| {
            authorizer
                .is_authorized(black_box(&cedar_request), &policies, &entities)
                .decision()
        })
    });
    group.finish();
}

criterion_group!(benches, request_preflow);
criterion_main!(benches);
