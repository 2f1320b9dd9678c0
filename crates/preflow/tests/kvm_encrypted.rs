//! Encrypted key value maps: values the host defines (or policies put) are kept sealed
//! in the store, KeyValueMapOperations reads them into `private.` variables only, and
//! `{policy}.failed` reads null until the policy has run.
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
    <PreFlow><Request>
        <Step><Name>Put</Name><Condition>request.queryparam.put = "yes"</Condition></Step>
        <Step><Name>Get</Name></Step>
        <Step><Name>Bad</Name><Condition>request.queryparam.bad = "yes"</Condition></Step>
        <Step><Name>Use</Name></Step>
    </Request></PreFlow>
    <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection>
    <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#;

const TARGET: &str = r#"<TargetEndpoint name="default">
    <HTTPTargetConnection><URL>http://backend.example.com</URL></HTTPTargetConnection>
</TargetEndpoint>"#;

fn gateway(resources: PolicyResources) -> Gateway {
    let loaded = load_files(
        [
            ("apiproxy/shop.xml", r#"<APIProxy name="shop"/>"#),
            ("apiproxy/proxies/default.xml", PROXY),
            ("apiproxy/targets/default.xml", TARGET),
            (
                "apiproxy/policies/Get.xml",
                r#"<KeyValueMapOperations name="Get" mapIdentifier="secrets"><Scope>environment</Scope>
                    <Get assignTo="private.backend.password" index="1"><Key><Parameter>backend</Parameter></Key></Get>
                    <Get assignTo="private.other" index="1"><Key><Parameter>other</Parameter></Key></Get>
                </KeyValueMapOperations>"#,
            ),
            (
                "apiproxy/policies/Put.xml",
                r#"<KeyValueMapOperations name="Put" mapIdentifier="secrets"><Scope>environment</Scope>
                    <Put override="true"><Key><Parameter>other</Parameter></Key><Value ref="request.header.x-new"/></Put>
                </KeyValueMapOperations>"#,
            ),
            (
                "apiproxy/policies/Bad.xml",
                r#"<KeyValueMapOperations name="Bad" mapIdentifier="secrets"><Scope>environment</Scope>
                    <Get assignTo="backend.password" index="1"><Key><Parameter>backend</Parameter></Key></Get>
                </KeyValueMapOperations>"#,
            ),
            (
                "apiproxy/policies/Use.xml",
                r#"<AssignMessage name="Use"><Set><Headers><Header name="x-auth">{private.backend.password}</Header><Header name="x-other">{private.other}</Header></Headers></Set><IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables></AssignMessage>"#,
            ),
        ],
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Gateway::builder()
        .bundles(loaded)
        .resources(resources)
        .build()
        .unwrap()
}

fn resources() -> PolicyResources {
    PolicyResources::default().with_kvm(KvmMap {
        name: "secrets".into(),
        encrypted: true,
        entries: vec![("backend".into(), vec!["s3cret".into()])],
    })
}

/// Runs a GET; returns the exchange and the request the target got, if any.
fn run(
    g: &Gateway,
    uri: &str,
    headers: &[(&str, &str)],
) -> (Exchange, Option<http::Request<Bytes>>) {
    let mut b = http::Request::builder().uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Bytes::new()).unwrap();
    let mut ex = g.begin(
        req,
        Client::http("192.0.2.1:1000".parse().unwrap()),
        SystemTime::now(),
    );
    let mut sent = None;
    for _ in 0..20 {
        match g.step(&mut ex) {
            Step::Respond(_) => return (ex, sent),
            Step::Forward(t) => {
                sent = Some(t.request.clone());
                ex.target_response(Ok(http::Response::new(Bytes::new())));
            }
            other => panic!("unexpected step {other:?}"),
        }
    }
    panic!("did not finish");
}

#[test]
fn encrypted_values_are_read_into_private_variables() {
    let g = gateway(resources());
    let (_, sent) = run(&g, "/v1/x", &[]);
    assert_eq!(sent.expect("forwarded").headers()["x-auth"], "s3cret");
}

#[test]
fn put_into_an_encrypted_map_then_get() {
    let g = gateway(resources());
    let (_, sent) = run(&g, "/v1/x?put=yes", &[("x-new", "fresh-value")]);
    assert_eq!(sent.expect("forwarded").headers()["x-other"], "fresh-value");
}

#[test]
fn a_non_private_variable_is_refused() {
    let g = gateway(resources());
    let (ex, sent) = run(&g, "/v1/x?bad=yes", &[]);
    assert!(sent.is_none());
    assert_eq!(ex.fault_name(), Some("PrivateVariableRequired"));
    assert_eq!(g.variable(&ex, "backend.password"), None);
}

#[test]
fn failed_is_null_before_a_policy_runs() {
    let g = gateway(resources());
    let (ex, _) = run(&g, "/v1/x", &[]);
    // Get ran without failing; Bad and Put never ran.
    assert_eq!(
        g.variable(&ex, "keyvaluemap.Get.failed").as_deref(),
        Some("false")
    );
    assert_eq!(g.variable(&ex, "keyvaluemap.Bad.failed"), None);
    assert_eq!(g.variable(&ex, "keyvaluemap.Put.failed"), None);
    let (ex, _) = run(&g, "/v1/x?bad=yes", &[]);
    assert_eq!(
        g.variable(&ex, "keyvaluemap.Bad.failed").as_deref(),
        Some("true")
    );
}
