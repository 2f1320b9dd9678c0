//! `access_token` after VerifyAccessToken reads the verified bearer token from the
//! request's `Authorization` header (nothing is copied when the token is verified).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow::*;

mod verified;

#[test]
fn access_token_reads_the_verified_bearer_token() {
    let files: Vec<(&str, &str)> = vec![
        ("apiproxy/api.xml", r#"<APIProxy name="api"/>"#),
        (
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Verify</Name></Step><Step><Name>Copy</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><URL>http://backend.internal:8080</URL></RouteRule>
</ProxyEndpoint>"#,
        ),
        (
            "apiproxy/policies/Verify.xml",
            r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        ),
        (
            "apiproxy/policies/Copy.xml",
            r#"<AssignMessage name="Copy"><Set><Headers><Header name="x-token">{access_token}</Header></Headers></Set></AssignMessage>"#,
        ),
    ];
    let token = "tok-0123456789abcdefghijklmnopqrstuvwxyz";
    let gateway = verified::gateway_with_token(files, token);
    let req = http::Request::get("/v1/api/x")
        .header("authorization", format!("bearer {token}"))
        .body(Bytes::new())
        .unwrap();
    let client = Client::http(std::net::SocketAddr::from(([192, 0, 2, 1], 40000)));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut ex = gateway.begin(req, client, now);
    match gateway.step(&mut ex) {
        Step::Forward(t) => assert_eq!(
            t.request
                .headers()
                .get("x-token")
                .map(|v| v.to_str().unwrap()),
            Some(token)
        ),
        other => panic!("{other:?}"),
    }
}
