//! The checks of `preflow check` beyond loading, on small hand-written bundles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use preflow::{LoadOptions, lint, load_files};

fn lint_of(files: &[(&str, &str)]) -> Vec<String> {
    let loaded = load_files(files.iter().copied(), &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    lint(&loaded.bundles)
        .iter()
        .map(ToString::to_string)
        .collect()
}

const AM: (&str, &str) = (
    "apiproxy/policies/AM.xml",
    r#"<AssignMessage name="AM"><AssignVariable><Name>flow.mode</Name><Value>x</Value></AssignVariable></AssignMessage>"#,
);

/// A proxy endpoint around `body`, with an explicit null route unless `body` routes.
fn proxy(body: &str) -> String {
    let route = if body.contains("<RouteRule") {
        ""
    } else {
        r#"<RouteRule name="noroute"/>"#
    };
    format!(
        r#"<ProxyEndpoint name="default">{body}<HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection>{route}</ProxyEndpoint>"#
    )
}

#[test]
fn and_or_mix() {
    let p = proxy(
        r#"<PreFlow><Request><Step><Name>AM</Name></Step>
        <Step><Condition>request.verb = "GET" and request.verb = "HEAD" or flow.mode = "x"</Condition><Name>AM</Name></Step>
        <Step><Condition>(request.verb = "GET" and request.verb = "HEAD") or flow.mode = "x"</Condition><Name>AM</Name></Step>
        <Step><Condition>request.verb = "GET" and (request.verb = "HEAD" or flow.mode = "x")</Condition><Name>AM</Name></Step>
        <Step><Condition>(request.verb = "GET") and (request.verb = "HEAD") and (flow.mode = "x")</Condition><Name>AM</Name></Step>
        <Step><Condition>((flow.mode = null) or (flow.mode = "") and (request.verb = "GET"))</Condition><Name>AM</Name></Step>
        <Step><Condition>((flow.mode = null) and (flow.mode = "")) or (((request.verb = "GET")))</Condition><Name>AM</Name></Step>
        </Request></PreFlow>"#,
    );
    let w = lint_of(&[("apiproxy/proxies/default.xml", &p), AM]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[1].starts_with("apiproxy/proxies/default.xml:6:"), "{w:?}");
    assert!(
        w[0].contains("`AND` and `OR` mixed without parentheses"),
        "{w:?}"
    );
    assert!(w[0].starts_with("apiproxy/proxies/default.xml:2:"), "{w:?}");
}

#[test]
fn unreachable_flows_routes_and_fault_rules() {
    let p = proxy(
        r#"<Flows>
            <Flow name="a"><Condition>request.verb = "GET"</Condition><Request><Step><Name>AM</Name></Step></Request></Flow>
            <Flow name="catch-all"/>
            <Flow name="late"><Condition>request.verb = "POST"</Condition></Flow>
        </Flows>
        <FaultRules>
            <FaultRule name="early"><Condition>fault.name = "x"</Condition></FaultRule>
            <FaultRule name="fallback"/>
        </FaultRules>
        <RouteRule name="all"/><RouteRule name="never"><URL>http://x</URL></RouteRule>"#,
    );
    let w = lint_of(&[("apiproxy/proxies/default.xml", &p), AM]);
    assert!(
        w.iter().any(|w| w.contains(
            "flow `catch-all` has no condition and is not last: flow `late` after it can never run"
        )),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("route rule `never` can never apply")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("fault rule `early` can never run")),
        "{w:?}"
    );
    // Also at the unconditional rule itself, where the condition is missing.
    assert!(
        w.iter().any(|w| w.contains(
            "fault rule `fallback` has no condition, so fault rule `early`, tried after it, can never run"
        )),
        "{w:?}"
    );
    assert_eq!(w.len(), 4, "{w:?}");
}

#[test]
fn flow_callouts_to_shared_flows_not_loaded() {
    let p = proxy(
        r#"<PreFlow><Request><Step><Name>FC</Name></Step><Step><Name>FC2</Name></Step></Request></PreFlow>"#,
    );
    let fc = (
        "apiproxy/policies/FC.xml",
        r#"<FlowCallout name="FC"><SharedFlowBundle>common</SharedFlowBundle></FlowCallout>"#,
    );
    let fc2 = (
        "apiproxy/policies/FC2.xml",
        r#"<FlowCallout name="FC2"><SharedFlowBundle>other</SharedFlowBundle></FlowCallout>"#,
    );
    let sf = (
        "common/sharedflowbundle/sharedflows/default.xml",
        r#"<SharedFlow name="default"/>"#,
    );
    let w = lint_of(&[("apiproxy/proxies/default.xml", &p), fc, fc2, sf]);
    assert_eq!(
        w,
        [
            "apiproxy/policies/FC2.xml:1:1: warning[REF004]: FlowCallout `FC2` calls shared flow `other`, which is not among the loaded bundles"
        ]
    );
    // Alone, a proxy calling shared flows deployed elsewhere is fine.
    let w = lint_of(&[("apiproxy/proxies/default.xml", &p), fc, fc2]);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn unreferenced_policies_and_unset_variables() {
    let p = proxy(
        r#"<PreFlow><Request><Step><Name>AM</Name></Step>
        <Step><Condition>flow.mode = "x" and flow.typo = "y" and request.verb = "GET"</Condition><Name>AM</Name></Step>
        </Request></PreFlow>"#,
    );
    let unused = (
        "apiproxy/policies/Unused.xml",
        r#"<SpikeArrest name="Unused"><Rate>1ps</Rate></SpikeArrest>"#,
    );
    let w = lint_of(&[("apiproxy/proxies/default.xml", &p), AM, unused]);
    assert!(
        w.contains(
            &"apiproxy/policies/Unused.xml:1:1: warning[POL006]: policy `Unused` is not used by any step"
                .to_owned()
        ),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains("reads `flow.typo`")), "{w:?}");
    assert_eq!(w.len(), 2, "{w:?}");
    // With a script policy in the bundle, variables cannot be judged.
    let js = ("apiproxy/policies/JS.xml", r#"<Javascript name="JS"/>"#);
    let p2 = p.replace(
        "<Step><Name>AM</Name></Step>\n",
        "<Step><Name>AM</Name></Step><Step><Name>JS</Name></Step>\n",
    );
    let w = lint_of(&[("apiproxy/proxies/default.xml", &p2), AM, js]);
    assert!(!w.iter().any(|w| w.contains("reads")), "{w:?}");
}

#[test]
fn targets_are_checked_against_the_environment() {
    let target = |conn: &str| {
        format!(
            r#"<TargetEndpoint name="t"><HTTPTargetConnection>{conn}</HTTPTargetConnection></TargetEndpoint>"#
        )
    };
    let cases = [
        ("<URL>provider://cpi/x</URL>", None),
        ("<URL>provider://erp/x</URL>", Some("API provider `erp`")),
        (
            r#"<LoadBalancer><Server name="a"/><Server name="b"/></LoadBalancer>"#,
            Some("target server `b`"),
        ),
        (
            "<SSLInfo><Enabled>true</Enabled><TrustStore>ref://partners</TrustStore></SSLInfo><URL>https://x.example</URL>",
            None,
        ),
        (
            "<SSLInfo><Enabled>true</Enabled><KeyStore>client</KeyStore></SSLInfo><URL>https://x.example</URL>",
            Some("key store `client`"),
        ),
        (
            "<SSLInfo><Enabled>true</Enabled><IgnoreValidationErrors>true</IgnoreValidationErrors></SSLInfo><URL>https://x.example</URL>",
            Some("does not verify the back end's certificate"),
        ),
    ];
    let env = preflow::Environment::new()
        .provider(preflow::Provider::new("cpi", "https://cpi.example"))
        .target_server(preflow::TargetServer::new("a", "a.example", 80))
        .truststore("partners");
    for (conn, expected) in cases {
        let t = target(conn);
        let p = proxy(r#"<RouteRule name="r"><TargetEndpoint>t</TargetEndpoint></RouteRule>"#);
        let files = [
            ("apiproxy/proxies/default.xml", p.as_str()),
            ("apiproxy/targets/t.xml", t.as_str()),
        ];
        let loaded = load_files(files.iter().copied(), &LoadOptions::default());
        let found: Vec<String> = preflow::lint_environment(&loaded.bundles, &env)
            .iter()
            .map(ToString::to_string)
            .collect();
        match expected {
            None => assert!(found.is_empty(), "{conn}: {found:?}"),
            Some(text) => {
                assert_eq!(found.len(), 1, "{conn}: {found:?}");
                assert!(found[0].contains(text), "{conn}: {found:?}");
            }
        }
    }
}
