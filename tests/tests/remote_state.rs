//! `StateMode::Remote`: every rate-limit and token-store operation is a `Step::Store`,
//! and the exchange resumes with the reply.

mod common;

use std::sync::Arc;

use common::*;
use preflow::{Settings, StateMode, Step, StoreOp, StoreReply};
use preflow_oauth::Registry;

fn quota_gateway(state: StateMode) -> preflow::Gateway {
    let files = [
        ("apiproxy/q.xml", r#"<APIProxy name="q"/>"#),
        (
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><PreFlow><Request><Step><Name>Q</Name></Step></Request></PreFlow><HTTPProxyConnection><BasePath>/q</BasePath></HTTPProxyConnection><RouteRule name="n"/></ProxyEndpoint>"#,
        ),
        (
            "apiproxy/policies/Q.xml",
            r#"<Quota name="Q"><Identifier ref="request.header.who"/><Allow count="2"/><Interval>1</Interval><TimeUnit>minute</TimeUnit></Quota>"#,
        ),
    ];
    gateway_with(
        &files,
        Arc::new(Registry::new()),
        Settings::default(),
        state,
    )
}

#[test]
fn quota_ops_are_surfaced_and_resumed() {
    let g = quota_gateway(StateMode::Remote);
    let store = preflow_ratelimit::MemoryStore::new();
    let mut keys = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let mut ex = g.begin(
            request("GET", "/q", &[("who", "alice")], ""),
            preflow::Client::http("192.0.2.1:1".parse().unwrap()),
            at(0.0),
        );
        let resp = loop {
            match g.step(&mut ex) {
                Step::Respond(r) => break r,
                Step::Store(StoreOp::RateLimit(op)) => {
                    use preflow_ratelimit::CounterStore as _;
                    keys.push(op.key().to_owned());
                    ex.store_reply(StoreReply::RateLimit(store.run(&op)));
                }
                other => panic!("{other:?}"),
            }
        };
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            assert_eq!(
                g.variable(&ex, "ratelimit.Q.identifier").as_deref(),
                Some("alice")
            );
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert!(
        keys.iter()
            .all(|k| k.contains("q") && k.contains("Q") && k.contains("alice")),
        "{keys:?}"
    );
}

#[test]
fn an_unavailable_counter_store_fails_open_and_marks_the_policy() {
    let g = quota_gateway(StateMode::Remote);
    let mut ex = g.begin(
        request("GET", "/q", &[("who", "bob")], ""),
        preflow::Client::http("192.0.2.1:1".parse().unwrap()),
        at(0.0),
    );
    let Step::Store(_) = g.step(&mut ex) else {
        panic!("expected a store op")
    };
    // Stepping again without a reply asks again.
    let Step::Store(_) = g.step(&mut ex) else {
        panic!("expected the same store op")
    };
    ex.store_reply(StoreReply::Unavailable);
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!("expected a response")
    };
    assert_eq!(r.status(), 200);
    assert_eq!(
        g.variable(&ex, "ratelimit.Q.failed").as_deref(),
        Some("true")
    );
}

#[test]
fn local_mode_never_surfaces_store_ops() {
    let g = quota_gateway(StateMode::Local);
    let statuses: Vec<u16> = (0..3)
        .map(|_| run(&g, "GET", "/q", &[("who", "carol")]).status())
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
}
