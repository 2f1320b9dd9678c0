//! No encoded dot segment, encoded slash or doubled slash reaches a flow or target that
//! the plain path would not: paths are normalised before base-path selection and
//! conditions, or rejected with 400.

mod common;

use common::*;

fn gateway_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("public/apiproxy/public.xml", r#"<APIProxy name="public"/>"#),
        (
            "public/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
              <Flows>
                <Flow name="admin-blocked"><Condition>proxy.pathsuffix MatchesPath "/admin/**"</Condition><Request><Step><Name>Deny</Name></Step></Request></Flow>
              </Flows>
              <HTTPProxyConnection><BasePath>/v1/public</BasePath></HTTPProxyConnection>
              <RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule>
            </ProxyEndpoint>"#,
        ),
        (
            "public/apiproxy/targets/default.xml",
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://public-backend/base</URL></HTTPTargetConnection></TargetEndpoint>"#,
        ),
        (
            "public/apiproxy/policies/Deny.xml",
            r#"<RaiseFault name="Deny"><FaultResponse><Set><StatusCode>403</StatusCode><Payload contentType="text/plain">denied</Payload></Set></FaultResponse></RaiseFault>"#,
        ),
        (
            "internal/apiproxy/internal.xml",
            r#"<APIProxy name="internal"/>"#,
        ),
        (
            "internal/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
              <PreFlow><Request><Step><Name>Deny</Name></Step></Request></PreFlow>
              <HTTPProxyConnection><BasePath>/v1/internal</BasePath></HTTPProxyConnection>
              <RouteRule name="t"/>
            </ProxyEndpoint>"#,
        ),
        (
            "internal/apiproxy/policies/Deny.xml",
            r#"<RaiseFault name="Deny"><FaultResponse><Set><StatusCode>403</StatusCode><Payload contentType="text/plain">internal</Payload></Set></FaultResponse></RaiseFault>"#,
        ),
    ]
}

/// What a path comes to: (status, body, forwarded URI).
fn outcome(path: &str) -> (u16, String, Option<String>) {
    let g = gateway(&gateway_files());
    let out = run(&g, "GET", path, &[]);
    (
        out.status(),
        out.body(),
        out.forwarded.first().map(|r| r.uri().to_string()),
    )
}

#[test]
fn dot_segments_are_resolved_before_selection() {
    // Plain spellings.
    assert_eq!(outcome("/v1/public/admin/x").0, 403);
    assert_eq!(outcome("/v1/internal/x").1, "internal");
    // `..` out of the public proxy reaches exactly what the plain path reaches.
    assert_eq!(outcome("/v1/public/../internal/x").1, "internal");
    assert_eq!(outcome("/v1/public/%2e%2e/internal/x").1, "internal");
    assert_eq!(outcome("/v1/public/%2E%2e/internal/x").1, "internal");
    assert_eq!(outcome("/v1/public/.%2e/internal/x").1, "internal");
    // Tricks inside the proxy cannot dodge the admin flow.
    for p in [
        "/v1/public/x/../admin/y",
        "/v1/public/./admin/y",
        "/v1/public//admin/y",
        "/v1/public/%2e/admin/y",
        "/v1/public/x/%2e%2e/admin/y",
        "/v1/public/%61dmin/y",
        "/v1//public///admin/y",
    ] {
        let (status, body, fwd) = outcome(p);
        assert_eq!((status, body.as_str(), fwd), (403, "denied", None), "{p}");
    }
}

#[test]
fn targets_see_the_normalised_path() {
    let (status, _, fwd) = outcome("/v1/public/a/./b/../c//d?q=%2e%2e");
    assert_eq!(status, 200);
    assert_eq!(
        fwd.as_deref(),
        Some("http://public-backend/base/a/c/d?q=%2e%2e")
    );
}

#[test]
fn encoded_separators_and_escapes_above_the_root_are_rejected() {
    for p in [
        "/v1/public%2Fadmin/y",
        "/v1/public/admin%2fy",
        "/v1/public/%5cadmin",
        "/v1/public/..%2Fadmin",
        "/v1/public/%00",
        "/v1/public/%zz",
        "/../v1/public",
        "/v1/public/../../../etc",
    ] {
        let (status, body, fwd) = outcome(p);
        assert_eq!(status, 400, "{p}: {body}");
        assert!(body.contains("BadRequestPath"), "{p}: {body}");
        assert_eq!(fwd, None, "{p}");
    }
}
