//! The forwarded request: the client's headers move into it when nothing after the target
//! call reads them (decided at build time), and are copied otherwise; faults after the
//! call still render as the client's `Accept` asked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use bytes::Bytes;
use preflow::*;

fn gateway(response_steps: &str) -> Gateway {
    let files = vec![
        ("apiproxy/api.xml", r#"<APIProxy name="api"/>"#.to_owned()),
        (
            "apiproxy/proxies/default.xml",
            format!(
                r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
  <PreFlow><Request/><Response>{response_steps}</Response></PreFlow>
  <RouteRule name="r"><TargetEndpoint>t</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
            ),
        ),
        (
            "apiproxy/targets/t.xml",
            r#"<TargetEndpoint name="t"><HTTPTargetConnection><URL>http://backend.example/b</URL></HTTPTargetConnection></TargetEndpoint>"#
                .to_owned(),
        ),
        (
            "apiproxy/policies/SetHeader.xml",
            r#"<AssignMessage name="SetHeader"><Set><Headers><Header name="x-b">1</Header></Headers></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#
                .to_owned(),
        ),
    ];
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Gateway::builder().bundles(loaded).build().unwrap()
}

fn begin(g: &Gateway) -> Exchange {
    let req = http::Request::get("/v1/api/items/1?x=2")
        .header("host", "api.example.com")
        .header("accept", "application/xml")
        .header("x-a", "client")
        .body(Bytes::new())
        .unwrap();
    let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
    g.begin(req, client, SystemTime::now())
}

fn forwarded(g: &Gateway, ex: &mut Exchange) -> http::Request<Bytes> {
    match g.step(ex) {
        Step::Forward(t) => t.request,
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn headers_move_when_nothing_after_the_call_reads_them() {
    let g = gateway("");
    let mut ex = begin(&g);
    let req = forwarded(&g, &mut ex);
    assert_eq!(req.uri(), "http://backend.example/b/items/1?x=2");
    assert_eq!(req.headers()["x-a"], "client");
    assert_eq!(req.headers()["accept"], "application/xml");
    assert!(req.headers().get("host").is_none());
    // Moved: the exchange no longer holds them.
    assert_eq!(g.variable(&ex, "request.header.x-a"), None);
    // A fault after the call still answers in the format the client accepted.
    ex.target_response(Err(TargetError::Connect("refused".into())));
    let Step::Respond(resp) = g.step(&mut ex) else {
        panic!("expected the fault response")
    };
    assert_eq!(resp.status(), 503);
    let body = String::from_utf8_lossy(resp.body());
    assert!(body.trim_start().starts_with('<'), "XML fault: {body}");
}

#[test]
fn headers_are_copied_when_a_response_step_may_read_them() {
    let g = gateway("<Step><Name>SetHeader</Name></Step>");
    let mut ex = begin(&g);
    let req = forwarded(&g, &mut ex);
    assert_eq!(req.headers()["x-a"], "client");
    assert_eq!(
        g.variable(&ex, "request.header.x-a").as_deref(),
        Some("client")
    );
}

#[test]
fn many_forwarded_paths_stay_distinct() {
    // Paths are carved from a shared per-thread chunk: each keeps its own bytes, also
    // while earlier ones are alive and once the chunk is replaced.
    let g = gateway("");
    let mut kept = Vec::new();
    for i in 0..2000 {
        let req = http::Request::get(format!("/v1/api/items/{i}"))
            .body(Bytes::new())
            .unwrap();
        let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
        let mut ex = g.begin(req, client, SystemTime::now());
        let fwd = forwarded(&g, &mut ex);
        if i % 3 == 0 {
            kept.push((i, fwd));
        }
    }
    for (i, r) in kept {
        assert_eq!(r.uri().path(), format!("/b/items/{i}"));
    }
}
