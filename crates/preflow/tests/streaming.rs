//! Streaming decided at build time: a body streams past the engine when no step after the
//! call reads it (request) or reads or replaces it (response), unless
//! `request.streaming.enabled` / `response.streaming.enabled` say otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow::*;

fn proxy(response_steps: &str, props: &str) -> String {
    format!(
        r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/s</BasePath>{props}</HTTPProxyConnection>
  <PreFlow><Request/><Response>{response_steps}</Response></PreFlow>
  <RouteRule name="r"><TargetEndpoint>t</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
    )
}

fn target(request_steps: &str, props: &str) -> String {
    format!(
        r#"<TargetEndpoint name="t">
  <PreFlow><Request>{request_steps}</Request><Response/></PreFlow>
  <HTTPTargetConnection><URL>http://backend.example/b</URL>{props}</HTTPTargetConnection>
</TargetEndpoint>"#
    )
}

const POLICIES: &[(&str, &str)] = &[
    (
        "apiproxy/policies/SetHeader.xml",
        r#"<AssignMessage name="SetHeader"><Set><Headers><Header name="x-a">1</Header></Headers></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#,
    ),
    (
        "apiproxy/policies/EchoRequest.xml",
        r#"<AssignMessage name="EchoRequest"><Set><Payload contentType="text/plain">{request.content}</Payload></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#,
    ),
    (
        "apiproxy/policies/SA.xml",
        r#"<SpikeArrest name="SA"><Rate>1000ps</Rate></SpikeArrest>"#,
    ),
    (
        "apiproxy/policies/Shared.xml",
        r#"<FlowCallout name="Shared"><SharedFlowBundle>elsewhere</SharedFlowBundle></FlowCallout>"#,
    ),
    (
        "apiproxy/policies/Fail.xml",
        r#"<RaiseFault name="Fail"><FaultResponse><Set><StatusCode>500</StatusCode></Set></FaultResponse></RaiseFault>"#,
    ),
];

fn gateway(proxy: &str, target: &str) -> Gateway {
    let mut files: Vec<(&str, &str)> = POLICIES.to_vec();
    files.push(("apiproxy/proxies/default.xml", proxy));
    files.push(("apiproxy/targets/t.xml", target));
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Gateway::builder().bundles(loaded).build().unwrap()
}

fn step(name: &str) -> String {
    format!("<Step><Name>{name}</Name></Step>")
}

fn prop(name: &str, value: &str) -> String {
    format!(r#"<Properties><Property name="{name}">{value}</Property></Properties>"#)
}

fn begin(g: &Gateway, streaming: bool) -> Exchange {
    let req = http::Request::post("/s/x")
        .header("content-length", "5")
        .body(())
        .unwrap();
    let (head, ()) = req.into_parts();
    // A second apart: the spike arrest lets each through.
    static CLOCK: AtomicU64 = AtomicU64::new(1);
    let at = CLOCK.fetch_add(1, Ordering::Relaxed);
    let mut ex = g.begin_head(
        head,
        Client::http("192.0.2.7:4000".parse().unwrap()),
        SystemTime::UNIX_EPOCH + Duration::from_secs(at),
    );
    if streaming {
        ex.enable_streaming();
    }
    ex
}

/// Runs to the target call (handing over `hello` when the body is asked for) and
/// returns the call and whether the body was asked for.
fn forward(g: &Gateway, ex: &mut Exchange) -> (Target, bool) {
    let mut asked = false;
    loop {
        match g.step(ex) {
            Step::ReadBody => {
                asked = true;
                ex.request_body(Bytes::from_static(b"hello"));
            }
            Step::Forward(t) => return (t, asked),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// (request streams, response streams) for the first call.
fn decision(g: &Gateway) -> (bool, bool) {
    let mut ex = begin(g, true);
    let (t, asked) = forward(g, &mut ex);
    assert_eq!(asked, !t.stream_request_body);
    (t.stream_request_body, t.stream_response_body)
}

#[test]
fn a_path_without_body_readers_streams_both_ways() {
    let g = gateway(&proxy(&step("SA"), ""), &target(&step("SA"), ""));
    assert_eq!(decision(&g), (true, true));
    let mut ex = begin(&g, true);
    let (t, _) = forward(&g, &mut ex);
    // The client's framing stays; the body is the host's to send.
    assert!(t.request.body().is_empty());
    assert_eq!(t.request.headers()["content-length"], "5");
}

#[test]
fn hosts_that_do_not_enable_streaming_get_whole_bodies() {
    let g = gateway(&proxy("", ""), &target("", ""));
    let mut ex = begin(&g, false);
    let (t, asked) = forward(&g, &mut ex);
    assert!(asked);
    assert!(!t.stream_request_body && !t.stream_response_body);
    assert_eq!(t.request.body().as_ref(), b"hello");
}

#[test]
fn a_response_side_policy_that_may_change_the_response_buffers_it() {
    let g = gateway(&proxy(&step("SetHeader"), ""), &target("", ""));
    assert_eq!(decision(&g), (true, false));
}

#[test]
fn a_response_side_reader_of_the_request_body_buffers_the_request() {
    let g = gateway(&proxy(&step("EchoRequest"), ""), &target("", ""));
    assert_eq!(decision(&g), (false, false));
}

#[test]
fn a_shared_flow_after_the_call_buffers_both() {
    let g = gateway(&proxy(&step("Shared"), ""), &target("", ""));
    assert_eq!(decision(&g), (false, false));
}

#[test]
fn a_response_side_condition_on_the_response_body_buffers_it() {
    let cond = r#"<Step><Name>SA</Name><Condition>response.content = "x"</Condition></Step>"#;
    let g = gateway(&proxy(cond, ""), &target("", ""));
    assert_eq!(decision(&g), (true, false));
}

#[test]
fn the_streaming_properties_decide_when_set() {
    // Off on the target: buffered though nothing needs the bodies.
    let off = r#"<Properties><Property name="request.streaming.enabled">false</Property><Property name="response.streaming.enabled">false</Property></Properties>"#;
    let g = gateway(&proxy("", ""), &target("", off));
    assert_eq!(decision(&g), (false, false));
    // On at the proxy: streamed though a policy reads them (it sees no body).
    let g = gateway(
        &proxy(
            &step("EchoRequest"),
            &prop("request.streaming.enabled", "true"),
        ),
        &target("", &prop("response.streaming.enabled", "true")),
    );
    assert_eq!(decision(&g), (true, true));
}

#[test]
fn a_streamed_response_keeps_the_back_ends_framing_unless_a_fault_replaces_it() {
    let g = gateway(&proxy(&step("SA"), ""), &target("", ""));
    let mut ex = begin(&g, true);
    let (t, _) = forward(&g, &mut ex);
    assert!(t.stream_response_body);
    let head = http::Response::builder()
        .status(200)
        .header("content-length", "1073741824")
        .header("connection", "keep-alive")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    ex.target_response_head(Ok(head));
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert!(ex.streams_response_body());
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "1073741824");
    assert!(r.headers().get("connection").is_none());
    assert!(r.body().is_empty());

    // A fault on the response side: the fault's body is the answer, not the back end's.
    let g = gateway(
        &proxy(&step("Fail"), &prop("response.streaming.enabled", "true")),
        &target("", ""),
    );
    let mut ex = begin(&g, true);
    let (t, _) = forward(&g, &mut ex);
    assert!(t.stream_response_body);
    let head = http::Response::builder()
        .status(200)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    ex.target_response_head(Ok(head));
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert!(!ex.streams_response_body());
    assert_eq!(r.status(), 500);
}

fn backend_head(status: u16) -> http::response::Parts {
    http::Response::builder()
        .status(status)
        .header("content-length", "11")
        .header("x-backend", "b")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// A streaming exchange to its target call, then the engine's answer to the back end's
/// head with `status`.
fn answer_to_head(g: &Gateway, status: u16) -> (Exchange, http::Response<Bytes>) {
    let mut ex = begin(g, true);
    forward(g, &mut ex);
    ex.target_response_head(Ok(backend_head(status)));
    match g.step(&mut ex) {
        Step::Respond(r) => (ex, r),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn an_answer_no_response_step_touches_passes_as_the_engine_would_have_sent_it() {
    let g = gateway(&proxy("", ""), &target(&step("SA"), ""));
    let read = |ex: &Exchange| {
        [
            "response.status.code",
            "current.flow.name",
            "proxy.flow.name",
            "target.name",
            "apiproxy.name",
            "fault.name",
            "response.header.x-backend",
        ]
        .map(|v| g.variable(ex, v))
    };
    // The engine's own path: the head given, the response flows stepped through.
    let mut walked = begin(&g, true);
    let (t, _) = forward(&g, &mut walked);
    assert!(t.stream_response_body);
    walked.target_response_head(Ok(backend_head(201)));
    let Step::Respond(r) = g.step(&mut walked) else {
        panic!()
    };
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-backend"], "b");

    // Passed: the same exchange state, without a head handed over.
    let mut passed = begin(&g, true);
    forward(&g, &mut passed);
    assert!(g.pass_response(&mut passed, http::StatusCode::CREATED));
    assert!(passed.streams_response_body());
    assert_eq!(read(&passed), read(&walked));
    assert_eq!(
        g.variable(&passed, "response.status.code").as_deref(),
        Some("201")
    );
    // Done: a further step is the engine's internal error, as after a Respond.
    let (Step::Respond(a), Step::Respond(b)) = (g.step(&mut passed), g.step(&mut walked)) else {
        panic!()
    };
    assert_eq!((a.status(), a.body()), (b.status(), b.body()));
}

#[test]
fn an_answer_the_engine_may_touch_does_not_pass() {
    // A response step.
    let g = gateway(&proxy(&step("SetHeader"), ""), &target("", ""));
    let mut ex = begin(&g, true);
    forward(&g, &mut ex);
    assert!(!g.pass_response(&mut ex, http::StatusCode::OK));
    // Left as it was: the head goes through the flow.
    ex.target_response_head(Ok(backend_head(200)));
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(r.headers()["x-a"], "1");
    assert_eq!(r.headers()["x-backend"], "b");

    // An error status: the error flow decides.
    let g = gateway(&proxy("", ""), &target("", ""));
    let mut ex = begin(&g, true);
    forward(&g, &mut ex);
    assert!(!g.pass_response(&mut ex, http::StatusCode::BAD_GATEWAY));
    ex.target_response(Ok(http::Response::from_parts(
        backend_head(502),
        Bytes::from_static(b"upstream down"),
    )));
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(r.status(), 502);

    // A host that does not stream, and an exchange not yet at the target call.
    let mut ex = begin(&g, false);
    forward(&g, &mut ex);
    assert!(!g.pass_response(&mut ex, http::StatusCode::OK));
    let mut ex = begin(&g, true);
    assert!(!g.pass_response(&mut ex, http::StatusCode::OK));

    // A PostClientFlow reads the response after it is sent.
    let with_post_client = proxy("", "").replace(
        "<RouteRule",
        "<PostClientFlow><Response><Step><Name>SA</Name></Step></Response></PostClientFlow><RouteRule",
    );
    let g = gateway(&with_post_client, &target("", ""));
    let mut ex = begin(&g, true);
    forward(&g, &mut ex);
    assert!(!g.pass_response(&mut ex, http::StatusCode::OK));
}

#[test]
fn a_back_ends_error_given_as_a_head_streams_its_body_unless_an_error_step_runs() {
    // No fault rule: the back end's error goes on as it came, its body streamed.
    let g = gateway(&proxy("", ""), &target("", ""));
    let (ex, r) = answer_to_head(&g, 404);
    assert_eq!(r.status(), 404);
    assert!(ex.streams_response_body());
    assert_eq!(r.headers()["content-length"], "11");
    assert_eq!(r.headers()["x-backend"], "b");
    assert_eq!(
        g.variable(&ex, "fault.name").as_deref(),
        Some("ErrorResponseCode")
    );

    // A fault rule of the target endpoint whose step runs: its answer, not the back end's
    // body.
    let with_rule = target("", "").replace(
        "<HTTPTargetConnection>",
        r#"<FaultRules><FaultRule name="r"><Step><Name>SA</Name></Step><Condition>fault.name = "ErrorResponseCode"</Condition></FaultRule></FaultRules><HTTPTargetConnection>"#,
    );
    let g = gateway(&proxy("", ""), &with_rule);
    let (ex, r) = answer_to_head(&g, 404);
    assert_eq!(r.status(), 404);
    assert!(!ex.streams_response_body());
}
