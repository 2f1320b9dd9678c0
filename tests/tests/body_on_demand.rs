//! Policies before bodies: an exchange begun from the head asks for the body only when a
//! step, a condition or the target call on the path taken needs it.

mod common;

use bytes::Bytes;
use common::{at, gateway};
use preflow::{Client, Gateway, Step};

const TARGET: (&str, &str) = (
    "apiproxy/targets/default.xml",
    r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend/base</URL></HTTPTargetConnection></TargetEndpoint>"#,
);

fn proxy(pre: &str, flows: &str) -> String {
    format!(
        r#"<ProxyEndpoint name="default"><PreFlow><Request>{pre}</Request></PreFlow><Flows>{flows}</Flows><HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection><RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#
    )
}

/// What the host was asked for, in order, until the response.
fn drive(
    g: &Gateway,
    method: &str,
    uri: &str,
    body: &str,
) -> (Vec<&'static str>, u16, Option<Bytes>) {
    drive_declared(g, method, uri, body, None)
}

/// As [`drive`], the head declaring `Content-Length: declared` when given.
fn drive_declared(
    g: &Gateway,
    method: &str,
    uri: &str,
    body: &str,
    declared: Option<usize>,
) -> (Vec<&'static str>, u16, Option<Bytes>) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(n) = declared {
        b = b.header("content-length", n);
    }
    let (head, _) = b.body(()).unwrap().into_parts();
    let mut ex = g.begin_head(
        head,
        Client::http("192.0.2.7:4000".parse().unwrap()),
        at(0.0),
    );
    let mut asked = Vec::new();
    let mut sent = None;
    for _ in 0..20 {
        match g.step(&mut ex) {
            Step::Respond(r) => return (asked, r.status().as_u16(), sent),
            Step::ReadBody => {
                asked.push("body");
                ex.request_body(Bytes::from(body.to_owned()));
            }
            Step::Forward(t) => {
                asked.push("forward");
                sent = Some(t.request.body().clone());
                ex.target_response(Ok(http::Response::new(Bytes::from_static(b"ok"))));
            }
            Step::Store(op) => panic!("local state: {op:?}"),
            Step::Pause(_) => panic!("no provider to wait for"),
        }
    }
    panic!("no response");
}

#[test]
fn a_request_rejected_on_its_head_never_has_its_body_read() {
    let g = gateway(&[
        (
            "apiproxy/proxies/default.xml",
            &proxy(
                "<Step><Name>Verify</Name></Step><Step><Name>SA</Name></Step>",
                "",
            ),
        ),
        TARGET,
        (
            "apiproxy/policies/Verify.xml",
            r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        ),
        (
            "apiproxy/policies/SA.xml",
            r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#,
        ),
    ]);
    let (asked, status, _) = drive(&g, "POST", "/api/items", "a=1");
    assert_eq!(status, 401);
    assert!(asked.is_empty(), "asked for {asked:?}");
}

#[test]
fn the_body_is_read_before_the_target_call_and_forwarded() {
    let g = gateway(&[
        (
            "apiproxy/proxies/default.xml",
            &proxy("<Step><Name>SA</Name></Step>", ""),
        ),
        TARGET,
        (
            "apiproxy/policies/SA.xml",
            r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#,
        ),
    ]);
    let (asked, status, sent) = drive(&g, "POST", "/api/items", "a=1");
    assert_eq!(status, 200);
    assert_eq!(asked, ["body", "forward"]);
    assert_eq!(sent.as_deref(), Some(&b"a=1"[..]));
}

#[test]
fn a_policy_reading_the_form_gets_the_body_first() {
    let g = gateway(&[
        (
            "apiproxy/proxies/default.xml",
            &proxy(
                "<Step><Name>AM</Name></Step><Step><Name>RF</Name></Step>",
                "",
            ),
        ),
        TARGET,
        (
            "apiproxy/policies/AM.xml",
            r#"<AssignMessage name="AM"><AssignVariable><Name>who</Name><Ref>request.formparam.a</Ref></AssignVariable></AssignMessage>"#,
        ),
        (
            "apiproxy/policies/RF.xml",
            r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>418</StatusCode><Payload contentType="text/plain">{who}</Payload></Set></FaultResponse></RaiseFault>"#,
        ),
    ]);
    let (asked, status, _) = drive(&g, "POST", "/api/items", "a=42");
    assert_eq!(status, 418);
    assert_eq!(asked, ["body"], "read once, before AssignMessage");
}

#[test]
fn a_flow_condition_on_the_form_gets_the_body_before_the_flows() {
    let flows = r#"<Flow name="f"><Condition>request.formparam.kind = "x"</Condition><Request><Step><Name>RF</Name></Step></Request></Flow>"#;
    let g = gateway(&[
        ("apiproxy/proxies/default.xml", &proxy("", flows)),
        TARGET,
        (
            "apiproxy/policies/RF.xml",
            r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>409</StatusCode></Set></FaultResponse></RaiseFault>"#,
        ),
    ]);
    let (asked, status, _) = drive(&g, "POST", "/api/items", "kind=x");
    assert_eq!(status, 409);
    assert_eq!(asked, ["body"]);
}

#[test]
fn a_head_only_raise_fault_answers_without_the_body() {
    let g = gateway(&[
        (
            "apiproxy/proxies/default.xml",
            &proxy("<Step><Name>RF</Name></Step>", ""),
        ),
        TARGET,
        (
            "apiproxy/policies/RF.xml",
            r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>403</StatusCode><Payload contentType="text/plain">no {request.verb}</Payload></Set></FaultResponse></RaiseFault>"#,
        ),
    ]);
    let (asked, status, _) = drive(&g, "POST", "/api/items", "a=1");
    assert_eq!(status, 403);
    assert!(asked.is_empty(), "asked for {asked:?}");
}

/// A token request declaring a body larger than the token endpoint's form limit is
/// refused on its head (`413`, `protocol.http.TooBigBody`), its body never read; one
/// within the limit is read as usual.
#[test]
fn a_token_request_over_the_form_limit_is_refused_unread() {
    let g = gateway(&[
        (
            "apiproxy/proxies/default.xml",
            &proxy("<Step><Name>Token</Name></Step>", ""),
        ),
        TARGET,
        (
            "apiproxy/policies/Token.xml",
            r#"<OAuthV2 name="Token"><Operation>GenerateAccessToken</Operation><SupportedGrantTypes><GrantType>client_credentials</GrantType></SupportedGrantTypes><GenerateResponse enabled="true"/></OAuthV2>"#,
        ),
    ]);
    let limit = preflow_oauth::form::MAX_BODY;
    let (asked, status, _) = drive_declared(&g, "POST", "/api/token", "", Some(limit + 1));
    assert_eq!((asked.as_slice(), status), (&[][..], 413));
    let body = "grant_type=client_credentials&client_id=x&client_secret=y";
    let (asked, status, _) = drive_declared(&g, "POST", "/api/token", body, Some(body.len()));
    assert_eq!((asked.as_slice(), status), (&["body"][..], 401));
}
