//! The request path from `begin` to `Step::Forward` allocates nothing on the heap: a
//! VerifyAccessToken and a keyed SpikeArrest in the PreFlow, 20 conditional flows, a URL
//! target (the `request_preflow` bench's proxy). A counting allocator counts them (this
//! binary's only test, so no other test allocates meanwhile).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

mod verified;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Where a debugger can stop before the counted requests.
#[inline(never)]
fn counted_requests_begin() {
    std::hint::black_box(());
}

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

#[test]
fn begin_to_forward_allocates_nothing() {
    let token = "token-00000000-abcdefghijklmnopqrstuvwxyz0123456789";
    let gateway = verified::gateway_with_token(bundle(), token);
    let request = || {
        http::Request::get("/v1/api/orders/123/items?expand=true")
            .header("host", "api.example.com")
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap()
    };
    let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut run = |req| {
        now += Duration::from_millis(1);
        let mut ex = gateway.begin(req, client, now);
        let step = gateway.step(&mut ex);
        assert!(matches!(step, Step::Forward(_)), "{step:?}");
    };
    // The first requests create the SpikeArrest's key and the thread's path chunk.
    for _ in 0..3 {
        run(request());
    }
    let requests: Vec<_> = (0..10).map(|_| request()).collect();
    counted_requests_begin();
    let region = Region::new(GLOBAL);
    for r in requests {
        run(r);
    }
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "heap allocations in 10 requests, begin to forward: {stats:?}"
    );
}
