//! `access_token` after VerifyAccessToken reads the verified bearer token from the
//! request's `Authorization` header (nothing is copied when the token is verified).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow::*;
use preflow_oauth::{
    ApiProduct, App, Developer, GrantId, GrantType, NewCredential, Registry, TokenHash, TokenKind,
    TokenRecord, TokenStore,
};

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
    let registry = Arc::new(Registry::new());
    registry.put_developer(Developer::new("dev@example.com"));
    registry.put_product(
        ApiProduct::new("P")
            .with_proxies(["api"])
            .with_resources(["/**"])
            .unwrap(),
    );
    let app = registry
        .add_app("dev@example.com", App::new("app-0"))
        .unwrap();
    registry
        .add_credential(
            &app,
            NewCredential {
                key: Some("client-0".into()),
                products: vec!["P".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let gateway = Gateway::builder()
        .bundles(loaded)
        .registry(Arc::clone(&registry))
        .build()
        .unwrap();
    let token = "tok-0123456789abcdefghijklmnopqrstuvwxyz";
    let record = TokenRecord {
        kind: TokenKind::Access,
        client_id: Arc::from("client-0"),
        app_id: Arc::from(app.as_str()),
        app_name: Arc::from("app-0"),
        developer_email: Arc::from("dev@example.com"),
        products: Arc::from(vec![Arc::<str>::from("P")]),
        scope: Arc::from(""),
        grant_type: GrantType::ClientCredentials,
        username: None,
        issued_at: 1_700_000_000,
        expires_at: None,
        revoked_at: None,
        grant_id: GrantId([0; 16]),
        refresh_count: 0,
        attributes: Arc::from(Vec::new()),
    };
    gateway
        .token_store()
        .put_tokens(&[(TokenHash::of(token.as_bytes()), Arc::new(record))]);
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
