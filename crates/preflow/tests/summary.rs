//! `Gateway::summary`: what a finished exchange came to, for the host's metrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::SystemTime;

use bytes::Bytes;
use preflow::*;

const PROXY: &str = r#"<ProxyEndpoint name="default">
    <PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
    <Flows>
        <Flow name="teapot"><Condition>proxy.pathsuffix = "/teapot"</Condition>
            <Request><Step><Name>RF</Name></Step></Request></Flow>
        <Flow name="items"><Condition>proxy.pathsuffix = "/items"</Condition></Flow>
    </Flows>
    <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection>
    <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#;

const TARGET: &str = r#"<TargetEndpoint name="default">
    <HTTPTargetConnection><URL>http://backend.example.com</URL></HTTPTargetConnection>
</TargetEndpoint>"#;

fn gateway() -> Gateway {
    let loaded = load_files(
        [
            ("apiproxy/shop.xml", r#"<APIProxy name="shop"/>"#),
            ("apiproxy/proxies/default.xml", PROXY),
            ("apiproxy/targets/default.xml", TARGET),
            (
                "apiproxy/policies/SA.xml",
                r#"<SpikeArrest name="SA"><Rate>1pm</Rate></SpikeArrest>"#,
            ),
            (
                "apiproxy/policies/RF.xml",
                r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>418</StatusCode></Set></FaultResponse></RaiseFault>"#,
            ),
        ],
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors());
    Gateway::builder().bundles(loaded).build().unwrap()
}

/// Runs a GET of `path`; a target call is answered 200.
fn run(g: &Gateway, path: &str, client_port: u16) -> ExchangeSummary {
    let req = http::Request::get(path).body(Bytes::new()).unwrap();
    let client = Client {
        addr: ([127, 0, 0, 1], client_port).into(),
        scheme: Scheme::Http,
    };
    let mut ex = g.begin(req, client, SystemTime::now());
    for _ in 0..100 {
        match g.step(&mut ex) {
            Step::Respond(_) => return g.summary(&ex),
            Step::Forward(_) => ex.target_response(Ok(http::Response::new(Bytes::new()))),
            other => panic!("unexpected step {other:?}"),
        }
    }
    panic!("the exchange did not finish");
}

/// `Gateway::retry_after` of a GET of `path`.
fn retry_after(g: &Gateway, path: &str, client_port: u16) -> Option<u64> {
    let req = http::Request::get(path).body(Bytes::new()).unwrap();
    let client = Client {
        addr: ([127, 0, 0, 1], client_port).into(),
        scheme: Scheme::Http,
    };
    let mut ex = g.begin(req, client, SystemTime::now());
    loop {
        match g.step(&mut ex) {
            Step::Respond(_) => return g.retry_after(&ex),
            Step::Forward(_) => ex.target_response(Ok(http::Response::new(Bytes::new()))),
            other => panic!("unexpected step {other:?}"),
        }
    }
}

#[test]
fn summaries_name_who_answered() {
    let g = gateway();
    let ok = run(&g, "/v1/items", 1);
    assert_eq!(ok.proxy.as_deref(), Some("shop"));
    assert_eq!(ok.flow.as_deref(), Some("items"));
    assert_eq!(ok.status, Some(200));
    assert_eq!(ok.answered_by, Some(Answerer::Target));
    assert_eq!(ok.fault, None);

    // The SpikeArrest allows one request a minute: the next one is rejected by it.
    let limited = run(&g, "/v1/items", 2);
    assert_eq!(limited.answered_by, Some(Answerer::Policy));
    assert_eq!(limited.fault.as_deref(), Some("SpikeArrestViolation"));
    assert_eq!(limited.fault_policy.as_deref(), Some("SA"));
    assert_eq!(limited.rate_limited_by.as_deref(), Some("SA"));
    assert_eq!(limited.status, Some(429));
    assert_eq!(retry_after(&g, "/v1/items", 4), Some(1));

    let none = run(&g, "/nowhere", 3);
    assert_eq!(none.proxy, None);
    assert_eq!(none.answered_by, Some(Answerer::Gateway));
    assert_eq!(none.rate_limited_by, None);
}

#[test]
fn raise_fault_is_a_policy_answer() {
    let proxy = PROXY.replace("<Step><Name>SA</Name></Step>", "");
    let loaded = load_files(
        [
            ("apiproxy/shop.xml", r#"<APIProxy name="shop"/>"#),
            ("apiproxy/proxies/default.xml", proxy.as_str()),
            ("apiproxy/targets/default.xml", TARGET),
            (
                "apiproxy/policies/RF.xml",
                r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>418</StatusCode></Set></FaultResponse></RaiseFault>"#,
            ),
        ],
        &LoadOptions::default(),
    );
    let g = Gateway::builder().bundles(loaded).build().unwrap();
    let s = run(&g, "/v1/teapot", 1);
    assert_eq!(s.answered_by, Some(Answerer::Policy));
    assert_eq!(s.fault_policy.as_deref(), Some("RF"));
    assert_eq!(s.status, Some(418));
    assert_eq!(s.rate_limited_by, None);
    assert_eq!(s.token, None);
    assert_eq!(retry_after(&g, "/v1/teapot", 2), None);
    // The error headers Apigee's trace shows for the fault.
    assert_eq!(
        s.fault_headers(),
        [
            (
                "X-Apigee.fault-code",
                "steps.raisefault.RaiseFault".to_owned()
            ),
            ("X-Apigee.fault-source", "policy".to_owned()),
            ("X-Apigee.fault-policy", "RF".to_owned()),
            ("X-Apigee.fault-flow", "teapot".to_owned()),
        ]
    );
    assert!(run(&g, "/v1/items", 3).fault_headers().is_empty());
}

#[test]
fn a_quota_rejection_retries_when_its_window_ends() {
    let proxy = PROXY.replace("<Name>SA</Name>", "<Name>Q</Name>");
    let loaded = load_files(
        [
            ("apiproxy/shop.xml", r#"<APIProxy name="shop"/>"#),
            ("apiproxy/proxies/default.xml", proxy.as_str()),
            ("apiproxy/targets/default.xml", TARGET),
            (
                "apiproxy/policies/Q.xml",
                r#"<Quota name="Q"><Allow count="1"/><Interval>1</Interval><TimeUnit>hour</TimeUnit></Quota>"#,
            ),
            (
                "apiproxy/policies/RF.xml",
                r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>418</StatusCode></Set></FaultResponse></RaiseFault>"#,
            ),
        ],
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors());
    let g = Gateway::builder().bundles(loaded).build().unwrap();
    assert_eq!(run(&g, "/v1/items", 1).status, Some(200));
    let limited = run(&g, "/v1/items", 1);
    assert_eq!(limited.rate_limited_by.as_deref(), Some("Q"));
    let wait = retry_after(&g, "/v1/items", 1).unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
}
