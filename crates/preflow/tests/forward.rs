//! The forwarded request: the client's headers move into it when nothing that may run after
//! the target call reads them (decided at build time, step by step), and are copied
//! otherwise; faults after the call still render as the client's `Accept` asked.
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
    gateway_to("http://backend.example/b", response_steps)
}

fn gateway_to(url: &str, response_steps: &str) -> Gateway {
    gateway_with(url, response_steps, "")
}

fn gateway_with(url: &str, response_steps: &str, fault_rules: &str) -> Gateway {
    let files = vec![
        ("apiproxy/api.xml", r#"<APIProxy name="api"/>"#.to_owned()),
        (
            "apiproxy/proxies/default.xml",
            format!(
                r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
  <PreFlow><Request/><Response>{response_steps}</Response></PreFlow>
  <FaultRules>{fault_rules}</FaultRules>
  <RouteRule name="r"><TargetEndpoint>t</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
            ),
        ),
        (
            "apiproxy/targets/t.xml",
            format!(
                r#"<TargetEndpoint name="t"><HTTPTargetConnection><URL>{url}</URL></HTTPTargetConnection></TargetEndpoint>"#
            ),
        ),
        (
            "apiproxy/policies/SetHeader.xml",
            r#"<AssignMessage name="SetHeader"><Set><Headers><Header name="x-b">1</Header></Headers></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#
                .to_owned(),
        ),
        (
            "apiproxy/policies/EchoHeader.xml",
            r#"<AssignMessage name="EchoHeader"><Set><Headers><Header name="x-echo">{request.header.x-a}</Header></Headers></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#
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
    target(g, ex).request
}

fn target(g: &Gateway, ex: &mut Exchange) -> Target {
    match g.step(ex) {
        Step::Forward(t) => t,
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
    // The client's Host named the gateway: the back end gets its own authority.
    assert_eq!(req.headers()["host"], "backend.example");
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
fn headers_move_past_response_steps_that_only_write() {
    // Setting a response header reads nothing of the request.
    let g = gateway("<Step><Name>SetHeader</Name></Step>");
    let mut ex = begin(&g);
    let req = forwarded(&g, &mut ex);
    assert_eq!(req.headers()["x-a"], "client");
    assert_eq!(g.variable(&ex, "request.header.x-a"), None);
}

#[test]
fn headers_are_copied_when_a_response_step_reads_them() {
    let g = gateway("<Step><Name>SetHeader</Name></Step><Step><Name>EchoHeader</Name></Step>");
    let mut ex = begin(&g);
    let req = forwarded(&g, &mut ex);
    assert_eq!(req.headers()["x-a"], "client");
    assert_eq!(
        g.variable(&ex, "request.header.x-a").as_deref(),
        Some("client")
    );
    ex.target_response(Ok(http::Response::new(Bytes::new())));
    let Step::Respond(resp) = g.step(&mut ex) else {
        panic!("expected the response")
    };
    assert_eq!(resp.headers()["x-echo"], "client");
}

#[test]
fn headers_are_copied_when_a_fault_rule_or_its_condition_reads_them() {
    let by_condition = r#"<FaultRule name="f"><Condition>request.header.x-a = "client"</Condition><Step><Name>SetHeader</Name></Step></FaultRule>"#;
    let by_step = r#"<FaultRule name="f"><Condition>fault.name = "x"</Condition><Step><Name>EchoHeader</Name></Step></FaultRule>"#;
    for rules in [by_condition, by_step] {
        let g = gateway_with("http://backend.example/b", "", rules);
        let mut ex = begin(&g);
        let _ = forwarded(&g, &mut ex);
        assert_eq!(
            g.variable(&ex, "request.header.x-a").as_deref(),
            Some("client"),
            "{rules}"
        );
    }
    // A rule that reads only the fault lets them move.
    let g = gateway_with(
        "http://backend.example/b",
        "",
        r#"<FaultRule name="f"><Condition>fault.name = "x"</Condition><Step><Name>SetHeader</Name></Step></FaultRule>"#,
    );
    let mut ex = begin(&g);
    let _ = forwarded(&g, &mut ex);
    assert_eq!(g.variable(&ex, "request.header.x-a"), None);
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

#[test]
fn an_ip_literal_with_a_port_comes_as_a_socket_address() {
    let cases = [
        ("http://127.0.0.1:9000/b", Some("127.0.0.1:9000")),
        ("https://[::1]:8443/b", Some("[::1]:8443")),
        // Without a port the host picks the default (TLS settings can change it).
        ("https://10.0.0.1/b", None),
        // A name is for the host to resolve.
        ("http://backend.example:8080/b", None),
    ];
    for (url, address) in cases {
        let g = gateway_to(url, "");
        let mut ex = begin(&g);
        let t = target(&g, &mut ex);
        assert_eq!(
            t.address,
            address.map(|a| a.parse::<std::net::SocketAddr>().unwrap()),
            "{url}"
        );
        assert!(t.request.uri().to_string().starts_with(url), "{url}");
    }
}

#[test]
fn the_final_response_moves_to_the_host_and_its_status_stays() {
    let g = gateway("<Step><Name>SetHeader</Name></Step>");
    let mut ex = begin(&g);
    let _ = forwarded(&g, &mut ex);
    let back = http::Response::builder()
        .status(201)
        .header("x-back", "1")
        .body(Bytes::from_static(b"made"))
        .unwrap();
    ex.target_response(Ok(back));
    let Step::Respond(resp) = g.step(&mut ex) else {
        panic!("expected the response")
    };
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-back"], "1");
    assert_eq!(resp.headers()["x-b"], "1");
    assert_eq!(resp.body().as_ref(), b"made");
    // The head and body went to the host; the status line is still there to read.
    assert_eq!(
        g.variable(&ex, "response.status.code").as_deref(),
        Some("201")
    );
    assert_eq!(g.variable(&ex, "response.header.x-back"), None);
}
